//! `anybit inspect` on a GGUF file written by the `gguf` PyPI package, and on bad input.

use super::run::{failure, success};

#[test]
fn inspect_lists_tensors_and_metadata() {
    let python = std::env::var_os("ANYBIT_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("inspect-{}", std::process::id()));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("frontend/tests/fixtures/gguf_fixture.py");
    let status = std::process::Command::new(python).arg(&script).arg(&dir).arg("5").status().expect("python");
    assert!(status.success(), "fixture script failed");
    let model = dir.join("model.gguf");
    let out = success(&["inspect", model.to_str().expect("path")]);
    assert!(out.contains("GGUF v3, 14 tensors"), "{out}");
    assert!(out.contains("blk.0.q4_0.weight") && out.contains("Q4_0     [4, 64] 144 bytes"), "{out}");
    assert!(out.contains("anybit.test.seed = Uint(5)"), "{out}");
    // IQ4_NL (a lookup-table type) imports; the IQ4_NL tensor is 3 rows of 64: 6 blocks of 18 bytes.
    let iq4 = out.lines().find(|l| l.contains("blk.0.iq4_nl.weight")).unwrap_or_else(|| panic!("{out}"));
    assert!(iq4.contains("IQ4_NL   [3, 64] 108 bytes  → lowbit_matmul_iq4nl_g32_sf16_xf16"), "{iq4}");
    // A truncated copy: an error naming the file and the offset, nonzero exit.
    let bytes = std::fs::read(&model).expect("model");
    let truncated = dir.join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..100]).expect("write");
    let message = failure(&["inspect", truncated.to_str().expect("path")]);
    assert!(message.contains("truncated.gguf: at byte"), "{message}");
    let message = failure(&["inspect", script.to_str().expect("path")]);
    assert!(message.contains("only GGUF files"), "{message}");
    let _ = std::fs::remove_dir_all(&dir);
}
