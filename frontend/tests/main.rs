//! Integration tests of anybit-frontend, in one harness binary.

mod main {
    mod gguf;
    mod lowbit;
    mod onnx;
}
