//! # anybit-bench: kernel test cases for the interpreter and the GPU
//!
//! [`cases`] defines, once, what every example kernel and the low-bit matmul of every weight
//! type must compute: inputs generated from a seed, the exact f64 reference of each output,
//! and the bound an implementation must meet (bit-exact where the arithmetic is exact; f32
//! accumulation and output rounding otherwise). The interpreter tests check the interpreter
//! against it; the GPU runner checks compiled PTX against it.
//!
//! The GPU runner is split so that the GPU machine needs neither Rust nor LLVM: this crate's
//! binary `gpu-cases` (which links neither LLVM nor CUDA) writes the kernels as `.abk` files and
//! each run's data — inputs, the interpreter's outputs, references, bounds — as `.npy` files
//! ([`files`]); `anybit compile` turns the kernels into PTX on the build machine; and
//! `bench/gpu_check.py` (Python with CuPy, on the GPU machine) launches the PTX and compares.
//! `bench/gpu.sh` runs the GPU side with one command.

#![warn(missing_docs)]

pub mod cases;
pub mod files;
