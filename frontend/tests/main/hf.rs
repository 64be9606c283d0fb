//! The Hugging Face checkpoint reader against GPTQ and AWQ checkpoints packed by
//! `tests/fixtures/hf_fixture.py` (following AutoGPTQ's and AutoAWQ's packing) and
//! compressed-tensors checkpoints compressed by the package itself: every layer imports to the
//! script's weights — `(q − z)·s` from the codes before packing, or the package's own
//! decompression (which rounds to the scale dtype) — row for row through the input order;
//! bad checkpoints are refused naming the file and the tensor.

use std::path::{Path, PathBuf};

use anybit_frontend::hf::{HfError, HfModel, SafetensorsFile};
use anybit_frontend::lowbit::round_to;
use anybit_ir::DType;

use super::fixtures::{exact_weight, f64s};

fn fixture(seed: u64) -> PathBuf {
    super::fixtures::fixture("hf_fixture.py", "hf", seed)
}

const CHECKPOINTS: [&str; 9] = [
    "gptq-4b-g32-sym",
    "gptq-3b-g32-v2",
    "gptq-2b-g16",
    "gptq-8b-channel",
    "gptq-4b-g32-act-order",
    "awq-4b-g32",
    "ct-int4-group",
    "ct-int4-group-asym",
    "ct-int8-channel",
];

#[test]
fn quantized_checkpoints_import_exactly() {
    let root = fixture(51);
    for checkpoint in CHECKPOINTS {
        let dir = root.join(checkpoint);
        let model = HfModel::open(&dir).unwrap_or_else(|e| panic!("{e}"));
        let layers = model.layers().unwrap_or_else(|e| panic!("{e}"));
        let listed = std::fs::read_to_string(dir.join("layers.txt")).expect("layers.txt");
        let mut listed: Vec<&str> = listed.lines().collect();
        listed.sort_unstable();
        assert_eq!(layers.len(), listed.len(), "{checkpoint}");
        let package_rounds = checkpoint.starts_with("ct-");
        for (layer, line) in layers.iter().zip(listed) {
            let described =
                format!("{} {} {}{}", layer.name, layer.k, layer.n, if layer.bias.is_some() { " bias" } else { "" });
            assert_eq!(described, line, "{checkpoint}");
            let imported = model.linear_weights(layer, DType::F16).unwrap_or_else(|e| panic!("{e}"));
            let weights = &imported.weights;
            let f = &weights.format;
            assert!(f.zero_point && !f.offset, "{checkpoint}");
            let order: Vec<usize> = match &imported.input_order {
                Some(order) => order.iter().map(|&o| o as usize).collect(),
                None => (0..layer.k).collect(),
            };
            assert_eq!(imported.input_order.is_some(), checkpoint.contains("act-order"), "{checkpoint}");
            let w = f64s(&dir.join(format!("{}.w.f64", layer.name)));
            let (k, n) = (weights.k, weights.n);
            for row in 0..k {
                for col in 0..n {
                    let exact = exact_weight(weights, row, col);
                    let ours = if package_rounds { round_to(f.scale, exact) } else { exact };
                    let want = w[col * k + order[row]];
                    assert_eq!(ours, want, "{checkpoint} {}: w[{}][{col}]", layer.name, order[row]);
                }
            }
            match &imported.bias {
                Some(bias) => {
                    let want = f64s(&dir.join(format!("{}.b.f64", layer.name)));
                    let got: Vec<f64> = bias.iter().map(|&b| f64::from(f32::from_bits(b))).collect();
                    assert_eq!(got, want, "{checkpoint} {} bias", layer.name);
                }
                None => assert!(layer.bias.is_none()),
            }
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// Replaces `from` by `to` in a checkpoint's config.json.
fn edit_config(dir: &Path, from: &str, to: &str) {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).expect("config");
    assert!(text.contains(from), "{from} not in {text}");
    std::fs::write(&path, text.replacen(from, to, 1)).expect("write");
}

fn first_error(dir: &Path) -> String {
    let result = HfModel::open(dir).and_then(|model| {
        for layer in model.layers()? {
            model.linear_weights(&layer, DType::F16)?;
        }
        Ok::<(), HfError>(())
    });
    result.map_or_else(|e| e.to_string(), |()| panic!("{} was accepted", dir.display()))
}

#[test]
fn bad_checkpoints_are_errors_naming_file_and_tensor() {
    let root = fixture(52);
    let expect = |message: String, parts: &[&str]| {
        for p in parts {
            assert!(message.contains(p), "expected `{p}` in: {message}");
        }
    };
    // A missing config.json, an unknown method, an AWQ version that packs otherwise.
    let gptq = root.join("gptq-4b-g32-sym");
    std::fs::rename(gptq.join("config.json"), gptq.join("config.json.away")).expect("rename");
    expect(first_error(&gptq), &["gptq-4b-g32-sym/config.json", "missing"]);
    std::fs::rename(gptq.join("config.json.away"), gptq.join("config.json")).expect("rename");
    edit_config(&gptq, "\"quant_method\": \"gptq\"", "\"quant_method\": \"hqq\"");
    expect(first_error(&gptq), &["config.json", "quantization method `hqq`"]);
    let awq = root.join("awq-4b-g32");
    edit_config(&awq, "\"version\": \"gemm\"", "\"version\": \"gemv\"");
    expect(first_error(&awq), &["config.json", "AWQ version `gemv`"]);
    // Shapes that disagree with the config: a group size of 64 where the scales have 32.
    let v2 = root.join("gptq-3b-g32-v2");
    edit_config(&v2, "\"group_size\": 32", "\"group_size\": 64");
    expect(first_error(&v2), &["model.safetensors", "tensor `model.layers.0.mlp.down_proj.scales`", "disagrees"]);
    // A v2 checkpoint read as v1: a stored zero point of 7 becomes 8, beyond 3 bits.
    edit_config(&v2, "\"group_size\": 64", "\"group_size\": 32");
    edit_config(&v2, "\"gptq_v2\"", "\"gptq\"");
    expect(first_error(&v2), &["qzeros`", "beyond 3 bits"]);
    // A truncated file.
    let ct = root.join("ct-int4-group");
    let file = ct.join("model.safetensors");
    let bytes = std::fs::read(&file).expect("file");
    std::fs::write(&file, &bytes[..bytes.len() - 10]).expect("write");
    expect(first_error(&ct), &["ct-int4-group/model.safetensors", "not a valid safetensors file"]);
    std::fs::write(&file, &bytes[..100]).expect("write");
    expect(first_error(&ct), &["model.safetensors", "does not fit the file"]);
    // Every cut of a good file is an error, never a panic.
    let good = std::fs::read(root.join("awq-4b-g32/model.safetensors")).expect("file");
    let cut = root.join("cut.safetensors");
    for at in (0..good.len()).step_by(97) {
        std::fs::write(&cut, &good[..at]).expect("write");
        assert!(SafetensorsFile::open(&cut).is_err(), "cut at {at}");
    }
    // Act-order whose groups are not all of the group size: input channel 0 moved to the
    // group of channel 1's neighbour group.
    let act = root.join("gptq-4b-g32-act-order");
    let path = act.join("model.safetensors");
    let file = SafetensorsFile::open(&path).expect("file");
    let g_idx = file.tensors.iter().find(|t| t.name == "model.layers.0.self_attn.q_proj.g_idx").expect("g_idx");
    let mut bytes = std::fs::read(&path).expect("file");
    let at = g_idx.offset as usize;
    let first = i32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    bytes[at..at + 4].copy_from_slice(&((first + 1) % 4).to_le_bytes());
    std::fs::write(&path, &bytes).expect("write");
    expect(first_error(&act), &["tensor `model.layers.0.self_attn.q_proj.g_idx`", "does not hold exactly 32"]);
    let _ = std::fs::remove_dir_all(&root);
}

/// The checkpoints of one fixture run, generated once for the property test below.
fn corruption_source() -> &'static (PathBuf, Vec<u8>) {
    static SOURCE: std::sync::OnceLock<(PathBuf, Vec<u8>)> = std::sync::OnceLock::new();
    SOURCE.get_or_init(|| {
        let root = fixture(53);
        let bytes = std::fs::read(root.join("gptq-4b-g32-act-order/model.safetensors")).expect("file");
        (root, bytes)
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Corrupted checkpoint bytes — the safetensors header (its length, its JSON), tensor data,
    /// offsets — give an error or weights, never a panic or a wild allocation. Flips are drawn
    /// mostly from the header, where the structure lives.
    #[test]
    fn corrupted_checkpoints_never_panic(
        flips in proptest::collection::vec((0usize..2048, proptest::prelude::any::<u8>()), 1..8),
    ) {
        let (root, good) = corruption_source();
        let dir = root.join(format!("corrupt-{}", flips.len()));
        let _ = std::fs::create_dir_all(&dir);
        std::fs::copy(root.join("gptq-4b-g32-act-order/config.json"), dir.join("config.json")).expect("config");
        let mut bytes = good.clone();
        let n = bytes.len();
        for (at, value) in flips {
            bytes[at % n] = value;
        }
        std::fs::write(dir.join("model.safetensors"), &bytes).expect("write");
        let _ = HfModel::open(&dir).and_then(|model| {
            for layer in model.layers()? {
                model.linear_weights(&layer, DType::F16)?;
            }
            Ok::<(), HfError>(())
        });
    }
}
