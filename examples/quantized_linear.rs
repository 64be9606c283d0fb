//! A host program using anybit as a library: it builds a quantized linear layer for each of
//! several weight formats at run time (packing the weights once and JIT-compiling the kernel
//! through the compile cache), runs `forward`, and checks the result.
//!
//! ```text
//! cargo run --release --example quantized_linear [-- M K N]
//! ```
//!
//! With a GPU the layers run there and are compared with the same layers on the CPU
//! interpreter and with the exact f64 reference; without one they run on the interpreter and
//! are compared with the reference (the kernel is still compiled to PTX, for sm_90, to show
//! the JIT and the cache). Each output element must be within its bound of the reference (f32
//! accumulation plus the output rounding); the exit status is nonzero when one is not.
//! `ANYBIT_CACHE_DIR` moves the on-disk compile cache (an empty value turns it off).

use std::process::ExitCode;
use std::time::Instant;

use anybit::frontend::lowbit::{QuantizedWeights, WeightFormat, reference};
use anybit::ir::DType;
use anybit::ir::random::SplitMix64;
use anybit::jit::{JitOptions, compile_lowbit_for};
use anybit::linear::{Device, LinearOptions, QuantizedLinear};
use anybit::runtime::CompileCache;

/// One row of the table.
struct Row {
    kernel: String,
    compile: String,
    forward_ms: f64,
    ratio: f64,
    vs_interpreter: Option<f64>,
}

fn decode(act: DType, codes: &[u16]) -> Vec<f64> {
    codes.iter().map(|&c| act.decode_f64(u32::from(c)).unwrap_or(f64::NAN)).collect()
}

fn run(
    format: WeightFormat,
    (m, k, n): (usize, usize, usize),
    device: &Device,
    rng: &mut SplitMix64,
) -> Result<Row, String> {
    let weights = QuantizedWeights::random(format, k, n, rng).map_err(|e| e.to_string())?;
    let options = LinearOptions { device: device.clone(), ..LinearOptions::default() };
    let layer = QuantizedLinear::new(&weights, &options).map_err(|e| e.to_string())?;
    let compile = match layer.compile_info() {
        Some(info) => format!("{} {} ms {} KB", info.source, info.milliseconds, info.ptx_bytes / 1024),
        None => {
            // No GPU: compile anyway (the kernel the layer would run, specialized for its N),
            // to show the JIT and the cache at work.
            let compiled = compile_lowbit_for(&format, Some(n), &JitOptions::default(), CompileCache::global())
                .map_err(|e| e.to_string())?;
            let bytes: usize = compiled.module.ptx.iter().map(String::len).sum();
            format!("{} {} ms {} KB", compiled.source, compiled.timings.total.as_millis(), bytes / 1024)
        }
    };
    let act = format.activation;
    let x: Vec<u16> = (0..m * k).map(|_| act.encode(rng.uniform(-1.0, 1.0)) as u16).collect();
    let start = Instant::now();
    let y = layer.forward(&x).map_err(|e| e.to_string())?;
    let forward_ms = start.elapsed().as_secs_f64() * 1e3;
    let x32: Vec<u32> = x.iter().map(|&c| u32::from(c)).collect();
    let expected = reference(&weights, &x32, m).map_err(|e| e.to_string())?;
    let got = decode(act, &y);
    let ratio = got
        .iter()
        .zip(&expected)
        .map(|(&g, &(exact, bound))| if g == exact { 0.0 } else { (g - exact).abs() / bound })
        .fold(0.0, f64::max);
    let vs_interpreter = if layer.is_gpu() {
        let interpreter = LinearOptions { device: Device::Interpreter, ..LinearOptions::default() };
        let twin = QuantizedLinear::new(&weights, &interpreter).map_err(|e| e.to_string())?;
        let other = decode(act, &twin.forward(&x).map_err(|e| e.to_string())?);
        Some(got.iter().zip(&other).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max))
    } else {
        None
    };
    Ok(Row { kernel: format.kernel_name(), compile, forward_ms, ratio, vs_interpreter })
}

fn main() -> ExitCode {
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let device = Device::detect();
    let on_gpu = matches!(device, Device::Gpu(_));
    let (m, k, n) = match sizes.as_slice() {
        [m, k, n] => (*m, *k, *n),
        [] if on_gpu => (16, 2048, 1024),
        [] => (4, 512, 256),
        _ => {
            eprintln!("usage: quantized_linear [M K N]");
            return ExitCode::FAILURE;
        }
    };
    // (weight type, group size, zero points, activation)
    let formats = [
        ("u4", 128, true, DType::F16),
        ("i4", 128, false, DType::BF16),
        ("u3", 64, true, DType::F16),
        ("i5", 32, false, DType::F16),
        ("f4e2m1", 32, false, DType::BF16),
        ("f6e3m2", 64, false, DType::F16),
        ("f8e4m3", 128, false, DType::BF16),
        ("u8", 128, true, DType::F16),
    ];
    let where_ = match &device {
        Device::Gpu(gpu) => format!("GPU {} ({})", gpu.ordinal(), gpu.name()),
        _ => "the CPU interpreter (no CUDA driver/GPU)".to_owned(),
    };
    println!("QuantizedLinear y[{m}, {n}] = x[{m}, {k}] · dequant(W)[{k}, {n}] on {where_}");
    println!(
        "{:<38} {:>24} {:>11} {:>14} {:>16}",
        "kernel", "PTX: cache, time, size", "forward ms", "error / bound", "max |gpu - int|"
    );
    let mut rng = SplitMix64::new(2026);
    let mut failed = false;
    for (weight, group_size, zero_point, activation) in formats {
        let format = match weight.parse() {
            Ok(weight) => {
                WeightFormat { weight, lut: None, group_size, scale: DType::F16, zero_point, offset: false, activation }
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        match run(format, (m, k, n), &device, &mut rng) {
            Ok(row) => {
                let verdict = if row.ratio <= 1.0 { "" } else { "  FAILS its bound" };
                failed |= row.ratio > 1.0;
                let vs = row.vs_interpreter.map_or_else(|| "-".to_owned(), |d| format!("{d:.3e}"));
                println!(
                    "{:<38} {:>24} {:>11.2} {:>14.3} {vs:>16}{verdict}",
                    row.kernel, row.compile, row.forward_ms, row.ratio
                );
            }
            Err(e) => {
                eprintln!("error: {}: {e}", format.kernel_name());
                return ExitCode::FAILURE;
            }
        }
    }
    println!("(error / bound: the largest error against the exact reference as a fraction of its bound, ≤ 1 required)");
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
