//! A GGUF layer written and quantized by the `gguf` PyPI package, imported and run through
//! `QuantizedLinear` on the interpreter, against y computed in f64 from the package's own
//! dequantized weights (an independent reference: it shares none of anybit's import code).
//!
//! The tolerance is the documented one: the kernel multiplies in the activation type, so each
//! dequantized weight is rounded to f16 before the MMA (`lowbit`'s reference bound covers
//! the f32 accumulation and the output rounding of those rounded weights), plus that weight
//! rounding itself, `Σ |x_k| · |w_k − f16(w_k)|`, computed here exactly.

use std::path::{Path, PathBuf};

use anybit::frontend::gguf::{GgufFile, linear_weights};
use anybit::frontend::lowbit::{QuantizedWeights, reference, round_to};
use anybit::ir::DType;
use anybit::ir::random::SplitMix64;
use anybit::linear::{Device, LinearOptions, QuantizedLinear};

/// Runs `frontend/tests/fixtures/gguf_fixture.py DIR SEED [KIND]` into a fresh directory
/// named after `tag` under the target directory: `DIR/model.gguf` and the package's
/// dequantized values of every quantized tensor, `DIR/<tensor>.f32`.
pub fn gguf_fixture(tag: &str, seed: u64, kind: Option<&str>) -> PathBuf {
    super::run::python_fixture("gguf_fixture.py", tag, seed, kind)
}

/// The package's dequantized W of tensor `name` in fixture `dir`, [N][K] (GGUF's row order).
pub fn package_weights(dir: &Path, name: &str) -> Vec<f64> {
    let raw = std::fs::read(dir.join(format!("{name}.f32"))).expect("reference");
    raw.chunks_exact(4).map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))).collect()
}

/// Checks y (M × N f16 codes) for x (M × K f16 codes) against the exact product with the
/// package's weights `w` ([N][K]), within the documented bound (see the module doc).
pub fn assert_matches_package(name: &str, weights: &QuantizedWeights, x: &[u16], y: &[u16], w: &[f64]) {
    let (k, n) = (weights.k, weights.n);
    let m = x.len() / k;
    assert_eq!(y.len(), m * n, "{name}: y has {} values", y.len());
    let codes: Vec<u32> = x.iter().map(|&c| u32::from(c)).collect();
    let bounds = reference(weights, &codes, m).expect("reference");
    for row in 0..m {
        for col in 0..n {
            let xs = |i: usize| DType::F16.decode_f64(u32::from(x[row * k + i])).expect("x");
            let exact: f64 = (0..k).map(|i| xs(i) * w[col * k + i]).sum();
            let weight_rounding: f64 =
                (0..k).map(|i| xs(i).abs() * (w[col * k + i] - round_to(DType::F16, w[col * k + i])).abs()).sum();
            let got = DType::F16.decode_f64(u32::from(y[row * n + col])).expect("y");
            let bound = bounds[row * n + col].1 + weight_rounding;
            assert!(
                (got - exact).abs() <= bound * (1.0 + 1e-9) + 1e-12,
                "{name} y[{row}][{col}]: {got}, package reference {exact}, bound {bound}"
            );
        }
    }
}

#[test]
fn gguf_layers_run_like_the_gguf_reference() {
    let dir = gguf_fixture("gguf-linear", 11, None);
    let file = GgufFile::open(dir.join("model.gguf")).unwrap_or_else(|e| panic!("{e}"));
    let mut rng = SplitMix64::new(11);
    for name in ["blk.0.q4_0.weight", "blk.0.q5_0.weight", "blk.0.q8_0.weight", "blk.0.iq4_nl.weight"] {
        let tensor = file.tensor(name).expect("tensor");
        let weights = linear_weights(&file, tensor, DType::F16).unwrap_or_else(|e| panic!("{e}"));
        let options = LinearOptions { device: Device::Interpreter, ..LinearOptions::default() };
        let layer = QuantizedLinear::new(&weights, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
        let x: Vec<u16> = (0..5 * weights.k).map(|_| DType::F16.encode(rng.uniform(-1.0, 1.0)) as u16).collect();
        let y = layer.forward(&x).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_matches_package(name, &weights, &x, &y, &package_weights(&dir, name));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
