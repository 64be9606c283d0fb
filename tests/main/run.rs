//! Running the `anybit` binary and the Python fixture scripts.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The outcome of one CLI run.
#[derive(Debug)]
pub struct Run {
    pub stdout: String,
    pub stderr: String,
    pub success: bool,
}

pub fn anybit(args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_anybit")).args(args).output().expect("run anybit");
    Run {
        stdout: String::from_utf8(output.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
        success: output.status.success(),
    }
}

/// Runs a command that must fail: nonzero exit, no output, a message on stderr.
pub fn failure(args: &[&str]) -> String {
    let run = anybit(args);
    assert!(!run.success, "{args:?} succeeded: {}", run.stdout);
    assert!(run.stdout.is_empty(), "{args:?} wrote partial output: {}", run.stdout);
    assert!(run.stderr.starts_with("error: "), "{args:?}: {}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{args:?} panicked: {}", run.stderr);
    run.stderr
}

pub fn success(args: &[&str]) -> String {
    let run = anybit(args);
    assert!(run.success, "{args:?} failed: {}", run.stderr);
    run.stdout
}

/// Runs `frontend/tests/fixtures/SCRIPT DIR SEED [KIND]` with the project's Python (or
/// `ANYBIT_PYTHON`) into a fresh directory named after `tag` under the target directory.
pub fn python_fixture(script: &str, tag: &str, seed: u64, kind: Option<&str>) -> PathBuf {
    let python = std::env::var_os("ANYBIT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("frontend/tests/fixtures").join(script);
    let mut command = Command::new(python);
    command.arg(&script).arg(&dir).arg(seed.to_string()).args(kind);
    let status = command.status().expect("python");
    assert!(status.success(), "fixture script {} failed", script.display());
    dir
}

/// A file of little-endian f64 values.
pub fn f64s(path: &Path) -> Vec<f64> {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    raw.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes"))).collect()
}

/// `anybit import MODEL -o OUT` must fail with a message holding every one of `expect`, and
/// leave neither OUT nor a staging directory beside it.
pub fn assert_import_refused(model: &Path, out: &Path, expect: &[&str]) {
    let arg = |p: &Path| p.to_str().expect("UTF-8 path").to_string();
    let message = failure(&["import", &arg(model), "-o", &arg(out)]);
    for e in expect {
        assert!(message.contains(e), "expected `{e}` in: {message}");
    }
    assert!(!out.exists(), "{} was left behind", out.display());
    let (dir, name) = (out.parent().expect("parent"), out.file_name().expect("name").to_string_lossy());
    assert!(leftovers(dir, &name).is_empty(), "staging directories left behind");
}

/// Files in `dir` whose names start with `.{name}.importing`: staging directories left behind.
pub fn leftovers(dir: &Path, name: &str) -> Vec<PathBuf> {
    let prefix = format!(".{name}.importing");
    std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix)))
        .collect()
}
