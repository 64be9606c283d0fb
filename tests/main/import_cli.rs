//! `anybit import` of a GGUF model written by the `gguf` package and `anybit linear` on its
//! layers, against y from the package's own dequantized weights; bad input refused with
//! nothing left behind.

use std::path::Path;

use anybit::frontend::gguf::{GgufFile, linear_weights};
use anybit::import::ImportedModel;
use anybit::ir::DType;
use anybit::ir::random::SplitMix64;
use anybit::npy::{NpyArray, NpyType};

use super::gguf_linear::{assert_matches_package, gguf_fixture, package_weights};
use super::run::{anybit, assert_import_refused, failure, leftovers, success};

pub fn arg(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

pub fn write_npy(path: &Path, dtype: NpyType, shape: Vec<usize>, data: Vec<u8>) {
    let array = NpyArray::new(dtype, shape, data).expect("npy");
    std::fs::write(path, array.write()).expect("write npy");
}

pub fn read_npy(path: &Path) -> NpyArray {
    NpyArray::read(&std::fs::read(path).expect("read y")).expect("y.npy")
}

#[test]
fn imported_layers_run_like_the_gguf_reference() {
    let dir = gguf_fixture("import", 21, Some("model"));
    let model = dir.join("model.gguf");
    let out = dir.join("imported");
    let run = anybit(&["import", arg(&model), "-o", arg(&out), "--target", "sm_90"]);
    assert!(run.success, "{}", run.stderr);
    assert!(run.stdout.contains("16 layers, 11 kernels for sm_90"), "{}", run.stdout);
    assert!(run.stdout.contains("left out output_norm.weight: F32"), "{}", run.stdout);
    assert!(run.stderr.contains("[layer 16/16] output.weight Q8_0 64×80"), "{}", run.stderr);
    assert!(leftovers(&dir, "imported").is_empty());

    // The weights file holds exactly the buffers the kernel reads; Q8_0 layers share a kernel.
    let imported = ImportedModel::open(&out).unwrap_or_else(|e| panic!("{e}"));
    let file = GgufFile::open(&model).unwrap_or_else(|e| panic!("{e}"));
    let q8 = &imported.manifest.kernels.iter().find(|k| k.format.weight == "i8").expect("i8 kernel").shapes;
    assert_eq!(q8, &[[96, 64], [64, 80]]);
    // The IQ4_NL layers share one lookup-table kernel; the manifest records its table.
    let iq4 = imported.manifest.kernels.iter().find(|k| k.format.lut.is_some()).expect("IQ4_NL kernel");
    assert_eq!((iq4.name.as_str(), &iq4.shapes), ("lowbit_matmul_iq4nl_g32_sf16_xf16", &vec![[64, 64], [256, 96]]));
    let lut = iq4.format.lut.as_ref().expect("table");
    assert_eq!((lut.name.as_str(), iq4.format.weight.as_str()), ("iq4nl", "u4"));
    assert_eq!(lut.values, anybit::frontend::lut::Lut::IQ4_NL.values());
    let source = std::fs::read_to_string(out.join(format!("{}/{}", iq4.dir, iq4.source))).expect("kernel source");
    assert!(source.contains("= lookup %q [-127.0, -104.0,"), "{source}");
    for layer in &imported.manifest.layers {
        let weights = linear_weights(&file, file.tensor(&layer.name).expect("tensor"), DType::F16).expect("import");
        let stored = imported.packed_weights(layer).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stored, weights.pack().expect("pack"), "{}", layer.name);
        assert!(out.join(format!("kernels/{}/{}.ptx", layer.kernel, layer.kernel)).is_file());
    }

    let mut rng = SplitMix64::new(21);
    // One layer of every type (Q4_0, Q5_0, Q8_0, Q4_1, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
    // IQ4_NL twice).
    let cases = [
        ("blk.0.attn_q.weight", "interp"),
        ("blk.1.ffn_up.weight", "auto"),
        ("output.weight", "interp"),
        ("blk.2.attn_q.weight", "interp"),
        ("blk.2.attn_k.weight", "auto"),
        ("blk.2.attn_v.weight", "interp"),
        ("blk.2.attn_output.weight", "interp"),
        ("blk.2.ffn_gate.weight", "interp"),
        ("blk.2.ffn_up.weight", "interp"),
        ("blk.2.ffn_down.weight", "interp"),
        ("blk.3.attn_q.weight", "interp"),
        ("blk.3.ffn_up.weight", "auto"),
    ];
    for (i, (name, device)) in cases.into_iter().enumerate() {
        let weights = linear_weights(&file, file.tensor(name).expect("tensor"), DType::F16).expect("import");
        let (m, k, n) = (5, weights.k, weights.n);
        let x: Vec<u16> = (0..m * k).map(|_| DType::F16.encode(rng.uniform(-1.0, 1.0)) as u16).collect();
        let x_path = dir.join("x.npy");
        write_npy(&x_path, NpyType::F16, vec![m, k], x.iter().flat_map(|c| c.to_le_bytes()).collect());
        let y_path = dir.join("y.npy");
        let args = ["linear", arg(&out), "--layer", name, "--input", arg(&x_path), "--output", arg(&y_path)];
        let stdout = success(&[&args[..], &["--device", device]].concat());
        assert!(stdout.contains(&format!("`{name}`")) && stdout.contains("M = 5"), "{stdout}");
        let y = read_npy(&y_path);
        assert_eq!((y.dtype, y.shape.clone()), (NpyType::F16, vec![m, n]), "{name}");
        let y_codes: Vec<u16> = y.data.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        assert_matches_package(name, &weights, &x, &y_codes, &package_weights(&dir, name));

        if i > 0 {
            continue;
        }
        // The same x as float32: y comes back as float32, the same values.
        let x32: Vec<u8> =
            x.iter().flat_map(|&c| (DType::F16.decode_f64(u32::from(c)).expect("x") as f32).to_le_bytes()).collect();
        write_npy(&x_path, NpyType::F32, vec![m, k], x32);
        success(&[&args[..], &["--device", "interp"]].concat());
        let y32 = read_npy(&y_path);
        assert_eq!((y32.dtype, y32.shape.clone()), (NpyType::F32, vec![m, n]));
        let same = y32.data.chunks_exact(4).zip(&y_codes).all(|(c, &h)| {
            f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])) == DType::F16.decode_f64(u32::from(h)).expect("y")
        });
        assert!(same, "{name}: float32 input gives other values");
    }
    // Tuning measures on a GPU: without one, a clear error and no table; with one, every
    // plan's time and the winners in the table, which `anybit linear` then uses.
    let table = dir.join("tuning.json");
    let tune =
        ["tune", arg(&out), "--layer", "blk.0.attn_q.weight", "--ms", "1,9", "--runs", "3", "--table", arg(&table)];
    if anybit::runtime::gpu_available() {
        let stdout = success(&tune);
        assert!(stdout.contains("← fastest") && stdout.contains("2 winners recorded"), "{stdout}");
        let recorded = anybit::tune::TuningTable::load(&table).expect("table");
        assert_eq!(recorded.shapes.len(), 1);
        assert_eq!(recorded.shapes[0].plans.iter().map(|p| p.m).collect::<Vec<_>>(), [1, 9]);
    } else {
        let message = failure(&tune);
        assert!(message.contains("tuning measures on a GPU"), "{message}");
        assert!(!table.exists());
    }
    let message =
        failure(&["tune", arg(&out), "--layer", "blk.0.attn_q.weight", "--ms", "1,0", "--table", arg(&table)]);
    assert!(message.contains("--ms: `0` is not a row count"), "{message}");
    let listing = success(&["inspect", arg(&out)]);
    assert!(
        listing.contains("16 layers, 11 kernels")
            && listing.contains("lowbit_matmul_u5_g32_sf16_xf16_zp")
            && listing.contains("lowbit_matmul_iq4nl_g32_sf16_xf16"),
        "{listing}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Patches the ggml type of tensor `name` in a GGUF file's bytes.
fn set_tensor_type(bytes: &mut [u8], name: &str, ggml_type: u32) {
    let needle = [&(name.len() as u64).to_le_bytes()[..], name.as_bytes()].concat();
    let at = bytes.windows(needle.len()).position(|w| w == needle).expect("tensor info") + needle.len();
    let dims = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("dims")) as usize;
    let type_at = at + 4 + 8 * dims;
    bytes[type_at..type_at + 4].copy_from_slice(&ggml_type.to_le_bytes());
}

#[test]
fn bad_models_and_inputs_are_refused_leaving_nothing() {
    let dir = gguf_fixture("import-bad", 22, Some("model"));
    let model = dir.join("model.gguf");
    let bytes = std::fs::read(&model).expect("model");
    let out = dir.join("out");
    let refused = |model: &Path, expect: &[&str]| assert_import_refused(model, &out, expect);
    // A truncated file (cut inside the tensor data).
    let truncated = dir.join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() - 1000]).expect("write");
    refused(&truncated, &["truncated.gguf", "`output.weight`", "lies outside the file"]);
    // An unknown quantization type, and a known one that does not import yet.
    let mut unknown = bytes.clone();
    set_tensor_type(&mut unknown, "blk.1.ffn_up.weight", 99);
    let unknown_path = dir.join("unknown.gguf");
    std::fs::write(&unknown_path, &unknown).expect("write");
    refused(&unknown_path, &["unknown.gguf", "`blk.1.ffn_up.weight`", "unknown ggml type 99"]);
    let mut unsupported = bytes.clone();
    set_tensor_type(&mut unsupported, "blk.2.ffn_down.weight", 23); // IQ4_XS: 256-weight blocks, smaller than Q6_K's
    let mut reshaped = bytes.clone();
    let unsupported_path = dir.join("unsupported.gguf");
    std::fs::write(&unsupported_path, &unsupported).expect("write");
    refused(&unsupported_path, &["unsupported.gguf", "`blk.2.ffn_down.weight`", "IQ4_XS weights cannot be imported"]);
    // Not a model anybit imports.
    refused(&dir.join("blk.0.attn_q.weight.f32"), &["not a model anybit imports"]);
    refused(&dir, &["config.json: missing"]);
    // A tensor whose type and shape disagree with the file's layout: as Q8_0 (larger blocks)
    // its data would run into the next tensor's.
    set_tensor_type(&mut reshaped, "blk.0.attn_q.weight", 8);
    let reshaped_path = dir.join("reshaped.gguf");
    std::fs::write(&reshaped_path, &reshaped).expect("write");
    refused(&reshaped_path, &["reshaped.gguf", "`blk.0.attn_q.weight`", "running into tensor `blk.0.ffn_up.weight`"]);

    // An existing output directory is not touched without --force.
    success(&["import", arg(&model), "-o", arg(&out)]);
    let message = failure(&["import", arg(&model), "-o", arg(&out)]);
    assert!(message.contains("exists"), "{message}");
    let run = anybit(&["import", arg(&model), "-o", arg(&out), "--force"]);
    assert!(run.success, "{}", run.stderr);

    // anybit linear: a missing layer, x of the wrong shape or type; no y written.
    let x = dir.join("x.npy");
    let y = dir.join("y.npy");
    write_npy(&x, NpyType::F16, vec![2, 32], vec![0; 2 * 32 * 2]);
    fn linear_args<'a>(out: &'a Path, layer: &'a str, x: &'a Path, y: &'a Path) -> [&'a str; 8] {
        ["linear", arg(out), "--layer", layer, "--input", arg(x), "--output", arg(y)]
    }
    let linear = |layer| linear_args(&out, layer, &x, &y);
    let message = failure(&linear("blk.9.attn_q.weight"));
    assert!(message.contains("no layer `blk.9.attn_q.weight`"), "{message}");
    let message = failure(&linear("blk.0.attn_q.weight"));
    assert!(message.contains("x has shape [2, 32]") && message.contains("needs [M, 64]"), "{message}");
    write_npy(&x, NpyType::I32, vec![2, 64], vec![0; 2 * 64 * 4]);
    let message = failure(&linear("blk.0.attn_q.weight"));
    assert!(message.contains("float16 or float32"), "{message}");
    assert!(!y.exists());
    // A lookup-table layer whose manifest's table disagrees with its name, or whose code type
    // does not index the table: refused naming the manifest, the layer and the mismatch.
    write_npy(&x, NpyType::F16, vec![2, 64], vec![0; 2 * 64 * 2]);
    let manifest_path = out.join("manifest.json");
    let good: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).expect("manifest")).expect("JSON");
    let iq4 = "blk.3.attn_q.weight";
    success(&linear(iq4));
    std::fs::remove_file(&y).expect("y");
    let tamper = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut manifest = good.clone();
        let layers = manifest["layers"].as_array_mut().expect("layers");
        let layer = layers.iter_mut().find(|l| l["name"] == iq4).expect("IQ4_NL layer");
        edit(&mut layer["format"]);
        std::fs::write(&manifest_path, serde_json::to_string_pretty(&manifest).expect("JSON")).expect("write");
        failure(&linear(iq4))
    };
    let message = tamper(&|f| f["lut"]["values"][1] = serde_json::json!(-105.0));
    assert!(message.contains("manifest.json") && message.contains(&format!("layer `{iq4}`")), "{message}");
    assert!(message.contains("lookup table `iq4nl`: its 16 values are not that table's"), "{message}");
    let message = tamper(&|f| f["weight"] = serde_json::json!("u3"));
    assert!(message.contains("the lookup table iq4nl has 16 entries, but u3 has 8 codes"), "{message}");
    let message = tamper(&|f| f["lut"]["values"].as_array_mut().expect("values").truncate(15));
    assert!(message.contains("a lookup table has 2, 4, 8 or 16 entries"), "{message}");
    assert!(!y.exists());
    std::fs::write(&manifest_path, serde_json::to_string_pretty(&good).expect("JSON")).expect("write");
    // A weights file cut short: the layer's buffers are found missing, not read past.
    let weights = out.join("weights.bin");
    let len = std::fs::metadata(&weights).expect("weights").len();
    std::fs::File::options().write(true).open(&weights).expect("open").set_len(len / 2).expect("truncate");
    let message = failure(&linear("output.weight"));
    assert!(message.contains("weights.bin") && message.contains("outside the file"), "{message}");
    assert!(!y.exists());
    let message = failure(&["linear", arg(&dir), "--layer", "x", "--input", arg(&x), "--output", arg(&y)]);
    assert!(message.contains("manifest.json"), "{message}");
    let _ = std::fs::remove_dir_all(&dir);
}
