//! Compile latency of the JIT: from a weight-format description to PTX text, cold and warm.
//!
//! ```text
//! cargo run --release --example compile_latency [-- --target sm_90] [--repeat 3] [--n 14336]
//! ```
//!
//! Per weight type (the low-bit matmul, group 128, bf16 scales and activations):
//! - **process**: the first compile in a fresh process with an empty cache directory (this
//!   program run again for that one format): what a host pays for its first kernel, LLVM's
//!   one-time initialization included;
//! - **cold**: a compile in a process that has compiled before, with an empty cache — split
//!   into building the kernel from its format, printing and hashing the key, the passes, and
//!   the backend (LLVM IR, LLVM's optimizations, PTX emission), the rest being the cache's
//!   bookkeeping and its disk write;
//! - **disk**: a new cache over the same directory (what a second process pays);
//! - **memory**: the same cache again.
//!
//! Times are the median of `--repeat` runs (default 3) in milliseconds. The kernels are
//! specialized for the layer's N (`--n`, default 14336, as `QuantizedLinear` does; `--n 0`
//! compiles the generic kernel, whose weight and output accesses keep run-time alignment tests).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anybit::backends::Target;
use anybit::frontend::lowbit::WeightFormat;
use anybit::ir::DType;
use anybit::jit::{Compiled, JitOptions, compile_lowbit_for};
use anybit::runtime::cache::{CacheConfig, CompileCache, Source};

const TYPES: &[&str] = &["u1", "u2", "u3", "u4", "i4", "i5", "u8", "f4e2m1", "f6e3m2", "f8e4m3"];

fn format(weight: &str) -> Result<WeightFormat, String> {
    Ok(WeightFormat {
        weight: weight.parse().map_err(|e| format!("{e}"))?,
        lut: None,
        group_size: 128,
        scale: DType::BF16,
        zero_point: false,
        offset: false,
        activation: DType::BF16,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Compiles `weight` through `cache`: (wall time from the format to the PTX, what the JIT
/// reports), checking where it came from.
fn timed(
    weight: &str,
    n: Option<usize>,
    options: &JitOptions,
    cache: &CompileCache,
    expect: Source,
) -> Result<(Duration, Compiled), String> {
    let start = Instant::now();
    let compiled = compile_lowbit_for(&format(weight)?, n, options, cache).map_err(|e| e.to_string())?;
    let wall = start.elapsed();
    if compiled.source != expect {
        return Err(format!("{weight}: expected a {expect} lookup, got {}", compiled.source));
    }
    if compiled.module.ptx.iter().any(|p| !p.contains(".entry")) {
        return Err(format!("{weight}: no PTX entry"));
    }
    Ok((wall, compiled))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn fresh_dir(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The child: one cold compile in this fresh process, printed as `process-cold <ms>`.
fn child(weight: &str, n: Option<usize>, target: Target, dir: &Path) -> Result<(), String> {
    let cache = CompileCache::new(CacheConfig::in_dir(dir));
    let options = JitOptions { target, ..JitOptions::default() };
    let (wall, _) = timed(weight, n, &options, &cache, Source::Compiled)?;
    println!("process-cold {:.3}", ms(wall));
    Ok(())
}

fn process_cold(weight: &str, n: Option<usize>, target: Target, dir: &Path) -> Result<f64, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let n_text = n.unwrap_or(0).to_string();
    let out = std::process::Command::new(exe)
        .args(["--child", weight, "--n", &n_text, "--target", target.name(), "--dir"])
        .arg(dir)
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("process-cold ")?.trim().parse().ok())
        .ok_or_else(|| format!("{weight}: the child failed: {text}{}", String::from_utf8_lossy(&out.stderr)))
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let target: Target = value("--target").unwrap_or_else(|| "sm_90".into()).parse().map_err(|e| format!("{e}"))?;
    let n: usize = value("--n").map_or(Ok(14336), |v| v.parse().map_err(|_| format!("--n {v}")))?;
    let n = (n > 0).then_some(n);
    if let (Some(weight), Some(dir)) = (value("--child"), value("--dir")) {
        return child(&weight, n, target, Path::new(&dir));
    }
    let repeat: usize = value("--repeat").map_or(Ok(3), |r| r.parse().map_err(|_| format!("--repeat {r}")))?;
    let root = std::env::temp_dir().join(format!("anybit-compile-latency-{}", std::process::id()));
    let options = JitOptions { target, ..JitOptions::default() };
    let n_text = n.map_or_else(|| "any N".to_string(), |n| format!("N = {n}"));
    println!("compile latency, weight format → PTX for {target} ({n_text}), median of {repeat} (ms)");
    println!(
        "{:<8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>7}",
        "weight", "process", "cold", "build", "key", "passes", "backend", "disk", "memory", "PTX KB"
    );
    // LLVM's one-time initialization happens here, not in the first row's cold time.
    timed("u4", n, &options, &CompileCache::new(CacheConfig::memory_only()), Source::Compiled)?;
    let mut colds = Vec::new();
    for &weight in TYPES {
        let mut rows: Vec<[f64; 8]> = Vec::new();
        let mut ptx_bytes = 0;
        for r in 0..repeat {
            let process = process_cold(weight, n, target, &fresh_dir(&root, &format!("{weight}-p{r}")))?;
            let dir = fresh_dir(&root, &format!("{weight}-{r}"));
            let cache = CompileCache::new(CacheConfig::in_dir(&dir));
            let (cold, compiled) = timed(weight, n, &options, &cache, Source::Compiled)?;
            ptx_bytes = compiled.module.ptx.iter().map(String::len).sum::<usize>();
            let t = compiled.timings;
            let (disk, _) = timed(weight, n, &options, &CompileCache::new(CacheConfig::in_dir(&dir)), Source::Disk)?;
            let (memory, _) = timed(weight, n, &options, &cache, Source::Memory)?;
            let build = cold.saturating_sub(t.total);
            rows.push([process, ms(cold), ms(build), ms(t.key), ms(t.passes), ms(t.backend), ms(disk), ms(memory)]);
        }
        let m: Vec<f64> = (0..8).map(|i| median(rows.iter().map(|r| r[i]).collect())).collect();
        colds.push(m[1]);
        println!(
            "{weight:<8} {:>8.1} {:>8.1} {:>7.2} {:>7.2} {:>7.1} {:>8.1} {:>8.2} {:>8.3} {:>7}",
            m[0],
            m[1],
            m[2],
            m[3],
            m[4],
            m[5],
            m[6],
            m[7],
            ptx_bytes / 1024
        );
    }
    let _ = std::fs::remove_dir_all(&root);
    println!("median cold compile over the types: {:.1} ms (target ≤ 50 ms)", median(colds));
    Ok(())
}
