//! The LLVM backend: tile IR → LLVM IR (inkwell) → PTX (LLVM 22's NVPTX target).
//!
//! One LLVM module per kernel, whose entry (calling convention `ptx_kernel`) is named like the
//! kernel; LLVM's `default<O3>` pipeline (or, for run-time compilation, a short one:
//! `LlvmOptimization::Fast`) runs on it before PTX is emitted for the target
//! (`sm_XX`, `+ptxYY` from [`Target`]). Parameters follow the manifest's ABI: pointers are
//! `noalias` global pointers, every scalar a 32-bit word (integers extended, floats as their
//! code).
//!
//! # The model
//!
//! Every thread runs the block-level program on **its own slots**: a register tile of layout
//! `L` is, in each thread, a Rust `Vec` of LLVM values, slot `i` holding element
//! `L.map(tid, i)` — never an LLVM array or `alloca`, so tiles live in registers. The
//! coordinates of a thread's slots are a dynamic base per dim (digits of `tid.x`, computed
//! once in the kernel's prologue) plus static per-slot offsets (`layout.rs`). Uniform scalars
//! are single values. How each instruction maps is tabulated in `lower.rs`; the pieces:
//!
//! - `arith.rs`: value carriers (integers in normalized `i32`s; `f32`/`f16`/`bf16` natively;
//!   every other float type as its code in an `i32`) and exact elementwise arithmetic,
//!   comparisons and casts, as the interpreter defines them;
//! - `dequant.rs`: casts of viewed packed weights to `f16`/`bf16` by the programs the
//!   dequantization search selected (`anybit_passes::dequant`): `LOP3`/`PRMT`/`HFMA2` pairs;
//! - `codec.rs`: exact encoders and decoders of every float format as branch-free integer IR
//!   (tested over every code of every type of at most 12 bits on the host);
//! - `mathfn.rs`: `exp`, `exp2`, `log`, `log2`, `tanh` in software (≤ 1 ulp in `f32`);
//! - `nan.rs`: where computed NaNs must get the canonical NaN's bits (lazily, at stores and
//!   `view`s and where computed and loaded values merge);
//! - `memory.rs`: global views, loads and stores of any element width (predicated, vectorized
//!   runs, atomic sub-byte stores), the shared-memory plan, shared accesses (swizzles,
//!   `ldmatrix`), `copy_async` (`cp.async` when possible);
//! - `tensor.rs`: `view`, `broadcast`, `reduce` (shuffles and scratch), layout conversions
//!   through the scratch area;
//! - `dot.rs`: `dot`, by `mma.sync` when the layouts are (or are converted to) fragments,
//!   else per thread over k;
//! - `emitter.rs`: the emitter interface (the `Emit` trait) all of the above is written
//!   against, shared with the MLIR backend, which implements it with melior;
//! - `emit.rs`, `address.rs`: the inkwell emitter (block parameters as φ-nodes) and the one
//!   module with `unsafe` (GEPs);
//! - `lower.rs`: the driver, values, control flow, and the ordering of global accesses.
//!
//! # Testing without a GPU
//!
//! The same lowering has a `Host` platform: the kernel is JIT-compiled for the machine that
//! runs the tests and executed with one OS thread per GPU thread — thread and block indices
//! become parameters, barriers a real barrier, warp shuffles, `ldmatrix` and `mma` calls into
//! the harness that exchange values among a warp's threads (`tests/host.rs`). Every example,
//! the low-bit matmul for every weight type, and kernels exercising every instruction on many
//! types are run that way and compared with the interpreter bit for bit; each of them also
//! goes through `ptxas`. What the host cannot check is the GPU's own behaviour: the tensor
//! cores' summation order inside an `mma` (see `dot.rs`) and the hardware's memory system.

mod address;
mod arith;
mod codec;
mod dequant;
mod dot;
pub(crate) mod emit;
pub(crate) mod emitter;
pub(crate) mod layout;
pub(crate) mod lower;
mod mathfn;
mod memory;
pub(crate) mod nan;
mod tensor;

use anybit_ir::program::Module;

use crate::{Backend, BackendError, CompileOptions, CompiledKernel, CompiledModule, Target};

/// The LLVM backend.
#[derive(Clone, Copy, Debug, Default)]
pub struct LlvmBackend;

impl Backend for LlvmBackend {
    fn name(&self) -> &'static str {
        "llvm"
    }

    fn compile(
        &self,
        module: &Module,
        target: Target,
        options: &CompileOptions,
    ) -> Result<CompiledModule, BackendError> {
        crate::compile_each_kernel_in_parallel(module, target, |kernel| {
            let lowered = lower::compile_kernel(kernel, target, options)?;
            Ok(CompiledKernel {
                name: kernel.name.clone(),
                ptx: lowered.ptx,
                llvm_ir: lowered.llvm_ir,
                mlir: None,
                shared_memory_bytes: lowered.shared_memory_bytes,
            })
        })
    }
}

#[cfg(test)]
pub(crate) mod tests;
