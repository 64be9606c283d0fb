//! A GGUF layer written and quantized by the `gguf` PyPI package, imported and run through
//! `QuantizedLinear` on the interpreter, against y computed in f64 from the package's own
//! dequantized weights (an independent reference: it shares none of anybit's import code).
//!
//! The tolerance is the documented one: the kernel multiplies in the activation type, so each
//! dequantized weight is rounded to f16 before the MMA (`lowbit`'s reference bound covers
//! the f32 accumulation and the output rounding of those rounded weights), plus that weight
//! rounding itself, `Σ |x_k| · |w_k − f16(w_k)|`, computed here exactly.

use anybit::frontend::gguf::{GgufFile, linear_weights};
use anybit::frontend::lowbit::{reference, round_to};
use anybit::ir::DType;
use anybit::ir::random::SplitMix64;
use anybit::linear::{Device, LinearOptions, QuantizedLinear};

#[test]
fn gguf_layers_run_like_the_gguf_reference() {
    let python = std::env::var_os("ANYBIT_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("gguf-linear-{}", std::process::id()));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("frontend/tests/fixtures/gguf_fixture.py");
    let status = std::process::Command::new(python).arg(&script).arg(&dir).arg("11").status().expect("python");
    assert!(status.success(), "fixture script failed");
    let file = GgufFile::open(dir.join("model.gguf")).unwrap_or_else(|e| panic!("{e}"));
    let mut rng = SplitMix64::new(11);
    for name in ["blk.0.q4_0.weight", "blk.0.q5_0.weight", "blk.0.q8_0.weight"] {
        let tensor = file.tensor(name).expect("tensor");
        let weights = linear_weights(&file, tensor, DType::F16).unwrap_or_else(|e| panic!("{e}"));
        let options = LinearOptions { device: Device::Interpreter, ..LinearOptions::default() };
        let layer = QuantizedLinear::new(&weights, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (m, k, n) = (5, weights.k, weights.n);
        let x: Vec<u16> = (0..m * k).map(|_| DType::F16.encode(rng.uniform(-1.0, 1.0)) as u16).collect();
        let y = layer.forward(&x).unwrap_or_else(|e| panic!("{name}: {e}"));
        // The package's dequantized W, [n][k].
        let raw = std::fs::read(dir.join(format!("{name}.f32"))).expect("reference");
        let w: Vec<f64> =
            raw.chunks_exact(4).map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))).collect();
        let codes: Vec<u32> = x.iter().map(|&c| u32::from(c)).collect();
        let bounds = reference(&weights, &codes, m).expect("reference");
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
    let _ = std::fs::remove_dir_all(&dir);
}
