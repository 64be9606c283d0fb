//! A safe owner of melior's context and modules, and the in-process translation to LLVM IR.
//!
//! melior does not tie a `Module`'s lifetime to its `Context` (`Module::new` and
//! `Module::from_operation` return a module of *any* lifetime), so a module could outlive the
//! context that owns its storage. Here a [`Session`] owns the context (with the LLVM, NVVM and
//! builtin dialects loaded and their LLVM IR translations registered) and is the only way to
//! make a [`KernelModule`], which borrows the session: dropping or moving the session while a
//! module lives does not compile.
//!
//! ```compile_fail,E0505
//! use anybit_backends::mlir::Session;
//! let session = Session::new();
//! let module = session.module();
//! drop(session); // error: `session` is borrowed by `module`
//! let _ = module.to_mlir_text();
//! ```
//!
//! ```compile_fail,E0515
//! use anybit_backends::mlir::{KernelModule, Session};
//! fn escape() -> KernelModule<'static> {
//!     let session = Session::new();
//!     session.module() // error: returns a value borrowing a local
//! }
//! ```
//!
//! Unsafe code: the translation calls MLIR's C API (`mlirTranslateModuleToLLVMIR`) and hands
//! the LLVM module it returns to inkwell, which is `unsafe` because neither side's types can
//! state the contract. Soundness rests on: the MLIR operation is the live module owned by
//! `self` (borrowed for the call); the LLVM context passed is inkwell's live context, borrowed
//! for `'ctx`, so the returned module is created in it and inkwell's `Module<'ctx>` owns it
//! (disposes it once, before the context); a null result (translation failure) is turned into
//! an error, never wrapped.
#![allow(unsafe_code)]

use melior::Context;
use melior::dialect::DialectRegistry;
use melior::ir::operation::OperationLike;
use melior::ir::{Location, Module};
use melior::utility::{register_all_dialects, register_all_llvm_translations};

/// An MLIR context with the dialects the backend emits loaded: owns everything MLIR allocates.
#[derive(Debug)]
pub struct Session {
    context: Context,
}

impl Default for Session {
    fn default() -> Session {
        Session::new()
    }
}

impl Session {
    /// A context with every upstream dialect registered (the `llvm`, `nvvm` and `builtin`
    /// dialects loaded) and their translations to LLVM IR.
    pub fn new() -> Session {
        let registry = DialectRegistry::new();
        register_all_dialects(&registry);
        let context = Context::new_with_registry(&registry, false);
        for dialect in ["builtin", "llvm", "nvvm"] {
            context.get_or_load_dialect(dialect);
        }
        register_all_llvm_translations(&context);
        Session { context }
    }

    /// The context, for building operations of a module of this session.
    pub(crate) fn context(&self) -> &Context {
        &self.context
    }

    /// An empty module, borrowing this session.
    pub fn module(&self) -> KernelModule<'_> {
        KernelModule { module: Module::new(Location::unknown(&self.context)) }
    }

    /// Parses MLIR text into a module of this session (`None` when it does not parse).
    pub fn parse(&self, text: &str) -> Option<KernelModule<'_>> {
        Module::parse(&self.context, text).map(|module| KernelModule { module })
    }
}

/// An MLIR module that cannot outlive its [`Session`].
#[derive(Debug)]
pub struct KernelModule<'s> {
    module: Module<'s>,
}

impl<'s> KernelModule<'s> {
    /// The underlying module, to build into.
    pub(crate) fn inner(&self) -> &Module<'s> {
        &self.module
    }

    /// Whether MLIR's verifier accepts the module.
    pub fn verify(&self) -> bool {
        self.module.as_operation().verify()
    }

    /// The module in MLIR's textual form (which `mlir-opt` parses back).
    pub fn to_mlir_text(&self) -> String {
        self.module.as_operation().to_string()
    }

    /// Translates the module to LLVM IR in `context` (MLIR's `llvm`/`nvvm` dialects to LLVM
    /// IR, in-process). `None` when MLIR cannot translate it (it reports why through its
    /// diagnostics).
    pub fn to_llvm<'ctx>(&self, context: &'ctx inkwell::context::Context) -> Option<inkwell::module::Module<'ctx>> {
        let operation = self.module.as_operation().to_raw();
        // SAFETY: see the module documentation: a live module and a live LLVM context; the
        // result, when not null, is a fresh module in that context, owned by the wrapper.
        unsafe {
            let raw = mlir_sys::mlirTranslateModuleToLLVMIR(operation, context.raw().cast());
            if raw.is_null() {
                return None;
            }
            Some(inkwell::module::Module::new(raw.cast()))
        }
    }
}
