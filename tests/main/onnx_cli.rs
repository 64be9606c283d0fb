//! `anybit import` of an ONNX model with `MatMulNBits` layers built by the `onnx` package, and
//! `anybit linear` on each layer against onnxruntime's y for the same x; bad models refused
//! with nothing left behind.
//!
//! The tolerance: both results are compared with the exact `y = x · W + b` (f64, from the
//! weights the fixture script dequantized before packing), and may differ by the sum of their
//! bounds. anybit's: `lowbit::reference`'s bound on the kernel's weights (f32 accumulation, the
//! rounding of y to f16), plus `Σ |x|·|w − w_kernel|` (the weights as the kernel rounds them to
//! f16), plus half an ulp of y's element type for adding the bias. onnxruntime's: f32
//! accumulation `2·K·2⁻²⁴·Σ|x·w|`, for float16 models the same weight rounding to f16, and
//! half an ulp of its output type for its output and for its bias addition each.

use std::path::{Path, PathBuf};

use anybit::frontend::lowbit::{reference, round_to};
use anybit::frontend::onnx::OnnxModel;
use anybit::ir::DType;
use anybit::npy::{NpyArray, NpyType};

use super::import_cli::{arg, read_npy};
use super::run::{anybit, assert_import_refused, f64s, failure, leftovers, python_fixture, success};

fn onnx_fixture(tag: &str, seed: u64) -> PathBuf {
    python_fixture("onnx_fixture.py", tag, seed, None)
}

/// An f16 or f32 array's values.
fn values(a: &NpyArray) -> Vec<f64> {
    match a.dtype {
        NpyType::F16 => a
            .data
            .chunks_exact(2)
            .map(|c| DType::F16.decode_f64(u32::from(u16::from_le_bytes([c[0], c[1]]))).expect("f16"))
            .collect(),
        NpyType::F32 => {
            a.data.chunks_exact(4).map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect()
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn half_ulp(dtype: NpyType, v: f64) -> f64 {
    let (mantissa, min_exp) = if dtype == NpyType::F16 { (10, -14) } else { (23, -126) };
    let e = if v == 0.0 { min_exp } else { (v.abs().log2().floor() as i32).max(min_exp) };
    2f64.powi(e - mantissa - 1)
}

#[test]
fn imported_matmul_nbits_layers_run_like_onnxruntime() {
    let dir = onnx_fixture("onnx-import", 41);
    let model = dir.join("model.onnx");
    let out = dir.join("imported");
    let run = anybit(&["import", arg(&model), "-o", arg(&out), "--target", "sm_90"]);
    assert!(run.success, "{}", run.stderr);
    assert!(run.stdout.contains("4 layers, 4 kernels for sm_90"), "{}", run.stdout);
    assert!(run.stdout.contains("left out relu: Relu (not a quantized linear layer)"), "{}", run.stdout);
    assert!(run.stderr.contains("proj_q2 MatMulNBits(2b, block 16) 64×40 → lowbit_matmul_u2_g16_sf32_xf16_zp + bias"));
    assert!(leftovers(&dir, "imported").is_empty());

    let onnx = OnnxModel::open(&model).unwrap_or_else(|e| panic!("{e}"));
    let layers = onnx.matmul_nbits().unwrap_or_else(|e| panic!("{e}"));
    for (i, layer) in layers.iter().enumerate() {
        let name = layer.name.as_str();
        let x_path = dir.join(format!("{name}.x.npy"));
        let y_path = dir.join(format!("{name}.anybit.npy"));
        let device = if i == 0 { "auto" } else { "interp" };
        let args = ["linear", arg(&out), "--layer", name, "--input", arg(&x_path), "--output", arg(&y_path)];
        let stdout = success(&[&args[..], &["--device", device]].concat());
        assert_eq!(stdout.contains("+ bias"), layer.bias.is_some(), "{stdout}");
        let (x, ours, theirs) = (read_npy(&x_path), read_npy(&y_path), read_npy(&dir.join(format!("{name}.y.npy"))));
        let (k, n) = (layer.k, layer.n);
        let m = x.shape[0];
        assert_eq!((ours.dtype, ours.shape.clone()), (theirs.dtype, vec![m, n]), "{name}");
        let (x, ours, theirs) = (values(&x), values(&ours), values(&theirs));
        let w = f64s(&dir.join(format!("{name}.w.f64")));
        let b = if layer.bias.is_some() { f64s(&dir.join(format!("{name}.b.f64"))) } else { vec![0.0; n] };
        let weights = onnx.linear_weights(layer, DType::F16).expect("weights").weights;
        let x_codes: Vec<u32> = x.iter().map(|&v| DType::F16.encode(v)).collect();
        let bounds = reference(&weights, &x_codes, m).expect("reference");
        let output = read_npy(&dir.join(format!("{name}.y.npy"))).dtype;
        for row in 0..m {
            for col in 0..n {
                let xs = &x[row * k..(row + 1) * k];
                let ws = |kk: usize| w[col * k + kk];
                let exact: f64 = xs.iter().enumerate().map(|(kk, xv)| xv * ws(kk)).sum::<f64>() + b[col];
                let magnitude: f64 = xs.iter().enumerate().map(|(kk, xv)| (xv * ws(kk)).abs()).sum();
                let kernel_rounding: f64 = xs
                    .iter()
                    .enumerate()
                    .map(|(kk, xv)| xv.abs() * (ws(kk) - weights.dequantized(kk, col)).abs())
                    .sum();
                let f16_rounding: f64 = xs
                    .iter()
                    .enumerate()
                    .map(|(kk, xv)| xv.abs() * (ws(kk) - round_to(DType::F16, ws(kk))).abs())
                    .sum();
                let ours_bound = bounds[row * n + col].1 + kernel_rounding + half_ulp(output, exact);
                let f16_model = if output == NpyType::F16 { f16_rounding } else { 0.0 };
                let theirs_bound =
                    2.0 * k as f64 * 2f64.powi(-24) * magnitude + f16_model + 2.0 * half_ulp(output, exact);
                let (a, o) = (ours[row * n + col], theirs[row * n + col]);
                assert!(
                    (a - o).abs() <= (ours_bound + theirs_bound) * (1.0 + 1e-9),
                    "{name} y[{row}][{col}]: anybit {a}, onnxruntime {o}, exact {exact}, bounds {ours_bound} + {theirs_bound}"
                );
            }
        }
    }
    let listing = success(&["inspect", arg(&model)]);
    assert!(listing.contains("5 nodes, 4 quantized linear layers"), "{listing}");
    assert!(listing.contains("MatMulNBits(8b, block 64)  [32, 128] 4416 bytes  → lowbit_matmul_u8_g64_sf32_xf16_zp"));
    let listing = success(&["inspect", arg(&out)]);
    assert!(listing.contains("lowbit_matmul_u4_g32_sf16_xf16_zp + bias"), "{listing}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_onnx_models_are_refused_leaving_nothing() {
    let dir = onnx_fixture("onnx-bad", 42);
    let out = dir.join("out");
    let refused = |model: &Path, expect: &[&str]| assert_import_refused(model, &out, expect);
    let bad = dir.join("bad");
    refused(&bad.join("bits3.onnx"), &["bits3.onnx", "node `bad_layer`", "bits = 3"]);
    refused(&bad.join("g_idx.onnx"), &["g_idx.onnx", "tensor `bad_layer.g_idx`"]);
    refused(&bad.join("b_shape.onnx"), &["b_shape.onnx", "tensor `bad_layer.B`", "disagrees"]);
    refused(&bad.join("k_attribute.onnx"), &["k_attribute.onnx", "`bad_layer`", "not a multiple"]);
    let bytes = std::fs::read(dir.join("model.onnx")).expect("model");
    let truncated = dir.join("truncated.onnx");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    refused(&truncated, &["truncated.onnx", "not a valid ONNX model"]);
    // External data cut short: found while planning, before anything is compiled.
    let data = dir.join("external.data");
    let data_bytes = std::fs::read(&data).expect("data");
    std::fs::write(&data, &data_bytes[..data_bytes.len() - 100]).expect("write");
    refused(&dir.join("external.onnx"), &["external.onnx", "external.data", "lies outside"]);
    let message = failure(&["inspect", arg(&bad.join("bits3.onnx"))]);
    assert!(message.contains("bits3.onnx: node `bad_layer`"), "{message}");
    let _ = std::fs::remove_dir_all(&dir);
}
