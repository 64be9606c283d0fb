//! Typed kernels: element markers, typed buffers, kernels embedded in a binary, and the
//! [`Executor`] that runs them on a GPU or on the CPU interpreter.
//!
//! This is what the code that `anybit::kernel!` generates stands on. A kernel's Rust handle
//! has a `launch` method whose parameters come from the kernel's signature: a pointer
//! parameter `x: ptr f16[n]` becomes `&TypedBuffer<F16>` (or `&mut` when the kernel stores
//! through it), a scalar `n: i32` becomes an `i32`. A buffer of the wrong element type is then
//! a Rust type error; the manifest-checked launch underneath ([`crate::launch`]) stays as the
//! second line of defence (sizes, ranges, constraints).
//!
//! - **Element markers** ([`Element`]): zero-sized types naming one data type each —
//!   [`Uint<N>`](Uint), [`Int<N>`](Int), [`Float<E, M, SPECIAL>`](Float), with aliases for the
//!   usual ones ([`F16`], [`BF16`], [`F32`], [`U8`], [`I32`], …). Every anybit type has exactly
//!   one marker, so two buffers have the same Rust type exactly when they hold the same type.
//! - **Typed buffers** ([`TypedBuffer<T>`]): packed elements of `T`, in host memory (for the
//!   interpreter) or device memory (for a GPU); a zero-cost wrapper over the untyped buffers.
//! - **Embedded modules** ([`EmbeddedModule`]): a kernel module as a binary carries it — its
//!   kernel-language source (for the interpreter, and for a JIT compiler when one is at hand)
//!   and the PTX and manifest compiled for each target ahead of time (by `anybit-build`).
//!   Loading one needs no LLVM: the PTX for the newest target the device runs is handed to the
//!   driver.
//! - **The executor** ([`Executor`]): a GPU and a stream, or the interpreter. [`Executor::detect`]
//!   picks the first GPU when there is one, so the same program runs on a GPU machine and on
//!   one without. A module without PTX for the device is compiled by the executor's
//!   [`ModuleCompiler`] when it has one (the facade's JIT), or refused with a message saying
//!   how to get PTX.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use anybit_ir::dtype::{CodecError, DTypeError, FloatFormat, SpecialValues};
use anybit_ir::interp::{Arg, Buffer, InterpError, RunOptions, run_kernel};
use anybit_ir::manifest::Manifest;
use anybit_ir::program::Module;
use anybit_ir::target::Target;
use anybit_ir::{DType, packing::PackError};

use crate::cache::CachedModule;
use crate::error::RuntimeError;
use crate::gpu::{DeviceBuffer, Gpu, GpuModule, LaunchArg, Stream};
use crate::launch::check_target;

/// A marker type standing for one anybit data type, for [`TypedBuffer`]'s element type.
pub trait Element: Send + Sync + 'static {
    /// The data type; an error for a marker whose parameters name no valid type
    /// (`Uint<40>`, `Float<0, 3, FINITE>`).
    fn dtype() -> Result<DType, DTypeError>;
}

/// `uN`, an unsigned integer of `BITS` bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Uint<const BITS: u8>;

/// `iN`, a two's complement integer of `BITS` bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Int<const BITS: u8>;

/// A float with `E` exponent bits, `M` mantissa bits and the special-value policy `SPECIAL`
/// (one of [`FINITE`], [`NAN`], [`IEEE`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Float<const E: u8, const M: u8, const SPECIAL: u8>;

/// [`Float`]'s policy: every code is finite (`f4e2m1`).
pub const FINITE: u8 = 0;
/// [`Float`]'s policy: finite plus the all-ones NaN magnitude (`f8e4m3`).
pub const NAN: u8 = 1;
/// [`Float`]'s policy: IEEE infinities and NaNs (`f16`, `f8e5m2`).
pub const IEEE: u8 = 2;

/// IEEE binary16.
pub type F16 = Float<5, 10, IEEE>;
/// bfloat16.
pub type BF16 = Float<8, 7, IEEE>;
/// IEEE binary32.
pub type F32 = Float<8, 23, IEEE>;
/// `u4`.
pub type U4 = Uint<4>;
/// `u8`.
pub type U8 = Uint<8>;
/// `u32`.
pub type U32 = Uint<32>;
/// `i4`.
pub type I4 = Int<4>;
/// `i8`.
pub type I8 = Int<8>;
/// `i32`.
pub type I32 = Int<32>;

impl<const BITS: u8> Element for Uint<BITS> {
    fn dtype() -> Result<DType, DTypeError> {
        DType::uint(u32::from(BITS))
    }
}

impl<const BITS: u8> Element for Int<BITS> {
    fn dtype() -> Result<DType, DTypeError> {
        DType::int(u32::from(BITS))
    }
}

impl<const E: u8, const M: u8, const SPECIAL: u8> Element for Float<E, M, SPECIAL> {
    fn dtype() -> Result<DType, DTypeError> {
        let special = match SPECIAL {
            FINITE => SpecialValues::FiniteOnly,
            NAN => SpecialValues::NanOnly,
            IEEE => SpecialValues::Ieee,
            other => {
                return Err(DTypeError::Invalid {
                    name: format!("Float<{E}, {M}, {other}>"),
                    reason: "the policy is FINITE (0), NAN (1) or IEEE (2)".into(),
                });
            }
        };
        FloatFormat::new(u32::from(E), u32::from(M), special).map(DType::Float)
    }
}

/// Why a typed operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The GPU failed (or a launch's arguments do not fit the kernel's manifest).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The interpreter refused the arguments or failed while running.
    #[error("kernel `{kernel}` on the interpreter: {error}")]
    Interpreter {
        /// The kernel.
        kernel: String,
        /// What went wrong.
        error: Box<InterpError>,
    },
    /// An element marker that names no data type.
    #[error(transparent)]
    Element(#[from] DTypeError),
    /// Host data that does not fit a buffer.
    #[error("host data: {0}")]
    HostData(#[from] PackError),
    /// Codes that do not decode.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// An embedded module whose source does not parse (it was checked when it was embedded,
    /// so this means the binary is damaged or was built by another anybit).
    #[error("embedded module `{module}`: its source does not parse: {message}")]
    Source {
        /// The module's name.
        module: String,
        /// The parser's diagnostics.
        message: String,
    },
    /// A kernel the module does not have.
    #[error("embedded module `{module}` has no kernel `{kernel}`")]
    NoKernel {
        /// The module.
        module: String,
        /// The kernel asked for.
        kernel: String,
    },
    /// No embedded PTX runs on the device, and no compiler is at hand.
    #[error(
        "embedded module `{module}` has no PTX for {device} (compute capability {major}.{minor}; embedded: {embedded}) \
         and this executor has no compiler: build the module with anybit-build for a target the device runs, \
         or use an executor with the JIT (anybit::jit::executor)"
    )]
    NoPtx {
        /// The module.
        module: String,
        /// The device.
        device: String,
        /// Its capability.
        major: u32,
        /// Its capability.
        minor: u32,
        /// The embedded targets, or `none`.
        embedded: String,
    },
    /// An embedded manifest that does not parse.
    #[error("embedded module `{module}`, target {target}: invalid manifest: {message}")]
    Manifest {
        /// The module.
        module: String,
        /// The target.
        target: String,
        /// The JSON error.
        message: String,
    },
    /// The executor's compiler failed.
    #[error("compiling embedded module `{module}` for {target}: {message}")]
    Compile {
        /// The module.
        module: String,
        /// The target.
        target: String,
        /// The compiler's message.
        message: String,
    },
    /// A buffer in the other place than the executor's (host vs. device).
    #[error("{what} is in {place} memory, but this executor runs on {executor}")]
    Placement {
        /// Which buffer.
        what: String,
        /// `host` or `device`.
        place: &'static str,
        /// `the interpreter` or `GPU 0 (…)`.
        executor: String,
    },
}

/// Where a buffer's elements live.
#[derive(Debug)]
enum Storage {
    Host(Buffer),
    Device(DeviceBuffer),
}

/// Packed elements of `T`, in host memory (interpreter) or device memory (GPU). Made by an
/// [`Executor`] ([`Executor::zeros`], [`Executor::upload`]), read back with
/// [`Executor::download`].
pub struct TypedBuffer<T: Element> {
    storage: Storage,
    element: PhantomData<fn() -> T>,
}

impl<T: Element> fmt::Debug for TypedBuffer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (place, dtype, len) = match &self.storage {
            Storage::Host(b) => ("host", b.dtype(), b.len()),
            Storage::Device(b) => ("device", b.dtype(), b.len()),
        };
        write!(f, "TypedBuffer<{dtype}>({len} elements in {place} memory)")
    }
}

impl<T: Element> TypedBuffer<T> {
    /// The number of elements.
    pub fn len(&self) -> usize {
        match &self.storage {
            Storage::Host(b) => b.len(),
            Storage::Device(b) => b.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether it is in device memory.
    pub fn is_on_device(&self) -> bool {
        matches!(self.storage, Storage::Device(_))
    }

    /// The argument of a launch that reads this buffer.
    pub fn arg(&self) -> KernelArg<'_> {
        KernelArg(ArgValue::Read(&self.storage))
    }

    /// The argument of a launch that may write this buffer.
    pub fn arg_mut(&mut self) -> KernelArg<'_> {
        KernelArg(ArgValue::Write(&mut self.storage))
    }

    /// Wraps a host buffer; an error when its element type is not `T`'s.
    pub fn from_host(buffer: Buffer) -> Result<TypedBuffer<T>, ExecError> {
        check_element::<T>(buffer.dtype(), buffer.len())?;
        Ok(TypedBuffer { storage: Storage::Host(buffer), element: PhantomData })
    }

    /// Wraps a device buffer; an error when its element type is not `T`'s.
    pub fn from_device(buffer: DeviceBuffer) -> Result<TypedBuffer<T>, ExecError> {
        check_element::<T>(buffer.dtype(), buffer.len())?;
        Ok(TypedBuffer { storage: Storage::Device(buffer), element: PhantomData })
    }

    /// The device buffer, when it is one (to pass to untyped launches).
    pub fn device(&self) -> Option<&DeviceBuffer> {
        match &self.storage {
            Storage::Device(b) => Some(b),
            Storage::Host(_) => None,
        }
    }
}

fn check_element<T: Element>(dtype: DType, len: usize) -> Result<(), ExecError> {
    let expected = T::dtype()?;
    if dtype != expected {
        return Err(
            RuntimeError::HostData(format!("a buffer of {len} {dtype} cannot be a TypedBuffer of {expected}")).into()
        );
    }
    Ok(())
}

/// One argument of [`Executor::launch`], in the kernel's parameter order: a scalar
/// ([`KernelArg::int`], [`KernelArg::float`]) or a buffer ([`TypedBuffer::arg`],
/// [`TypedBuffer::arg_mut`]).
#[derive(Debug)]
pub struct KernelArg<'a>(ArgValue<'a>);

#[derive(Debug)]
enum ArgValue<'a> {
    Int(i64),
    Float(f64),
    Read(&'a Storage),
    Write(&'a mut Storage),
}

impl KernelArg<'_> {
    /// An integer scalar.
    pub fn int(value: impl Into<i64>) -> KernelArg<'static> {
        KernelArg(ArgValue::Int(value.into()))
    }

    /// A float scalar (rounded to the parameter's type).
    pub fn float(value: impl Into<f64>) -> KernelArg<'static> {
        KernelArg(ArgValue::Float(value.into()))
    }
}

/// PTX and manifest of a module compiled ahead of time for one target.
#[derive(Clone, Copy, Debug)]
pub struct EmbeddedTarget {
    /// The target (`sm_80`).
    pub target: &'static str,
    /// The manifest, as `manifest.json` text.
    pub manifest: &'static str,
    /// The PTX of each kernel, in manifest order.
    pub ptx: &'static [&'static str],
}

/// A kernel module carried in a binary: its source and its ahead-of-time compiled forms.
/// `anybit::kernel!` and `anybit-build` make these as `static`s.
#[derive(Debug)]
pub struct EmbeddedModule {
    name: &'static str,
    source: &'static str,
    targets: &'static [EmbeddedTarget],
    parsed: OnceLock<Result<Module, String>>,
}

impl EmbeddedModule {
    /// A module called `name` (for messages; the source file or the handle's name) with its
    /// kernel-language `source` and the forms compiled ahead of time (none for a module left
    /// to a JIT compiler or the interpreter).
    pub const fn new(name: &'static str, source: &'static str, targets: &'static [EmbeddedTarget]) -> EmbeddedModule {
        EmbeddedModule { name, source, targets, parsed: OnceLock::new() }
    }

    /// Its name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The kernel-language source.
    pub fn source(&self) -> &'static str {
        self.source
    }

    /// The forms compiled ahead of time.
    pub fn targets(&self) -> &'static [EmbeddedTarget] {
        self.targets
    }

    /// The parsed source (parsed once).
    pub fn module(&self) -> Result<&Module, ExecError> {
        let parsed = self
            .parsed
            .get_or_init(|| anybit_ir::text::parse_module(self.source).map_err(|diagnostics| diagnostics.to_string()));
        parsed.as_ref().map_err(|message| ExecError::Source { module: self.name.to_owned(), message: message.clone() })
    }

    /// The embedded form for a device of compute capability `major.minor`: the newest target
    /// it runs, preferring portable targets to architecture-specific ones of the same number.
    pub fn best_target(&self, major: u32, minor: u32) -> Option<&'static EmbeddedTarget> {
        let rank = |t: &EmbeddedTarget| {
            let (number, exact) = crate::launch::target_capability(t.target).unwrap_or((0, false));
            (number, !exact)
        };
        self.targets.iter().filter(|t| check_target(t.target, major, minor).is_ok()).max_by_key(|t| rank(t))
    }

    fn embedded_names(&self) -> String {
        match self.targets.len() {
            0 => "none".into(),
            _ => self.targets.iter().map(|t| t.target).collect::<Vec<_>>().join(", "),
        }
    }
}

/// Compiles a module's source for a target at run time (the facade's JIT implements it), for
/// executors running modules that carry no PTX for their device.
pub trait ModuleCompiler: Send + Sync {
    /// The manifest and PTX of `source` compiled for `target`, or a message saying why not.
    fn compile(&self, source: &str, target: Target) -> Result<CachedModule, String>;
}

enum Place {
    Interpreter,
    Gpu { gpu: Arc<Gpu>, stream: Stream },
}

/// Where typed kernels run: a GPU and a stream of its own, or the CPU interpreter.
pub struct Executor {
    place: Place,
    compiler: Option<Arc<dyn ModuleCompiler>>,
    /// Modules loaded on the GPU, by the address of their `static` (loaded once each).
    loaded: Mutex<HashMap<usize, Arc<GpuModule>>>,
    interpreter: RunOptions,
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("device", &self.device_name())
            .field("compiler", &self.compiler.is_some())
            .finish_non_exhaustive()
    }
}

impl Executor {
    /// The CPU interpreter (bit-exact reference semantics; slow).
    pub fn interpreter() -> Executor {
        // Kernels run to completion however many steps they take; the checks stay on.
        let interpreter = RunOptions { max_instructions: u64::MAX, ..RunOptions::default() };
        Executor { place: Place::Interpreter, compiler: None, loaded: Mutex::new(HashMap::new()), interpreter }
    }

    /// `gpu`, with a new stream of its own.
    pub fn gpu(gpu: Arc<Gpu>) -> Result<Executor, ExecError> {
        let stream = gpu.new_stream()?;
        Ok(Executor { place: Place::Gpu { gpu, stream }, ..Executor::interpreter() })
    }

    /// GPU 0 when a driver and a device are present, else the interpreter.
    pub fn detect() -> Executor {
        Gpu::new(0).ok().and_then(|gpu| Executor::gpu(Arc::new(gpu)).ok()).unwrap_or_else(Executor::interpreter)
    }

    /// The same executor compiling modules that carry no PTX for its device with `compiler`.
    pub fn with_compiler(mut self, compiler: Arc<dyn ModuleCompiler>) -> Executor {
        self.compiler = Some(compiler);
        self
    }

    /// Whether it runs on a GPU.
    pub fn is_gpu(&self) -> bool {
        matches!(self.place, Place::Gpu { .. })
    }

    /// `interpreter` or `GPU 0 (NVIDIA H100 80GB HBM3)`.
    pub fn device_name(&self) -> String {
        match &self.place {
            Place::Interpreter => "the interpreter".into(),
            Place::Gpu { gpu, .. } => format!("GPU {} ({})", gpu.ordinal(), gpu.name()),
        }
    }

    /// The stream launches go on (GPU executors).
    pub fn stream(&self) -> Option<&Stream> {
        match &self.place {
            Place::Gpu { stream, .. } => Some(stream),
            Place::Interpreter => None,
        }
    }

    /// `len` zero elements of `T`.
    pub fn zeros<T: Element>(&self, len: usize) -> Result<TypedBuffer<T>, ExecError> {
        let dtype = T::dtype()?;
        let storage = match &self.place {
            Place::Interpreter => Storage::Host(Buffer::zeros(dtype, len)?),
            Place::Gpu { stream, .. } => Storage::Device(DeviceBuffer::zeros(stream, dtype, len)?),
        };
        Ok(TypedBuffer { storage, element: PhantomData })
    }

    /// A buffer of `T` holding `codes` (the bits of each element).
    pub fn upload_codes<T: Element>(&self, codes: &[u32]) -> Result<TypedBuffer<T>, ExecError> {
        self.place_host(Buffer::from_codes(T::dtype()?, codes)?)
    }

    /// A buffer of `T` holding `values`, each rounded to `T` (to nearest, ties to even).
    pub fn upload<T: Element>(&self, values: &[f64]) -> Result<TypedBuffer<T>, ExecError> {
        self.place_host(Buffer::from_f64(T::dtype()?, values)?)
    }

    fn place_host<T: Element>(&self, buffer: Buffer) -> Result<TypedBuffer<T>, ExecError> {
        let storage = match &self.place {
            Place::Interpreter => Storage::Host(buffer),
            Place::Gpu { stream, .. } => Storage::Device(DeviceBuffer::upload(stream, &buffer)?),
        };
        Ok(TypedBuffer { storage, element: PhantomData })
    }

    /// The buffer's contents on the host (on a GPU, waits for the stream: errors of kernels
    /// launched since its last synchronization are reported here).
    pub fn download<T: Element>(&self, buffer: &TypedBuffer<T>) -> Result<Buffer, ExecError> {
        match &buffer.storage {
            Storage::Host(b) => Ok(b.clone()),
            Storage::Device(b) => match &self.place {
                Place::Gpu { stream, .. } => Ok(b.download(stream)?),
                Place::Interpreter => Err(self.misplaced("the buffer", "device")),
            },
        }
    }

    /// The buffer's values as `f64`s (see [`Executor::download`]).
    pub fn download_f64<T: Element>(&self, buffer: &TypedBuffer<T>) -> Result<Vec<f64>, ExecError> {
        let host = self.download(buffer)?;
        Ok(host.to_f64()?)
    }

    /// Waits for every launch so far (a no-op on the interpreter, which runs launches at once).
    pub fn synchronize(&self) -> Result<(), ExecError> {
        match &self.place {
            Place::Gpu { stream, .. } => Ok(stream.synchronize()?),
            Place::Interpreter => Ok(()),
        }
    }

    fn misplaced(&self, what: impl Into<String>, place: &'static str) -> ExecError {
        ExecError::Placement { what: what.into(), place, executor: self.device_name() }
    }

    /// Runs kernel `kernel` of `module` with `args` (one per parameter, in order). On a GPU it
    /// is enqueued on the executor's stream (arguments checked against the manifest) and this
    /// returns without waiting; on the interpreter it runs to completion.
    pub fn launch(
        &self,
        module: &'static EmbeddedModule,
        kernel: &str,
        args: &mut [KernelArg<'_>],
    ) -> Result<(), ExecError> {
        match &self.place {
            Place::Interpreter => self.interpret(module, kernel, args),
            Place::Gpu { gpu, stream } => {
                let loaded = self.load(gpu, module)?;
                let gpu_kernel = loaded.kernel(kernel)?;
                let mut launch_args = Vec::with_capacity(args.len());
                for (i, arg) in args.iter_mut().enumerate() {
                    let what = || param_name(&gpu_kernel.manifest().params, i);
                    launch_args.push(match &mut arg.0 {
                        ArgValue::Int(v) => LaunchArg::Int(*v),
                        ArgValue::Float(v) => LaunchArg::Float(*v),
                        ArgValue::Read(Storage::Device(b)) => LaunchArg::Buffer(b),
                        ArgValue::Write(Storage::Device(b)) => LaunchArg::Output(b),
                        ArgValue::Read(Storage::Host(_)) | ArgValue::Write(Storage::Host(_)) => {
                            return Err(self.misplaced(what(), "host"));
                        }
                    });
                }
                gpu_kernel.launch(stream, &mut launch_args)?;
                Ok(())
            }
        }
    }

    fn interpret(
        &self,
        module: &'static EmbeddedModule,
        name: &str,
        args: &mut [KernelArg<'_>],
    ) -> Result<(), ExecError> {
        let parsed = module.module()?;
        let kernel = parsed
            .kernels
            .iter()
            .find(|k| k.name == name)
            .ok_or_else(|| ExecError::NoKernel { module: module.name.to_owned(), kernel: name.to_owned() })?;
        let mut interp_args = Vec::with_capacity(args.len());
        for (i, arg) in args.iter().enumerate() {
            interp_args.push(match &arg.0 {
                ArgValue::Int(v) => Arg::Int(*v),
                ArgValue::Float(v) => Arg::Float(*v),
                ArgValue::Read(Storage::Host(b)) => Arg::Buffer(b.clone()),
                ArgValue::Write(Storage::Host(b)) => Arg::Buffer(b.clone()),
                ArgValue::Read(Storage::Device(_)) | ArgValue::Write(Storage::Device(_)) => {
                    let params: Vec<&str> = kernel.params.iter().map(|p| p.name.as_str()).collect();
                    return Err(self.misplaced(param_label(&params, i), "device"));
                }
            });
        }
        run_kernel(kernel, &mut interp_args, &self.interpreter)
            .map_err(|error| ExecError::Interpreter { kernel: name.to_owned(), error: Box::new(error) })?;
        // The interpreter worked on copies: written buffers take their new contents back.
        for (arg, result) in args.iter_mut().zip(interp_args) {
            if let (ArgValue::Write(Storage::Host(b)), Arg::Buffer(out)) = (&mut arg.0, result) {
                *b = out;
            }
        }
        Ok(())
    }

    fn load(&self, gpu: &Gpu, module: &'static EmbeddedModule) -> Result<Arc<GpuModule>, ExecError> {
        let key = std::ptr::from_ref(module) as usize;
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = loaded.get(&key) {
            return Ok(found.clone());
        }
        let (major, minor) = gpu.compute_capability();
        let gpu_module = match module.best_target(major, minor) {
            Some(embedded) => {
                let manifest = Manifest::from_json(embedded.manifest).map_err(|e| ExecError::Manifest {
                    module: module.name.to_owned(),
                    target: embedded.target.to_owned(),
                    message: e.to_string(),
                })?;
                gpu.load_module(&manifest, embedded.ptx)?
            }
            None => {
                let no_ptx = || ExecError::NoPtx {
                    module: module.name.to_owned(),
                    device: gpu.name().to_owned(),
                    major,
                    minor,
                    embedded: module.embedded_names(),
                };
                let (Some(compiler), Some(target)) = (&self.compiler, Target::newest_portable_for(major, minor)) else {
                    return Err(no_ptx());
                };
                let compiled = compiler.compile(module.source, target).map_err(|message| ExecError::Compile {
                    module: module.name.to_owned(),
                    target: target.name().to_owned(),
                    message,
                })?;
                gpu.load_module(&compiled.manifest, &compiled.ptx)?
            }
        };
        loaded.insert(key, gpu_module.clone());
        Ok(gpu_module)
    }
}

fn param_label(names: &[&str], i: usize) -> String {
    names.get(i).map_or_else(|| format!("argument {i}"), |name| format!("parameter `{name}`"))
}

fn param_name(params: &[anybit_ir::manifest::ParamManifest], i: usize) -> String {
    let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
    param_label(&names, i)
}
