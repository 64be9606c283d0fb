//! `gpu-run PTX [--seed N] [--small] [--only SUBSTRING]`: runs every kernel case on the GPU
//! through anybit's own runtime (no Python, no LLVM) and checks every output element against
//! the case's exact reference and bound.
//!
//! PTX is what `bench/prepare.sh` writes to `bench/out/ptx`: per case, `manifest.json` and one
//! `.ptx` per kernel. Each case's inputs are regenerated from the seed (the same as
//! `gpu-cases data`), uploaded, launched with arguments checked against the manifest on a
//! stream of its own, and the outputs downloaded and compared. Without a CUDA driver or GPU it
//! says so and exits with status 2.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anybit_bench::cases::{Case, Run, Sizes, all_cases};
use anybit_ir::interp::Arg;
use anybit_runtime::{DeviceBuffer, Gpu, GpuKernel, LaunchArg, RuntimeError, Stream};

fn usage() -> ExitCode {
    eprintln!("usage: gpu-run PTX_DIR [--seed N] [--small] [--only SUBSTRING]");
    ExitCode::from(2)
}

/// Launches one run; returns the arguments after it (outputs downloaded).
fn launch(kernel: &GpuKernel, stream: &Stream, run: &Run) -> Result<Vec<Arg>, RuntimeError> {
    let params = &kernel.manifest().params;
    let mut buffers: Vec<Option<DeviceBuffer>> = Vec::with_capacity(run.args.len());
    for arg in &run.args {
        buffers.push(match arg {
            Arg::Buffer(b) => Some(DeviceBuffer::upload(stream, b)?),
            _ => None,
        });
    }
    let mut args: Vec<LaunchArg> = Vec::with_capacity(run.args.len());
    for ((arg, buffer), param) in run.args.iter().zip(buffers.iter_mut()).zip(params) {
        args.push(match (arg, buffer) {
            (Arg::Int(v), _) => LaunchArg::Int(*v),
            (Arg::Float(v), _) => LaunchArg::Float(*v),
            (Arg::Buffer(_), Some(b)) => {
                if param.written {
                    LaunchArg::Output(b)
                } else {
                    LaunchArg::Buffer(b)
                }
            }
            (Arg::Buffer(_), None) => return Err(RuntimeError::HostData("a buffer argument was not uploaded".into())),
        });
    }
    kernel.launch(stream, &mut args)?;
    drop(args);
    let mut after = run.args.clone();
    for check in &run.checks {
        if let (Some(Some(device)), Some(slot)) = (buffers.get(check.param), after.get_mut(check.param)) {
            *slot = Arg::Buffer(device.download(stream)?);
        }
    }
    Ok(after)
}

fn run_case(gpu: &Gpu, case: &Case, ptx: &Path) -> Result<Vec<(String, usize, String)>, String> {
    let module = gpu.load_dir(&ptx.join(&case.name)).map_err(|e| e.to_string())?;
    let name = case.module.kernels.first().map(|k| k.name.clone()).ok_or("the case has no kernel")?;
    let kernel = module.kernel(&name).map_err(|e| e.to_string())?;
    let stream = gpu.new_stream().map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for run in &case.runs {
        let after = launch(kernel, &stream, run).map_err(|e| format!("{} ({}): {e}", case.name, run.label))?;
        let violations = case.violations(run, &after)?;
        let detail = violations.first().map_or_else(String::new, |v| {
            format!("{}[{}] = {} vs {} ± {}", v.output, v.index, v.got, v.expected, v.bound)
        });
        rows.push((run.label.clone(), violations.len(), detail));
    }
    Ok(rows)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(ptx) = args.first().map(PathBuf::from) else { return usage() };
    let (mut seed, mut sizes, mut only) = (2026u64, Sizes::Gpu, String::new());
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        match (flag.as_str(), rest.clone().next()) {
            ("--seed", Some(v)) => match v.parse() {
                Ok(v) => {
                    seed = v;
                    rest.next();
                }
                Err(_) => return usage(),
            },
            ("--only", Some(v)) => {
                only = v.clone();
                rest.next();
            }
            ("--small", _) => sizes = Sizes::Small,
            _ => return usage(),
        }
    }
    let gpu = match Gpu::new(0) {
        Ok(gpu) => gpu,
        Err(e @ (RuntimeError::NoDriver | RuntimeError::NoDevice { .. })) => {
            eprintln!("gpu-run: skipped: no CUDA driver/GPU ({e})");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("gpu-run: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (major, minor) = gpu.compute_capability();
    let (dmaj, dmin) = gpu.driver_version();
    println!("{} (compute capability {major}.{minor}, CUDA driver {dmaj}.{dmin})", gpu.name());
    let cases = match all_cases(sizes, seed) {
        Ok(cases) => cases,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let start = Instant::now();
    let (mut runs, mut failed) = (0usize, 0usize);
    for case in cases.iter().filter(|c| c.name.contains(&only)) {
        match run_case(&gpu, case, &ptx) {
            Ok(rows) => {
                for (label, violations, detail) in rows {
                    runs += 1;
                    failed += usize::from(violations > 0);
                    let verdict =
                        if violations == 0 { "ok".to_owned() } else { format!("FAIL ({violations} elements)") };
                    println!("{:<44} {label:<24} {verdict} {detail}", case.name);
                }
            }
            Err(e) => {
                failed += 1;
                println!("{:<44} ERROR {e}", case.name);
            }
        }
    }
    println!("{runs} runs, {failed} failed, in {:.1} s", start.elapsed().as_secs_f64());
    if failed == 0 && runs > 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
