//! # anybit-runtime: loading and launching compiled kernels, without LLVM
//!
//! The runtime is what a host program needs after compilation: it loads PTX through the CUDA
//! driver, launches kernels with arguments checked against their manifest, and caches compiled
//! modules. It depends on `anybit-ir` (types, buffers, the manifest and targets) and never on
//! LLVM, so it — and the small GPU-side runners built on it — stays cheap to build and to copy
//! to a GPU machine.
//!
//! - [`gpu`]: devices, streams, device buffers, modules and launches, through cudarc with the
//!   driver loaded at run time. Everything builds and every test runs on machines without
//!   CUDA: without a driver or a device each entry point returns [`RuntimeError::NoDriver`] or
//!   [`RuntimeError::NoDevice`] (the driver library is looked for before cudarc is touched,
//!   since cudarc panics without one). PTX is loaded through the driver's JIT — refused with a
//!   clear message when it targets a newer GPU than the device, the JIT's log returned when the
//!   driver rejects it. Launches go on the caller's stream and return without synchronizing;
//!   an error a kernel raises is reported at the stream's next synchronization with the names
//!   of the kernels launched since the last one.
//! - [`launch`]: what can be decided about a launch without a GPU: the arguments checked
//!   against the kernel's manifest (kinds, scalar ranges, element types, alignment, buffer
//!   sizes for the declared shapes, no overlapping buffers, constraints such as divisibility),
//!   the parameter words in the manifest's ABI, the grid from the manifest's expressions, and
//!   PTX targets against compute capabilities. The checked launch is the one thing the
//!   `unsafe` driver call accepts.
//! - [`cache`]: the compile cache, in memory and on disk (a per-user directory, or
//!   `$ANYBIT_CACHE_DIR`), keyed by a hash of what the compiler's output depends on, with
//!   atomic writes, integrity-checked entries (a corrupt one is recompiled, never trusted) and
//!   least-recently-used eviction. The compiler itself comes from the caller as a closure.
//! - [`typed`]: typed kernels — element markers, typed buffers, modules embedded in a binary
//!   (source plus PTX compiled ahead of time) and the executor that runs them on a GPU or the
//!   interpreter; what `anybit::kernel!` and `anybit-build` generate code against.
//! - [`npy`]: NumPy `.npy` files to and from kernel buffers, which the CLI and the GPU test
//!   runner use to exchange inputs and outputs.
//!
//! `unsafe` code is denied in the workspace; the one exception is the private `driver`
//! module (module loading and `cuLaunchKernel`), whose soundness rests on [`launch`]'s checks.

#![warn(missing_docs)]

pub mod cache;
mod driver;
mod error;
pub mod gpu;
pub mod launch;
pub mod npy;
pub mod typed;

pub use cache::{CacheConfig, CacheKey, CachedModule, CompileCache, Lookup, Source};
pub use error::RuntimeError;
pub use gpu::{DeviceBuffer, Gpu, GpuKernel, GpuModule, LaunchArg, Stream, gpu_available};
pub use launch::ArgError;
