//! Integration tests of the `anybit` facade and CLI, in one harness binary.

mod main {
    mod dtype_cli;
    mod examples;
    mod layout_cli;
    pub mod run;
}
