//! Integration tests of `kernel!`, in one harness binary: expanded handles run on the
//! interpreter (inline source and a file), element markers for low-bit types, and compile-fail
//! cases checked with trybuild.

mod main {
    mod compile_fail;
    mod handles;
}
