//! Running the Python fixture scripts of `tests/fixtures/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anybit_frontend::lowbit::QuantizedWeights;

/// The project's Python (`.venv`), or `ANYBIT_PYTHON`.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("ANYBIT_PYTHON") {
        return p.into();
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(path.exists(), "{} is missing: run scripts/setup.sh", path.display());
    path
}

/// Runs `tests/fixtures/SCRIPT DIR SEED` into a fresh directory `TAG-PID-SEED` under the
/// target directory.
pub fn fixture(script: &str, tag: &str, seed: u64) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{tag}-{}-{seed}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(script);
    let out = Command::new(python()).arg(&script).arg(&dir).arg(seed.to_string()).output().expect("python");
    assert!(out.status.success(), "{} failed:\n{}", script.display(), String::from_utf8_lossy(&out.stderr));
    dir
}

/// A file of little-endian f64 values.
pub fn f64s(path: &Path) -> Vec<f64> {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    raw.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes"))).collect()
}

/// `(q − z)·s` of canonical row `k`, column `n` in f64 (exact: a small integer times a scale).
pub fn exact_weight(weights: &QuantizedWeights, k: usize, n: usize) -> f64 {
    let (f, cols) = (&weights.format, weights.n);
    let g = k / f.group_size;
    let q = f64::from(weights.codes[k * cols + n]);
    let z = if f.zero_point { f64::from(weights.zeros[g * cols + n]) } else { 0.0 };
    let s = f.scale.decode_f64(weights.scales[g * cols + n]).expect("scale");
    (q - z) * s
}
