//! # anybit-passes: the optimization pipeline between the tile IR and the backends
//!
//! A pass takes a verified module of the tile IR (`anybit-ir`) and returns a module that still
//! verifies and still means the same thing: running the CPU interpreter before and after a pass
//! on the same random inputs gives the same outputs, bit for bit. That is how every pass here is
//! tested.
//!
//! The pass manager runs named passes from plain per-optimization-level lists and runs the IR
//! verifier after each one in debug builds and tests, naming the pass whose output failed. The
//! passes it will hold, in pipeline order:
//!
//! - **layout inference**: fills every register and shared layout the author left out, from
//!   per-instruction rules (MMA operand fragments, vector-friendly loads, bank-conflict-free
//!   swizzles), using the algebra of `anybit-layouts`;
//! - **e-graph rewrites**: index arithmetic, and the search for the cheapest bit-trick sequence
//!   that dequantizes each low-bit type to f16/bf16, proven by exhaustive evaluation;
//! - **vectorization**: the widest legal global, shared and `cp.async` accesses;
//! - **instruction selection**: `dot` to an MMA variant, shared loads to `ldmatrix` where the
//!   register layout divides the instruction's fragment layout;
//! - **pipelining and shared-memory planning**.
//!
//! The crate is empty until the tile IR's program model exists; it depends on `anybit-ir` and
//! `anybit-layouts` only, and nothing below it depends on it.
