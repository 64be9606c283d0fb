//! # anybit-backends: from the optimized tile IR to PTX
//!
//! A backend takes a verified, fully laid-out module (every tensor has its layout, every
//! instruction its selected machine form, as decided by `anybit-passes`) and a target
//! (`sm_80` … `sm_90a`), and produces PTX text per module plus a manifest of its kernels.
//!
//! Two backends will live here behind cargo features: `llvm` (the default; inkwell with LLVM 22's
//! NVPTX target, in-process) and `mlir` (melior with MLIR 22; the `llvm` and `nvvm` dialects).
//! Both emit what the passes decided and decide nothing themselves, so their outputs can be
//! compared. Offline checks of their output (ptxas, SASS inspection) live in this crate's tests.
//!
//! The crate links LLVM only once a backend exists; crates that must stay small (the runtime,
//! GPU-side test runners) never depend on it.
