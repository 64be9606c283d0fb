//! The low-bit matmul of `anybit_frontend::lowbit` for every weight type: PTX for every
//! target and every backend accepted by `ptxas`, and host runs equal to the interpreter.

use anybit_frontend::lowbit::{LaunchPlan, QuantizedWeights, WeightFormat, build_module, matmul_kernel_name};
use anybit_ir::dtype::DType;
use anybit_ir::interp::{Arg, Buffer};
use anybit_ir::random::SplitMix64;

use super::kernels::{compare, random_buffer};
use super::ptx::check_ptx;
use crate::{CompileOptions, Target};

pub(crate) fn weight_types() -> Vec<DType> {
    let mut types = Vec::new();
    for bits in 1..=8 {
        types.push(DType::uint(bits).expect("u"));
        if bits >= 2 {
            types.push(DType::int(bits).expect("i"));
        }
    }
    for name in ["f3e1m1", "f4e2m1", "f5e2m2", "f6e3m2", "f6e2m3", "f7e3m3", "f8e4m3", "f8e5m2"] {
        types.push(name.parse().expect("float type"));
    }
    types
}

fn format(weight: DType, group_size: usize, scale: DType, activation: DType, zero_point: bool) -> WeightFormat {
    WeightFormat {
        weight,
        lut: None,
        group_size,
        scale,
        zero_point: zero_point && weight.is_integer(),
        offset: false,
        activation,
    }
}

#[test]
fn every_weight_type_compiles_for_every_target() {
    let mut reports = Vec::new();
    for weight in weight_types() {
        let f = format(weight, 128, DType::F16, DType::F16, true);
        let module = super::selected_module(&build_module(&f).unwrap_or_else(|e| panic!("{weight}: {e}")));
        let cases = super::backends().into_iter().flat_map(|b| Target::ALL.into_iter().map(move |t| (b, t)));
        for (backend, target) in cases {
            let compiled = backend
                .compile(&module, target, &CompileOptions::default())
                .unwrap_or_else(|e| panic!("{weight} for {target} ({}): {e}", backend.name()));
            for k in &compiled.kernels {
                let report = check_ptx(&k.ptx, target, &k.name);
                if let Some(report) = &report {
                    assert!(report.contains(" 0 bytes spill stores"), "{weight} spills on {target}:\n{report}");
                }
                if let Some(report) = report
                    && matches!(target, Target::Sm80 | Target::Sm90)
                {
                    let line = report.lines().find(|l| l.contains("registers")).unwrap_or("").trim().to_string();
                    let spill = report.lines().find(|l| l.contains("spill")).unwrap_or("").trim().to_string();
                    reports.push(format!("{weight:>7} {target} {}: {line} | {spill}", backend.name()));
                }
            }
        }
    }
    eprintln!("{}", reports.join("\n"));
}

fn run(f: WeightFormat, m: usize, n: usize, k: usize, seed: u64) {
    run_plan(f, m, n, k, seed, LaunchPlan { block_m: 16, splits: 1 });
}

/// The matmul kernel of `plan` (from the layer module), compiled and run on the host against
/// the interpreter — with a split, its partial sums in the workspace.
fn run_plan(f: WeightFormat, m: usize, n: usize, k: usize, seed: u64, plan: LaunchPlan) {
    let module = build_module(&f).unwrap_or_else(|e| panic!("{f:?}: {e}"));
    let name = matmul_kernel_name(&f, plan.block_m);
    let kernel = module.kernels.iter().find(|k| k.name == name).expect("the plan's kernel");
    let mut rng = SplitMix64::new(seed);
    let weights = QuantizedWeights::random(f, k, n, &mut rng).expect("weights");
    let packed = weights.pack().expect("pack");
    let mut args = vec![Arg::Buffer(random_buffer(f.activation, m * k, 1.0, &mut rng))];
    args.extend(packed.buffers().into_iter().map(|(_, b)| Arg::Buffer(b.clone())));
    args.push(Arg::Buffer(Buffer::zeros(f.activation, m * n).expect("y")));
    args.push(Arg::Buffer(Buffer::zeros(DType::F32, plan.workspace_len(m, n)).expect("p")));
    args.extend([m, n, k, plan.splits].map(|v| Arg::Int(v as i64)));
    compare(kernel, args, None);
}

/// Both matmul kernels with splits of K (uneven and empty slabs), on the host.
#[test]
fn plans_with_splits_on_host() {
    let u4 = DType::uint(4).expect("u4");
    run_plan(format(u4, 32, DType::F16, DType::BF16, true), 5, 72, 192, 7, LaunchPlan { block_m: 16, splits: 2 });
    let i3 = DType::int(3).expect("i3");
    run_plan(format(i3, 64, DType::F16, DType::F16, false), 40, 64, 128, 8, LaunchPlan { block_m: 64, splits: 3 });
    run_plan(format(u4, 128, DType::BF16, DType::F16, false), 33, 64, 128, 9, LaunchPlan { block_m: 64, splits: 1 });
}

#[test]
fn every_weight_type_on_host() {
    for (i, weight) in weight_types().into_iter().enumerate() {
        run(format(weight, 128, DType::F16, DType::F16, true), 20, 72, 256, i as u64);
    }
}

#[test]
fn format_variants_on_host() {
    let u4 = DType::uint(4).expect("u4");
    let f4: DType = "f4e2m1".parse().expect("f4");
    run(format(u4, 32, DType::BF16, DType::BF16, true), 17, 64, 128, 100);
    run(format(u4, 64, DType::F16, DType::BF16, false), 16, 130, 128, 101);
    run(format(f4, 256, DType::BF16, DType::F16, false), 33, 64, 256, 102);
    run(format(DType::int(3).expect("i3"), 16, DType::F16, DType::F16, true), 5, 70, 64, 103);
}

/// Formats that form the weight in f32 — f32 scales, float offsets (`(q − z)·s + o`) — as GGUF
/// imports them (Q4_1, Q4_K/Q5_K, Q6_K, Q3_K): PTX accepted by `ptxas` without spills, and
/// host runs equal to the interpreter bit for bit.
#[test]
fn f32_scales_and_offsets_compile_and_run_on_host() {
    let with = |weight: &str, group_size, scale, zero_point, offset, activation| WeightFormat {
        weight: weight.parse().expect("weight type"),
        lut: None,
        group_size,
        scale,
        zero_point,
        offset,
        activation,
    };
    let formats = [
        with("u4", 32, DType::F16, false, true, DType::F16),
        with("u5", 32, DType::F32, false, true, DType::BF16),
        with("u6", 16, DType::F32, true, false, DType::F16),
        with("i3", 16, DType::F32, false, false, DType::F16),
        with("f4e2m1", 64, DType::F32, false, true, DType::BF16),
    ];
    for (i, f) in formats.into_iter().enumerate() {
        // After the passes, as the JIT compiles it (instruction selection keeps the 64-row
        // kernel's dot in registers).
        let module = super::selected_module(&build_module(&f).unwrap_or_else(|e| panic!("{f:?}: {e}")));
        let cases = super::backends().into_iter().flat_map(|b| [Target::Sm80, Target::Sm90].map(move |t| (b, t)));
        for (backend, target) in cases {
            let compiled = backend
                .compile(&module, target, &CompileOptions::default())
                .unwrap_or_else(|e| panic!("{} for {target} ({}): {e}", f.kernel_name(), backend.name()));
            for k in &compiled.kernels {
                if let Some(report) = check_ptx(&k.ptx, target, &k.name) {
                    assert!(report.contains(" 0 bytes spill stores"), "{} spills on {target}:\n{report}", k.name);
                }
            }
        }
        run(f, 17, 72, 128, 200 + i as u64);
    }
}

/// Compiles `module` for `targets` with every backend: ptxas (when installed) must accept every
/// kernel's PTX without spills. Returns ptxas's register line per kernel, target and backend.
fn assemble_without_spills(module: &anybit_ir::program::Module, targets: &[Target]) -> Vec<String> {
    let mut reports = Vec::new();
    for backend in super::backends() {
        for &target in targets {
            let compiled = backend
                .compile(module, target, &CompileOptions::default())
                .unwrap_or_else(|e| panic!("{} for {target} ({}): {e}", module.kernels[0].name, backend.name()));
            for k in &compiled.kernels {
                if let Some(report) = check_ptx(&k.ptx, target, &k.name) {
                    assert!(report.contains(" 0 bytes spill stores"), "{} spills on {target}:\n{report}", k.name);
                    let line = report.lines().find(|l| l.contains("registers")).unwrap_or("").trim().to_string();
                    reports.push(format!("{} {target} {}: {line}", k.name, backend.name()));
                }
            }
        }
    }
    reports
}

/// Lookup-table formats (IQ4_NL's integer levels, decoded in the activation type; NF4's `f32`
/// levels, decoded in f32): PTX for every target accepted by `ptxas` without spills, and host
/// runs equal to the interpreter bit for bit — `lookup` lowered as a select tree over the code
/// bits.
#[test]
fn lookup_table_formats_compile_and_run_on_host() {
    use anybit_frontend::lowbit::Lut;
    let with = WeightFormat::with_lut;
    let formats = [
        with(Lut::IQ4_NL, 32, DType::F16, DType::F16),
        with(Lut::IQ4_NL, 64, DType::BF16, DType::BF16),
        with(Lut::NF4, 64, DType::F16, DType::F16),
        with(Lut::NF4, 128, DType::F32, DType::BF16),
    ];
    let mut reports = Vec::new();
    for (i, f) in formats.into_iter().enumerate() {
        let module = super::selected_module(&build_module(&f).unwrap_or_else(|e| panic!("{f:?}: {e}")));
        reports.extend(assemble_without_spills(&module, &Target::ALL));
        run(f, 17, 72, 128, 300 + i as u64);
    }
    eprintln!("{}", reports.join("\n"));
}

/// The emitted dequantization programs (`dequant.rs`), every weight type to f16 and bf16, on
/// the host against the interpreter bit for bit: each of 64 threads converts four word groups,
/// and the codes are laid out so that every code of the type appears at every element position
/// of a word group (the programs themselves are proven in `anybit_passes::dequant`; this checks
/// their lowering to LLVM IR).
#[test]
fn every_dequantization_program_on_host_is_exact() {
    use anybit_ir::text::parse_module;
    let u32t = DType::uint(32).expect("u32");
    for weight in weight_types() {
        let bits = weight.bits() as usize;
        let group_words = bits / crate::llvm::memory::gcd(bits as u32, 32) as usize;
        let words = 4 * group_words;
        let elements = words * 32 / bits;
        let per_group = group_words * 32 / bits;
        for half in ["f16", "bf16"] {
            let text = format!(
                "kernel dq(w: ptr u32[{total_words}], y: ptr {half}[{total}]) grid(1) warps(2) {{
    %wv = global_view %w [64, {words}] strides [{words}, 1]
    %yv = global_view %y [64, {elements}] strides [{elements}, 1]
    %words = load_global %wv [0, 0] : u32[64, {words}] layout spatial(64,1).local(1,{words})
    %q = view %words : {weight}[64, {elements}] layout spatial(64,1).local(1,{elements})
    %h = cast %q : {half}
    store_global %h, %yv [0, 0]
}}
",
                total_words = 64 * words,
                total = 64 * elements,
            );
            let module = parse_module(&text).unwrap_or_else(|e| panic!("{weight} → {half}: {e:?}"));
            // Instance i (thread · 4 + group) holds code (i + 37·position) mod 2^N at each
            // element position: all 2^N codes at every position (256 instances).
            let mut codes = vec![0u32; 64 * elements];
            for (slot, code) in codes.iter_mut().enumerate() {
                let (instance, position) = (slot / per_group, slot % per_group);
                *code = ((instance + 37 * position) % (1 << bits)) as u32;
            }
            let packed = anybit_ir::packing::pack(bits as u32, &codes).expect("pack");
            let word_codes: Vec<u32> = packed
                .chunks(4)
                .map(|b| {
                    u32::from_le_bytes([
                        b[0],
                        b.get(1).copied().unwrap_or(0),
                        b.get(2).copied().unwrap_or(0),
                        b.get(3).copied().unwrap_or(0),
                    ])
                })
                .collect();
            let half_type: DType = half.parse().expect("half");
            let args = vec![
                Arg::Buffer(Buffer::from_codes(u32t, &word_codes).expect("w")),
                Arg::Buffer(Buffer::zeros(half_type, 64 * elements).expect("y")),
            ];
            let kernel = &module.kernels[0];
            compare(kernel, args, None);
        }
    }
}

/// What the vectorizer's proofs buy: the low-bit layer module specialized for an N that is a
/// multiple of 64 has every global access as whole runs or single elements, with no run-time
/// alignment test and no element-by-element fallback (byte loads) left in the PTX; the
/// generic module keeps both paths where a row's alignment depends on N (the reduction's
/// workspace and output rows). The matmul kernels' stores are element stores either way:
/// each thread holds rows m and m + 1 of a column (the transposed product's accumulators).
#[test]
fn proven_accesses_leave_no_fallback_paths() {
    // Without zero points: 4-bit zero points are loaded a byte per column by design.
    let f = format("u4".parse().expect("u4"), 128, DType::F16, DType::F16, false);
    for backend in super::backends() {
        let ptx = |n: Option<usize>| {
            let module = anybit_frontend::lowbit::build_module_for(&f, n).expect("module");
            let compiled = backend
                .compile(&super::selected_module(&module), Target::Sm90, &CompileOptions::default())
                .expect("ptx");
            compiled.kernels.iter().map(|k| (k.name.clone(), k.ptx.clone())).collect::<Vec<_>>()
        };
        let bytes = |text: &str| text.matches("ld.global.nc.u8").count();
        // 16-bit accesses: in the reduction, the element-wise paths of its output store.
        let halves = |text: &str| {
            ["ld.global.nc.u16", "ld.global.nc.b16", "st.global.u16", "st.global.b16"]
                .iter()
                .map(|op| text.matches(op).count())
                .sum::<usize>()
        };
        let (specialized, generic) = (ptx(Some(14336)), ptx(None));
        let name = backend.name();
        for ((kernel, special), (_, general)) in specialized.iter().zip(&generic) {
            assert_eq!(bytes(special), 0, "{name}: byte fallbacks left in the specialized {kernel}");
            assert!(special.len() <= general.len(), "{name}: {kernel}");
            if kernel.ends_with("_reduce") {
                assert!(
                    halves(special) < halves(general),
                    "{name}: the generic {kernel} should still test alignment at run time"
                );
            }
        }
    }
}
