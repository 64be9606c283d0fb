//! # anybit-ir: the tile IR and its data types
//!
//! This crate owns what an anybit program *means*. Today that is the foundation every kernel
//! stands on, the data types:
//!
//! - [`dtype`]: scalar types of any bit width — unsigned integers `u1`…`u32`, two's complement
//!   `i2`…`i32`, and binary floats `fNeEmM` with any split of up to 16 bits (`f4e2m1`, `f6e3m2`,
//!   `f8e4m3`, …) next to `f16`, `bf16` and `f32`. Each type knows its width, sign, bias, range,
//!   smallest subnormal and special-value policy, and has an *exact* codec: decoding gives a
//!   code's value as an exact dyadic rational ([`dtype::ExactValue`]), encoding rounds any `f64`
//!   to the nearest code (ties to even) with a chosen overflow behaviour. The codecs are the
//!   reference the GPU's bit-trick dequantization sequences are proven against, so they are
//!   tested exhaustively over every code of every type up to 12 bits and bit for bit against the
//!   `ml_dtypes` package.
//! - [`packing`]: the in-memory form of low-bit data, a little-endian bit stream with no padding
//!   (element `i` of an N-bit type at bits `[i·N, (i+1)·N)`), with pack/unpack for any N ≤ 32.
//!
//! On these types stands the tile IR:
//!
//! - [`program`]: the program model. A module holds kernels; a kernel has typed parameters, a
//!   grid and a block of warps, and a body of instructions acting on the whole thread block:
//!   uniform scalars, register tiles spread over threads by register layouts, shared tiles,
//!   views of global memory. Values and instructions live in [`arena`]s with typed handles;
//!   values are SSA; control flow is structured (`for` with loop-carried values, `if`).
//!   [`program::infer`] holds the typing rules everything else uses. Lookup-table weight types
//!   (IQ4_NL, NF4) are no data type: their codes are `uN` and the `lookup` instruction decodes
//!   them through a table of literals (see `docs/language.md`).
//! - [`builder`]: a Rust API that builds kernels and types every instruction as it goes.
//! - [`text`]: the kernel language (`.abk`): parser with [`diag`]nostics and canonical printer,
//!   `parse(print(m)) == m`.
//! - [`verify`]: the verifier; its module doc lists every invariant it checks.
//! - [`interp`]: the CPU interpreter, which *defines* what a kernel computes — bit-exact,
//!   deterministic, with packed sub-byte global memory, per-thread register slots, shared memory
//!   with race and initialization checks, and errors that name the instruction.
//!
//! And what a host needs to launch compiled kernels without the compiler: [`target`] (the
//! `sm_XX` targets and their limits) and [`manifest`] (each kernel's parameters and their ABI,
//! grid expressions, threads, shared memory and argument constraints).

#![warn(missing_docs)]

pub mod access;
pub mod arena;
pub mod builder;
pub mod diag;
pub mod dtype;
pub mod interp;
pub mod manifest;
pub mod packing;
pub mod program;
pub mod random;
pub mod target;
pub mod text;
pub mod verify;

pub use dtype::{DType, DTypeError, FloatFormat, SpecialValues};
