//! Integration tests of the runtime, in one harness binary: argument checking, the compile
//! cache (threads, processes, corruption, eviction), and the GPU paths — which run where a
//! CUDA driver and device are present and print why they are skipped elsewhere.

mod main {
    mod cache;
    mod gpu;
    mod launch;
    mod typed;
}
