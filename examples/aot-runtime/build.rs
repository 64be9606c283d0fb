//! Compiles the low-bit matmul of `examples/aot/kernels` to PTX for the A100 and H100
//! generations. The generated code names `anybit-macros` and `anybit-runtime` directly
//! (`crate_paths`), not the facade, so the binary needs neither the facade nor LLVM: LLVM links
//! into this build script alone.

use anybit_build::{Builder, Target};

fn main() {
    Builder::new("../aot/kernels")
        .targets([Target::Sm80, Target::Sm90])
        .crate_paths("::anybit_macros", "::anybit_runtime")
        .build();
}
