//! The kernel test cases: every example kernel and the low-bit matmul for every weight type
//! (and the formats with f32 scales and offsets, and the lookup-table formats),
//! each with runs (inputs), the exact f64 reference of its outputs and the bound the result
//! must meet — one definition for the interpreter tests and for the GPU runner.

use anybit_frontend::lowbit::{
    LaunchPlan, QuantizedWeights, Schedule, WeightFormat, build_module, build_module_for, build_module_scheduled,
    reference,
};
use anybit_ir::DType;
use anybit_ir::interp::{Arg, Buffer, RunOptions, run_kernel};
use anybit_ir::program::Module;
use anybit_ir::random::SplitMix64;
use anybit_ir::text::parse_module;

/// Which problem sizes to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sizes {
    /// Small, for tests on the interpreter in debug builds.
    Small,
    /// The GPU runner's: M ∈ {1, 16, 4096} for the matmuls, large vectors.
    Gpu,
}

/// How an output is checked.
#[derive(Clone, Debug, PartialEq)]
pub enum Bound {
    /// Bit for bit equal to the interpreter's output (and to the reference).
    Exact,
    /// |output − reference| ≤ bound, element by element.
    PerElement(Vec<f64>),
}

/// One output buffer's expectation.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// The parameter's position.
    pub param: usize,
    /// The exact result, in f64.
    pub reference: Vec<f64>,
    /// How close the output must be.
    pub bound: Bound,
}

/// One launch: arguments (buffers hold the inputs; outputs start zeroed) and what to check.
#[derive(Clone, Debug)]
pub struct Run {
    /// A short description (`m=16 n=4096`).
    pub label: String,
    /// The arguments, by parameter position.
    pub args: Vec<Arg>,
    /// The outputs to check.
    pub checks: Vec<Check>,
}

/// A kernel and its runs.
#[derive(Clone, Debug)]
pub struct Case {
    /// A file-name-safe name.
    pub name: String,
    /// The module (one kernel).
    pub module: Module,
    /// The runs.
    pub runs: Vec<Run>,
}

/// A disagreement between an output and its expectation.
#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    /// The output parameter's name.
    pub output: String,
    /// Element index.
    pub index: usize,
    /// The output's value.
    pub got: f64,
    /// The reference value.
    pub expected: f64,
    /// The allowed distance (0 for exact).
    pub bound: f64,
}

impl Case {
    /// Runs every run on the interpreter; returns (run label, outputs) per run.
    pub fn run_interpreter(&self) -> Result<Vec<(String, Vec<Arg>)>, String> {
        let kernel = self.module.kernels.first().ok_or("the case has no kernel")?;
        self.runs
            .iter()
            .map(|run| {
                let mut args = run.args.clone();
                run_kernel(kernel, &mut args, &RunOptions::default())
                    .map_err(|e| format!("{} ({}): {e}", self.name, run.label))?;
                Ok((run.label.clone(), args))
            })
            .collect()
    }

    /// The violations of a run's checks by `outputs` (the arguments after a launch).
    pub fn violations(&self, run: &Run, outputs: &[Arg]) -> Result<Vec<Violation>, String> {
        let kernel = self.module.kernels.first().ok_or("the case has no kernel")?;
        let mut violations = Vec::new();
        for check in &run.checks {
            let name = kernel.params.get(check.param).map_or("?", |p| p.name.as_str()).to_owned();
            let buffer = outputs.get(check.param).and_then(Arg::buffer).ok_or(format!("no output `{name}`"))?;
            let values = buffer.to_f64().map_err(|e| e.to_string())?;
            for (index, (&got, &expected)) in values.iter().zip(&check.reference).enumerate() {
                let bound = match &check.bound {
                    Bound::Exact => 0.0,
                    Bound::PerElement(b) => b[index],
                };
                let ok = (got - expected).abs() <= bound || (got.is_nan() && expected.is_nan());
                if !ok {
                    violations.push(Violation { output: name.clone(), index, got, expected, bound });
                }
            }
        }
        Ok(violations)
    }
}

fn example(name: &str) -> Result<Module, String> {
    let path = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    parse_module(&text).map_err(|e| format!("{path}: {e}"))
}

/// `len` values uniform in [−1, 1), rounded to `dtype`: (codes, values).
fn random(dtype: DType, len: usize, rng: &mut SplitMix64) -> (Vec<u32>, Vec<f64>) {
    let codes: Vec<u32> = (0..len).map(|_| dtype.encode(rng.uniform(-1.0, 1.0))).collect();
    let values = codes.iter().map(|&c| dtype.decode_f64(c).unwrap_or(f64::NAN)).collect();
    (codes, values)
}

fn buffer(dtype: DType, codes: &[u32]) -> Result<Arg, String> {
    Buffer::from_codes(dtype, codes).map(Arg::Buffer).map_err(|e| e.to_string())
}

fn zeros(dtype: DType, len: usize) -> Result<Arg, String> {
    Buffer::zeros(dtype, len).map(Arg::Buffer).map_err(|e| e.to_string())
}

/// The spacing of f16 values at `v`.
fn f16_ulp(v: f64) -> f64 {
    2f64.powi(v.abs().max(2f64.powi(-14)).log2().floor() as i32 - 10)
}

fn vector_add(sizes: Sizes, rng: &mut SplitMix64) -> Result<Case, String> {
    let module = example("vector_add.abk")?;
    let ns: &[usize] = match sizes {
        Sizes::Small => &[1, 511, 512, 513, 1500],
        Sizes::Gpu => &[1, 513, 1_000_003],
    };
    let mut runs = Vec::new();
    for &n in ns {
        let (xc, x) = random(DType::F32, n, rng);
        let (yc, y) = random(DType::F32, n, rng);
        // f32 addition, correctly rounded: the interpreter and the GPU agree bit for bit.
        let reference = x.iter().zip(&y).map(|(a, b)| f64::from(*a as f32 + *b as f32)).collect();
        runs.push(Run {
            label: format!("n={n}"),
            args: vec![buffer(DType::F32, &xc)?, buffer(DType::F32, &yc)?, zeros(DType::F32, n)?, Arg::Int(n as i64)],
            checks: vec![Check { param: 2, reference, bound: Bound::Exact }],
        });
    }
    Ok(Case { name: "vector_add".into(), module, runs })
}

fn rms_norm(sizes: Sizes, rng: &mut SplitMix64) -> Result<Case, String> {
    let module = example("rms_norm.abk")?;
    let shapes: &[(usize, usize)] = match sizes {
        Sizes::Small => &[(1, 256), (5, 300), (4, 1000)],
        Sizes::Gpu => &[(1, 4096), (33, 1000), (4096, 512)],
    };
    let eps = 1e-6f64;
    let mut runs = Vec::new();
    for &(m, n) in shapes {
        let (xc, x) = random(DType::F16, m * n, rng);
        let (gc, g) = random(DType::F16, n, rng);
        let (mut reference, mut bound) = (Vec::with_capacity(m * n), Vec::with_capacity(m * n));
        for row in 0..m {
            let xs = &x[row * n..(row + 1) * n];
            let mean = xs.iter().map(|v| v * v).sum::<f64>() / n as f64;
            let inv = 1.0 / (mean + f64::from(eps as f32)).sqrt();
            for col in 0..n {
                let exact = xs[col] * inv * g[col];
                reference.push(exact);
                // f32 sums of n squares and a few correctly rounded f32 steps (relative error
                // ≤ (n + 3)·2^-24, doubled for the GPU's approximate rsqrt), then rounding to f16
                // (half an ulp; a whole ulp at a binade edge).
                bound.push(exact.abs() * 2.0 * (n as f64 + 3.0) * 2f64.powi(-24) + f16_ulp(exact));
            }
        }
        runs.push(Run {
            label: format!("m={m} n={n}"),
            args: vec![
                buffer(DType::F16, &xc)?,
                buffer(DType::F16, &gc)?,
                zeros(DType::F16, m * n)?,
                Arg::Int(m as i64),
                Arg::Int(n as i64),
                Arg::Float(eps),
            ],
            checks: vec![Check { param: 2, reference, bound: Bound::PerElement(bound) }],
        });
    }
    Ok(Case { name: "rms_norm".into(), module, runs })
}

fn matmul_f16(sizes: Sizes, rng: &mut SplitMix64) -> Result<Case, String> {
    let module = example("matmul_f16.abk")?;
    let shapes: &[(usize, usize, usize, i64)] = match sizes {
        Sizes::Small => &[(64, 64, 32, 0), (70, 65, 40, 1), (1, 130, 96, 0)],
        Sizes::Gpu => &[(64, 64, 32, 0), (70, 65, 40, 1), (1, 130, 96, 0), (512, 384, 256, 1)],
    };
    let mut runs = Vec::new();
    for &(m, n, k, relu) in shapes {
        let (ac, a) = random(DType::F16, m * k, rng);
        let (bc, b) = random(DType::F16, k * n, rng);
        let (mut reference, mut bound) = (Vec::with_capacity(m * n), Vec::with_capacity(m * n));
        for i in 0..m {
            for j in 0..n {
                let (mut sum, mut magnitude) = (0.0f64, 0.0f64);
                for kk in 0..k {
                    let p = a[i * k + kk] * b[kk * n + j];
                    sum += p;
                    magnitude += p.abs();
                }
                reference.push(if relu == 1 { sum.max(0.0) } else { sum });
                // Exact products, k additions in f32 (any order): ≤ 2·k·2^-24·Σ|a·b|.
                bound.push(2.0 * k as f64 * 2f64.powi(-24) * magnitude);
            }
        }
        runs.push(Run {
            label: format!("m={m} n={n} k={k} relu={relu}"),
            args: vec![
                buffer(DType::F16, &ac)?,
                buffer(DType::F16, &bc)?,
                zeros(DType::F32, m * n)?,
                Arg::Int(m as i64),
                Arg::Int(n as i64),
                Arg::Int(k as i64),
                Arg::Int(relu),
            ],
            checks: vec![Check { param: 2, reference, bound: Bound::PerElement(bound) }],
        });
    }
    Ok(Case { name: "matmul_f16".into(), module, runs })
}

/// The runs of a low-bit matmul module for `format` (buffers in its parameter order).
fn lowbit_runs(
    format: WeightFormat,
    ms: &[usize],
    k: usize,
    n: usize,
    rng: &mut SplitMix64,
) -> Result<Vec<Run>, String> {
    let weights = QuantizedWeights::random(format, k, n, rng).map_err(|e| e.to_string())?;
    let packed = weights.pack().map_err(|e| e.to_string())?;
    let act = format.activation;
    let mut runs = Vec::new();
    for &m in ms {
        let (x, _) = random(act, m * k, rng);
        let mut args = vec![buffer(act, &x)?];
        args.extend(packed.buffers().into_iter().map(|(_, b)| Arg::Buffer(b.clone())));
        let y = args.len();
        // y, an empty workspace and no split (splits of K run two kernels: QuantizedLinear's
        // GPU tests and the benchmark's agreement column check them).
        args.extend([zeros(act, m * n)?, zeros(DType::F32, 0)?]);
        args.extend([m, n, k, 1].map(|v| Arg::Int(v as i64)));
        let expected = reference(&weights, &x, m).map_err(|e| e.to_string())?;
        let (reference, bound) = expected.into_iter().unzip();
        runs.push(Run {
            label: format!("m={m} n={n} k={k}"),
            args,
            checks: vec![Check { param: y, reference, bound: Bound::PerElement(bound) }],
        });
    }
    Ok(runs)
}

/// The cases of `format`'s layer module, N = 72, K = 256: its 8-row kernel for every M of
/// `ms`, its 16-row kernel for M = 16, and its 64-row kernel for M = 64 and the largest of
/// `ms` (each case a module of one kernel, named after it).
fn lowbit_cases(format: WeightFormat, ms: &[usize], rng: &mut SplitMix64) -> Result<Vec<Case>, String> {
    let module = build_module(&format).map_err(|e| e.to_string())?;
    let largest = ms.iter().copied().max().unwrap_or(1);
    let prefill_ms: &[usize] = if largest > 64 { &[64, largest] } else { &[64] };
    let mut cases = Vec::new();
    for (kernel, ms) in module.kernels.iter().take(3).zip([ms, &[16], prefill_ms]) {
        let single = Module { layouts: module.layouts.clone(), kernels: vec![kernel.clone()] };
        cases.push(Case { name: kernel.name.clone(), module: single, runs: lowbit_runs(format, ms, 256, 72, rng)? });
    }
    Ok(cases)
}

/// The weight types of the low-bit matmul cases.
pub const WEIGHT_TYPES: &[&str] = &[
    "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "i2", "i3", "i4", "i5", "i6", "i7", "i8", "f3e1m1", "f4e2m1",
    "f5e2m2", "f6e3m2", "f6e2m3", "f7e3m3", "f8e4m3", "f8e5m2",
];

fn lowbit_example(sizes: Sizes, rng: &mut SplitMix64) -> Result<Case, String> {
    let module = example("lowbit_matmul_u4_g128.abk")?;
    let format = WeightFormat {
        weight: "u4".parse().map_err(|e| format!("{e}"))?,
        lut: None,
        group_size: 128,
        scale: DType::F16,
        zero_point: true,
        offset: false,
        activation: DType::F16,
    };
    let ms: &[usize] = match sizes {
        Sizes::Small => &[1, 5, 16, 33],
        Sizes::Gpu => &[1, 16, 4096],
    };
    Ok(Case { name: "lowbit_matmul_u4_g128".into(), module, runs: lowbit_runs(format, ms, 256, 130, rng)? })
}

/// The low-bit matmul generated for every weight type: group sizes 32 and 128, with and
/// without zero points, f16 and bf16 scales and activations, N = 72 (a partial tile).
fn lowbit_all(sizes: Sizes, rng: &mut SplitMix64) -> Result<Vec<Case>, String> {
    let ms: &[usize] = match sizes {
        Sizes::Small => &[1, 5, 16, 33],
        Sizes::Gpu => &[1, 16, 4096],
    };
    let mut cases = Vec::new();
    for (t, &name) in WEIGHT_TYPES.iter().enumerate() {
        let weight: DType = name.parse().map_err(|e| format!("{e}"))?;
        // Both group sizes on the interpreter; one per type (alternating) on the GPU.
        let groups: &[usize] = match sizes {
            Sizes::Small => &[32, 128],
            Sizes::Gpu if t % 2 == 0 => &[32],
            Sizes::Gpu => &[128],
        };
        for (g, &group_size) in groups.iter().enumerate() {
            let format = WeightFormat {
                weight,
                lut: None,
                group_size,
                scale: if (t + g) % 3 == 0 { DType::BF16 } else { DType::F16 },
                zero_point: weight.is_integer() && (t + g) % 2 == 1,
                offset: false,
                activation: if (t + g) % 4 == 1 { DType::BF16 } else { DType::F16 },
            };
            cases.extend(lowbit_cases(format, ms, rng)?);
        }
    }
    Ok(cases)
}

/// The formats with f32 scales or float offsets (`w = (q − z)·s + o`, formed in f32), one per
/// shape of GGUF weights they import: Q4_1, Q5_1 (f16 scale and minimum), Q4_K, Q5_K, Q2_K
/// (f32 scale and offset, after folding the super-block scales), Q6_K (f32 scale, zero point
/// 32), Q3_K (i3, f32 scale) — and a float weight type with both.
pub fn scaled_offset_formats() -> Result<Vec<WeightFormat>, String> {
    let rows: [(&str, usize, DType, bool, bool, DType); 8] = [
        ("u4", 32, DType::F16, false, true, DType::F16),
        ("u5", 32, DType::F16, false, true, DType::BF16),
        ("u4", 32, DType::F32, false, true, DType::F16),
        ("u5", 32, DType::F32, false, true, DType::BF16),
        ("u2", 16, DType::F32, false, true, DType::F16),
        ("u6", 16, DType::F32, true, false, DType::F16),
        ("i3", 16, DType::F32, false, false, DType::BF16),
        ("f4e2m1", 64, DType::F32, false, true, DType::F16),
    ];
    rows.into_iter()
        .map(|(weight, group_size, scale, zero_point, offset, activation)| {
            let weight = weight.parse().map_err(|e| format!("{e}"))?;
            Ok(WeightFormat { weight, lut: None, group_size, scale, zero_point, offset, activation })
        })
        .collect()
}

/// The low-bit matmul for every format of [`scaled_offset_formats`], N = 72.
fn lowbit_scaled_offsets(sizes: Sizes, rng: &mut SplitMix64) -> Result<Vec<Case>, String> {
    let ms: &[usize] = match sizes {
        Sizes::Small => &[1, 5, 16, 33],
        Sizes::Gpu => &[1, 16, 4096],
    };
    let mut cases = Vec::new();
    for format in scaled_offset_formats()? {
        cases.extend(lowbit_cases(format, ms, rng)?);
    }
    Ok(cases)
}

/// The lookup-table formats (u4 codes through a 16-entry table): IQ4_NL as GGUF imports it
/// (f16 scale per 32; decoded in the activation type), and NF4 (its `f32` levels, decoded in
/// f32) with bf16 and f32 scales.
pub fn lut_formats() -> Vec<WeightFormat> {
    use anybit_frontend::lowbit::Lut;
    let with = WeightFormat::with_lut;
    vec![
        with(Lut::IQ4_NL, 32, DType::F16, DType::F16),
        with(Lut::IQ4_NL, 32, DType::F16, DType::BF16),
        with(Lut::NF4, 64, DType::BF16, DType::BF16),
        with(Lut::NF4, 128, DType::F32, DType::F16),
    ]
}

/// The low-bit matmul for every format of [`lut_formats`], N = 72.
fn lowbit_luts(sizes: Sizes, rng: &mut SplitMix64) -> Result<Vec<Case>, String> {
    let ms: &[usize] = match sizes {
        Sizes::Small => &[1, 5, 16, 33],
        Sizes::Gpu => &[1, 16, 4096],
    };
    let mut cases = Vec::new();
    for format in lut_formats() {
        cases.extend(lowbit_cases(format, ms, rng)?);
    }
    Ok(cases)
}

/// Every case, deterministically generated from `seed`.
pub fn all_cases(sizes: Sizes, seed: u64) -> Result<Vec<Case>, String> {
    let mut rng = SplitMix64::new(seed);
    let mut cases = vec![
        vector_add(sizes, &mut rng)?,
        rms_norm(sizes, &mut rng)?,
        matmul_f16(sizes, &mut rng)?,
        lowbit_example(sizes, &mut rng)?,
    ];
    cases.extend(lowbit_all(sizes, &mut rng)?);
    cases.extend(lowbit_scaled_offsets(sizes, &mut rng)?);
    cases.extend(lowbit_luts(sizes, &mut rng)?);
    Ok(cases)
}

/// The weight types timed by `bench/gpu_bench.py` (issue table: u4, i4, u3, f6e3m2, f4e2m1, u8).
/// The weight types of the benchmark table (issue 8's list).
pub const BENCH_TYPES: &[&str] = &[
    "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "i2", "i3", "i4", "i5", "i6", "i7", "i8", "f4e2m1", "f6e3m2",
    "f8e4m3",
];

/// The benchmark shapes (K, N) and rows M that [`bench_plans`] covers: the table.
pub const BENCH_SHAPES: &[(usize, usize)] = &[(4096, 14336), (14336, 4096), (4096, 4096), (8192, 57344)];
/// See [`BENCH_SHAPES`].
pub const BENCH_MS: &[usize] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096];
/// The multiprocessors the benchmark's plans are chosen for: the H100 SXM's.
pub const BENCH_MULTIPROCESSORS: usize = 132;

/// A benchmark variant: a module and how to launch it.
#[derive(Clone, Debug)]
pub struct BenchModule {
    /// The folder name: `bench_<weight>` or `bench_<weight>_<tag>`.
    pub name: String,
    /// The kernels.
    pub module: Module,
    /// `plans.json`: the launch plan per shape and M (`{"4096x14336": {"1": "m16k4", …}}`),
    /// [`LaunchPlan::choose`]'s for [`BENCH_SHAPES`] × [`BENCH_MS`] on
    /// [`BENCH_MULTIPROCESSORS`] SMs for the layer module, one fixed plan for a variant.
    pub plans: String,
}

/// [`BenchModule::plans`] for `plan(K, N, M)`.
pub fn bench_plans(plan: impl Fn(usize, usize, usize) -> LaunchPlan) -> String {
    let mut shapes = serde_json::Map::new();
    for &(k, n) in BENCH_SHAPES {
        let by_m: serde_json::Map<String, serde_json::Value> =
            BENCH_MS.iter().map(|&m| (m.to_string(), plan(k, n, m).tag().into())).collect();
        shapes.insert(format!("{k}x{n}"), by_m.into());
    }
    serde_json::Value::Object(shapes).to_string()
}

/// The benchmark kernels: group 128, bf16 scales and activations (tinygemm's types), no zero
/// points. `bench_<weight>` is the layer module ([`build_module_for`]: what
/// `QuantizedLinear` runs), launched with [`LaunchPlan::choose`]'s plan per shape and M.
///
/// Each variant of `extra` — a schedule and a split of K — adds a module per type with that
/// schedule's matmul kernel and the reduction, launched with that split for every shape,
/// named `bench_<weight>_<schedule tag>` and `k<splits>` appended for a split (for comparing
/// schedules in one run).
pub fn bench_modules(extra: &[(Schedule, usize)]) -> Result<Vec<BenchModule>, String> {
    let mut modules = Vec::new();
    for &name in BENCH_TYPES {
        let format = WeightFormat {
            weight: name.parse().map_err(|e| format!("{e}"))?,
            lut: None,
            group_size: 128,
            scale: DType::BF16,
            zero_point: false,
            offset: false,
            activation: DType::BF16,
        };
        // Every benchmarked N is a multiple of 64: let the vectorizer prove the rows aligned.
        let module = build_module_for(&format, Some(64)).map_err(|e| e.to_string())?;
        let plans = bench_plans(|k, n, m| LaunchPlan::choose(&format, m, n, k, BENCH_MULTIPROCESSORS));
        modules.push(BenchModule { name: format!("bench_{name}"), module, plans });
        for &(schedule, splits) in extra {
            let module = build_module_scheduled(&format, Some(64), schedule).map_err(|e| e.to_string())?;
            let plan = LaunchPlan { block_m: schedule.block_m, splits };
            plan.validate().map_err(|e| e.to_string())?;
            let split = if splits > 1 { format!("k{splits}") } else { String::new() };
            let name = format!("bench_{name}_{}{split}", schedule.tag());
            modules.push(BenchModule { name, module, plans: bench_plans(|_, _, _| plan) });
        }
    }
    Ok(modules)
}
