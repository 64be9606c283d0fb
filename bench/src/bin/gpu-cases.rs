//! `gpu-cases kernels DIR` writes every case's kernel as DIR/<case>/kernel.abk, and the
//! benchmark modules as DIR/bench_<weight>/kernel.abk with their launch plans in plans.json
//! (with `--schedules m16p1u2,m64p1u2k4`, also DIR/bench_<weight>_<tag>/ for each of those
//! schedules, `k<splits>` for a split of K);
//! `gpu-cases data DIR [--seed N] [--small]` runs every case on the interpreter (in parallel)
//! and writes the runs' inputs, outputs, references and bounds under DIR/<case>/run<i>/.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use anybit_bench::cases::{Sizes, all_cases};
use anybit_bench::files::{write_kernels, write_runs};
use anybit_frontend::lowbit::Schedule;

/// A benchmark variant's tag: a schedule (`m16p2u2`) and optionally a split (`k4`).
fn variant(tag: &str) -> Option<(Schedule, usize)> {
    match tag.rsplit_once('k') {
        Some((schedule, splits)) => Some((Schedule::from_tag(schedule)?, splits.parse().ok().filter(|&s| s > 1)?)),
        None => Some((Schedule::from_tag(tag)?, 1)),
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: gpu-cases kernels DIR [--schedules m16p2u2,...] | gpu-cases data DIR [--seed N] [--small]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(command), Some(dir)) = (args.first(), args.get(1)) else { return usage() };
    let dir = PathBuf::from(dir);
    let mut seed = 2026u64;
    let mut sizes = Sizes::Gpu;
    let mut schedules = Vec::new();
    let mut rest = args[2..].iter();
    while let Some(flag) = rest.next() {
        match (flag.as_str(), rest.clone().next()) {
            ("--seed", Some(value)) => match value.parse() {
                Ok(v) => {
                    seed = v;
                    rest.next();
                }
                Err(_) => return usage(),
            },
            ("--small", _) => sizes = Sizes::Small,
            ("--schedules", Some(value)) => {
                for tag in value.split(',') {
                    match variant(tag) {
                        Some(schedule_and_split) => schedules.push(schedule_and_split),
                        None => {
                            eprintln!(
                                "error: `{tag}` is not a schedule (write m<rows>p<prefetch>u<unroll>, e.g. m16p2u2, \
                                 and k<splits> for a split of K, e.g. m16p2u2k4)"
                            );
                            return ExitCode::from(2);
                        }
                    }
                }
                rest.next();
            }
            _ => return usage(),
        }
    }
    let cases = match all_cases(sizes, seed) {
        Ok(cases) => cases,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match command.as_str() {
        "kernels" => anybit_bench::cases::bench_modules(&schedules).and_then(|bench| {
            write_kernels(&cases, &dir)?;
            for variant in &bench {
                let folder = dir.join(&variant.name);
                std::fs::create_dir_all(&folder).map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
                std::fs::write(folder.join("kernel.abk"), anybit_ir::text::print_module(&variant.module))
                    .and_then(|()| std::fs::write(folder.join("plans.json"), &variant.plans))
                    .map_err(|e| format!("cannot write {}: {e}", folder.display()))?;
            }
            Ok(format!("wrote {} case kernels and {} benchmark kernels to {}", cases.len(), bench.len(), dir.display()))
        }),
        "data" => {
            // The interpreter runs every case; spread them over the cores.
            let next = Mutex::new(0usize);
            let failures = Mutex::new(Vec::new());
            let runs = Mutex::new(0usize);
            let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
            std::thread::scope(|scope| {
                for _ in 0..workers {
                    scope.spawn(|| {
                        loop {
                            let i = {
                                let Ok(mut next) = next.lock() else { return };
                                let i = *next;
                                *next += 1;
                                i
                            };
                            let Some(case) = cases.get(i) else { return };
                            match write_runs(case, &dir) {
                                Ok(n) => {
                                    if let Ok(mut runs) = runs.lock() {
                                        *runs += n;
                                    }
                                }
                                Err(e) => {
                                    if let Ok(mut failures) = failures.lock() {
                                        failures.push(e);
                                    }
                                }
                            }
                        }
                    });
                }
            });
            let failures = failures.into_inner().unwrap_or_default();
            if failures.is_empty() {
                Ok(format!(
                    "wrote {} runs of {} cases to {}",
                    runs.into_inner().unwrap_or(0),
                    cases.len(),
                    dir.display()
                ))
            } else {
                Err(failures.join("\n"))
            }
        }
        _ => return usage(),
    };
    match result {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
