//! Integration tests of anybit-frontend, in one harness binary.

mod main {
    mod lowbit;
}
