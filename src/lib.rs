//! # anybit: a compiler for GPU kernels over data types of any bit width
//!
//! anybit compiles tile-level kernel programs — above all low-bit matrix multiplies
//! `y = x · dequant(W)ᵀ` with 1- to 8-bit integer and float weights and f16/bf16 activations —
//! to PTX. This crate is the facade: it re-exports the compiler's crates under short names, holds
//! what needs the whole compiler at run time — [`jit`] (a module or weight format to PTX through
//! the compile cache) and [`linear`] (a quantized linear layer a host program builds for any
//! weight format and runs on the GPU or the interpreter) — and builds the `anybit` command-line
//! tool.
//!
//! | module | crate | what it holds |
//! |---|---|---|
//! | [`layouts`] | `anybit-layouts` | the layout algebra: register layouts (thread, slot) → coordinates, shared layouts with swizzles, global layouts, PTX fragment layouts |
//! | [`ir`] | `anybit-ir` | data types of any bit width with exact codecs, packed bit streams; the tile IR: program model, builder, kernel language, verifier, CPU interpreter |
//! | [`frontend`] | `anybit-frontend` | kernels generated from weight formats (the low-bit matmul), weight packing, f64 references |
//! | [`passes`] | `anybit-passes` | the pass manager and the optimization passes |
//! | [`backends`] | `anybit-backends` | the LLVM backend: tile IR → PTX, the launch manifest |
//! | [`runtime`] | `anybit-runtime` | CUDA loading and checked launches (cudarc, no LLVM), the compile cache; [`npy`]: NumPy `.npy` files |
//! | [`jit`] | this crate | JIT compilation through the compile cache: module or weight format → PTX |
//! | [`linear`] | this crate | [`linear::QuantizedLinear`]: a quantized linear layer built at run time, on the GPU or the interpreter |
//! | [`import`] | this crate | model import: every quantized layer of a model file to a compiled kernel, re-packed weights and a manifest; imported layers loaded and run |
//! | [`kernel!`] | `anybit-macros` | kernels embedded in Rust, checked at compile time, launched through typed handles (with `anybit-build` for PTX compiled at build time) |
//!
//! The pipeline these pieces build towards: kernel language, builder or model importer → tile IR
//! → verifier → passes (layout inference, e-graph rewrites, vectorization, instruction selection)
//! → LLVM or MLIR → PTX → the CUDA driver.
//!
//! ```
//! use anybit::ir::DType;
//!
//! let e2m1: DType = "f4e2m1".parse()?;
//! assert_eq!(e2m1.decode_f64(0b0111)?, 6.0);
//! assert_eq!(e2m1.encode(2.6), 0b0101); // nearest code: 3.0
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

pub use anybit_backends as backends;
pub use anybit_frontend as frontend;
pub use anybit_ir as ir;
pub use anybit_layouts as layouts;
pub use anybit_passes as passes;
pub use anybit_runtime as runtime;
pub use anybit_runtime::npy;

pub mod import;
pub mod jit;
pub mod linear;
pub mod tune;

/// Embeds an anybit kernel module — inline source or a `.abk` file — checked (parsed and
/// verified) at compile time, as typed launch handles: one struct per kernel whose `launch`
/// takes an [`Executor`](runtime::typed::Executor) and the kernel's arguments with their Rust
/// types (typed buffers for pointers, `&mut` for what the kernel writes; integers and floats
/// for scalars). Kernel errors are compile errors with the kernel's line and column; see
/// [`anybit_macros`] for the input forms.
///
/// ```
/// anybit::kernel!(r#"
/// layout @row = spatial(32)
///
/// kernel scale(x: ptr f32[n], y: ptr f32[n], n: i32, a: f32) grid(cdiv(n, 32)) warps(1) {
///     %gx = global_view %x [%n] strides [1]
///     %gy = global_view %y [%n] strides [1]
///     %b = block_index x
///     %o = mul %b, 32
///     %v = load_global %gx [%o] : f32[32] layout @row
///     %w = mul %v, %a
///     store_global %w, %gy [%o]
/// }
/// "#);
///
/// use anybit::runtime::typed::{Executor, F32};
/// let exec = Executor::interpreter(); // anybit::jit::executor() picks the GPU when there is one
/// let x = exec.upload::<F32>(&[1.0, 2.0, 3.0])?;
/// let mut y = exec.zeros::<F32>(3)?;
/// Scale.launch(&exec, &x, &mut y, 3, 0.5)?;
/// assert_eq!(exec.download_f64(&y)?, [0.5, 1.0, 1.5]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub use anybit_macros::kernel;

/// The README's Rust examples, run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The Rust guide's examples (`docs/rust.md`), run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../docs/rust.md")]
pub struct RustGuideDoctests;
