//! The only module of the runtime with `unsafe` code: the CUDA driver calls cudarc's safe API
//! does not cover (or covers only with its `nvrtc` feature): whether the driver library is
//! present, loading PTX with the JIT's logs, looking up and configuring kernels, launching.
//!
//! Why it is sound:
//! - [`driver_present`] only tries to open the library (cudarc's `is_culib_present`); every
//!   other function here is reached only through a [`crate::gpu::Gpu`], which exists only when
//!   that check passed and the driver initialized, so cudarc never panics for want of a driver.
//! - Module and function handles are created and destroyed here only; a [`RawModule`] unloads
//!   its module on drop, with its context bound, and every [`RawFunction`] holds an `Arc` of
//!   its module, so no handle outlives what it points to. The driver's handles may be used from
//!   any thread once the context is bound, which every call here does first (hence the `Send`
//!   and `Sync` impls).
//! - [`launch`] takes a [`CheckedLaunch`]: one ABI word per parameter of the kernel, checked
//!   against its manifest (kinds, scalar ranges, element types, alignment, buffer sizes for the
//!   declared shapes, no overlapping buffers, constraints, grid limits). That check is what
//!   makes the kernel's accesses stay inside the buffers it is given; the words live in a
//!   local array that outlives the call (`cuLaunchKernel` copies them before returning).
#![allow(unsafe_code)]

use std::ffi::{CString, c_void};
use std::sync::{Arc, OnceLock};

use cudarc::driver::sys::{self, CUjit_option, CUresult};
use cudarc::driver::{CudaContext, CudaStream, DriverError};

use crate::launch::{CheckedLaunch, ParamWord};

/// Whether the CUDA driver library (`libcuda.so`) can be loaded; checked once per process.
pub(crate) fn driver_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // SAFETY: only tries to open the library by its known names; no symbol is called.
    *PRESENT.get_or_init(|| unsafe { sys::is_culib_present() })
}

/// A driver error as `CUDA_ERROR_NAME: description`.
pub(crate) fn describe(error: &DriverError) -> String {
    let name =
        error.error_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|_| format!("{:?}", error.0));
    match error.error_string() {
        Ok(text) => format!("{name}: {}", text.to_string_lossy()),
        Err(_) => name,
    }
}

/// The driver's version as (major, minor), e.g. (13, 0).
pub(crate) fn driver_version() -> Result<(u32, u32), DriverError> {
    let mut version = 0i32;
    // SAFETY: writes one int; reached only after `driver_present`.
    unsafe { sys::cuDriverGetVersion(&mut version) }.result()?;
    let version = version.max(0) as u32;
    Ok((version / 1000, version % 1000 / 10))
}

/// `bytes` of device memory on `stream` with unspecified contents (stream-ordered where the
/// device supports it, freed on the stream when dropped): for scratch space a kernel writes
/// before anything reads it.
pub(crate) fn alloc_scratch(
    stream: &Arc<CudaStream>,
    bytes: usize,
) -> Result<cudarc::driver::CudaSlice<u8>, DriverError> {
    // SAFETY: the memory is bytes, for which every bit pattern is a value; reading it before
    // a kernel writes it gives unspecified but valid bytes.
    unsafe { stream.alloc::<u8>(bytes) }
}

/// A loaded module, unloaded on drop.
#[derive(Debug)]
pub(crate) struct RawModule {
    module: sys::CUmodule,
    context: Arc<CudaContext>,
}

// SAFETY: a CUmodule is a driver handle valid in every thread that binds its context, which
// every use here does first.
unsafe impl Send for RawModule {}
// SAFETY: as for Send; the driver's module functions are thread-safe.
unsafe impl Sync for RawModule {}

impl Drop for RawModule {
    fn drop(&mut self) {
        if self.context.bind_to_thread().is_ok() {
            // SAFETY: the handle came from cuModuleLoadDataEx and is unloaded once, here; every
            // function of it holds an Arc of this module, so none is left to use it.
            let _ = unsafe { sys::cuModuleUnload(self.module) };
        }
    }
}

/// Why a module did not load: the driver's error and the JIT's logs.
#[derive(Debug)]
pub(crate) struct LoadFailure {
    /// The driver's error.
    pub error: DriverError,
    /// The JIT's error log, then its info log (may be empty).
    pub log: String,
}

/// Loads PTX text through the driver's JIT, returning its logs on failure.
pub(crate) fn load_ptx(context: &Arc<CudaContext>, ptx: &str) -> Result<RawModule, LoadFailure> {
    let fail = |error: DriverError| LoadFailure { error, log: String::new() };
    context.bind_to_thread().map_err(fail)?;
    let source = CString::new(ptx).map_err(|_| fail(DriverError(CUresult::CUDA_ERROR_INVALID_VALUE)))?;
    const LOG_BYTES: usize = 1 << 14;
    let mut error_log = vec![0u8; LOG_BYTES];
    let mut info_log = vec![0u8; LOG_BYTES];
    let mut options = [
        CUjit_option::CU_JIT_ERROR_LOG_BUFFER,
        CUjit_option::CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
        CUjit_option::CU_JIT_INFO_LOG_BUFFER,
        CUjit_option::CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES,
    ];
    // Sizes are passed (and returned) in the pointer-sized option values themselves.
    let mut values: [*mut c_void; 4] = [
        error_log.as_mut_ptr().cast(),
        LOG_BYTES as *mut c_void,
        info_log.as_mut_ptr().cast(),
        LOG_BYTES as *mut c_void,
    ];
    let mut module: sys::CUmodule = std::ptr::null_mut();
    // SAFETY: `source` is a NUL-terminated PTX text; the log buffers are LOG_BYTES long as the
    // options say, and outlive the call; the option arrays have 4 entries each.
    let result = unsafe {
        sys::cuModuleLoadDataEx(
            &mut module,
            source.as_ptr().cast(),
            options.len() as u32,
            options.as_mut_ptr(),
            values.as_mut_ptr(),
        )
    };
    match result.result() {
        Ok(()) => Ok(RawModule { module, context: context.clone() }),
        Err(error) => {
            let text = |log: &[u8]| {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                String::from_utf8_lossy(&log[..end]).trim().to_owned()
            };
            let log = [text(&error_log), text(&info_log)]
                .into_iter()
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
                .join("\n");
            Err(LoadFailure { error, log })
        }
    }
}

/// A kernel of a loaded module.
#[derive(Clone, Debug)]
pub(crate) struct RawFunction {
    function: sys::CUfunction,
    module: Arc<RawModule>,
}

// SAFETY: as for RawModule; the function lives as long as its module, which this holds.
unsafe impl Send for RawFunction {}
// SAFETY: as for Send.
unsafe impl Sync for RawFunction {}

/// The kernel `name` of `module`.
pub(crate) fn get_function(module: &Arc<RawModule>, name: &str) -> Result<RawFunction, DriverError> {
    module.context.bind_to_thread()?;
    let name = CString::new(name).map_err(|_| DriverError(CUresult::CUDA_ERROR_INVALID_VALUE))?;
    let mut function: sys::CUfunction = std::ptr::null_mut();
    // SAFETY: the module is loaded (it unloads only when its last Arc drops) and `name` is
    // NUL-terminated.
    unsafe { sys::cuModuleGetFunction(&mut function, module.module, name.as_ptr()) }.result()?;
    Ok(RawFunction { function, module: module.clone() })
}

impl RawFunction {
    /// Allows `bytes` of dynamic shared memory per block.
    pub(crate) fn set_max_dynamic_shared_memory(&self, bytes: u32) -> Result<(), DriverError> {
        self.module.context.bind_to_thread()?;
        let attribute = sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES;
        // SAFETY: a valid function handle (see the type) and a plain integer attribute.
        unsafe { sys::cuFuncSetAttribute(self.function, attribute, bytes as i32) }.result()
    }
}

/// Enqueues the kernel on `stream` with checked arguments; returns without synchronizing.
pub(crate) fn launch(function: &RawFunction, stream: &CudaStream, checked: &CheckedLaunch) -> Result<(), DriverError> {
    stream.context().bind_to_thread()?;
    // One 8-byte slot per parameter, the value in native byte order at its start (a scalar
    // fills the first 4 bytes); the driver copies as many bytes as the kernel's parameter has.
    let mut slots: Vec<[u8; 8]> = checked
        .params
        .iter()
        .map(|p| {
            let mut slot = [0u8; 8];
            match *p {
                ParamWord::Scalar(w) => slot[..4].copy_from_slice(&w.to_ne_bytes()),
                ParamWord::Pointer(address) => slot.copy_from_slice(&address.to_ne_bytes()),
            }
            slot
        })
        .collect();
    let mut pointers: Vec<*mut c_void> = slots.iter_mut().map(|s| s.as_mut_ptr().cast()).collect();
    let [gx, gy, gz] = checked.grid;
    // SAFETY: see the module doc: the words match the kernel's parameters one for one (checked
    // against its manifest, whose kernel this function is), `pointers` points into `slots`,
    // both live until the call returns, and the stream belongs to the function's context
    // (checked by the caller).
    unsafe {
        sys::cuLaunchKernel(
            function.function,
            gx,
            gy,
            gz,
            checked.block,
            1,
            1,
            checked.dynamic_shared_memory,
            stream.cu_stream(),
            pointers.as_mut_ptr(),
            std::ptr::null_mut(),
        )
    }
    .result()
}
