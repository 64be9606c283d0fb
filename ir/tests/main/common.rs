//! Helpers shared by the test modules.

use std::path::PathBuf;

use anybit_ir::DType;

/// A small deterministic generator (splitmix64), so failures reproduce.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

pub fn dtype(name: &str) -> DType {
    name.parse().unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The Python interpreter of the project's environment (`scripts/setup.sh` makes it), or the
/// one named by `ANYBIT_PYTHON`.
pub fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("ANYBIT_PYTHON") {
        return PathBuf::from(path);
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup.sh (or set ANYBIT_PYTHON) so the reference packages are installed",
        path.display()
    );
    path
}
