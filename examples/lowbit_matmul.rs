//! The main job: the low-bit weight matmul `y = x · dequant(W)` for several weight types,
//! generated from its format, run on the CPU interpreter (no GPU needed yet), and checked
//! against the exact f64 reference computed from the same quantized weights.
//!
//! ```text
//! cargo run --release --example lowbit_matmul [-- M N K]
//! ```
//!
//! For each format it prints the largest error against the reference, the largest error as a
//! fraction of the element's bound (must be ≤ 1), and the interpreter's time.

use std::process::ExitCode;
use std::time::Instant;

use anybit::ir::DType;
use anybit::ir::interp::{Arg, Buffer, RunOptions, run_kernel};
use anybit::ir::random::SplitMix64;
use anybit_frontend::lowbit::{QuantizedWeights, WeightFormat, build_kernel, reference};

fn dtype(name: &str) -> Result<DType, String> {
    name.parse().map_err(|e| format!("{e}"))
}

fn run(format: WeightFormat, m: usize, n: usize, k: usize, rng: &mut SplitMix64) -> Result<(f64, f64, f64), String> {
    format.validate_shape(m, n, k).map_err(|e| e.to_string())?;
    let kernel = build_kernel(&format).map_err(|e| e.to_string())?;
    let weights = QuantizedWeights::random(format, k, n, rng).map_err(|e| e.to_string())?;
    let act = format.activation;
    let x: Vec<u32> = (0..m * k).map(|_| act.encode(rng.uniform(-1.0, 1.0))).collect();
    let packed = weights.pack_weights().map_err(|e| e.to_string())?;
    let bytes = dtype("u8")?;
    let buffer = |b: Result<Buffer, anybit::ir::packing::PackError>| b.map(Arg::Buffer).map_err(|e| e.to_string());
    let mut args = vec![
        buffer(Buffer::from_codes(act, &x))?,
        buffer(Buffer::from_bytes(bytes, packed.len(), packed))?,
        buffer(Buffer::from_codes(format.scale, &weights.scales))?,
    ];
    if format.zero_point {
        args.push(buffer(Buffer::from_codes(format.weight, &weights.zeros))?);
    }
    let y_position = args.len();
    // y, no workspace and no split of K.
    args.extend([buffer(Buffer::zeros(act, m * n))?, buffer(Buffer::zeros(dtype("f32")?, 0))?]);
    args.extend([m, n, k, 1].map(|v| Arg::Int(v as i64)));
    let start = Instant::now();
    run_kernel(&kernel, &mut args, &RunOptions::default()).map_err(|e| e.to_string())?;
    let seconds = start.elapsed().as_secs_f64();
    let y = args[y_position].buffer().ok_or("no output")?.to_f64().map_err(|e| e.to_string())?;
    let expected = reference(&weights, &x, m).map_err(|e| e.to_string())?;
    let (mut max_error, mut max_ratio) = (0.0f64, 0.0f64);
    for (&got, &(exact, bound)) in y.iter().zip(&expected) {
        let error = (got - exact).abs();
        max_error = max_error.max(error);
        max_ratio = max_ratio.max(if bound > 0.0 { error / bound } else { 0.0 });
    }
    Ok((max_error, max_ratio, seconds))
}

fn main() -> ExitCode {
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (m, n, k) = match sizes.as_slice() {
        [m, n, k] => (*m, *n, *k),
        [] => (16, 1024, 1024),
        _ => {
            eprintln!("usage: lowbit_matmul [M N K]");
            return ExitCode::FAILURE;
        }
    };
    // (weight type, group size, zero points, activation)
    let formats = [
        ("u4", 128, true, DType::F16),
        ("i4", 128, false, DType::F16),
        ("u3", 64, true, DType::F16),
        ("u2", 32, true, DType::BF16),
        ("i8", 128, false, DType::BF16),
        ("u1", 32, false, DType::F16),
        ("f4e2m1", 32, false, DType::F16),
        ("f6e3m2", 64, false, DType::BF16),
        ("f8e4m3", 128, false, DType::F16),
        ("f8e5m2", 128, false, DType::BF16),
    ];
    println!("low-bit matmul y[{m}, {n}] = x[{m}, {k}] · dequant(W)[{k}, {n}] on the CPU interpreter");
    println!("{:<40} {:>12} {:>14} {:>9}", "kernel", "max |error|", "error / bound", "seconds");
    let mut rng = SplitMix64::new(2026);
    let mut failed = false;
    for (weight, group_size, zero_point, activation) in formats {
        let format = match dtype(weight) {
            Ok(weight) => {
                WeightFormat { weight, lut: None, group_size, scale: DType::F16, zero_point, offset: false, activation }
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        match run(format, m, n, k, &mut rng) {
            Ok((error, ratio, seconds)) => {
                let verdict = if ratio <= 1.0 { "" } else { "  FAILS its bound" };
                failed |= ratio > 1.0;
                println!("{:<40} {error:>12.3e} {ratio:>14.3} {seconds:>9.3}{verdict}", format.kernel_name());
            }
            Err(e) => {
                eprintln!("error: {}: {e}", format.kernel_name());
                return ExitCode::FAILURE;
            }
        }
    }
    println!("(bound per element: f32 accumulation 2·K·2^-24·Σ|x·w| plus half an ulp of the output type)");
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
