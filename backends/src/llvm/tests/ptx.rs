//! Every example kernel compiles for every target with every backend, and `ptxas` accepts
//! the PTX.

use std::path::{Path, PathBuf};
use std::process::Command;

use anybit_ir::program::Module;

use crate::{CompileOptions, Target};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

pub(crate) fn example(name: &str) -> Module {
    let path = workspace().join("examples").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    anybit_ir::text::parse_module(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub(crate) fn ptxas() -> Option<PathBuf> {
    let p = workspace().join(".venv/bin/ptxas");
    p.exists().then_some(p)
}

/// Runs ptxas on a PTX text; returns its `-v` report.
pub(crate) fn check_ptx(ptx: &str, target: Target, what: &str) -> Option<String> {
    let ptxas = ptxas()?;
    let dir = std::env::temp_dir().join(format!("anybit-ptx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    // Tests run in parallel and compile the same kernels: a file per call.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = dir.join(format!("{what}-{}-{call}.ptx", target.name()));
    std::fs::write(&file, ptx).ok()?;
    let out = Command::new(ptxas)
        .arg(format!("-arch={}", target.name()))
        .arg("-v")
        .arg("-o")
        .arg("/dev/null")
        .arg(&file)
        .output()
        .ok()?;
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "ptxas rejected {what} for {target}:\n{report}\n(PTX in {})", file.display());
    // Kept only when ptxas rejects it (above), for the report.
    let _ = std::fs::remove_file(&file);
    Some(report)
}

fn compile_all(module: &Module, what: &str) {
    let module = &super::selected_module(module);
    for backend in super::backends() {
        for target in Target::ALL {
            let compiled = backend
                .compile(module, target, &CompileOptions::default())
                .unwrap_or_else(|e| panic!("{what} for {target} ({}): {e}", backend.name()));
            for k in &compiled.kernels {
                assert!(k.ptx.contains(&format!(".entry {}", k.name)), "{what}: no entry {}", k.name);
                if let Some(report) = check_ptx(&k.ptx, target, &k.name)
                    && matches!(target, Target::Sm80 | Target::Sm90)
                {
                    eprintln!("{what} {target} ({}):\n{report}", backend.name());
                }
            }
        }
    }
}

#[test]
fn vector_add() {
    compile_all(&example("vector_add.abk"), "vector_add");
}

#[test]
fn rms_norm() {
    compile_all(&example("rms_norm.abk"), "rms_norm");
}

#[test]
fn matmul_f16() {
    compile_all(&example("matmul_f16.abk"), "matmul_f16");
}

#[test]
fn lowbit_matmul_u4_g128() {
    compile_all(&example("lowbit_matmul_u4_g128.abk"), "lowbit_matmul_u4_g128");
}
