//! Integration tests of the backends, in one harness binary (it links LLVM statically).

mod main {
    pub mod common;
    mod compile;
    mod ptx;
}
