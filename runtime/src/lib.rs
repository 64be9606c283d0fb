//! # anybit-runtime: loading and launching compiled kernels, without LLVM
//!
//! The runtime loads PTX through the CUDA driver's JIT (cudarc with dynamic loading, so it
//! builds and its tests run on machines without CUDA), checks launch arguments against a
//! kernel's manifest signature (element types, alignment, divisibility) before launching on a
//! caller's stream, and keeps a compile cache keyed by the canonical IR, target, pass options
//! and compiler version. Without a driver or GPU every entry point returns a typed error that
//! says so.
//!
//! It depends on `anybit-ir` for types and manifests and never on LLVM, so it and the small
//! GPU-side runners built on it stay cheap to build and to copy to a GPU machine.
//!
//! What it holds today: [`npy`], reading and writing NumPy `.npy` files and converting them to
//! and from kernel buffers (the interpreter's and, later, device buffers), which the CLI and
//! the GPU test runner use to exchange inputs and outputs.

#![warn(missing_docs)]

pub mod npy;
