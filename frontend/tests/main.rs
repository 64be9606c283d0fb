//! Integration tests of anybit-frontend, in one harness binary.

mod main {
    mod fixtures;
    mod gguf;
    mod hf;
    mod lowbit;
    mod onnx;
}
