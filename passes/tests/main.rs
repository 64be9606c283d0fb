//! Integration tests of anybit-passes, in one harness binary.

mod main {
    mod dce;
    mod infer;
    mod simplify;
}
