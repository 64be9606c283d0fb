//! GPUs, streams, device buffers, loaded modules and checked launches.
//!
//! - A [`Gpu`] is one device with its primary context. [`Gpu::new`] checks for the driver
//!   library before touching cudarc (which panics without one) and returns
//!   [`RuntimeError::NoDriver`] or [`RuntimeError::NoDevice`] instead.
//! - A [`Stream`] wraps a cudarc stream — the GPU's own or one the caller already has
//!   ([`Stream::wrap`]) — and remembers the kernels launched on it since its last
//!   synchronization, so that an error a kernel raises while running, which the driver reports
//!   only at the next synchronizing call, names the kernel.
//! - A [`DeviceBuffer`] is packed elements of one type in device memory (the same bits as the
//!   interpreter's [`Buffer`]), allocated with 16 bytes of zeroed slack past the data.
//! - [`Gpu::load_module`] JIT-compiles each kernel's PTX, refusing PTX for a newer target than
//!   the device with a clear message and returning the JIT's log when the driver rejects it;
//!   modules with the same manifest and PTX are loaded once per GPU and shared.
//! - [`GpuKernel::launch`] checks the arguments against the kernel's manifest
//!   ([`crate::launch::check_launch`]), computes the grid from its expressions and enqueues the
//!   kernel on the caller's stream without synchronizing.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use anybit_ir::DType;
use anybit_ir::interp::Buffer;
use anybit_ir::manifest::{KernelManifest, Manifest};
use cudarc::driver::sys::{CUdevice_attribute, CUresult};
use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DriverError};
use sha2::{Digest, Sha256};

use crate::driver::{self, RawFunction, describe};
use crate::error::RuntimeError;
use crate::launch::{ArgSpec, check_launch, check_target, packed_bytes, ptx_target};

fn driver_error(call: impl Into<String>) -> impl FnOnce(DriverError) -> RuntimeError {
    let call = call.into();
    move |e| RuntimeError::Driver { call, error: describe(&e) }
}

/// Whether a CUDA driver and at least one device are present (never panics, never fails).
pub fn gpu_available() -> bool {
    device_count().is_ok_and(|n| n > 0)
}

/// The number of CUDA devices; [`RuntimeError::NoDriver`] without a driver.
pub fn device_count() -> Result<usize, RuntimeError> {
    if !driver::driver_present() {
        return Err(RuntimeError::NoDriver);
    }
    guarded("initializing the driver", || {
        match cudarc::driver::result::init() {
            Err(DriverError(CUresult::CUDA_ERROR_NO_DEVICE)) => return Ok(0),
            other => other.map_err(driver_error("cuInit"))?,
        }
        let count = cudarc::driver::result::device::get_count().map_err(driver_error("cuDeviceGetCount"))?;
        Ok(count.max(0) as usize)
    })
}

/// Runs `f`, turning a panic inside cudarc (a driver library without the symbols it expects)
/// into an error.
fn guarded<T>(call: &str, f: impl FnOnce() -> Result<T, RuntimeError>) -> Result<T, RuntimeError> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "unknown panic".into());
        Err(RuntimeError::Driver { call: call.to_owned(), error: format!("the driver library is unusable: {message}") })
    })
}

/// One CUDA device and its primary context.
pub struct Gpu {
    context: Arc<CudaContext>,
    ordinal: usize,
    name: String,
    capability: (u32, u32),
    driver_version: (u32, u32),
    max_shared_memory: u64,
    multiprocessors: usize,
    default_stream: Arc<Stream>,
    modules: Mutex<HashMap<[u8; 32], Weak<GpuModule>>>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("ordinal", &self.ordinal)
            .field("name", &self.name)
            .field("capability", &self.capability)
            .finish_non_exhaustive()
    }
}

impl Gpu {
    /// Device `ordinal`; [`RuntimeError::NoDriver`] or [`RuntimeError::NoDevice`] when there
    /// is none.
    pub fn new(ordinal: usize) -> Result<Gpu, RuntimeError> {
        let count = device_count()?;
        if ordinal >= count {
            return Err(RuntimeError::NoDevice { ordinal, count });
        }
        guarded("creating a context", || {
            let context =
                CudaContext::new(ordinal).map_err(driver_error(format!("creating a context on device {ordinal}")))?;
            let (major, minor) =
                context.compute_capability().map_err(driver_error("reading the compute capability"))?;
            let name = context.name().map_err(driver_error("reading the device name"))?;
            let max_shared_memory = context
                .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)
                .map_err(driver_error("reading the shared memory limit"))?;
            let multiprocessors = context
                .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
                .map_err(driver_error("reading the multiprocessor count"))?;
            let driver_version = driver::driver_version().map_err(driver_error("cuDriverGetVersion"))?;
            let default_stream = Arc::new(Stream::wrap(context.default_stream()));
            Ok(Gpu {
                context,
                ordinal,
                name,
                capability: (major.max(0) as u32, minor.max(0) as u32),
                driver_version,
                max_shared_memory: max_shared_memory.max(0) as u64,
                multiprocessors: multiprocessors.max(1) as usize,
                default_stream,
                modules: Mutex::new(HashMap::new()),
            })
        })
    }

    /// The device's position.
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// The device's name (`NVIDIA H100 80GB HBM3`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The compute capability (major, minor): (9, 0) for an H100.
    pub fn compute_capability(&self) -> (u32, u32) {
        self.capability
    }

    /// The driver's CUDA version (major, minor).
    pub fn driver_version(&self) -> (u32, u32) {
        self.driver_version
    }

    /// The most shared memory a block may use (with the opt-in), in bytes.
    pub fn max_shared_memory(&self) -> u64 {
        self.max_shared_memory
    }

    /// The number of streaming multiprocessors (132 on an H100 SXM).
    pub fn multiprocessors(&self) -> usize {
        self.multiprocessors
    }

    /// The cudarc context, to share with other cudarc code.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.context
    }

    /// The context's default stream.
    pub fn default_stream(&self) -> &Arc<Stream> {
        &self.default_stream
    }

    /// A new stream.
    pub fn new_stream(&self) -> Result<Stream, RuntimeError> {
        let stream = self.context.new_stream().map_err(driver_error("creating a stream"))?;
        Ok(Stream::wrap(stream))
    }

    /// Loads a compiled module: `ptx[i]` is the PTX text of `manifest.kernels[i]`. Modules
    /// with the same manifest and PTX are loaded once per GPU and shared.
    pub fn load_module<S: AsRef<str>>(&self, manifest: &Manifest, ptx: &[S]) -> Result<Arc<GpuModule>, RuntimeError> {
        if ptx.len() != manifest.kernels.len() {
            return Err(RuntimeError::Module(format!(
                "{} PTX texts for {} kernels",
                ptx.len(),
                manifest.kernels.len()
            )));
        }
        let mut hasher = Sha256::new();
        hasher.update(manifest.to_json().as_bytes());
        for text in ptx {
            hasher.update((text.as_ref().len() as u64).to_le_bytes());
            hasher.update(text.as_ref().as_bytes());
        }
        let key: [u8; 32] = hasher.finalize().into();
        let mut modules = self.modules.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(module) = modules.get(&key).and_then(Weak::upgrade) {
            return Ok(module);
        }
        let kernels = manifest
            .kernels
            .iter()
            .zip(ptx)
            .map(|(kernel, text)| self.load_kernel(kernel, text.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let module = Arc::new(GpuModule { manifest: manifest.clone(), kernels });
        modules.retain(|_, m| m.strong_count() > 0);
        modules.insert(key, Arc::downgrade(&module));
        Ok(module)
    }

    /// Loads what `anybit compile` wrote into `dir`: `manifest.json` and its PTX files.
    pub fn load_dir(&self, dir: &Path) -> Result<Arc<GpuModule>, RuntimeError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path)
                .map_err(|e| RuntimeError::Io { path: path.display().to_string(), error: e.to_string() })
        };
        let manifest_path = dir.join("manifest.json");
        let manifest = Manifest::from_json(&read(&manifest_path)?)
            .map_err(|e| RuntimeError::Io { path: manifest_path.display().to_string(), error: e.to_string() })?;
        let ptx = manifest.kernels.iter().map(|k| read(&dir.join(&k.ptx_file))).collect::<Result<Vec<_>, _>>()?;
        self.load_module(&manifest, &ptx)
    }

    fn load_kernel(&self, kernel: &KernelManifest, ptx: &str) -> Result<GpuKernel, RuntimeError> {
        let target = ptx_target(ptx).unwrap_or("(no .target)").to_owned();
        let (major, minor) = self.capability;
        check_target(&target, major, minor).map_err(|message| RuntimeError::Target {
            kernel: kernel.name.clone(),
            message: format!("{message} ({}, driver {}.{})", self.name, self.driver_version.0, self.driver_version.1),
        })?;
        if kernel.needs_shared_memory_opt_in && kernel.shared_memory_bytes > self.max_shared_memory {
            return Err(RuntimeError::SharedMemory {
                kernel: kernel.name.clone(),
                bytes: kernel.shared_memory_bytes,
                limit: self.max_shared_memory,
                device: self.name.clone(),
            });
        }
        let module = driver::load_ptx(&self.context, ptx).map_err(|failure| RuntimeError::Jit {
            kernel: kernel.name.clone(),
            target: target.clone(),
            error: describe(&failure.error),
            log: failure.log,
        })?;
        let function = driver::get_function(&Arc::new(module), &kernel.name)
            .map_err(driver_error(format!("finding kernel `{}` in its PTX", kernel.name)))?;
        if kernel.needs_shared_memory_opt_in {
            let bytes = u32::try_from(kernel.shared_memory_bytes).unwrap_or(u32::MAX);
            function
                .set_max_dynamic_shared_memory(bytes)
                .map_err(driver_error(format!("allowing {bytes} bytes of shared memory to `{}`", kernel.name)))?;
        }
        Ok(GpuKernel { manifest: kernel.clone(), function, context: self.context.clone() })
    }
}

/// A stream, and the kernels launched on it since its last synchronization.
#[derive(Debug)]
pub struct Stream {
    inner: Arc<CudaStream>,
    pending: Mutex<Vec<String>>,
}

impl Stream {
    /// Wraps a cudarc stream (the caller's own, to launch on it).
    pub fn wrap(inner: Arc<CudaStream>) -> Stream {
        Stream { inner, pending: Mutex::new(Vec::new()) }
    }

    /// The cudarc stream.
    pub fn cuda(&self) -> &Arc<CudaStream> {
        &self.inner
    }

    /// Waits for everything enqueued; an error a kernel raised names the kernels launched
    /// since the last synchronization.
    pub fn synchronize(&self) -> Result<(), RuntimeError> {
        let result = self.inner.synchronize();
        self.settle("synchronizing the stream", result, true)
    }

    /// The GPU time of the work `enqueue` puts on the stream, between two events recorded
    /// around it (waits for the work).
    pub fn time<E: From<RuntimeError>>(
        &self,
        enqueue: impl FnOnce() -> Result<(), E>,
    ) -> Result<std::time::Duration, E> {
        let timed = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
        let start = self.inner.record_event(timed);
        let start = self.settle("recording an event", start, false)?;
        enqueue()?;
        let end = self.inner.record_event(timed);
        let end = self.settle("recording an event", end, false)?;
        let elapsed = start.elapsed_ms(&end);
        let ms = self.settle("timing with events", elapsed, true)?;
        Ok(std::time::Duration::from_secs_f64(f64::from(ms.max(0.0)) / 1e3))
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The result of a call on the stream: an error names the kernels launched since the last
    /// synchronization (a failed kernel poisons every later call); a call that `synchronized`
    /// (waited for all earlier work) and succeeded clears them.
    fn settle<T>(&self, call: &str, result: Result<T, DriverError>, synchronized: bool) -> Result<T, RuntimeError> {
        if result.is_ok() && !synchronized {
            return result.map_err(|e| RuntimeError::Driver { call: call.to_owned(), error: describe(&e) });
        }
        let kernels = std::mem::take(&mut *self.pending());
        result.map_err(|e| {
            if kernels.is_empty() {
                RuntimeError::Driver { call: call.to_owned(), error: describe(&e) }
            } else {
                let names = kernels.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
                RuntimeError::KernelFailed { kernels: names, call: call.to_owned(), error: describe(&e) }
            }
        })
    }
}

/// Packed elements of one type in device memory.
#[derive(Debug)]
pub struct DeviceBuffer {
    dtype: DType,
    len: usize,
    data: CudaSlice<u8>,
}

/// Bytes allocated for `bytes` of data: whole 16-byte lines plus one more, so that no access
/// near the end (vector loads, 32-bit read-modify-writes of sub-byte elements) leaves the
/// allocation.
fn allocation_bytes(bytes: u64) -> Result<usize, RuntimeError> {
    usize::try_from(bytes.div_ceil(16) * 16 + 16)
        .map_err(|_| RuntimeError::HostData(format!("{bytes} bytes do not fit this host's address space")))
}

impl DeviceBuffer {
    /// `len` zero elements on the stream's device.
    pub fn zeros(stream: &Stream, dtype: DType, len: usize) -> Result<DeviceBuffer, RuntimeError> {
        let bytes = allocation_bytes(packed_bytes(dtype, len))?;
        let data = stream.inner.alloc_zeros::<u8>(bytes).map_err(driver_error(format!("allocating {bytes} bytes")))?;
        Ok(DeviceBuffer { dtype, len, data })
    }

    /// `len` elements of unspecified value on the stream's device, allocated in stream order
    /// where the device supports it (no zeroing): scratch space for kernels that write it
    /// before they read it, such as the workspace of a split of K.
    pub fn scratch(stream: &Stream, dtype: DType, len: usize) -> Result<DeviceBuffer, RuntimeError> {
        let bytes = allocation_bytes(packed_bytes(dtype, len))?;
        let data =
            driver::alloc_scratch(&stream.inner, bytes).map_err(driver_error(format!("allocating {bytes} bytes")))?;
        Ok(DeviceBuffer { dtype, len, data })
    }

    /// Sets every byte to zero, enqueued on `stream` (also what a benchmark writes to flush
    /// the L2 cache between timed launches).
    pub fn fill_zeros(&mut self, stream: &Stream) -> Result<(), RuntimeError> {
        let result = stream.inner.memset_zeros(&mut self.data);
        stream.settle("setting a buffer to zero", result, false)
    }

    /// A copy of `buffer` on the stream's device (waits for the copy).
    pub fn upload(stream: &Stream, buffer: &Buffer) -> Result<DeviceBuffer, RuntimeError> {
        let mut bytes = buffer.bytes().to_vec();
        let size = allocation_bytes(bytes.len() as u64)?;
        bytes.resize(size, 0);
        let result = stream.inner.clone_htod(&bytes);
        // From pageable memory: returns once the data is staged, without waiting for the stream.
        let data = stream.settle("copying a buffer to the device", result, false)?;
        Ok(DeviceBuffer { dtype: buffer.dtype(), len: buffer.len(), data })
    }

    /// Overwrites the contents with `buffer`'s, which must have the same type and length
    /// (waits for the copy).
    pub fn write(&mut self, stream: &Stream, buffer: &Buffer) -> Result<(), RuntimeError> {
        if buffer.dtype() != self.dtype || buffer.len() != self.len {
            return Err(RuntimeError::HostData(format!(
                "cannot write {} {} into a device buffer of {} {}",
                buffer.len(),
                buffer.dtype(),
                self.len,
                self.dtype
            )));
        }
        let result = stream.inner.memcpy_htod(buffer.bytes(), &mut self.data);
        stream.settle("copying a buffer to the device", result, false)
    }

    /// The contents, copied to the host (waits for the stream: errors of kernels launched on
    /// it since its last synchronization are reported here, naming them).
    pub fn download(&self, stream: &Stream) -> Result<Buffer, RuntimeError> {
        let result = stream.inner.clone_dtoh(&self.data);
        // Into pageable memory: returns only when the copy, and so all earlier work, is done.
        let mut bytes = stream.settle("copying a buffer to the host", result, true)?;
        bytes.truncate(packed_bytes(self.dtype, self.len) as usize);
        Buffer::from_bytes(self.dtype, self.len, bytes).map_err(|e| RuntimeError::HostData(e.to_string()))
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The cudarc allocation (its length includes the slack).
    pub fn cuda(&self) -> &CudaSlice<u8> {
        &self.data
    }
}

/// One argument of [`GpuKernel::launch`].
#[derive(Debug)]
pub enum LaunchArg<'a> {
    /// An integer scalar.
    Int(i64),
    /// A float scalar (rounded to the parameter's type).
    Float(f64),
    /// A buffer the kernel only reads.
    Buffer(&'a DeviceBuffer),
    /// A buffer the kernel may write.
    Output(&'a mut DeviceBuffer),
}

/// The kernels of a loaded module.
#[derive(Debug)]
pub struct GpuModule {
    manifest: Manifest,
    kernels: Vec<GpuKernel>,
}

impl GpuModule {
    /// The manifest it was loaded with.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Its kernels, in manifest order.
    pub fn kernels(&self) -> &[GpuKernel] {
        &self.kernels
    }

    /// The kernel called `name`.
    pub fn kernel(&self, name: &str) -> Result<&GpuKernel, RuntimeError> {
        self.kernels.iter().find(|k| k.manifest.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.kernels.iter().map(|k| k.manifest.name.as_str()).collect();
            RuntimeError::Module(format!("no kernel `{name}` (the module has: {})", names.join(", ")))
        })
    }
}

/// A loaded kernel, launched with checked arguments.
#[derive(Clone, Debug)]
pub struct GpuKernel {
    manifest: KernelManifest,
    function: RawFunction,
    context: Arc<CudaContext>,
}

impl GpuKernel {
    /// Its manifest entry.
    pub fn manifest(&self) -> &KernelManifest {
        &self.manifest
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// Enqueues the kernel on `stream` with `args` (one per parameter, in order), checked
    /// against its manifest first; returns without synchronizing. An empty grid launches
    /// nothing.
    pub fn launch(&self, stream: &Stream, args: &mut [LaunchArg<'_>]) -> Result<(), RuntimeError> {
        let kernel = || self.manifest.name.clone();
        if **stream.inner.context() != *self.context {
            return Err(RuntimeError::OtherDevice {
                what: "the stream".into(),
                target: format!("kernel `{}`", kernel()),
            });
        }
        let mut specs = Vec::with_capacity(args.len());
        // Taking a buffer's address makes the stream wait for its pending writes; the guards
        // record this launch's reads and writes when dropped, after the launch.
        let mut guards = Vec::new();
        for (i, arg) in args.iter_mut().enumerate() {
            let other_device = |buffer: &DeviceBuffer| **buffer.data.context() != *self.context;
            let param = || {
                self.manifest
                    .params
                    .get(i)
                    .map_or_else(|| format!("argument {i}"), |p| format!("parameter `{}`", p.name))
            };
            let spec = match arg {
                LaunchArg::Int(v) => ArgSpec::Int(*v),
                LaunchArg::Float(v) => ArgSpec::Float(*v),
                LaunchArg::Buffer(buffer) => {
                    if other_device(buffer) {
                        return Err(RuntimeError::OtherDevice {
                            what: param(),
                            target: format!("kernel `{}`", kernel()),
                        });
                    }
                    let (address, guard) = buffer.data.device_ptr(&stream.inner);
                    guards.push(guard);
                    ArgSpec::Buffer { dtype: buffer.dtype, len: buffer.len, address, writable: false }
                }
                LaunchArg::Output(buffer) => {
                    if other_device(buffer) {
                        return Err(RuntimeError::OtherDevice {
                            what: param(),
                            target: format!("kernel `{}`", kernel()),
                        });
                    }
                    let (dtype, len) = (buffer.dtype, buffer.len);
                    let (address, guard) = buffer.data.device_ptr_mut(&stream.inner);
                    guards.push(guard);
                    ArgSpec::Buffer { dtype, len, address, writable: true }
                }
            };
            specs.push(spec);
        }
        let checked = check_launch(&self.manifest, &specs)
            .map_err(|error| RuntimeError::Argument { kernel: kernel(), error: Box::new(error) })?;
        if checked.is_empty() {
            return Ok(());
        }
        driver::launch(&self.function, &stream.inner, &checked)
            .map_err(|e| RuntimeError::Launch { kernel: kernel(), error: describe(&e) })?;
        stream.pending().push(kernel());
        drop(guards);
        Ok(())
    }
}
