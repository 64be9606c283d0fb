//! GPU targets: which `sm_XX` a module is compiled for, and what that target allows.

use std::fmt;
use std::str::FromStr;

/// A compute capability anybit compiles for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// A100 (Ampere).
    Sm80,
    /// RTX 30xx, A40 (Ampere).
    Sm86,
    /// L4, L40, RTX 40xx (Ada).
    Sm89,
    /// H100 (Hopper), portable features only.
    Sm90,
    /// H100 with the architecture-specific features (`wgmma`, `setmaxnreg`).
    Sm90a,
    /// B200 (Blackwell) with its architecture-specific features.
    Sm100a,
}

/// An unknown or unsupported target name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unsupported target `{0}`: anybit compiles for sm_80, sm_86, sm_89, sm_90, sm_90a and sm_100a")]
pub struct UnknownTarget(pub String);

impl Target {
    /// Every target, oldest first.
    pub const ALL: [Target; 6] =
        [Target::Sm80, Target::Sm86, Target::Sm89, Target::Sm90, Target::Sm90a, Target::Sm100a];

    /// The name PTX and LLVM use (`sm_90a`).
    pub fn name(self) -> &'static str {
        match self {
            Target::Sm80 => "sm_80",
            Target::Sm86 => "sm_86",
            Target::Sm89 => "sm_89",
            Target::Sm90 => "sm_90",
            Target::Sm90a => "sm_90a",
            Target::Sm100a => "sm_100a",
        }
    }

    /// The PTX ISA version the generated code declares, as (major, minor): the first version
    /// that supports the target and every instruction anybit emits for it, and that CUDA 12.8+
    /// drivers accept.
    pub fn ptx_version(self) -> (u32, u32) {
        match self {
            Target::Sm80 | Target::Sm86 | Target::Sm89 | Target::Sm90 => (7, 8),
            Target::Sm90a => (8, 0),
            Target::Sm100a => (8, 6),
        }
    }

    /// The LLVM NVPTX feature string selecting the PTX version (`+ptx78`).
    pub fn llvm_features(self) -> String {
        let (major, minor) = self.ptx_version();
        format!("+ptx{major}{minor}")
    }

    /// The compute capability as a number (80, 86, 89, 90, 100).
    pub fn compute_capability(self) -> u32 {
        match self {
            Target::Sm80 => 80,
            Target::Sm86 => 86,
            Target::Sm89 => 89,
            Target::Sm90 | Target::Sm90a => 90,
            Target::Sm100a => 100,
        }
    }

    /// Whether the target uses architecture-specific features (`sm_90a`, `sm_100a`): its PTX
    /// then runs only on devices of exactly its compute capability.
    pub fn is_arch_specific(self) -> bool {
        matches!(self, Target::Sm90a | Target::Sm100a)
    }

    /// Whether PTX for this target runs on a device of compute capability `major.minor`: the
    /// same or a newer capability, exactly the same for architecture-specific targets.
    pub fn runs_on(self, major: u32, minor: u32) -> bool {
        let device = major * 10 + minor;
        if self.is_arch_specific() { device == self.compute_capability() } else { device >= self.compute_capability() }
    }

    /// The newest portable (not architecture-specific) target that runs on a device of compute
    /// capability `major.minor`; `None` for devices older than sm_80.
    pub fn newest_portable_for(major: u32, minor: u32) -> Option<Target> {
        Target::ALL.into_iter().rev().find(|t| !t.is_arch_specific() && t.runs_on(major, minor))
    }

    /// The most shared memory one block may use, in bytes (with the dynamic opt-in).
    pub fn max_shared_memory(self) -> usize {
        match self {
            Target::Sm80 => 166_912,
            Target::Sm86 | Target::Sm89 => 101_376,
            Target::Sm90 | Target::Sm90a | Target::Sm100a => 232_448,
        }
    }

    /// Shared memory a block may use without opting in to more at launch: 48 KiB.
    pub const STATIC_SHARED_MEMORY_LIMIT: usize = 48 * 1024;
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Target {
    type Err = UnknownTarget;

    fn from_str(name: &str) -> Result<Target, UnknownTarget> {
        Target::ALL.into_iter().find(|t| t.name() == name).ok_or_else(|| UnknownTarget(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_run_on_their_devices() {
        assert!(Target::Sm80.runs_on(9, 0));
        assert!(!Target::Sm90.runs_on(8, 9));
        assert!(Target::Sm90a.runs_on(9, 0));
        assert!(!Target::Sm90a.runs_on(10, 0));
        assert_eq!(Target::newest_portable_for(9, 0), Some(Target::Sm90));
        assert_eq!(Target::newest_portable_for(8, 7), Some(Target::Sm86));
        assert_eq!(Target::newest_portable_for(12, 0), Some(Target::Sm90));
        assert_eq!(Target::newest_portable_for(7, 5), None);
        assert_eq!("sm_90a".parse::<Target>(), Ok(Target::Sm90a));
    }
}
