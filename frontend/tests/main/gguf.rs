//! The GGUF reader against files written, quantized and dequantized by the `gguf` PyPI
//! package (`tests/fixtures/gguf_fixture.py`), and against corrupted files.

use std::path::{Path, PathBuf};

use anybit_frontend::gguf::{GgufError, GgufFile, MetaValue};
use anybit_frontend::mapped::Access;
use proptest::prelude::*;

fn fixture(seed: u64) -> PathBuf {
    super::fixtures::fixture("gguf_fixture.py", "gguf", seed)
}

#[test]
fn tensors_decode_bit_for_bit_like_the_gguf_package() {
    for seed in [1u64, 2] {
        let dir = fixture(seed);
        let file = GgufFile::open_with(dir.join("model.gguf"), Access::Map).unwrap_or_else(|e| panic!("{e}"));
        // The same tensors through positioned reads instead of the memory map.
        let read = GgufFile::open_with(dir.join("model.gguf"), Access::Read).unwrap_or_else(|e| panic!("{e}"));
        assert!(file.is_mapped() && !read.is_mapped());
        assert_eq!(file.tensors, read.tensors);
        for tensor in &file.tensors {
            assert_eq!(file.tensor_bytes(tensor).unwrap(), read.tensor_bytes(tensor).unwrap(), "{}", tensor.name);
        }
        assert_eq!(file.version, 3);
        assert_eq!(file.metadata.get("anybit.test.seed"), Some(&MetaValue::Uint(seed)));
        assert_eq!(file.metadata.get("anybit.test.note"), Some(&MetaValue::String("random weights".into())));
        let listing = std::fs::read_to_string(dir.join("tensors.txt")).expect("listing");
        let mut checked = 0;
        for line in listing.lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let (name, type_name) = (parts[0], parts[1]);
            let dims: Vec<u64> = parts[2..].iter().map(|d| d.parse().expect("dim")).collect();
            let tensor = file.tensor(name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(tensor.ggml_type.name(), type_name, "{name}");
            assert_eq!(tensor.dims, dims, "{name}");
            let got = file.tensor_f32(tensor).unwrap_or_else(|e| panic!("{e}"));
            let raw = std::fs::read(dir.join(format!("{name}.f32"))).expect("reference");
            let want: Vec<f32> = raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            assert_eq!(got.len(), want.len(), "{name}");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.to_bits(), w.to_bits(), "{name}[{i}]: anybit {g}, gguf {w}");
            }
            checked += 1;
        }
        assert_eq!(checked, 14);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn bad_files_are_errors_naming_the_file() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("gguf-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let not_gguf = dir.join("not.gguf");
    std::fs::write(&not_gguf, b"GGML\x03\0\0\0").expect("write");
    let message = GgufFile::open(&not_gguf).expect_err("bad magic").to_string();
    assert!(message.contains("not.gguf") && message.contains("magic"), "{message}");
    let missing = GgufFile::open(dir.join("missing.gguf")).expect_err("missing");
    assert!(matches!(missing, GgufError::Io { .. }), "{missing}");
    let version = dir.join("v9.gguf");
    std::fs::write(&version, b"GGUF\x09\0\0\0").expect("write");
    assert!(GgufFile::open(&version).expect_err("version").to_string().contains("version 9"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn good_file() -> Vec<u8> {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES
        .get_or_init(|| {
            let dir = fixture(3);
            let bytes = std::fs::read(dir.join("model.gguf")).expect("model");
            let _ = std::fs::remove_dir_all(&dir);
            bytes
        })
        .clone()
}

/// Where the good file's last tensor data ends.
fn data_end() -> u64 {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("gguf-end-{}.gguf", std::process::id()));
    std::fs::write(&path, good_file()).expect("write");
    let file = GgufFile::open(&path).expect("good file");
    let end = file.tensors.iter().map(|t| t.offset + t.bytes).max().unwrap_or(0);
    let _ = std::fs::remove_file(&path);
    end
}

fn open_bytes(bytes: &[u8], tag: &str) -> Result<(), GgufError> {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "gguf-fuzz-{}-{tag}-{:?}.gguf",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&path, bytes).expect("write");
    let result = GgufFile::open(&path).map(|file| {
        for t in &file.tensors {
            let _ = file.tensor_f32(t);
        }
    });
    let _ = std::fs::remove_file(&path);
    result
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Truncated files: an error (never a panic) whenever a tensor's data is cut; cutting
    /// only the padding after the last tensor is harmless.
    #[test]
    fn truncated_files_never_panic(cut in 0usize..4096) {
        let bytes = good_file();
        let cut = cut.min(bytes.len());
        let result = open_bytes(&bytes[..cut], "cut");
        if (cut as u64) < data_end() {
            prop_assert!(result.is_err());
        }
    }

    /// Corrupted bytes: whatever the reader says, it does not panic or allocate wildly.
    #[test]
    fn corrupted_files_never_panic(flips in proptest::collection::vec((0usize..4096, any::<u8>()), 1..8)) {
        let mut bytes = good_file();
        for (at, value) in flips {
            let n = bytes.len();
            bytes[at % n] = value;
        }
        let _ = open_bytes(&bytes, "flip");
    }
}

/// Every scale-quantized type as canonical quantized weights: each weight `(q − z)·s + o`,
/// formed in f32 as the kernel forms it (the product rounded to f32, then the offset added and
/// rounded), is bit for bit the `gguf` package's dequantized value — so K-quant scales fold
/// exactly, and IQ4_NL's u4 codes through its table times the f16 scale are ggml's values.
#[test]
fn linear_layers_import_exactly() {
    use anybit_frontend::gguf::linear_weights;
    use anybit_ir::DType;
    let dir = fixture(4);
    let file = GgufFile::open(dir.join("model.gguf")).unwrap_or_else(|e| panic!("{e}"));
    let names = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq4_nl"];
    for name in names.map(|t| format!("blk.0.{t}.weight")) {
        let tensor = file.tensor(&name).expect("tensor");
        let weights = linear_weights(&file, tensor, DType::F16).unwrap_or_else(|e| panic!("{e}"));
        let raw = std::fs::read(dir.join(format!("{name}.f32"))).expect("reference");
        let want: Vec<f32> = raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let f = weights.format;
        let value = |dtype: DType, code: u32| dtype.decode_f64(code).expect("code") as f32;
        for n in 0..weights.n {
            for k in 0..weights.k {
                let g = (k / f.group_size) * weights.n + n;
                let code = weights.codes[k * weights.n + n];
                let q = match f.lut {
                    Some(lut) => lut.value(code).expect("a code of the table"),
                    None => value(f.weight, code),
                };
                let z = if f.zero_point { value(f.weight, weights.zeros[g]) } else { 0.0 };
                let scaled = (q - z) * value(f.scale, weights.scales[g]);
                let w = if f.offset { scaled + value(f.scale, weights.offsets[g]) } else { scaled };
                let expected = want[n * weights.k + k];
                assert_eq!(w.to_bits(), expected.to_bits(), "{name} row {n} column {k}: {w} vs {expected}");
            }
        }
    }
    let iq4 = linear_weights(&file, file.tensor("blk.0.iq4_nl.weight").expect("iq4_nl"), DType::BF16).expect("IQ4_NL");
    assert_eq!(iq4.format.lut, Some(anybit_frontend::lut::Lut::IQ4_NL));
    assert_eq!((iq4.format.weight, iq4.format.group_size, iq4.format.scale), ("u4".parse().unwrap(), 32, DType::F16));
    assert_eq!(iq4.format.kernel_name(), "lowbit_matmul_iq4nl_g32_sf16_xbf16");
    let _ = std::fs::remove_dir_all(&dir);
}

/// IQ4_NL data that does not fit its blocks: bytes that are not whole 18-byte blocks, a file
/// cut inside the tensor, rows that are not whole blocks — errors naming the file, the tensor
/// and what is wrong, never a panic.
#[test]
fn bad_iq4_nl_data_is_refused() {
    use anybit_frontend::gguf::{GgmlType, dequantize};
    assert_eq!(dequantize(GgmlType::IQ4_NL, &[0; 35]).unwrap_err(), "35 bytes are not whole IQ4_NL blocks of 18 bytes");
    assert_eq!(dequantize(GgmlType::IQ4_NL, &[]), Ok(vec![]));
    // One block: scale 1.0 (f16 0x3c00), codes 0..15 in the low nibbles and 15..0 in the high.
    let mut block = vec![0x00, 0x3c];
    block.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let values = dequantize(GgmlType::IQ4_NL, &block).unwrap();
    let table = anybit_frontend::lut::Lut::IQ4_NL.values();
    assert_eq!(values[..16], table[..]);
    assert_eq!(values[16..], table.iter().rev().copied().collect::<Vec<_>>()[..]);

    let dir = fixture(5);
    let bytes = std::fs::read(dir.join("model.gguf")).expect("model");
    let file = GgufFile::open(dir.join("model.gguf")).expect("good file");
    let tensor = file.tensor("blk.0.iq4_nl.weight").expect("iq4_nl").clone();
    let cut = dir.join("cut.gguf");
    std::fs::write(&cut, &bytes[..(tensor.offset + tensor.bytes / 2) as usize]).expect("write");
    let message = GgufFile::open(&cut).expect_err("cut inside IQ4_NL data").to_string();
    assert!(message.contains("cut.gguf") && message.contains("`blk.0.iq4_nl.weight`"), "{message}");
    // Rows of 48 elements (the first dimension patched from 64): not whole 32-weight blocks.
    let name = b"blk.0.iq4_nl.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).expect("tensor info") + name.len();
    let mut patched = bytes.clone();
    patched[at + 4..at + 12].copy_from_slice(&48u64.to_le_bytes());
    let ragged = dir.join("ragged.gguf");
    std::fs::write(&ragged, &patched).expect("write");
    let message = GgufFile::open(&ragged).expect_err("ragged rows").to_string();
    assert!(
        message.contains("`blk.0.iq4_nl.weight`")
            && message.contains("IQ4_NL blocks hold 32 elements, but rows have 48"),
        "{message}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
