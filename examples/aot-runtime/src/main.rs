//! Ahead of time with no compiler in the binary: the low-bit matmul of
//! `examples/aot/kernels/lowbit_u4_g128.abk` (u4 weights, one f16 scale per 128 rows, f16
//! activations), compiled to PTX for sm_80 and sm_90 by `build.rs` (anybit-build, which links
//! LLVM into the build script only) and launched here through its typed handle. This crate's
//! only dependencies are `anybit-runtime` and `anybit-macros`, so the binary holds the embedded
//! PTX and the runtime that hands it to the CUDA driver — no LLVM (`tests/main.rs` checks its
//! symbols, its size and its dependency tree).
//!
//! On a GPU it launches the embedded PTX of the newest target the device runs and checks every
//! output element against the exact f64 result of the same quantized data (within the bound of
//! f32 accumulation and the f16 rounding of the output), then runs the same kernel on the CPU
//! interpreter and reports how far the two are apart. Without a GPU it says why (the runtime's
//! typed error: no driver, no device) and runs the kernel's embedded source on the interpreter
//! (`anybit-ir`, which has no LLVM either) with the same check — the PTX is then not used.
//!
//! ```text
//! cargo run --release -p anybit-example-aot-runtime [-- [--require-gpu] M K N]
//! ```
//!
//! Exit status: 0 when every element is within its bound; 1 when one is not or a step failed;
//! 2 with `--require-gpu` when no GPU can be used (for GPU checks, which must not pass on the
//! interpreter).

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anybit_runtime::Gpu;
use anybit_runtime::typed::{ExecError, Executor, F16, TypedBuffer, U8};

/// The kernels of `examples/aot/kernels`, compiled by `build.rs`: one module per file.
mod kernels {
    include!(concat!(env!("OUT_DIR"), "/anybit_kernels.rs"));
}

use kernels::lowbit_u4_g128::LowbitU4G128;

/// Weights and scales rows per scale (the kernel's group size).
const GROUP: usize = 128;

/// A matmul `y[m, n] = Σ_k x[m, k] · q[k, n] · s[k / 128, n]`, with values every type holds
/// exactly: x in multiples of 2⁻¹⁰ in [-1, 1], q in 0..16, s in multiples of 2⁻¹⁰ in [1/64, 1/16).
#[derive(Debug)]
struct Problem {
    m: usize,
    k: usize,
    n: usize,
    x: Vec<f64>,
    q: Vec<u8>,
    s: Vec<f64>,
}

impl Problem {
    fn random(m: usize, k: usize, n: usize, seed: u64) -> Problem {
        let mut state = seed;
        let mut next = move |below: u64| {
            // SplitMix64.
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) % below
        };
        let x = (0..m * k).map(|_| (next(2049) as f64 - 1024.0) / 1024.0).collect();
        let q = (0..k * n).map(|_| next(16) as u8).collect();
        let s = (0..k.div_ceil(GROUP) * n).map(|_| (16.0 + next(48) as f64) / 1024.0).collect();
        Problem { m, k, n, x, q, s }
    }

    /// q as the kernel reads it: `u8[k, cdiv(n·4, 8)]`, each row a little-endian stream of
    /// 4-bit codes (code j in the low nibble of byte j/2 when j is even).
    fn packed_rows(&self) -> Vec<u32> {
        let row_bytes = (self.n * 4).div_ceil(8);
        let mut bytes = vec![0u32; self.k * row_bytes];
        for (i, &code) in self.q.iter().enumerate() {
            let (row, col) = (i / self.n, i % self.n);
            bytes[row * row_bytes + col / 2] |= u32::from(code) << (4 * (col % 2));
        }
        bytes
    }

    /// The exact result of every element with its error bound: f32 accumulation
    /// (2·K·2⁻²⁴·Σ|products|) plus the f16 rounding of the output (half a unit in its last place).
    fn reference(&self) -> Vec<(f64, f64)> {
        let mut out = Vec::with_capacity(self.m * self.n);
        for row in 0..self.m {
            for col in 0..self.n {
                let (mut sum, mut magnitude) = (0.0, 0.0);
                for kk in 0..self.k {
                    let w = f64::from(self.q[kk * self.n + col]) * self.s[(kk / GROUP) * self.n + col];
                    let p = self.x[row * self.k + kk] * w;
                    sum += p;
                    magnitude += p.abs();
                }
                out.push((sum, 2.0 * self.k as f64 * 2f64.powi(-24) * magnitude + half_ulp_f16(sum)));
            }
        }
        out
    }
}

/// Half the spacing of f16 values at `value`.
fn half_ulp_f16(value: f64) -> f64 {
    let exponent = if value == 0.0 { -14 } else { (value.abs().log2().floor() as i32).max(-14) };
    2f64.powi(exponent - 11)
}

/// The largest `|y − exact| / bound` (≤ 1 passes; NaN or a missing element fails).
fn worst(y: &[f64], expected: &[(f64, f64)]) -> f64 {
    if y.len() != expected.len() {
        return f64::INFINITY;
    }
    let error = |(&v, &(exact, bound)): (&f64, &(f64, f64))| {
        let e = (v - exact).abs() / bound;
        if e.is_nan() { f64::INFINITY } else { e }
    };
    y.iter().zip(expected).map(error).fold(0.0, f64::max)
}

/// The kernel's arguments on one executor (device buffers on a GPU, host ones on the
/// interpreter).
#[derive(Debug)]
struct Buffers {
    x: TypedBuffer<F16>,
    w: TypedBuffer<U8>,
    s: TypedBuffer<F16>,
    y: TypedBuffer<F16>,
    mnk: (i32, i32, i32),
}

impl Buffers {
    fn upload(exec: &Executor, p: &Problem) -> Result<Buffers, Box<dyn Error>> {
        Ok(Buffers {
            x: exec.upload::<F16>(&p.x)?,
            w: exec.upload_codes::<U8>(&p.packed_rows())?,
            s: exec.upload::<F16>(&p.s)?,
            y: exec.zeros::<F16>(p.m * p.n)?,
            mnk: (i32::try_from(p.m)?, i32::try_from(p.n)?, i32::try_from(p.k)?),
        })
    }

    /// The typed handle's launch: `w` must be a buffer of `u8`, `y` of `f16` and writable.
    fn launch(&mut self, exec: &Executor) -> Result<(), ExecError> {
        let (m, n, k) = self.mnk;
        LowbitU4G128.launch(exec, &self.x, &self.w, &self.s, &mut self.y, m, n, k)
    }
}

/// Runs the kernel once on `exec` and reads `y` back.
fn run_on(exec: &Executor, p: &Problem) -> Result<Vec<f64>, Box<dyn Error>> {
    let mut buffers = Buffers::upload(exec, p)?;
    buffers.launch(exec)?;
    Ok(exec.download_f64(&buffers.y)?)
}

/// The GPU run: the embedded PTX loaded and launched (timed), checked against the reference
/// and compared with the interpreter. Returns the worst error as a fraction of its bound.
fn on_gpu(gpu: Gpu, p: &Problem, expected: &[(f64, f64)]) -> Result<f64, Box<dyn Error>> {
    let (major, minor) = gpu.compute_capability();
    let target = LowbitU4G128::module().best_target(major, minor).map_or("none", |t| t.target);
    println!("GPU 0: {} (compute capability {major}.{minor}); embedded PTX it runs: {target}", gpu.name());
    let exec = Executor::gpu(Arc::new(gpu))?;

    let mut buffers = Buffers::upload(&exec, p)?;
    let start = Instant::now();
    buffers.launch(&exec)?;
    exec.synchronize()?;
    let first = start.elapsed();
    let repeats = 100;
    let start = Instant::now();
    for _ in 0..repeats {
        buffers.launch(&exec)?;
    }
    exec.synchronize()?;
    let warm = start.elapsed() / repeats;
    println!(
        "  first launch, loading the {target} PTX through the driver: {:.2} ms; then {:.1} µs a launch \
         (mean of {repeats}, back to back, L2 warm: not a benchmark)",
        first.as_secs_f64() * 1e3,
        warm.as_secs_f64() * 1e6
    );
    let y = exec.download_f64(&buffers.y)?;
    let gpu_worst = worst(&y, expected);
    println!("  GPU: worst error {gpu_worst:.3} of its bound");

    let interp = run_on(&Executor::interpreter(), p)?;
    let interp_worst = worst(&interp, expected);
    let diff = y.iter().zip(&interp).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    let same = y.iter().zip(&interp).filter(|(a, b)| a.to_bits() == b.to_bits()).count();
    println!(
        "  interpreter (the embedded source): worst error {interp_worst:.3} of its bound; \
         max |GPU − interpreter| = {diff:.3e}, {same} of {} elements bit-identical",
        y.len()
    );
    Ok(gpu_worst.max(interp_worst))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let require_gpu = args.iter().any(|a| a == "--require-gpu");
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let (m, k, n) = match sizes.as_slice() {
        [m, k, n] => (*m, *k, *n),
        _ => (16, 512, 256),
    };
    let module = LowbitU4G128::module();
    let targets: Vec<&str> = module.targets().iter().map(|t| t.target).collect();
    println!("low-bit matmul u4 g128, M={m} K={k} N={n}");
    println!(
        "  {}: PTX for {} compiled at build time and embedded; this binary has no LLVM \
         (dependencies: anybit-runtime, anybit-macros)",
        module.name(),
        targets.join(", ")
    );
    let problem = Problem::random(m, k, n, 7);
    let expected = problem.reference();
    let result = match Gpu::new(0) {
        Ok(gpu) => on_gpu(gpu, &problem, &expected),
        Err(error) => {
            println!("no GPU: {error}");
            if require_gpu {
                eprintln!("error: --require-gpu given and no GPU can be used");
                return ExitCode::from(2);
            }
            println!(
                "  running the kernel's embedded source on the CPU interpreter instead (anybit-ir, no LLVM); \
                 the embedded PTX needs a GPU"
            );
            run_on(&Executor::interpreter(), &problem).map(|y| {
                let worst = worst(&y, &expected);
                println!("  interpreter: worst error {worst:.3} of its bound");
                worst
            })
        }
    };
    match result {
        Ok(worst) if worst <= 1.0 => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Ok(_) => {
            println!("FAILED: an element is outside its bound");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_comes_with_ptx_for_both_targets_and_runs_on_the_interpreter() {
        let module = LowbitU4G128::module();
        let targets: Vec<&str> = module.targets().iter().map(|t| t.target).collect();
        assert_eq!(targets, ["sm_80", "sm_90"]);
        assert!(module.targets().iter().all(|t| t.ptx[0].contains(".entry lowbit_u4_g128")));
        // Partial tiles: M = 3 of 16 rows, N = 96 of 64 columns; an odd N packs half a byte.
        for (m, k, n) in [(3, 256, 96), (2, 128, 33)] {
            let p = Problem::random(m, k, n, 3);
            let y = run_on(&Executor::interpreter(), &p).unwrap();
            assert!(worst(&y, &p.reference()) <= 1.0, "M={m} K={k} N={n}");
        }
    }

    #[test]
    fn the_check_is_not_vacuous() {
        let p = Problem::random(2, 128, 8, 5);
        let expected = p.reference();
        let mut y: Vec<f64> = expected.iter().map(|&(e, _)| e).collect();
        assert_eq!(worst(&y, &expected), 0.0);
        y[3] += 2.0 * expected[3].1;
        assert!(worst(&y, &expected) > 1.0);
        y[3] = f64::NAN;
        assert!(worst(&y, &expected).is_infinite());
        assert_eq!(half_ulp_f16(1.0), 2f64.powi(-11));
        assert_eq!(half_ulp_f16(0.0), 2f64.powi(-25));
        // Codes 1 and 2 in columns 0 and 1 of a row share a byte: 0x21.
        let p = Problem { m: 1, k: 1, n: 3, x: vec![1.0], q: vec![1, 2, 3], s: vec![1.0; 3] };
        assert_eq!(p.packed_rows(), [0x21, 0x03]);
    }
}
