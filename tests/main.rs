//! Integration tests of the `anybit` facade and CLI, in one harness binary.

mod main {
    mod docs;
    mod dtype_cli;
    mod examples;
    mod kernel_cli;
    mod layout_cli;
    mod npy;
    mod passes;
    pub mod run;
}
