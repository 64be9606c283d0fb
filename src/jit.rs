//! Just-in-time compilation through the compile cache: a tile-IR module (or a weight format)
//! to PTX and its launch manifest, in process — no nvcc, no files unless the disk cache is on.
//!
//! The cache key ([`cache_key`]) is the SHA-256 of everything the output depends on: the
//! module's canonical text (the kernel language's printer, before any pass), the target, the
//! optimization level and its pass pipeline, LLVM's pipeline, and the compiler's identity — the crate version
//! and the identity (size, modification time) of the running executable, so that a rebuilt
//! compiler never reads entries an older build wrote. On a miss, [`compile`] runs the level's
//! passes and the LLVM backend, and the cache keeps the result in memory and on disk (see
//! [`anybit_runtime::cache`]).

use std::sync::OnceLock;
use std::time::{Duration, Instant, UNIX_EPOCH};

use anybit_backends::llvm::LlvmBackend;
use anybit_backends::{Backend, BackendError, CompileOptions, LlvmOptimization, Target};
use anybit_frontend::lowbit::{
    FormatError, WeightFormat, build_decode_module_for, build_module_for, build_prefill_module_for,
};
use anybit_ir::program::Module;
use anybit_passes::{OptLevel, PassError, PassManager};
use anybit_runtime::cache::{CacheKey, CachedModule, CompileCache, Source};
use anybit_runtime::typed::{Executor, ModuleCompiler};
use std::sync::Arc;

/// What to compile for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JitOptions {
    /// The GPU target.
    pub target: Target,
    /// The pass pipeline run before code generation.
    pub opt_level: OptLevel,
    /// LLVM's pipeline: `Fast` by default here, since a host waits for the compile (about 60%
    /// of `Full`'s compile time for kernels within a few percent of `Full`'s speed; see
    /// [`LlvmOptimization`]).
    pub llvm: LlvmOptimization,
}

impl Default for JitOptions {
    /// `sm_90`, `-O2`, fast LLVM pipeline.
    fn default() -> JitOptions {
        JitOptions { target: Target::Sm90, opt_level: OptLevel::O2, llvm: LlvmOptimization::Fast }
    }
}

/// Why a module could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum JitError {
    /// The weight format or shape is not supported.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A pass failed.
    #[error("optimizing the module failed: {0}")]
    Passes(#[from] PassError),
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Where the time of a lookup went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timings {
    /// Printing the module and hashing the key.
    pub key: Duration,
    /// The passes (on a miss).
    pub passes: Duration,
    /// The backend: LLVM IR, LLVM's optimizations, PTX emission (on a miss).
    pub backend: Duration,
    /// The whole lookup, from the module to the PTX.
    pub total: Duration,
}

/// A compiled module and how it was obtained.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// The manifest and the PTX of each kernel.
    pub module: Arc<CachedModule>,
    /// Memory, disk, or compiled now.
    pub source: Source,
    /// The cache key.
    pub key: CacheKey,
    /// A disk-cache problem met on the way (the module is good regardless).
    pub warning: Option<String>,
    /// Where the time went.
    pub timings: Timings,
}

/// The compiler's identity in cache keys: version and executable (see the module doc).
pub fn compiler_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let executable = std::env::current_exe()
            .and_then(std::fs::metadata)
            .map(|m| {
                let modified = m.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).unwrap_or_default();
                format!("{} bytes, modified {}", m.len(), modified.as_nanos())
            })
            .unwrap_or_else(|_| "unknown executable".into());
        format!("anybit {} ({executable})", env!("CARGO_PKG_VERSION"))
    })
}

/// The cache key of `module` compiled with `options` (see the module doc).
pub fn cache_key(module: &Module, options: &JitOptions) -> CacheKey {
    let text = anybit_ir::text::print_module(module);
    let passes = format!("{} {}", options.opt_level, options.opt_level.pipeline().join(","));
    CacheKey::new(&[
        ("ir", text.as_bytes()),
        ("target", options.target.name().as_bytes()),
        ("passes", passes.as_bytes()),
        ("llvm", options.llvm.name().as_bytes()),
        ("compiler", compiler_id().as_bytes()),
    ])
}

/// Compiles `module` through `cache`.
pub fn compile(module: &Module, options: &JitOptions, cache: &CompileCache) -> Result<Compiled, JitError> {
    let start = Instant::now();
    let key = cache_key(module, options);
    let mut timings = Timings { key: start.elapsed(), ..Timings::default() };
    let lookup = cache.get_or_compile(&key, || {
        let mut optimized = module.clone();
        let passes = Instant::now();
        PassManager::for_level(options.opt_level).run(&mut optimized)?;
        timings.passes = passes.elapsed();
        let backend = Instant::now();
        let compile_options = CompileOptions { llvm: options.llvm, ..CompileOptions::default() };
        let compiled = LlvmBackend.compile(&optimized, options.target, &compile_options)?;
        timings.backend = backend.elapsed();
        Ok::<_, JitError>(CachedModule {
            manifest: compiled.manifest,
            ptx: compiled.kernels.into_iter().map(|k| k.ptx).collect(),
        })
    })?;
    timings.total = start.elapsed();
    Ok(Compiled { module: lookup.module, source: lookup.source, key, warning: lookup.warning, timings })
}

/// The low-bit matmul kernel for `format`, compiled through `cache`: from the format
/// description to PTX. The manifest carries the kernel's assumption that K is a multiple of
/// the group size (hosts check it before launching).
pub fn compile_lowbit(format: &WeightFormat, options: &JitOptions, cache: &CompileCache) -> Result<Compiled, JitError> {
    compile_lowbit_for(format, None, options, cache)
}

/// [`compile_lowbit`] specialized for a known N: the kernels assume N's power-of-two factor
/// (up to 64), which lets the vectorizer prove their weight, scale and output accesses
/// aligned, so they carry no run-time test. Compiles the decode module
/// ([`build_decode_module_for`]: the 8-row matmul and the reduction), what a layer needs by
/// default; [`compile_lowbit_layer_for`] adds the 16- and 64-row kernels.
pub fn compile_lowbit_for(
    format: &WeightFormat,
    n: Option<usize>,
    options: &JitOptions,
    cache: &CompileCache,
) -> Result<Compiled, JitError> {
    compile(&build_decode_module_for(format, n)?, options, cache)
}

/// The 16- and 64-row kernels alone ([`build_prefill_module_for`]), for a layer that compiled the
/// decode module first.
pub fn compile_lowbit_prefill_for(
    format: &WeightFormat,
    n: Option<usize>,
    options: &JitOptions,
    cache: &CompileCache,
) -> Result<Compiled, JitError> {
    compile(&build_prefill_module_for(format, n)?, options, cache)
}

/// [`compile_lowbit_for`] with the 16- and 64-row kernels too ([`build_module_for`]): the whole layer
/// module, as imports compile it (about three times the compile of the decode module; the
/// backend lowers the kernels on parallel threads).
pub fn compile_lowbit_layer_for(
    format: &WeightFormat,
    n: Option<usize>,
    options: &JitOptions,
    cache: &CompileCache,
) -> Result<Compiled, JitError> {
    compile(&build_module_for(format, n)?, options, cache)
}

/// The JIT as a [`ModuleCompiler`]: executors with it compile the embedded modules that carry
/// no PTX for their GPU (`kernel!` with inline source, say) through the compile cache.
#[derive(Clone, Debug, Default)]
pub struct JitCompiler {
    /// Everything but the target, which the executor picks for its device.
    pub options: JitOptions,
    /// The cache; the process-wide one ([`CompileCache::global`]) when `None`.
    pub cache: Option<Arc<CompileCache>>,
}

impl ModuleCompiler for JitCompiler {
    fn compile(&self, source: &str, target: Target) -> Result<CachedModule, String> {
        let module = anybit_ir::text::parse_module(source).map_err(|d| d.to_string())?;
        let options = JitOptions { target, ..self.options };
        let cache = self.cache.as_deref().unwrap_or_else(|| CompileCache::global());
        let compiled = compile(&module, &options, cache).map_err(|e| e.to_string())?;
        Ok(CachedModule::clone(&compiled.module))
    }
}

/// An executor for typed kernels (`anybit::kernel!`, `anybit-build`): GPU 0 when there is one,
/// else the CPU interpreter; on a GPU, modules without PTX for it are JIT-compiled through the
/// process-wide cache.
pub fn executor() -> Executor {
    Executor::detect().with_compiler(Arc::new(JitCompiler::default()))
}
