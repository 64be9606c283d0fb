//! Integration tests of the `anybit` facade and CLI, in one harness binary.

mod main {
    mod docs;
    mod dtype_cli;
    mod examples;
    mod gguf_linear;
    mod gpu;
    mod inspect_cli;
    mod jit;
    mod kernel_cli;
    mod layout_cli;
    pub mod linear;
    mod npy;
    mod passes;
    pub mod run;
}
