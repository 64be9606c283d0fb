//! Tests of the LLVM backend: PTX for every example (accepted by `ptxas` when it is
//! installed), the codecs and math functions run on the host through the JIT, and whole
//! kernels run on the host against the interpreter. The lowering is shared with the MLIR
//! backend: with the `mlir` feature, every example and host-run kernel here goes through
//! both backends.

mod codec;
pub(crate) mod host;
pub(crate) mod kernels;
pub(crate) mod lowbit;
mod ops;
pub(crate) mod ptx;
mod tensors;

/// The backends under test: the LLVM backend, and the MLIR backend with the `mlir` feature.
pub(crate) fn backends() -> Vec<&'static dyn crate::Backend> {
    // Only the `mlir` feature adds to the list.
    #[cfg_attr(not(feature = "mlir"), allow(unused_mut))]
    let mut backends: Vec<&'static dyn crate::Backend> = vec![&crate::llvm::LlvmBackend];
    #[cfg(feature = "mlir")]
    backends.push(&crate::mlir::MlirBackend);
    backends
}

/// The host runners of the backends under test (the same order as [`backends`]).
pub(crate) fn host_runners() -> Vec<kernels::HostRunner> {
    // Only the `mlir` feature adds to the list.
    #[cfg_attr(not(feature = "mlir"), allow(unused_mut))]
    let mut runners: Vec<kernels::HostRunner> = vec![host::run_on_host];
    #[cfg(feature = "mlir")]
    runners.push(crate::mlir::tests::run_mlir_on_host);
    runners
}

/// The kernel with its global accesses vectorized and its `dot`s selected (`via …`, as `-O1`
/// and up decide), so host runs exercise the backend's vector and `mma` paths; the
/// interpreter runs it too and checks every access the vectorizer proved aligned.
pub(crate) fn selected(kernel: &anybit_ir::program::Kernel) -> anybit_ir::program::Kernel {
    let module = anybit_ir::program::Module { layouts: vec![], kernels: vec![kernel.clone()] };
    selected_module(&module).kernels.pop().expect("one kernel")
}

/// [`selected`] for every kernel of a module.
pub(crate) fn selected_module(module: &anybit_ir::program::Module) -> anybit_ir::program::Module {
    use anybit_passes::Pass;
    let mut module = module.clone();
    anybit_passes::vectorize::Vectorize.run(&mut module).expect("vectorize");
    anybit_passes::select::SelectInstructions.run(&mut module).expect("select-instructions");
    module
}
