//! Integration tests of anybit-ir, in one harness binary (see the workspace README).

mod main {
    mod builder;
    pub mod common;
    mod exhaustive;
    mod interp;
    mod ml_dtypes;
    mod names;
    mod packing;
    mod text;
    mod verify;
}
