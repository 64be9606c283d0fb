//! Shared helpers: the example modules, compiling, and running ptxas/cuobjdump.

use std::path::{Path, PathBuf};
use std::process::Command;

use anybit_backends::llvm::LlvmBackend;
use anybit_backends::{Backend, CompileOptions, CompiledModule, Target};

/// The backends under test: LLVM, and MLIR when the `mlir` feature is on.
pub fn backends() -> Vec<&'static dyn Backend> {
    // Only the `mlir` feature adds to the list.
    #[cfg_attr(not(feature = "mlir"), allow(unused_mut))]
    let mut backends: Vec<&'static dyn Backend> = vec![&LlvmBackend];
    #[cfg(feature = "mlir")]
    backends.push(&anybit_backends::mlir::MlirBackend);
    backends
}
use anybit_ir::program::Module;
use anybit_ir::text::parse_module;
use anybit_passes::Pass;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every example `.abk` file: (name, module).
pub fn examples() -> Vec<(String, Module)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "abk"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (name, parse_module(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        })
        .collect()
}

/// Compiles with the global accesses vectorized and the `dot`s selected first (the backend
/// emits what the passes selected; without them every access is element by element and every
/// `dot` per thread).
pub fn compile(module: &Module, target: Target) -> CompiledModule {
    compile_with(&LlvmBackend, module, target)
}

/// [`compile`] with a given backend.
pub fn compile_with(backend: &dyn Backend, module: &Module, target: Target) -> CompiledModule {
    let mut module = module.clone();
    anybit_passes::vectorize::Vectorize.run(&mut module).expect("vectorize");
    anybit_passes::select::SelectInstructions.run(&mut module).expect("select-instructions");
    backend
        .compile(&module, target, &CompileOptions::default())
        .unwrap_or_else(|e| panic!("{target} ({}): {e}", backend.name()))
}

/// The snapshot name of a table for `backend` (the LLVM backend's keep their first names).
pub fn snapshot_name(table: &str, backend: &dyn Backend) -> String {
    match backend.name() {
        "llvm" => table.to_string(),
        other => format!("{table}_{other}"),
    }
}

/// A tool of the project's Python environment (`scripts/setup.sh` installs them).
pub fn tool(name: &str) -> PathBuf {
    let path = root().join(".venv/bin").join(name);
    assert!(path.exists(), "{} is missing: run scripts/setup.sh", path.display());
    path
}

/// What ptxas reports for one kernel.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PtxasReport {
    pub registers: u32,
    pub spill_stores: u32,
    pub spill_loads: u32,
    pub stack_bytes: u32,
}

/// Assembles `ptx` for `target` into `cubin` (if given), returning ptxas's resource report,
/// or panicking with ptxas's messages.
pub fn ptxas(ptx: &str, target: Target, cubin: Option<&Path>) -> PtxasReport {
    // Inside the target directory (cargo gives integration tests one), not the system /tmp.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("anybit-ptxas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{:016x}.ptx", fxhash(ptx)));
    std::fs::write(&file, ptx).unwrap();
    let output_file = cubin.map_or_else(|| dir.join("out.cubin"), Path::to_path_buf);
    let output = Command::new(tool("ptxas"))
        .arg(format!("-arch={}", target.name()))
        .arg("-v")
        .arg("-o")
        .arg(&output_file)
        .arg(&file)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr).into_owned() + &String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "ptxas rejected the PTX for {target}:\n{log}");
    let number_before = |text: &str, marker: &str| -> u32 {
        text.find(marker).and_then(|at| text[..at].split_whitespace().last()).and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    let mut report = PtxasReport::default();
    for line in log.lines() {
        if line.contains("Used") && line.contains("registers") {
            report.registers = number_before(line, "registers");
        }
        if line.contains("spill stores") {
            report.stack_bytes = number_before(line, "bytes stack frame");
            report.spill_stores = number_before(line, "bytes spill stores");
            report.spill_loads = number_before(line, "bytes spill loads");
        }
    }
    report
}

fn fxhash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// The SASS of a cubin (cuobjdump -sass).
pub fn sass(cubin: &Path) -> String {
    let output = Command::new(tool("cuobjdump")).arg("-sass").arg(cubin).output().unwrap();
    assert!(output.status.success(), "cuobjdump failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}
