//! Integration tests of anybit-ir, in one harness binary (see the workspace README).

mod main {
    pub mod common;
    mod builder;
    mod interp;
    mod text;
    mod verify;
    mod exhaustive;
    mod ml_dtypes;
    mod names;
    mod packing;
}
