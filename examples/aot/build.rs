//! Compiles `kernels/*.abk` to PTX for the A100 and H100 generations when the crate builds.

use anybit_build::{Builder, Target};

fn main() {
    Builder::new("kernels").targets([Target::Sm80, Target::Sm90]).build();
}
