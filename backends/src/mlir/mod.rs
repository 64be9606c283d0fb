//! The MLIR backend: tile IR → MLIR (`llvm` and `nvvm` dialects, built with melior) → LLVM IR
//! (MLIR's translation, in-process) → PTX (LLVM 22's NVPTX target, shared with the LLVM
//! backend).
//!
//! # The model
//!
//! The lowering model is the LLVM backend's (see [`crate::llvm`]): every thread runs the
//! block-level program on its own slots of each register tile, so a tile is, per thread, one
//! MLIR value per slot (never memory), whose coordinates are a dynamic base from `tid.x`
//! plus static per-slot offsets; uniform scalars are single values; element carriers are the
//! same (`i32` normalized integers, `f32`/`f16`/`bf16` natively). The backend-independent
//! plans are shared rather than re-derived: slot coordinates, literal codes, the NaN analysis,
//! which buffers are stored to. What differs is only the emitter: operations of MLIR's `llvm`
//! dialect (arithmetic, memory, inline PTX for predicated accesses) and `nvvm` dialect
//! (special registers), one `llvm.func` per kernel marked `nvvm.kernel` (which MLIR's
//! translation turns into a `ptx_kernel`), in one MLIR module per kernel.
//!
//! Each module is checked by MLIR's verifier, translated to an LLVM module in an inkwell
//! context (`mlirTranslateModuleToLLVMIR`, no external process), then optimized and turned
//! into PTX exactly as the LLVM backend's modules are (`llvm::lower::emit_ptx`), so the LLVM
//! pipeline choice ([`crate::LlvmOptimization`]) applies here too.
//!
//! # Coverage
//!
//! The instruction table is in `lower.rs`: a subset so far (enough for
//! `examples/vector_add.abk`). Anything else is a [`BackendError::Unsupported`] naming the
//! instruction and the value it defines — never code that differs from the interpreter.
//!
//! # Lifetimes
//!
//! melior does not bind a module's lifetime to its context's; [`Session`] owns the context
//! and [`KernelModule`] borrows it, so misuse does not compile (see `session.rs`).
//!
//! # Testing without a GPU
//!
//! With the `Host` platform the same lowering emits a function whose thread and block
//! indices are parameters and whose predicated accesses are masked intrinsics; translated to
//! LLVM IR it runs in the LLVM backend's host harness (one OS thread per GPU thread) and is
//! compared with the interpreter.

mod emit;
pub(crate) mod lower;
mod session;

pub use session::{KernelModule, Session};

use anybit_ir::program::Module;

use crate::llvm::emit::{LowerError, Platform};
use crate::{Backend, BackendError, CompileOptions, CompiledKernel, CompiledModule, Target};

/// The MLIR backend.
#[derive(Clone, Copy, Debug, Default)]
pub struct MlirBackend;

/// Lowers one kernel into a module of `session` for `platform`, verified by MLIR.
pub(crate) fn lower_kernel<'s>(
    session: &'s Session,
    kernel: &anybit_ir::program::Kernel,
    platform: Platform,
) -> Result<KernelModule<'s>, BackendError> {
    let module = lower::build_kernel(session, kernel, platform).map_err(|e| match e {
        LowerError::Unsupported(what) => BackendError::Unsupported { kernel: kernel.name.clone(), what },
        LowerError::Llvm(message) => BackendError::Mlir { kernel: kernel.name.clone(), message },
    })?;
    if !module.verify() {
        let text: String = module.to_mlir_text().chars().take(4000).collect();
        return Err(BackendError::Mlir {
            kernel: kernel.name.clone(),
            message: format!("MLIR's verifier rejects the generated module:\n{text}"),
        });
    }
    Ok(module)
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
            let lowered = lower_kernel(&session, kernel, Platform::Nvptx(target))?;
            let mlir = options.emit_mlir.then(|| lowered.to_mlir_text());
            let context = inkwell::context::Context::create();
            let llvm_module = lowered.to_llvm(&context).ok_or_else(|| BackendError::Mlir {
                kernel: kernel.name.clone(),
                message: "MLIR cannot translate the module to LLVM IR".into(),
            })?;
            let (ptx, llvm_ir) = crate::llvm::lower::emit_ptx(&llvm_module, &kernel.name, target, options)?;
            // Shared memory is not used by the instructions this backend lowers yet.
            Ok(CompiledKernel { name: kernel.name.clone(), ptx, llvm_ir, mlir, shared_memory_bytes: 0 })
        })
    }
}

#[cfg(test)]
mod tests;
