//! Helpers shared by the test modules.

use std::path::PathBuf;

use anybit_ir::DType;

/// The deterministic generator of the test data, so failures reproduce.
pub use anybit_ir::random::SplitMix64 as Rng;

pub fn dtype(name: &str) -> DType {
    name.parse().unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The Python interpreter of the project's environment (`scripts/setup.sh` makes it), or the
/// one named by `ANYBIT_PYTHON`.
pub fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("ANYBIT_PYTHON") {
        return PathBuf::from(path);
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup.sh (or set ANYBIT_PYTHON) so the reference packages are installed",
        path.display()
    );
    path
}
