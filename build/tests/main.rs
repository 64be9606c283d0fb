//! Integration tests of the build helper, in one harness binary.

mod main {
    mod builder;
}
