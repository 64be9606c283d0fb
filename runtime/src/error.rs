//! The runtime's errors: what went wrong, and where (device, module, kernel, parameter).

use crate::launch::ArgError;

/// Why a runtime operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The CUDA driver library cannot be loaded: this machine has no NVIDIA driver.
    #[error(
        "no CUDA driver: the driver library (libcuda) cannot be loaded on this machine, so no GPU can be used (run on the interpreter instead)"
    )]
    NoDriver,
    /// The driver is there but the device is not.
    #[error("no CUDA device {ordinal}: the driver reports {count} device(s)")]
    NoDevice {
        /// The device asked for.
        ordinal: usize,
        /// How many the driver sees.
        count: usize,
    },
    /// A driver call failed.
    #[error("CUDA {call} failed: {error}")]
    Driver {
        /// What was being done (`cuInit`, `allocating 4096 bytes`).
        call: String,
        /// The driver's error name and description.
        error: String,
    },
    /// The PTX is for a target this device cannot run.
    #[error("kernel `{kernel}`: {message}")]
    Target {
        /// The kernel.
        kernel: String,
        /// Why (target and device capability).
        message: String,
    },
    /// The driver's JIT rejected the PTX.
    #[error("the CUDA driver could not load kernel `{kernel}` ({target}): {error}{}", log_suffix(.log))]
    Jit {
        /// The kernel.
        kernel: String,
        /// The PTX's target.
        target: String,
        /// The driver's error.
        error: String,
        /// The JIT's error and info logs.
        log: String,
    },
    /// A malformed manifest or module (a kernel missing, PTX files not matching).
    #[error("invalid module: {0}")]
    Module(String),
    /// The arguments of a launch do not fit the kernel.
    #[error("kernel `{kernel}`: {error}")]
    Argument {
        /// The kernel.
        kernel: String,
        /// What does not fit.
        error: Box<ArgError>,
    },
    /// The kernel needs more shared memory than the device has.
    #[error("kernel `{kernel}` needs {bytes} bytes of shared memory per block; {device} allows {limit}")]
    SharedMemory {
        /// The kernel.
        kernel: String,
        /// Bytes needed.
        bytes: u64,
        /// The device's limit.
        limit: u64,
        /// The device's name.
        device: String,
    },
    /// A buffer or stream of another device (or context) than the kernel's.
    #[error("{what} belongs to another device or context than the {target}")]
    OtherDevice {
        /// The buffer or stream.
        what: String,
        /// What it was used with.
        target: String,
    },
    /// The launch call itself failed.
    #[error("launching kernel `{kernel}` failed: {error}")]
    Launch {
        /// The kernel.
        kernel: String,
        /// The driver's error.
        error: String,
    },
    /// A kernel failed while running; reported by the next synchronization of its stream.
    #[error(
        "{error} (reported while {call}; kernels launched on this stream since its last synchronization: {kernels})"
    )]
    KernelFailed {
        /// The kernels that may have failed, by name, in launch order.
        kernels: String,
        /// What reported it (`synchronizing the stream`, `copying y to the host`).
        call: String,
        /// The driver's error.
        error: String,
    },
    /// Host data of the wrong size or type for a buffer.
    #[error("{0}")]
    HostData(String),
    /// Reading a module from files failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        error: String,
    },
}

fn log_suffix(log: &str) -> String {
    if log.is_empty() { String::new() } else { format!("\nJIT log:\n{log}") }
}
