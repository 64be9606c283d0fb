//! Running the `anybit` binary.

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
