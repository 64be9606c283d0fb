//! Writing cases to disk for the GPU runner (`bench/gpu_check.py`), which has no Rust: each
//! case's kernel as an `.abk` file, and each run's inputs, the interpreter's outputs, the f64
//! reference and the bounds as `.npy` files described by a `run.json`.
//!
//! ```text
//! DIR/<case>/kernel.abk
//! DIR/<case>/run<i>/run.json            { "kernel", "label", "args": [...], "checks": [...] }
//! DIR/<case>/run<i>/<param>.npy         inputs, as `anybit run --arg` reads them
//! DIR/<case>/run<i>/<out>.interp.npy    the interpreter's output
//! DIR/<case>/run<i>/<out>.reference.npy the exact result (float64)
//! DIR/<case>/run<i>/<out>.bound.npy     the allowed |output − reference| (float64; absent when exact)
//! ```

use std::path::Path;

use anybit_ir::interp::Arg;
use anybit_ir::program::{Module, ParamType};
use anybit_ir::text::print_module;
use anybit_runtime::npy::buffers::npy_from_buffer;
use anybit_runtime::npy::{NpyArray, NpyType};
use serde_json::json;

use crate::cases::{Bound, Case};

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn f64_array(values: &[f64]) -> NpyArray {
    NpyArray {
        dtype: NpyType::F64,
        shape: vec![values.len()],
        data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// Writes `DIR/<case>/kernel.abk` for every case.
pub fn write_kernels(cases: &[Case], dir: &Path) -> Result<(), String> {
    for case in cases {
        let case_dir = dir.join(&case.name);
        std::fs::create_dir_all(&case_dir).map_err(|e| format!("cannot create {}: {e}", case_dir.display()))?;
        write(&case_dir.join("kernel.abk"), print_module(&case.module).as_bytes())?;
    }
    Ok(())
}

fn kernel_of(module: &Module) -> Result<&anybit_ir::program::Kernel, String> {
    module.kernels.first().ok_or_else(|| "a case without a kernel".to_owned())
}

/// Runs every run of `case` on the interpreter, checks it against the reference (an error if
/// the interpreter itself misses its bound), and writes the run folders.
pub fn write_runs(case: &Case, dir: &Path) -> Result<usize, String> {
    let kernel = kernel_of(&case.module)?;
    let outputs = case.run_interpreter()?;
    for (i, (run, (_, after))) in case.runs.iter().zip(&outputs).enumerate() {
        let violations = case.violations(run, after)?;
        if let Some(v) = violations.first() {
            return Err(format!(
                "{} ({}): the interpreter misses the reference: {} element {}: {} vs {} (bound {})",
                case.name, run.label, v.output, v.index, v.got, v.expected, v.bound
            ));
        }
        let run_dir = dir.join(&case.name).join(format!("run{i}"));
        std::fs::create_dir_all(&run_dir).map_err(|e| format!("cannot create {}: {e}", run_dir.display()))?;
        let mut args = Vec::new();
        for (param, arg) in kernel.params.iter().zip(&run.args) {
            match (param.ty, arg) {
                (ParamType::Scalar(dtype), Arg::Int(v)) => {
                    args.push(json!({ "name": param.name, "kind": "scalar", "dtype": dtype.to_string(), "value": v }))
                }
                (ParamType::Scalar(dtype), Arg::Float(v)) => {
                    args.push(json!({ "name": param.name, "kind": "scalar", "dtype": dtype.to_string(), "value": v }))
                }
                (ParamType::Pointer(dtype), Arg::Buffer(buffer)) => {
                    let file = format!("{}.npy", param.name);
                    write(&run_dir.join(&file), &npy_from_buffer(buffer, None).write())?;
                    args.push(
                        json!({ "name": param.name, "kind": "buffer", "dtype": dtype.to_string(), "file": file }),
                    );
                }
                _ => return Err(format!("{}: argument `{}` does not match its parameter", case.name, param.name)),
            }
        }
        let mut checks = Vec::new();
        for check in &run.checks {
            let param = kernel.params.get(check.param).ok_or("a check of a missing parameter")?;
            let buffer = after.get(check.param).and_then(Arg::buffer).ok_or("a check of a missing output")?;
            let interp = format!("{}.interp.npy", param.name);
            write(&run_dir.join(&interp), &npy_from_buffer(buffer, None).write())?;
            let reference = format!("{}.reference.npy", param.name);
            write(&run_dir.join(&reference), &f64_array(&check.reference).write())?;
            let bound = match &check.bound {
                Bound::Exact => None,
                Bound::PerElement(b) => {
                    let file = format!("{}.bound.npy", param.name);
                    write(&run_dir.join(&file), &f64_array(b).write())?;
                    Some(file)
                }
            };
            checks.push(json!({
                "name": param.name,
                "dtype": buffer.dtype().to_string(),
                "interp": interp,
                "reference": reference,
                "bound": bound,
            }));
        }
        let description = json!({ "kernel": kernel.name, "label": run.label, "args": args, "checks": checks });
        let text = serde_json::to_string_pretty(&description).map_err(|e| e.to_string())?;
        write(&run_dir.join("run.json"), text.as_bytes())?;
    }
    Ok(case.runs.len())
}
