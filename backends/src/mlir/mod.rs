//! The MLIR backend: tile IR → MLIR (`llvm` and `nvvm` dialects, built with melior) → LLVM IR
//! (MLIR's translation, in-process) → PTX (LLVM 22's NVPTX target, shared with the LLVM
//! backend).
//!
//! # The model: one lowering, two emitters
//!
//! This backend has no lowering of its own. The per-thread lowering of `crate::llvm` (every
//! instruction: carriers and exact arithmetic, codecs, dequantization programs, global and
//! shared accesses with their selections, `copy_async`, `ldmatrix`, `mma`, `reduce`,
//! `broadcast`, loops and branches, the ordering of global accesses by barriers) is written
//! against an emitter interface (`llvm/emitter.rs`, the `Emit` trait); the LLVM backend
//! implements it with inkwell, this one with melior (`emit.rs`). So both backends compile the
//! same kernels into the same instructions, and every choice the passes recorded (`via
//! vector(n)`, `via async`, `via ldmatrix`, `via mma`, `via dequant`) is carried out the same
//! way.
//!
//! What this emitter builds: one MLIR module per kernel holding one `llvm.func` marked
//! `nvvm.kernel` (MLIR's translation makes it a `ptx_kernel`). Special registers are `nvvm`
//! dialect operations (`nvvm.read.ptx.sreg.tid.x`, `…ctaid.{x,y,z}`); arithmetic, memory,
//! conversions and control flow are `llvm` dialect operations, with block arguments where
//! the LLVM backend has φ-nodes; NVVM and LLVM intrinsics (`mma`, `ldmatrix`, `cp.async`,
//! barriers, shuffles, `prmt`, `fma`, …) are `llvm.call_intrinsic`; predicated global accesses
//! and fp8 pair conversions are `llvm.inline_asm` (the same PTX text as the LLVM backend's);
//! the exact codecs and math functions are internal `always_inline` `llvm.func`s; the shared
//! memory, the zero page and the sink are `llvm.mlir.global`s. Constants are placed in the
//! function's entry block, where they dominate every use (as LLVM's constants do).
//!
//! Each module is checked by MLIR's verifier, translated to an LLVM module in an inkwell
//! context (`mlirTranslateModuleToLLVMIR`, no external process), then optimized and turned
//! into PTX exactly as the LLVM backend's modules are (`llvm::lower::emit_ptx`), so the LLVM
//! pipeline choice ([`crate::LlvmOptimization`]) applies here too.
//!
//! # Coverage
//!
//! Every instruction the LLVM backend lowers, on every type it lowers: all the example
//! kernels (`vector_add`, `rms_norm`, `matmul_f16`, `lowbit_matmul_u4_g128`) and the low-bit
//! matmul of every weight type the frontend builds (u1…u8, i2…i8, sub-byte and byte floats,
//! zero points, offsets, f16/bf16/f32 scales, specialized for N or not), for every target.
//! What neither backend lowers (arithmetic on float types whose values do not fit `f64`,
//! …) is a [`BackendError::Unsupported`] naming the instruction and the value it defines —
//! never code that differs from the interpreter.
//!
//! # Lifetimes
//!
//! melior does not bind a module's lifetime to its context's; [`Session`] owns the context
//! and [`KernelModule`] borrows it, so misuse does not compile (see `session.rs`).
//!
//! # Testing without a GPU
//!
//! With the `Host` platform the same lowering emits a function whose thread and block
//! indices and shared memory are parameters and whose barriers, shuffles, `ldmatrix` and
//! `mma` are calls into the LLVM backend's host harness; translated to LLVM IR it runs there
//! (one OS thread per GPU thread) and is compared with the interpreter — every host-run test
//! of the LLVM backend runs through this backend too (see `tests`).

pub(crate) mod emit;
mod session;

pub use session::{KernelModule, Session};

use anybit_ir::program::Module;

use crate::llvm::emit::{LowerError, Platform};
use crate::{Backend, BackendError, CompileOptions, CompiledKernel, CompiledModule, Target};

/// The MLIR backend.
#[derive(Clone, Copy, Debug, Default)]
pub struct MlirBackend;

/// Lowers one kernel into a module of `session` for `platform`, verified by MLIR; returns the
/// module and the shared memory the kernel uses, in bytes.
pub(crate) fn lower_kernel<'s>(
    session: &'s Session,
    kernel: &anybit_ir::program::Kernel,
    platform: Platform,
) -> Result<(KernelModule<'s>, usize), BackendError> {
    let module = session.module();
    let em = emit::Em::new(session.context(), module.inner().body(), platform);
    let (em, shared_bytes) = crate::llvm::lower::build_kernel(em, kernel).map_err(|e| match e {
        LowerError::Unsupported(what) => BackendError::Unsupported { kernel: kernel.name.clone(), what },
        LowerError::Llvm(message) => BackendError::Mlir { kernel: kernel.name.clone(), message },
    })?;
    drop(em);
    if !module.verify() {
        let text: String = module.to_mlir_text().chars().take(4000).collect();
        return Err(BackendError::Mlir {
            kernel: kernel.name.clone(),
            message: format!("MLIR's verifier rejects the generated module:\n{text}"),
        });
    }
    Ok((module, shared_bytes))
}

impl Backend for MlirBackend {
    fn name(&self) -> &'static str {
        "mlir"
    }

    fn compile(
        &self,
        module: &Module,
        target: Target,
        options: &CompileOptions,
    ) -> Result<CompiledModule, BackendError> {
        let session = Session::new();
        crate::compile_each_kernel(module, target, |kernel| {
            let (lowered, shared_memory_bytes) = lower_kernel(&session, kernel, Platform::Nvptx(target))?;
            let mlir = options.emit_mlir.then(|| lowered.to_mlir_text());
            let context = inkwell::context::Context::create();
            let llvm_module = lowered.to_llvm(&context).ok_or_else(|| BackendError::Mlir {
                kernel: kernel.name.clone(),
                message: "MLIR cannot translate the module to LLVM IR".into(),
            })?;
            let (ptx, llvm_ir) = crate::llvm::lower::emit_ptx(&llvm_module, &kernel.name, target, options)?;
            Ok(CompiledKernel { name: kernel.name.clone(), ptx, llvm_ir, mlir, shared_memory_bytes })
        })
    }
}

#[cfg(test)]
pub(crate) mod tests;
