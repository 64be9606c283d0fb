//! # anybit-macros: kernels written inside Rust, checked by `cargo build`
//!
//! [`kernel!`] takes an anybit kernel-language module — inline as a string literal, or from a
//! `.abk` file — parses and verifies it while the macro expands, and turns each kernel into a
//! typed Rust handle. A mistake in the kernel is a compile error in the user's Rust file,
//! carrying the full diagnostic with its `file:line:col`; a wrong argument to a launch is a Rust
//! type error.
//!
//! **What a kernel becomes.** For `kernel vector_add(x: ptr f32[n], y: ptr f32[n], z: ptr
//! f32[n], n: i32) …` the macro generates a unit struct `VectorAdd` with
//!
//! ```text
//! pub fn launch(&self, exec: &Executor, x: &TypedBuffer<F32>, y: &TypedBuffer<F32>,
//!               z: &mut TypedBuffer<F32>, n: i32) -> Result<(), ExecError>
//! ```
//!
//! Pointer parameters become typed buffers of their element type (`&mut` exactly when the
//! kernel stores through them), scalars the Rust integer or float type that holds them (`i32`
//! for `i32`, `u8` for `u4`, `f32` for `f16`); the manifest-checked launch underneath still
//! checks sizes, ranges and constraints. The [`Executor`] decides where it runs: a GPU (PTX
//! embedded ahead of time by `anybit-build`, or JIT-compiled by the facade's executor), or the
//! CPU interpreter. The module's source and compiled forms live in one `static`
//! [`EmbeddedModule`] shared by the module's handles (`VectorAdd::module()`).
//!
//! **Input forms.**
//!
//! ```text
//! kernel!(r#"kernel … { … }"#)                      // inline source
//! kernel!(file = "kernels/vector_add.abk")          // relative to CARGO_MANIFEST_DIR
//! kernel!(file = "…", runtime = ::anybit_runtime)   // the runtime crate's path (default ::anybit::runtime)
//! kernel!(file = "…", targets = [("sm_80", MANIFEST_JSON, [PTX, …]), …])  // AOT forms (anybit-build)
//! ```
//!
//! A file is read at expansion time and also `include_str!`-ed by the expansion, so cargo
//! rebuilds when it changes. Errors never panic the macro: every problem becomes a
//! `compile_error!` at the span of the offending literal. For inline source the message's
//! `file:line:col` is the kernel's position in the Rust file itself.
//!
//! [`Executor`]: ../anybit_runtime/typed/struct.Executor.html
//! [`EmbeddedModule`]: ../anybit_runtime/typed/struct.EmbeddedModule.html

mod generate;
mod input;
mod source;

use proc_macro::TokenStream;

/// Embeds an anybit kernel module, checked at compile time, as typed launch handles (see the
/// crate doc for the input forms and what is generated).
#[proc_macro]
pub fn kernel(input: TokenStream) -> TokenStream {
    expand(input.into()).unwrap_or_else(|error| error.to_compile_error()).into()
}

fn expand(input: proc_macro2::TokenStream) -> syn::Result<proc_macro2::TokenStream> {
    let input: input::KernelInput = syn::parse2(input)?;
    let loaded = source::load(&input)?;
    generate::handles(&input, &loaded)
}
