//! [`QuantizedLinear`]: a quantized linear layer `y = x · dequant(W)` that a host program builds
//! at run time for whatever weight format it meets, and runs on the GPU — or on the CPU
//! interpreter where there is none.
//!
//! # The weight format
//!
//! A [`WeightFormat`] describes the weights: the type of one weight code (`u1`…`u8`,
//! `i2`…`i8`, or any float of at most 8 bits such as `f4e2m1`, `f6e3m2`, `f8e4m3`), the group
//! size (a power of two from 16: that many consecutive rows of W along K share one scale and
//! zero point per column), the scale type (`f16`, `bf16` or `f32`), whether there are integer
//! zero points, whether there are float offsets (in the scale type), and the activation type of
//! x and y (`f16` or `bf16`).
//!
//! # The canonical host layout
//!
//! The weights come as [`QuantizedWeights`], all row-major, all *codes* (the bits of a value of
//! the type, in the low bits of a `u32`):
//!
//! - `codes`: K × N weight codes, `codes[k * N + n]` is `q[k][n]`, W's row k (input feature k)
//!   and column n (output feature n) — the transpose of PyTorch's `Linear.weight`, which is
//!   `[out_features, in_features]`;
//! - `scales`: K/G × N scale codes, `scales[g * N + n]` for rows `g·G … g·G + G − 1` of column n;
//! - `zeros`: K/G × N zero-point codes in the weight type, the same way (empty without zero
//!   points);
//! - `offsets`: K/G × N offset codes in the scale type, the same way (empty without offsets).
//!
//! The weight is `w[k][n] = (q[k][n] − z[k/G][n]) · s[k/G][n] + o[k/G][n]`. K must be a
//! multiple of G.
//! [`QuantizedLinear::new`] checks all of it — shapes, group divisibility, every code in range
//! of its type — and returns a typed error naming what is wrong.
//!
//! # What building a layer does
//!
//! It re-packs the weights once into the kernel's layout (64 × 64 tiles, each thread's codes
//! in the order of the tensor cores' A registers for the transposed product, see [`anybit_frontend::lowbit`]), then, on a GPU, JIT-compiles the kernel for the device's
//! target through the compile cache (in memory and on disk: the first layer of a format pays
//! the compile, every later layer and process of the same format hits the cache), loads it and
//! uploads the packed weights. [`QuantizedLinear::forward`] then computes y for any number of
//! rows M; [`QuantizedLinear::forward_on`] does the same on device buffers and the caller's
//! stream, without synchronizing.
//!
//! # Choosing how each call runs
//!
//! The layer's module holds the matmul kernel with 8 rows per block (decode) and the
//! reduction of a split of K; the matmul kernels with 16 and 64 rows per block for larger M
//! come with an import, or are compiled on a background thread once the layer is built (calls
//! run on the 8-row kernel until they are ready; see [`LinearOptions::prefill_kernel`]), so
//! that building waits only for the first. Each call picks a [`LaunchPlan`] for its M:
//! [`LinearOptions::plan`] when given, else a plan measured by [`QuantizedLinear::tune`] for
//! that M (or the nearest larger one tuned), else [`LaunchPlan::choose`] from the shape and
//! the GPU's multiprocessor count. A split of K needs a workspace of f32 partial sums, taken
//! per call from the stream's memory pool (no zeroing: every value read is written first).
//! On the interpreter the plans are those of an H100 (132 SMs), so that it runs what the GPU
//! would. [`QuantizedLinear::tune`] measures the plans on the layer's GPU; a
//! [`TuningTable`] keeps the winners per GPU, kernel and shape across processes.
//!
//! ```
//! use anybit::ir::DType;
//! use anybit::ir::random::SplitMix64;
//! use anybit::frontend::lowbit::{QuantizedWeights, WeightFormat};
//! use anybit::linear::{Device, LinearOptions, QuantizedLinear};
//!
//! let format = WeightFormat {
//!     weight: "u4".parse()?,
//!     lut: None,
//!     group_size: 32,
//!     scale: DType::F16,
//!     zero_point: true, offset: false,
//!     activation: DType::F16,
//! };
//! let weights = QuantizedWeights::random(format, 64, 16, &mut SplitMix64::new(1))?;
//! let options = LinearOptions { device: Device::Interpreter, ..LinearOptions::default() };
//! let layer = QuantizedLinear::new(&weights, &options)?;
//! let x = vec![1.0f32; 2 * 64]; // M = 2 rows of K = 64
//! let y = layer.forward_f32(&x)?; // M × N = 2 × 16
//! assert_eq!(y.len(), 2 * 16);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use anybit_backends::Target;
use anybit_frontend::lowbit::{
    BLOCK_M, FormatError, LaunchPlan, MEDIUM_BLOCK_M, PREFILL_BLOCK_M, PackedWeights, PlanError, QuantizedWeights,
    WeightFormat, build_decode_module_for, build_module_for, matmul_kernel_name, reduce_kernel_name, run_plan,
};
use anybit_ir::DType;
use anybit_ir::interp::{Buffer, InterpError, RunOptions};
use anybit_ir::manifest::Manifest;
use anybit_ir::program::Module;
use anybit_passes::{OptLevel, PassManager};
use anybit_runtime::cache::{CacheKey, CompileCache, Source};
use anybit_runtime::{DeviceBuffer, Gpu, GpuModule, LaunchArg, RuntimeError, Stream};

use crate::jit::{JitError, JitOptions, compile_lowbit_for, compile_lowbit_layer_for, compile_lowbit_prefill_for};
use crate::tune::{TuneOptions, TuneReport, TuningTable};

/// Where a layer runs.
#[derive(Clone, Debug, Default)]
pub enum Device {
    /// The first GPU when there is one (shared by every layer that asks), else the interpreter.
    #[default]
    Auto,
    /// The CPU interpreter (bit-exact reference semantics; slow).
    Interpreter,
    /// This GPU.
    Gpu(Arc<Gpu>),
}

impl Device {
    /// What [`Device::Auto`] stands for in this process: GPU 0 when a driver and a device are
    /// present, else the interpreter (decided once).
    pub fn detect() -> Device {
        static FIRST_GPU: OnceLock<Option<Arc<Gpu>>> = OnceLock::new();
        match FIRST_GPU.get_or_init(|| Gpu::new(0).ok().map(Arc::new)) {
            Some(gpu) => Device::Gpu(gpu.clone()),
            None => Device::Interpreter,
        }
    }
}

/// How to build a layer.
#[derive(Clone, Debug, Default)]
pub struct LinearOptions {
    /// Where it runs.
    pub device: Device,
    /// The GPU target; by default the newest portable one the device runs.
    pub target: Option<Target>,
    /// The pass pipeline; by default `-O2`.
    pub opt_level: Option<OptLevel>,
    /// The compile cache; by default the process-wide one ([`CompileCache::global`]).
    pub cache: Option<Arc<CompileCache>>,
    /// One launch plan for every call (rows per block 16 or 64), instead of choosing per M
    /// (see the module doc).
    pub plan: Option<LaunchPlan>,
    /// Tuned plans to use where they match the layer's GPU, kernel and shape
    /// ([`QuantizedLinear::use_tuning`]).
    pub tuning: Option<Arc<TuningTable>>,
    /// When to compile the kernels for more rows: 16 per block for small batches, 64 for large
    /// M (1.3× faster at M = 64, 1.6× at 4096 on the H100 for u4 than 16 rows; together about
    /// three times the 8-row kernel's compile). A layer from an import has them: imports
    /// compile them ahead of time.
    pub prefill_kernel: PrefillKernel,
}

/// When a JIT-compiled layer gets its 16- and 64-row kernels ([`LinearOptions::prefill_kernel`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PrefillKernel {
    /// On a background thread once the layer is built (through the same compile cache):
    /// building waits only for the 8-row kernel, and calls run on it until the others are
    /// ready. On the interpreter, at once.
    #[default]
    Background,
    /// With the layer: building waits for every kernel.
    Now,
    /// Never: every M runs on the 8-row kernel.
    Never,
}

/// The 16- and 64-row kernels of a layer that compiles them in the background.
#[derive(Debug, Default)]
struct PendingKernel {
    /// The loaded module once compiled, or why it could not be.
    module: OnceLock<Result<Arc<GpuModule>, String>>,
    /// The compiling thread, until joined.
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The multiprocessors plans are chosen for on the interpreter: an H100 SXM's.
pub const INTERPRETER_MULTIPROCESSORS: usize = 132;

/// Why a layer could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum LinearError {
    /// The format, the shape or the weights are not valid.
    #[error("invalid quantized weights: {0}")]
    Format(#[from] FormatError),
    /// The input's length is not a whole number of rows.
    #[error("x has {len} values, which is not a whole number of rows of K = {k}")]
    InputShape {
        /// x's length.
        len: usize,
        /// K.
        k: usize,
    },
    /// A device buffer of the wrong type or size.
    #[error("{what}: expected {expected} elements of {dtype}, got {got} of {got_dtype}")]
    DeviceBuffer {
        /// Which buffer.
        what: &'static str,
        /// Its type.
        dtype: DType,
        /// The elements it must have.
        expected: usize,
        /// The buffer's type.
        got_dtype: DType,
        /// Its length.
        got: usize,
    },
    /// The kernel could not be compiled.
    #[error("compiling the kernel failed: {0}")]
    Jit(#[from] JitError),
    /// No target runs on this GPU.
    #[error("no anybit target runs on {device} (compute capability {major}.{minor}; sm_80 or newer is needed)")]
    NoTarget {
        /// The device.
        device: String,
        /// Its capability.
        major: u32,
        /// Its capability.
        minor: u32,
    },
    /// The GPU failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The interpreter failed (a bug if it ever happens: the inputs are checked).
    #[error("the interpreter failed: {0}")]
    Interpreter(#[from] InterpError),
    /// A launch plan this layer cannot run.
    #[error("launch plan {plan:?}: {why}")]
    Plan {
        /// The plan.
        plan: LaunchPlan,
        /// Why not.
        why: String,
    },
    /// A GPU-only call on an interpreter layer.
    #[error("{0} needs a layer on a GPU; this one runs on the interpreter")]
    NotOnGpu(&'static str),
    /// A kernel given to [`QuantizedLinear::from_kernel`] or [`QuantizedLinear::from_ptx`] is
    /// not the one the weight format needs.
    #[error("the kernel does not fit the weights: {0}")]
    KernelMismatch(String),
}

/// How a GPU layer's kernel was compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileInfo {
    /// The target.
    pub target: Target,
    /// Memory, disk, or compiled now.
    pub source: Source,
    /// The cache key.
    pub key: CacheKey,
    /// Milliseconds from the format to the PTX.
    pub milliseconds: u64,
    /// The PTX's size in bytes.
    pub ptx_bytes: usize,
    /// A disk-cache problem met on the way.
    pub warning: Option<String>,
}

/// Where the layer runs. (The GPU variant is the larger one, and layers are few and long-lived:
/// not worth a box.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Engine {
    Interpreter {
        module: Box<Module>,
        /// The weights in the kernels' layout.
        packed: Box<PackedWeights>,
    },
    Gpu {
        gpu: Arc<Gpu>,
        module: Arc<GpuModule>,
        stream: Stream,
        /// The weight buffers in launch order.
        weights: Vec<DeviceBuffer>,
        /// The workspace argument of calls without a split (no element is written).
        no_workspace: Mutex<DeviceBuffer>,
        /// How the kernel was compiled (absent for PTX given by the caller).
        compiled: Option<CompileInfo>,
    },
}

/// A quantized linear layer (see the module doc).
#[derive(Debug)]
pub struct QuantizedLinear {
    format: WeightFormat,
    k: usize,
    n: usize,
    engine: Engine,
    /// Whether the module has the 16- and 64-row kernels.
    prefill: bool,
    /// The 16- and 64-row kernels being compiled in the background (GPU layers without them).
    pending: Option<Arc<PendingKernel>>,
    /// [`LinearOptions::plan`].
    fixed_plan: Option<LaunchPlan>,
    /// Plans measured by [`QuantizedLinear::tune`], by M, increasing.
    tuned: Mutex<Vec<(usize, LaunchPlan)>>,
}

impl From<PlanError> for LinearError {
    fn from(error: PlanError) -> LinearError {
        match error {
            PlanError::Format(e) => LinearError::Format(e),
            PlanError::Interpreter(e) => LinearError::Interpreter(e),
            PlanError::MissingKernel(name) => LinearError::KernelMismatch(format!("no kernel `{name}`")),
        }
    }
}

/// The names of the kernels a layer of `format` needs: the 8-row matmul and the reduction
/// (the 16- and 64-row matmuls are optional).
fn layer_kernel_names(format: &WeightFormat) -> [String; 2] {
    [matmul_kernel_name(format, BLOCK_M), reduce_kernel_name(format)]
}

/// Checks that `have` holds the kernels a layer of `format` needs; returns whether it also
/// has the kernels for more rows (16 and 64).
fn check_kernels<'a>(format: &WeightFormat, have: impl Iterator<Item = &'a str> + Clone) -> Result<bool, LinearError> {
    let missing: Vec<String> =
        layer_kernel_names(format).into_iter().filter(|name| !have.clone().any(|h| h == name)).collect();
    if missing.is_empty() {
        let larger = [MEDIUM_BLOCK_M, PREFILL_BLOCK_M].map(|rows| matmul_kernel_name(format, rows));
        return Ok(larger.iter().all(|name| have.clone().any(|h| h == name)));
    }
    let names: Vec<&str> = have.collect();
    Err(LinearError::KernelMismatch(format!(
        "the module has {names:?}, the format needs {missing:?} too (a module from an older anybit? compile or import it again)"
    )))
}

/// `plan` if a layer with (`prefill`) or without the kernels for more rows runs it.
fn check_plan(plan: LaunchPlan, prefill: bool) -> Result<LaunchPlan, LinearError> {
    plan.validate()?;
    let runs = plan.block_m == BLOCK_M || (prefill && [MEDIUM_BLOCK_M, PREFILL_BLOCK_M].contains(&plan.block_m));
    if !runs {
        let why = match prefill {
            true => format!("a layer has kernels of {BLOCK_M}, {MEDIUM_BLOCK_M} and {PREFILL_BLOCK_M} rows per block"),
            false => format!(
                "this layer has only the {BLOCK_M}-row kernel (LinearOptions::prefill_kernel adds the \
                 {MEDIUM_BLOCK_M}- and {PREFILL_BLOCK_M}-row ones)"
            ),
        };
        return Err(LinearError::Plan { plan, why });
    }
    Ok(plan)
}

impl QuantizedLinear {
    /// Builds the layer: checks the weights, packs them, and on a GPU compiles (through the
    /// cache), loads the kernel and uploads the weights.
    pub fn new(weights: &QuantizedWeights, options: &LinearOptions) -> Result<QuantizedLinear, LinearError> {
        weights.validate()?;
        QuantizedLinear::from_packed(weights.pack()?, options)
    }

    /// Builds the layer from weights already in the kernel's layout (what [`QuantizedWeights::pack`]
    /// gives, or an import stored): on a GPU compiles (through the cache), loads the kernel and
    /// uploads the weights; on the interpreter generates the kernel.
    pub fn from_packed(packed: PackedWeights, options: &LinearOptions) -> Result<QuantizedLinear, LinearError> {
        packed.validate()?;
        let device = match &options.device {
            Device::Auto => Device::detect(),
            other => other.clone(),
        };
        match device {
            Device::Gpu(gpu) => {
                let (major, minor) = gpu.compute_capability();
                let target = match options.target.or_else(|| Target::newest_portable_for(major, minor)) {
                    Some(target) => target,
                    None => return Err(LinearError::NoTarget { device: gpu.name().to_owned(), major, minor }),
                };
                let jit = JitOptions {
                    target,
                    opt_level: options.opt_level.unwrap_or(OptLevel::O2),
                    ..JitOptions::default()
                };
                let now = options.prefill_kernel == PrefillKernel::Now;
                let compile = if now { compile_lowbit_layer_for } else { compile_lowbit_for };
                let compiled = match &options.cache {
                    Some(cache) => compile(&packed.format, Some(packed.n), &jit, cache)?,
                    None => compile(&packed.format, Some(packed.n), &jit, CompileCache::global())?,
                };
                let info = CompileInfo {
                    target,
                    source: compiled.source,
                    key: compiled.key,
                    milliseconds: compiled.timings.total.as_millis() as u64,
                    ptx_bytes: compiled.module.ptx.iter().map(String::len).sum(),
                    warning: compiled.warning.clone(),
                };
                let mut layer =
                    QuantizedLinear::gpu(packed, gpu, &compiled.module.manifest, &compiled.module.ptx, Some(info))?;
                if options.prefill_kernel == PrefillKernel::Background {
                    layer = layer.compile_prefill_in_background(jit, options.cache.clone());
                }
                let layer = layer.with_plan(options.plan)?;
                if let Some(table) = &options.tuning {
                    layer.use_tuning(table)?;
                }
                Ok(layer)
            }
            _ => {
                // The kernels the GPU would run: specialized for N, through the same passes (so
                // the interpreter also checks the vectorizer's alignment proofs).
                let mut module = match options.prefill_kernel {
                    PrefillKernel::Background | PrefillKernel::Now => build_module_for(&packed.format, Some(packed.n))?,
                    PrefillKernel::Never => build_decode_module_for(&packed.format, Some(packed.n))?,
                };
                let level = options.opt_level.unwrap_or(OptLevel::O2);
                PassManager::for_level(level).run(&mut module).map_err(JitError::from)?;
                QuantizedLinear::from_module(packed, module)?.with_plan(options.plan)
            }
        }
    }

    /// A layer on the interpreter running `module` — the format's module, e.g. read back from
    /// the kernel-language source an import wrote — on weights in its layout.
    pub fn from_module(packed: PackedWeights, module: Module) -> Result<QuantizedLinear, LinearError> {
        packed.validate()?;
        let prefill = check_kernels(&packed.format, module.kernels.iter().map(|k| k.name.as_str()))?;
        let (format, k, n) = (packed.format, packed.k, packed.n);
        let engine = Engine::Interpreter { module: Box::new(module), packed: Box::new(packed) };
        Ok(QuantizedLinear::with_engine(format, k, n, engine, prefill))
    }

    fn with_engine(format: WeightFormat, k: usize, n: usize, engine: Engine, prefill: bool) -> QuantizedLinear {
        QuantizedLinear {
            format,
            k,
            n,
            engine,
            prefill,
            pending: None,
            fixed_plan: None,
            tuned: Mutex::new(Vec::new()),
        }
    }

    /// The layer with every call running `plan` (when `Some`; see [`LinearOptions::plan`]).
    pub fn with_plan(mut self, plan: Option<LaunchPlan>) -> Result<QuantizedLinear, LinearError> {
        let prefill = self.will_have_prefill_kernel();
        self.fixed_plan = plan.map(|p| check_plan(p, prefill)).transpose()?;
        Ok(self)
    }

    /// Whether the layer has the 16- and 64-row kernels for larger M now
    /// ([`LinearOptions::prefill_kernel`]).
    pub fn has_prefill_kernel(&self) -> bool {
        self.prefill || self.pending_module().is_some()
    }

    /// Whether the layer has the 16- and 64-row kernels or is compiling them (plans may name
    /// them: until they are ready they run on the 8-row kernel).
    fn will_have_prefill_kernel(&self) -> bool {
        self.prefill || self.pending.is_some()
    }

    /// The background-compiled module of the 16- and 64-row kernels, when it is ready.
    fn pending_module(&self) -> Option<&Arc<GpuModule>> {
        self.pending.as_ref().and_then(|p| p.module.get()).and_then(|r| r.as_ref().ok())
    }

    /// Waits for the 16- and 64-row kernels a background compile is making; returns whether
    /// the layer has them (an error if their compile failed).
    pub fn wait_for_prefill_kernel(&self) -> Result<bool, LinearError> {
        let Some(pending) = &self.pending else { return Ok(self.prefill) };
        let thread = pending.thread.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
        match pending.module.get() {
            Some(Ok(_)) => Ok(true),
            Some(Err(why)) => {
                Err(LinearError::KernelMismatch(format!("compiling the 16- and 64-row kernels failed: {why}")))
            }
            None => Err(LinearError::KernelMismatch("the compile of the 16- and 64-row kernels stopped".into())),
        }
    }

    /// Starts compiling the 16- and 64-row kernels on a background thread.
    fn compile_prefill_in_background(mut self, jit: JitOptions, cache: Option<Arc<CompileCache>>) -> QuantizedLinear {
        let Engine::Gpu { gpu, .. } = &self.engine else { return self };
        let pending = Arc::new(PendingKernel::default());
        let (gpu, format, n, slot) = (gpu.clone(), self.format, self.n, pending.clone());
        let work = move || {
            let cache = cache.as_deref().unwrap_or_else(|| CompileCache::global());
            let result = compile_lowbit_prefill_for(&format, Some(n), &jit, cache)
                .map_err(|e| e.to_string())
                .and_then(|c| gpu.load_module(&c.module.manifest, &c.module.ptx).map_err(|e| e.to_string()));
            let _ = slot.module.set(result);
        };
        match std::thread::Builder::new().name("anybit-prefill-kernel".into()).spawn(work) {
            Ok(thread) => *pending.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread),
            Err(e) => {
                let _ = pending.module.set(Err(format!("cannot start a thread: {e}")));
            }
        }
        self.pending = Some(pending);
        self
    }

    /// A layer on `gpu` running compiled PTX — `ptx[i]` is the text of `manifest.kernels[i]`,
    /// e.g. what an import wrote, loaded without compiling anything — on weights in its layout.
    pub fn from_ptx<S: AsRef<str>>(
        packed: PackedWeights,
        gpu: Arc<Gpu>,
        manifest: &Manifest,
        ptx: &[S],
    ) -> Result<QuantizedLinear, LinearError> {
        packed.validate()?;
        QuantizedLinear::gpu(packed, gpu, manifest, ptx, None)
    }

    fn gpu<S: AsRef<str>>(
        packed: PackedWeights,
        gpu: Arc<Gpu>,
        manifest: &Manifest,
        ptx: &[S],
        compiled: Option<CompileInfo>,
    ) -> Result<QuantizedLinear, LinearError> {
        let prefill = check_kernels(&packed.format, manifest.kernels.iter().map(|k| k.name.as_str()))?;
        let module = gpu.load_module(manifest, ptx)?;
        let stream = gpu.new_stream()?;
        let weights =
            packed.buffers().into_iter().map(|(_, b)| DeviceBuffer::upload(&stream, b)).collect::<Result<_, _>>()?;
        let no_workspace = Mutex::new(DeviceBuffer::zeros(&stream, DType::F32, 0)?);
        let (format, k, n) = (packed.format, packed.k, packed.n);
        let engine = Engine::Gpu { gpu, module, stream, weights, no_workspace, compiled };
        Ok(QuantizedLinear::with_engine(format, k, n, engine, prefill))
    }

    /// The weight format.
    pub fn format(&self) -> &WeightFormat {
        &self.format
    }

    /// Input features.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output features.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Where it runs: `interpreter` or `GPU 0 (NVIDIA H100 80GB HBM3)`.
    pub fn device_name(&self) -> String {
        match &self.engine {
            Engine::Interpreter { .. } => "interpreter".into(),
            Engine::Gpu { gpu, .. } => format!("GPU {} ({})", gpu.ordinal(), gpu.name()),
        }
    }

    /// Whether it runs on a GPU.
    pub fn is_gpu(&self) -> bool {
        matches!(self.engine, Engine::Gpu { .. })
    }

    /// How its kernel was compiled (GPU layers that compiled it).
    pub fn compile_info(&self) -> Option<&CompileInfo> {
        match &self.engine {
            Engine::Gpu { compiled, .. } => compiled.as_ref(),
            Engine::Interpreter { .. } => None,
        }
    }

    /// The plan a call with `m` rows runs (see the module doc).
    pub fn plan_for(&self, m: usize) -> LaunchPlan {
        if let Some(plan) = self.fixed_plan {
            return plan;
        }
        let tuned = self.tuned.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(&(_, plan)) = tuned.iter().find(|&&(tuned_m, _)| tuned_m >= m) {
            return plan;
        }
        let multiprocessors = match &self.engine {
            Engine::Gpu { gpu, .. } => gpu.multiprocessors(),
            Engine::Interpreter { .. } => INTERPRETER_MULTIPROCESSORS,
        };
        match self.has_prefill_kernel() {
            true => LaunchPlan::choose(&self.format, m, self.n, self.k, multiprocessors),
            false => LaunchPlan::choose_split(&self.format, BLOCK_M, m, self.n, self.k, multiprocessors),
        }
    }

    /// Uses `plan` for calls of up to `m` rows (down to the next smaller M given a plan), as
    /// [`QuantizedLinear::tune`] does with the plans it measures.
    pub fn set_plan(&self, m: usize, plan: LaunchPlan) -> Result<(), LinearError> {
        let plan = check_plan(plan, self.will_have_prefill_kernel())?;
        let mut tuned = self.tuned.lock().unwrap_or_else(PoisonError::into_inner);
        tuned.retain(|&(tuned_m, _)| tuned_m != m);
        let at = tuned.partition_point(|&(tuned_m, _)| tuned_m < m);
        tuned.insert(at, (m, plan));
        Ok(())
    }

    /// The plans set by [`QuantizedLinear::set_plan`] or [`QuantizedLinear::tune`], by M.
    pub fn tuned_plans(&self) -> Vec<(usize, LaunchPlan)> {
        self.tuned.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Measures every plan of [`crate::tune::candidates`] for each M of `options` on the
    /// layer's GPU — random x, the L2 cache flushed before every launch, the median of
    /// `options.runs` launches timed with events — and keeps the fastest per M for later calls
    /// (see [`QuantizedLinear::plan_for`]). GPU layers only.
    pub fn tune(&self, options: &TuneOptions) -> Result<TuneReport, LinearError> {
        let Engine::Gpu { gpu, stream, .. } = &self.engine else {
            return Err(LinearError::NotOnGpu("tune"));
        };
        let act = self.format.activation;
        let mut flush = DeviceBuffer::zeros(
            stream,
            DType::uint(8).map_err(|e| FormatError::Data(e.to_string()))?,
            options.flush_bytes,
        )?;
        let mut rng = anybit_ir::random::SplitMix64::new(0x7475_6e65);
        let mut inputs: Vec<(usize, DeviceBuffer, DeviceBuffer)> = Vec::new();
        for &m in &options.ms {
            self.format.validate_shape(m, self.n, self.k)?;
            let codes: Vec<u32> = (0..m * self.k).map(|_| act.encode(rng.uniform(-1.0, 1.0))).collect();
            let x = Buffer::from_codes(act, &codes).map_err(|e| FormatError::Data(e.to_string()))?;
            inputs.push((m, DeviceBuffer::upload(stream, &x)?, DeviceBuffer::zeros(stream, act, m * self.n)?));
        }
        let runs = options.runs.max(1);
        let prefill = self.wait_for_prefill_kernel()?;
        let (n, k) = (self.n, self.k);
        let report =
            crate::tune::tune_with(&self.format, &options.ms, n, k, gpu.multiprocessors(), prefill, |m, plan| {
                let Some((_, x, y)) = inputs.iter_mut().find(|(input_m, _, _)| *input_m == m) else {
                    return Err(LinearError::Plan { plan, why: format!("no input of {m} rows") });
                };
                // One untimed launch first (module loading, the memory pool's first allocation).
                self.launch(stream, x, y, m, plan)?;
                let mut micros = Vec::with_capacity(runs);
                for _ in 0..runs {
                    flush.fill_zeros(stream)?;
                    let elapsed = stream.time(|| self.launch(stream, x, y, m, plan))?;
                    micros.push(elapsed.as_secs_f64() * 1e6);
                }
                micros.sort_by(f64::total_cmp);
                Ok(micros[micros.len() / 2])
            })?;
        for winner in &report.winners {
            self.set_plan(winner.m, winner.plan)?;
        }
        Ok(report)
    }

    /// Uses the plans `table` holds for this layer's device, kernel and shape; returns how
    /// many. (On the interpreter, nothing: tuned plans belong to a GPU.)
    pub fn use_tuning(&self, table: &TuningTable) -> Result<usize, LinearError> {
        let Engine::Gpu { gpu, .. } = &self.engine else { return Ok(0) };
        let plans = table.plans(gpu.name(), &self.format.kernel_name(), self.k, self.n);
        for &(m, plan) in &plans {
            self.set_plan(m, plan)?;
        }
        Ok(plans.len())
    }

    /// The number of rows of an input of `len` values.
    fn rows(&self, len: usize) -> Result<usize, LinearError> {
        if !len.is_multiple_of(self.k) {
            return Err(LinearError::InputShape { len, k: self.k });
        }
        let m = len / self.k;
        if m > 0 {
            self.format.validate_shape(m, self.n, self.k)?;
        }
        Ok(m)
    }

    /// `y = x · dequant(W)`: x is M × K activation codes (f16 or bf16 bits, row-major, any M),
    /// y the M × N result's codes. On a GPU this uploads x, launches on the layer's own stream
    /// and waits for y.
    pub fn forward(&self, x: &[u16]) -> Result<Vec<u16>, LinearError> {
        let m = self.rows(x.len())?;
        if m == 0 {
            return Ok(Vec::new());
        }
        let act = self.format.activation;
        let codes: Vec<u32> = x.iter().map(|&c| u32::from(c)).collect();
        let x = Buffer::from_codes(act, &codes).map_err(|e| FormatError::Data(e.to_string()))?;
        let y = match &self.engine {
            Engine::Interpreter { module, packed } => {
                let options = RunOptions { max_instructions: u64::MAX, ..RunOptions::default() };
                run_plan(module, packed, &x, m, self.plan_for(m), &options)?
            }
            Engine::Gpu { stream, .. } => {
                let x = DeviceBuffer::upload(stream, &x)?;
                let mut y = DeviceBuffer::zeros(stream, act, m * self.n)?;
                self.forward_on(stream, &x, &mut y)?;
                y.download(stream)?
            }
        };
        Ok(y.codes().into_iter().map(|c| c as u16).collect())
    }

    /// [`QuantizedLinear::forward`] on `f32` values: x is rounded to the activation type, y
    /// converted from it exactly.
    pub fn forward_f32(&self, x: &[f32]) -> Result<Vec<f32>, LinearError> {
        let act = self.format.activation;
        let codes: Vec<u16> = x.iter().map(|&v| act.encode(f64::from(v)) as u16).collect();
        let y = self.forward(&codes)?;
        Ok(y.into_iter().map(|c| act.decode_f64(u32::from(c)).unwrap_or(f64::NAN) as f32).collect())
    }

    /// `y = x · dequant(W)` on device buffers (x: M × K, y: M × N, of the activation type),
    /// enqueued on `stream` — the caller's — without synchronizing (GPU layers only).
    pub fn forward_on(&self, stream: &Stream, x: &DeviceBuffer, y: &mut DeviceBuffer) -> Result<(), LinearError> {
        if !self.is_gpu() {
            return Err(LinearError::NotOnGpu("forward_on"));
        }
        let act = self.format.activation;
        if x.dtype() != act {
            return Err(LinearError::DeviceBuffer {
                what: "x",
                dtype: act,
                expected: x.len(),
                got_dtype: x.dtype(),
                got: x.len(),
            });
        }
        let m = self.rows(x.len())?;
        if y.dtype() != act || y.len() != m * self.n {
            return Err(LinearError::DeviceBuffer {
                what: "y",
                dtype: act,
                expected: m * self.n,
                got_dtype: y.dtype(),
                got: y.len(),
            });
        }
        if m == 0 {
            return Ok(());
        }
        self.launch(stream, x, y, m, self.plan_for(m))
    }

    /// Enqueues `plan` for checked x and y of `m` rows (GPU layers).
    fn launch(
        &self,
        stream: &Stream,
        x: &DeviceBuffer,
        y: &mut DeviceBuffer,
        m: usize,
        plan: LaunchPlan,
    ) -> Result<(), LinearError> {
        let Engine::Gpu { module, weights, no_workspace, .. } = &self.engine else {
            return Err(LinearError::NotOnGpu("launch"));
        };
        // The 16- and 64-row kernels from the layer's module (imports) or its background
        // compile; until that is ready, the 8-row kernel with the same split.
        let name = matmul_kernel_name(&self.format, plan.block_m);
        let matmul = match (module.kernel(&name), self.pending_module()) {
            (Ok(kernel), _) => kernel,
            (Err(_), Some(pending)) => pending.kernel(&name)?,
            (Err(_), None) if plan.block_m != BLOCK_M => module.kernel(&matmul_kernel_name(&self.format, BLOCK_M))?,
            (Err(e), None) => return Err(e.into()),
        };
        let sizes = [m, self.n, self.k, plan.splits].map(|v| LaunchArg::Int(v as i64));
        let mut workspace = match plan.splits {
            1 => None,
            _ => Some(DeviceBuffer::scratch(stream, DType::F32, plan.workspace_len(m, self.n))?),
        };
        let mut unused = no_workspace.lock().unwrap_or_else(PoisonError::into_inner);
        let mut args = vec![LaunchArg::Buffer(x)];
        args.extend(weights.iter().map(LaunchArg::Buffer));
        args.push(LaunchArg::Output(y));
        args.push(LaunchArg::Output(workspace.as_mut().unwrap_or(&mut unused)));
        args.extend(sizes);
        matmul.launch(stream, &mut args)?;
        drop(args);
        if let Some(workspace) = &workspace {
            let reduce = module.kernel(&reduce_kernel_name(&self.format))?;
            let mut args = vec![LaunchArg::Buffer(workspace), LaunchArg::Output(y)];
            args.extend([m, self.n, plan.splits].map(|v| LaunchArg::Int(v as i64)));
            reduce.launch(stream, &mut args)?;
        }
        Ok(())
    }
}
