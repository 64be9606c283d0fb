//! # anybit-backends: from the tile IR to PTX
//!
//! A backend takes a verified module whose every register and shared tensor has its layout
//! (the strict mode of `anybit_ir::verify`) and a [`Target`], and produces one PTX text per
//! kernel plus a [`manifest::Manifest`] that tells a host how to launch each kernel without
//! the compiler (parameters and their ABI, grid expressions, threads, shared memory).
//!
//! The [`llvm`] backend (cargo feature `llvm`, the default) lowers each kernel to LLVM IR with
//! inkwell and LLVM 22's NVPTX target, in-process. Its model: every thread runs the block-level
//! program on *its own slots* of each register tile — the register layout says, for each slot,
//! which logical element it holds, as a function of the thread index — so register tiles
//! become per-thread LLVM values with static indices (never local memory), uniform scalars
//! become plain values, `for` and `if` become loops and branches with φ-nodes for carried
//! values. What needs other threads' data (`broadcast`, `reduce`, `dot` operands whose layouts
//! do not line up) goes through a scratch area of shared memory between barriers; instruction
//! selection replaces those generic paths with `mma.sync`, `ldmatrix`, shuffles and vectorized
//! accesses where the layouts allow.
//!
//! The [`mlir`] backend (cargo feature `mlir`, off by default) lowers the same kernels to MLIR's
//! `llvm` and `nvvm` dialects with melior, translates them to LLVM IR in-process and shares the
//! LLVM backend's PTX emission. The two share one lowering, written against an emitter
//! interface (`llvm/emitter.rs`) that inkwell and melior both implement, so they compile the
//! same kernels.

#![warn(missing_docs)]

// The manifest and the targets live in `anybit-ir`, so that hosts (the runtime) can read them
// without linking a code generator; they stay reachable here under their old paths.
pub use anybit_ir::{manifest, target};

#[cfg(feature = "llvm")]
pub mod llvm;
#[cfg(feature = "mlir")]
pub mod mlir;

pub use target::{Target, UnknownTarget};

use anybit_ir::diag::Diagnostics;
use anybit_ir::program::Module;

/// Why a module could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The module does not verify in strict mode (every layout present).
    #[error("the module does not verify:\n{0}")]
    Unverified(Diagnostics),
    /// An instruction or type the backend cannot lower (yet), with where.
    #[error("kernel `{kernel}`: {what}")]
    Unsupported {
        /// The kernel.
        kernel: String,
        /// What cannot be lowered, naming the instruction and value.
        what: String,
    },
    /// The kernel needs more shared memory than the target has.
    #[error("kernel `{kernel}` needs {bytes} bytes of shared memory; {target} allows at most {limit}")]
    SharedMemory {
        /// The kernel.
        kernel: String,
        /// Bytes needed.
        bytes: usize,
        /// The target's limit.
        limit: usize,
        /// The target.
        target: Target,
    },
    /// MLIR rejected the generated module or could not translate it to LLVM IR (a compiler
    /// bug: please report it with the kernel).
    #[error("MLIR failed on kernel `{kernel}`: {message}")]
    Mlir {
        /// The kernel.
        kernel: String,
        /// What MLIR reported.
        message: String,
    },
    /// LLVM rejected the generated IR or failed to emit PTX (a compiler bug: please report it
    /// with the kernel).
    #[error("LLVM failed on kernel `{kernel}`: {message}")]
    Llvm {
        /// The kernel.
        kernel: String,
        /// LLVM's message.
        message: String,
    },
}

/// What to emit besides PTX, and how hard LLVM optimizes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompileOptions {
    /// Also return each kernel's LLVM IR (optimized, before PTX emission).
    pub emit_llvm_ir: bool,
    /// Also return each kernel's MLIR (the MLIR backend only).
    pub emit_mlir: bool,
    /// LLVM's optimization pipeline.
    pub llvm: LlvmOptimization,
}

/// LLVM's optimization pipeline: the trade between compile time and kernel speed.
///
/// Measured (BENCHMARKS.md, 2026-11-22): `Fast` compiles the low-bit matmul in about 60% of
/// `Full`'s time (median 73 vs 122 ms on the 2-core build machine) and its kernels ran within
/// −3…+5% of `Full`'s on the H100.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LlvmOptimization {
    /// `default<O3>`: for ahead-of-time compilation.
    #[default]
    Full,
    /// A short function pipeline (SROA, early CSE, InstCombine, SimplifyCFG, LICM, GVN,
    /// InstCombine, DCE, SimplifyCFG): for compilation at run time.
    Fast,
}

impl LlvmOptimization {
    /// The pipeline in LLVM's pass-pipeline syntax.
    pub fn pipeline(self) -> &'static str {
        match self {
            LlvmOptimization::Full => "default<O3>",
            LlvmOptimization::Fast => {
                "function(sroa,early-cse<memssa>,instcombine<no-verify-fixpoint>,simplifycfg,loop-mssa(licm),gvn,\
                 instcombine<no-verify-fixpoint>,dce,simplifycfg)"
            }
        }
    }

    /// `full` or `fast`.
    pub fn name(self) -> &'static str {
        match self {
            LlvmOptimization::Full => "full",
            LlvmOptimization::Fast => "fast",
        }
    }
}

impl std::str::FromStr for LlvmOptimization {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "full" => Ok(LlvmOptimization::Full),
            "fast" => Ok(LlvmOptimization::Fast),
            other => Err(format!("unknown LLVM optimization `{other}`: use full or fast")),
        }
    }
}

/// One compiled kernel.
#[derive(Clone, Debug)]
pub struct CompiledKernel {
    /// Its name.
    pub name: String,
    /// The PTX text of a module holding just this kernel.
    pub ptx: String,
    /// The LLVM IR, when asked for.
    pub llvm_ir: Option<String>,
    /// The MLIR (`llvm` and `nvvm` dialects), when asked for from the MLIR backend.
    pub mlir: Option<String>,
    /// Shared memory per block, in bytes.
    pub shared_memory_bytes: usize,
}

/// A compiled module: its kernels, and the manifest describing them.
#[derive(Clone, Debug)]
pub struct CompiledModule {
    /// The target.
    pub target: Target,
    /// One entry per kernel, in module order.
    pub kernels: Vec<CompiledKernel>,
    /// How to launch them (PTX files named `<kernel>.ptx`).
    pub manifest: manifest::Manifest,
}

/// What every backend does around its own code generation: verify the module in strict mode
/// for `target`'s shared memory, then per kernel run `lower` (which fills the PTX, the IR
/// texts and the shared memory of a [`CompiledKernel`]), check the shared memory against the
/// target, and describe the kernel in the manifest.
#[cfg(feature = "mlir")]
pub(crate) fn compile_each_kernel(
    module: &Module,
    target: Target,
    mut lower: impl FnMut(&anybit_ir::program::Kernel) -> Result<CompiledKernel, BackendError>,
) -> Result<CompiledModule, BackendError> {
    verify_for(module, target)?;
    let lowered = module.kernels.iter().map(&mut lower).collect::<Vec<_>>();
    describe_kernels(module, target, lowered)
}

/// [`compile_each_kernel`] with the kernels lowered on parallel threads (up to the machine's
/// parallelism): for backends whose lowering shares nothing between kernels (the LLVM
/// backend: a context per kernel). A layer's module has two large matmul kernels, so this
/// halves a JIT's wait on two cores. Errors are reported for the first kernel, in module
/// order, that fails.
#[cfg(feature = "llvm")]
pub(crate) fn compile_each_kernel_in_parallel(
    module: &Module,
    target: Target,
    lower: impl Fn(&anybit_ir::program::Kernel) -> Result<CompiledKernel, BackendError> + Sync,
) -> Result<CompiledModule, BackendError> {
    verify_for(module, target)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(module.kernels.len());
    if threads <= 1 {
        let lowered = module.kernels.iter().map(&lower).collect::<Vec<_>>();
        return describe_kernels(module, target, lowered);
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<CompiledKernel, BackendError>>>> =
        module.kernels.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(kernel) = module.kernels.get(i) else { break };
                    let result = lower(kernel);
                    *results[i].lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(result);
                }
            });
        }
    });
    let lowered = results
        .into_iter()
        .zip(&module.kernels)
        .map(|(slot, kernel)| {
            slot.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner).unwrap_or_else(|| {
                Err(BackendError::Llvm { kernel: kernel.name.clone(), message: "the lowering thread panicked".into() })
            })
        })
        .collect();
    describe_kernels(module, target, lowered)
}

/// Verifies `module` in strict mode for `target`'s shared memory.
#[cfg(any(feature = "llvm", feature = "mlir"))]
fn verify_for(module: &Module, target: Target) -> Result<(), BackendError> {
    use anybit_ir::verify::{VerifyOptions, verify_module};
    let verify = VerifyOptions::strict().with_shared_memory_limit(target.max_shared_memory());
    verify_module(module, &verify).map_err(BackendError::Unverified)
}

/// The compiled module from its kernels' lowerings (in module order): checks each kernel's
/// shared memory against the target and describes it in the manifest.
#[cfg(any(feature = "llvm", feature = "mlir"))]
fn describe_kernels(
    module: &Module,
    target: Target,
    lowered: Vec<Result<CompiledKernel, BackendError>>,
) -> Result<CompiledModule, BackendError> {
    let mut manifest = manifest::Manifest::new(target);
    let mut kernels = Vec::with_capacity(module.kernels.len());
    for (kernel, compiled) in module.kernels.iter().zip(lowered) {
        let compiled = compiled?;
        if compiled.shared_memory_bytes > target.max_shared_memory() {
            return Err(BackendError::SharedMemory {
                kernel: kernel.name.clone(),
                bytes: compiled.shared_memory_bytes,
                limit: target.max_shared_memory(),
                target,
            });
        }
        manifest.kernels.push(manifest::KernelManifest::new(
            kernel,
            format!("{}.ptx", kernel.name),
            compiled.shared_memory_bytes as u64,
        ));
        kernels.push(compiled);
    }
    Ok(CompiledModule { target, kernels, manifest })
}

/// A code generator from the tile IR to PTX.
pub trait Backend {
    /// Its name (`llvm`).
    fn name(&self) -> &'static str;

    /// Compiles every kernel of a module for `target`. The module must verify in strict mode
    /// (the backend checks, and returns [`BackendError::Unverified`] otherwise).
    fn compile(
        &self,
        module: &Module,
        target: Target,
        options: &CompileOptions,
    ) -> Result<CompiledModule, BackendError>;
}
