//! `anybit import` of Hugging Face checkpoints (GPTQ and AWQ packed by
//! `frontend/tests/fixtures/hf_fixture.py`, compressed-tensors by the package) and
//! `anybit linear` on every layer on the interpreter, against the exact `x · W + b` with the
//! script's weights (an unpacking independent of anybit's); bad checkpoints refused with
//! nothing left behind.
//!
//! The tolerance is `lowbit::reference`'s bound for the kernel's own weights (f32
//! accumulation, y rounded to f16), plus `Σ |x|·|w − w_kernel|` (the script's weights against
//! the kernel's, rounded to f16), plus half an f32 ulp for adding the bias to y in float32.

use std::path::{Path, PathBuf};

use anybit::frontend::hf::HfModel;
use anybit::frontend::lowbit::reference;
use anybit::ir::DType;
use anybit::ir::random::SplitMix64;
use anybit::npy::NpyType;

use super::import_cli::{arg, read_npy, write_npy};
use super::run::{anybit, assert_import_refused, f64s, failure, python_fixture, success};

fn hf_fixture(tag: &str, seed: u64) -> PathBuf {
    python_fixture("hf_fixture.py", tag, seed, None)
}

#[test]
fn imported_checkpoints_run_like_their_weights() {
    let root = hf_fixture("hf-import", 61);
    let mut rng = SplitMix64::new(61);
    let checkpoints = [
        ("gptq-4b-g32-sym", "GPTQ 4b g32 (v1, sym)"),
        ("gptq-3b-g32-v2", "GPTQ 3b g32 (v2, asym)"),
        ("gptq-2b-g16", "GPTQ 2b g16 (v1, asym)"),
        ("gptq-8b-channel", "GPTQ 8b per-channel (v1, sym)"),
        ("gptq-4b-g32-act-order", "GPTQ 4b g32 (v1, asym, act-order)"),
        ("awq-4b-g32", "AWQ 4b g32 (GEMM)"),
        ("ct-int4-group", "compressed-tensors int4 g32 (sym)"),
        ("ct-int4-group-asym", "compressed-tensors int4 g64 (asym)"),
        ("ct-int8-channel", "compressed-tensors int8 per-channel (sym)"),
    ];
    for (checkpoint, source_type) in checkpoints {
        let dir = root.join(checkpoint);
        let out = root.join(format!("{checkpoint}.imported"));
        let run = anybit(&["import", arg(&dir), "-o", arg(&out)]);
        assert!(run.success, "{checkpoint}: {}", run.stderr);
        assert!(
            run.stdout.contains("2 layers") && run.stdout.contains("left out lm_head.weight: F16"),
            "{}",
            run.stdout
        );
        assert!(run.stderr.contains(source_type), "{checkpoint}: {}", run.stderr);
        let act_order = checkpoint.contains("act-order");
        assert_eq!(run.stderr.matches("+ input order").count(), if act_order { 2 } else { 0 }, "{}", run.stderr);
        let model = HfModel::open(&dir).unwrap_or_else(|e| panic!("{e}"));
        for layer in model.layers().unwrap_or_else(|e| panic!("{e}")) {
            let imported = model.linear_weights(&layer, DType::F16).unwrap_or_else(|e| panic!("{e}"));
            let (m, k, n) = (3, layer.k, layer.n);
            let x: Vec<f64> = (0..m * k)
                .map(|_| DType::F16.decode_f64(DType::F16.encode(rng.uniform(-1.0, 1.0))).expect("x"))
                .collect();
            let x_path = root.join("x.npy");
            let y_path = root.join("y.npy");
            write_npy(&x_path, NpyType::F32, vec![m, k], x.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect());
            let args = ["linear", arg(&out), "--layer", &layer.name, "--input", arg(&x_path), "--output", arg(&y_path)];
            let stdout = success(&[&args[..], &["--device", "interp"]].concat());
            assert_eq!(stdout.contains("+ bias"), layer.bias.is_some(), "{stdout}");
            let y = read_npy(&y_path);
            assert_eq!((y.dtype, y.shape.clone()), (NpyType::F32, vec![m, n]));
            let y: Vec<f64> =
                y.data.chunks_exact(4).map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect();
            // The kernel's bound, on x gathered in the input order.
            let order: Vec<usize> = imported
                .input_order
                .as_ref()
                .map_or_else(|| (0..k).collect(), |o| o.iter().map(|&i| i as usize).collect());
            let gathered: Vec<u32> = (0..m * k).map(|i| DType::F16.encode(x[i / k * k + order[i % k]])).collect();
            let bounds = reference(&imported.weights, &gathered, m).expect("reference");
            let w = f64s(&dir.join(format!("{}.w.f64", layer.name)));
            let b = if layer.bias.is_some() { f64s(&dir.join(format!("{}.b.f64", layer.name))) } else { vec![0.0; n] };
            for row in 0..m {
                for col in 0..n {
                    let xs = &x[row * k..(row + 1) * k];
                    let exact: f64 = (0..k).map(|i| xs[i] * w[col * k + i]).sum::<f64>() + b[col];
                    // Canonical row i is input feature order[i].
                    let kernel_rounding: f64 = (0..k)
                        .map(|i| {
                            xs[order[i]].abs() * (w[col * k + order[i]] - imported.weights.dequantized(i, col)).abs()
                        })
                        .sum();
                    let bound = bounds[row * n + col].1 + kernel_rounding + exact.abs() * 2f64.powi(-24);
                    let got = y[row * n + col];
                    assert!(
                        (got - exact).abs() <= bound * (1.0 + 1e-9) + 1e-12,
                        "{checkpoint} {} y[{row}][{col}]: {got}, exact {exact}, bound {bound}",
                        layer.name
                    );
                }
            }
        }
    }
    let listing = success(&["inspect", arg(&root.join("gptq-4b-g32-act-order.imported"))]);
    assert!(listing.contains("lowbit_matmul_u4_g32_sf16_xf16_zp + input order + bias"), "{listing}");
    let listing = success(&["inspect", arg(&root.join("awq-4b-g32"))]);
    assert!(
        listing.contains("AWQ 4b g32 (GEMM) in 1 safetensors file, 9 tensors, 2 quantized linear layers"),
        "{listing}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn bad_checkpoints_are_refused_leaving_nothing() {
    let root = hf_fixture("hf-bad", 62);
    let out = root.join("out");
    let refused = |model: &Path, expect: &[&str]| assert_import_refused(model, &out, expect);
    let gptq = root.join("gptq-4b-g32-sym");
    std::fs::remove_file(gptq.join("config.json")).expect("remove");
    refused(&gptq, &["gptq-4b-g32-sym/config.json: missing"]);
    let ct = root.join("ct-int8-channel");
    let file = ct.join("model.safetensors");
    let bytes = std::fs::read(&file).expect("file");
    std::fs::write(&file, &bytes[..bytes.len() / 2]).expect("write");
    refused(&ct, &["ct-int8-channel/model.safetensors", "not a valid safetensors file"]);
    let awq = root.join("awq-4b-g32");
    let config = std::fs::read_to_string(awq.join("config.json")).expect("config");
    std::fs::write(awq.join("config.json"), config.replace("\"group_size\": 32", "\"group_size\": 16")).expect("write");
    refused(&awq, &["awq-4b-g32/model.safetensors", "`model.layers.0.mlp.down_proj.scales`", "disagrees"]);
    let message = failure(&["inspect", arg(&gptq)]);
    assert!(message.contains("config.json: missing"), "{message}");
    let _ = std::fs::remove_dir_all(&root);
}
