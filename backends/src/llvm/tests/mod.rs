//! Tests of the LLVM backend: PTX for every example (accepted by `ptxas` when it is
//! installed), the codecs and math functions run on the host through the JIT, and whole
//! kernels run on the host against the interpreter.

mod codec;
mod host;
mod kernels;
mod lowbit;
mod ops;
mod ptx;
mod tensors;
