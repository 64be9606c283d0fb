//! Every example kernel in `examples/` runs on the interpreter with random inputs and matches
//! a naive f64 reference within a bound derived from the arithmetic it does.

use anybit::ir::DType;
use anybit::ir::interp::{Arg, Buffer, RunOptions, run_kernel};
use anybit::ir::program::{Kernel, Module};
use anybit::ir::random::SplitMix64;
use anybit::ir::text::parse_module;
use anybit::ir::verify::{VerifyOptions, verify_module};

/// Deterministic inputs, so failures reproduce.
pub struct Rng(pub SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(SplitMix64::new(seed))
    }

    pub fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        self.0.uniform(lo, hi)
    }

    /// `len` values uniform in [−1, 1), rounded to `dtype`; the rounded values.
    pub fn values(&mut self, dtype: DType, len: usize) -> Vec<f64> {
        (0..len).map(|_| dtype.decode_f64(dtype.encode(self.uniform(-1.0, 1.0))).unwrap()).collect()
    }
}

pub fn example(name: &str) -> Module {
    let path = format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let module = parse_module(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    verify_module(&module, &VerifyOptions::strict()).unwrap_or_else(|e| panic!("{path}: {e}"));
    module
}

fn buffer(dtype: DType, values: &[f64]) -> Arg {
    Arg::Buffer(Buffer::from_f64(dtype, values).unwrap())
}

fn output(args: &[Arg], position: usize) -> Vec<f64> {
    args[position].buffer().unwrap().to_f64().unwrap()
}

fn run(kernel: &Kernel, args: &mut [Arg]) {
    run_kernel(kernel, args, &RunOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", kernel.name));
}

/// The spacing of f16 values at `v`.
fn f16_ulp(v: f64) -> f64 {
    2f64.powi((v.abs().max(2f64.powi(-14))).log2().floor() as i32 - 10)
}

#[test]
fn vector_add_is_exact() {
    let module = example("vector_add.abk");
    let mut rng = Rng::new(1);
    for n in [1usize, 511, 512, 513, 1500] {
        let (x, y) = (rng.values(DType::F32, n), rng.values(DType::F32, n));
        let mut args =
            vec![buffer(DType::F32, &x), buffer(DType::F32, &y), buffer(DType::F32, &vec![0.0; n]), Arg::Int(n as i64)];
        run(&module.kernels[0], &mut args);
        let z = output(&args, 2);
        for i in 0..n {
            assert_eq!(z[i], f64::from(x[i] as f32 + y[i] as f32), "n = {n}, element {i}");
        }
    }
}

#[test]
fn rms_norm_matches_the_reference() {
    let module = example("rms_norm.abk");
    let mut rng = Rng::new(2);
    let eps = 1e-6;
    for (m, n) in [(1usize, 256usize), (5, 300), (4, 1000)] {
        let (x, g) = (rng.values(DType::F16, m * n), rng.values(DType::F16, n));
        let mut args = vec![
            buffer(DType::F16, &x),
            buffer(DType::F16, &g),
            buffer(DType::F16, &vec![0.0; m * n]),
            Arg::Int(m as i64),
            Arg::Int(n as i64),
            Arg::Float(eps),
        ];
        run(&module.kernels[0], &mut args);
        let y = output(&args, 2);
        for row in 0..m {
            let xs = &x[row * n..(row + 1) * n];
            let mean = xs.iter().map(|v| v * v).sum::<f64>() / n as f64;
            let inv = 1.0 / (mean + f64::from(eps as f32)).sqrt();
            for col in 0..n {
                let exact = xs[col] * inv * g[col];
                // f32 sums of n squares and three correctly rounded f32 steps (relative error
                // ≤ (n + 3)·2^-24), then rounding to f16 (half an f16 ulp, and an ulp at a
                // binade edge).
                let bound = exact.abs() * (n as f64 + 3.0) * 2f64.powi(-24) + f16_ulp(exact);
                let got = y[row * n + col];
                assert!((got - exact).abs() <= bound, "m={m} n={n} [{row},{col}]: {got} vs {exact} (bound {bound:e})");
            }
        }
    }
}

#[test]
fn tiled_f16_matmul_matches_the_reference() {
    let module = example("matmul_f16.abk");
    let mut rng = Rng::new(3);
    for (m, n, k, relu) in [(64usize, 64usize, 32usize, 0i64), (70, 65, 40, 1), (1, 130, 96, 0)] {
        let (a, b) = (rng.values(DType::F16, m * k), rng.values(DType::F16, k * n));
        let mut args = vec![
            buffer(DType::F16, &a),
            buffer(DType::F16, &b),
            buffer(DType::F32, &vec![0.0; m * n]),
            Arg::Int(m as i64),
            Arg::Int(n as i64),
            Arg::Int(k as i64),
            Arg::Int(relu),
        ];
        run(&module.kernels[0], &mut args);
        let c = output(&args, 2);
        for i in 0..m {
            for j in 0..n {
                let products = (0..k).map(|kk| a[i * k + kk] * b[kk * n + j]);
                let (exact, magnitude) = products.fold((0.0, 0.0), |(s, mag), p: f64| (s + p, mag + p.abs()));
                let exact = if relu == 1 { exact.max(0.0) } else { exact };
                // Exact products, k additions in f32: |error| ≤ 2·k·2^-24·Σ|a·b|.
                let bound = 2.0 * k as f64 * 2f64.powi(-24) * magnitude;
                let got = c[i * n + j];
                assert!((got - exact).abs() <= bound, "({m},{n},{k}) [{i},{j}]: {got} vs {exact} (bound {bound:e})");
            }
        }
    }
}

#[test]
fn lowbit_example_file_matches_the_reference() {
    use anybit_frontend::lowbit::{QuantizedWeights, WeightFormat, reference};
    let module = example("lowbit_matmul_u4_g128.abk");
    let format = WeightFormat {
        weight: "u4".parse().unwrap(),
        group_size: 128,
        scale: DType::F16,
        zero_point: true,
        activation: DType::F16,
    };
    let mut rng = Rng::new(4);
    let (k, n) = (256usize, 130usize);
    let codes: Vec<u32> = (0..k * n).map(|_| (rng.next() % 16) as u32).collect();
    let scales: Vec<u32> = (0..2 * n).map(|_| DType::F16.encode(rng.uniform(0.005, 0.05))).collect();
    let zeros: Vec<u32> = (0..2 * n).map(|_| (rng.next() % 16) as u32).collect();
    let weights = QuantizedWeights::new(format, k, n, codes, scales.clone(), zeros.clone()).unwrap();
    for m in [1usize, 5, 16, 33] {
        let x: Vec<u32> = (0..m * k).map(|_| DType::F16.encode(rng.uniform(-1.0, 1.0))).collect();
        let expected = reference(&weights, &x, m).unwrap();
        let mut args = vec![
            Arg::Buffer(Buffer::from_codes(DType::F16, &x).unwrap()),
            Arg::Buffer(
                Buffer::from_bytes("u8".parse().unwrap(), k * weights.row_bytes(), weights.pack_weights().unwrap())
                    .unwrap(),
            ),
            Arg::Buffer(Buffer::from_codes(DType::F16, &scales).unwrap()),
            Arg::Buffer(Buffer::from_codes("u4".parse().unwrap(), &zeros).unwrap()),
            Arg::Buffer(Buffer::zeros(DType::F16, m * n).unwrap()),
            Arg::Int(m as i64),
            Arg::Int(n as i64),
            Arg::Int(k as i64),
        ];
        run(&module.kernels[0], &mut args);
        let y = output(&args, 4);
        for (i, (&got, &(exact, bound))) in y.iter().zip(&expected).enumerate() {
            assert!((got - exact).abs() <= bound, "m={m} element {i}: {got} vs {exact} (bound {bound:e})");
        }
    }
}
