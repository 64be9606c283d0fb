//! The ONNX reader against models built with the `onnx` package
//! (`tests/fixtures/onnx_fixture.py`): every MatMulNBits layer imports to the weights the
//! script dequantized before packing (an independent unpacking), inline and external data
//! alike; bad models are refused naming the file, the node and the tensor; corrupted and
//! truncated bytes never panic.

use std::path::{Path, PathBuf};

use anybit_frontend::onnx::{OnnxError, OnnxModel};
use anybit_ir::DType;
use proptest::prelude::*;

use super::fixtures::{exact_weight, f64s};

fn fixture(seed: u64) -> PathBuf {
    super::fixtures::fixture("onnx_fixture.py", "onnx", seed)
}

#[test]
fn matmul_nbits_layers_import_exactly() {
    let dir = fixture(31);
    let model = OnnxModel::open(dir.join("model.onnx")).unwrap_or_else(|e| panic!("{e}"));
    let external = OnnxModel::open(dir.join("external.onnx")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(model.producer, "anybit onnx_fixture");
    let layers = model.matmul_nbits().unwrap_or_else(|e| panic!("{e}"));
    let listed = std::fs::read_to_string(dir.join("layers.txt")).expect("layers.txt");
    assert_eq!(layers.len(), listed.lines().count());
    assert!(model.initializers().iter().all(|t| !t.external));
    assert!(external.initializers().iter().all(|t| t.external));
    for (layer, line) in layers.iter().zip(listed.lines()) {
        let f: Vec<&str> = line.split(' ').collect();
        let described = [
            layer.name.clone(),
            layer.bits.to_string(),
            layer.block_size.to_string(),
            layer.k.to_string(),
            layer.n.to_string(),
            layer.scale.to_string(),
            u8::from(layer.zero_points.is_some()).to_string(),
            u8::from(layer.bias.is_some()).to_string(),
        ];
        assert_eq!(described.to_vec(), f, "{line}");
        let imported = model.linear_weights(layer, DType::F16).unwrap_or_else(|e| panic!("{e}"));
        let (weights, f) = (&imported.weights, &imported.weights.format);
        assert_eq!((f.weight.to_string(), f.zero_point, f.offset), (format!("u{}", layer.bits), true, false));
        // (q − z)·s from the canonical codes, exact in f64, against the script's weights.
        let w = f64s(&dir.join(format!("{}.w.f64", layer.name)));
        let (k, n) = (weights.k, weights.n);
        for row in 0..n {
            for col in 0..k {
                assert_eq!(exact_weight(weights, col, row), w[row * k + col], "{} w[{row}][{col}]", layer.name);
            }
        }
        match &imported.bias {
            Some(bias) => {
                let want = f64s(&dir.join(format!("{}.b.f64", layer.name)));
                let got: Vec<f64> = bias.iter().map(|&b| f64::from(f32::from_bits(b))).collect();
                assert_eq!(got, want, "{} bias", layer.name);
            }
            None => assert!(layer.bias.is_none()),
        }
        // External data reads the same bytes.
        let same = external.linear_weights(layer, DType::F16).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(same, imported, "{}: external data", layer.name);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_models_are_errors_naming_file_node_and_tensor() {
    let dir = fixture(32);
    let layers_of = |file: &str| -> Result<(), OnnxError> {
        let model = OnnxModel::open(dir.join("bad").join(file))?;
        for layer in model.matmul_nbits()? {
            model.linear_weights(&layer, DType::F16)?;
        }
        Ok(())
    };
    let refused = |file: &str, expect: &[&str]| {
        let message = layers_of(file).map_or_else(|e| e.to_string(), |()| panic!("{file} was accepted"));
        for e in [file, "node `bad_layer`"].iter().chain(expect) {
            assert!(message.contains(e), "expected `{e}` in: {message}");
        }
    };
    refused("bits3.onnx", &["bits = 3"]);
    refused("g_idx.onnx", &["tensor `bad_layer.g_idx`", "g_idx"]);
    refused("b_shape.onnx", &["tensor `bad_layer.B`", "shape [16, 1, 32] disagrees", "expected [16, 2, 16]"]);
    refused("k_attribute.onnx", &["K = 48 is not a multiple of the group size 32"]);
    // External data cut short, or missing: found when the layers are described, before any
    // data is read.
    let data = dir.join("external.data");
    let bytes = std::fs::read(&data).expect("data");
    std::fs::write(&data, &bytes[..bytes.len() - 100]).expect("write");
    let model = OnnxModel::open(dir.join("external.onnx")).unwrap_or_else(|e| panic!("{e}"));
    let message = model.matmul_nbits().expect_err("data cut short").to_string();
    assert!(message.contains("lies outside") && message.contains("external.data"), "{message}");
    std::fs::remove_file(&data).expect("remove");
    let message = model.matmul_nbits().expect_err("missing data").to_string();
    assert!(message.contains("external.onnx") && message.contains("tensor `proj_q4.B`"), "{message}");
    // Not a model at all.
    let message = OnnxModel::open(dir.join("layers.txt")).expect_err("text").to_string();
    assert!(message.contains("layers.txt: not a valid ONNX model"), "{message}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn good_model() -> Vec<u8> {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES
        .get_or_init(|| {
            let dir = fixture(33);
            let bytes = std::fs::read(dir.join("model.onnx")).expect("model");
            let _ = std::fs::remove_dir_all(&dir);
            bytes
        })
        .clone()
}

/// Decodes bytes as a model and imports every layer; the first error, if any.
fn import_bytes(bytes: &[u8]) -> Result<usize, OnnxError> {
    let model = OnnxModel::from_bytes(Path::new("fuzz.onnx"), bytes)?;
    let layers = model.matmul_nbits()?;
    for layer in &layers {
        model.linear_weights(layer, DType::F16)?;
    }
    Ok(layers.len())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Truncated models: an error, never a panic; a cut after the graph (in the trailing
    /// operator-set list) still holds every layer, whole — never some of them.
    #[test]
    fn truncated_models_never_panic(cut in 0usize..12_600) {
        let bytes = good_model();
        let cut = cut.min(bytes.len() - 1);
        let result = import_bytes(&bytes[..cut]);
        prop_assert!(matches!(result, Err(_) | Ok(4)), "{result:?}");
    }

    /// Corrupted bytes: whatever the reader says, it does not panic or allocate wildly.
    #[test]
    fn corrupted_models_never_panic(flips in proptest::collection::vec((0usize..12_500, any::<u8>()), 1..8)) {
        let mut bytes = good_model();
        for (at, value) in flips {
            let n = bytes.len();
            bytes[at % n] = value;
        }
        let _ = import_bytes(&bytes);
    }
}
