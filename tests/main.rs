//! Integration tests of the `anybit` facade and CLI, in one harness binary.

mod main {
    mod docs;
    mod dtype_cli;
    mod examples;
    pub mod gguf_linear;
    mod gpu;
    mod hf_cli;
    pub mod import_cli;
    mod inspect_cli;
    mod jit;
    mod kernel_cli;
    mod layout_cli;
    pub mod linear;
    mod npy;
    mod onnx_cli;
    mod passes;
    pub mod run;
    mod tune;
}
