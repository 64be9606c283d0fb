//! `infer-layouts`: every example and the low-bit matmul of many formats, with their layouts
//! removed, get layouts that verify strictly and give bit-identical interpreter outputs; the
//! `dot`s get MMA fragments; written layouts are kept, annotated kernels unchanged; conflicts
//! are errors naming both instructions; the rules' layouts on their own; snapshots.

use anybit_frontend::lowbit::{Lut, QuantizedWeights, WeightFormat, build_module};
use anybit_ir::DType;
use anybit_ir::interp::{Arg, Buffer, RunOptions, run_kernel};
use anybit_ir::program::{Kernel, Module, Op, ParamType, Type};
use anybit_ir::random::SplitMix64;
use anybit_ir::text::{parse_module, print_module};
use anybit_ir::verify::{VerifyOptions, verify_module};
use anybit_layouts::{LdmatrixCount, MmaInstruction, MmaOperand, RegisterLayout, SharedLayout, ldmatrix_fragment};
use anybit_passes::PassManager;
use anybit_passes::infer::rules;
use proptest::prelude::*;

const EXAMPLES: &[&str] = &["vector_add", "rms_norm", "matmul_f16", "lowbit_matmul_u4_g128"];

fn example(name: &str) -> Module {
    let path = format!("{}/../examples/{name}.abk", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    parse_module(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn layout(text: &str) -> RegisterLayout {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Removes every layout that only distributes work: definitions, the types written in
/// instructions, `reduce`'s, values'. In a kernel with a `view`, the layouts of the views and of
/// the global loads stay: together they say which bits of memory become which elements (the
/// low-bit matmul's packed weights and its x in the tensor cores' k order), so they are part
/// of what the kernel computes, not a choice inference could make.
fn strip(module: &mut Module) {
    module.layouts.clear();
    for kernel in &mut module.kernels {
        let mut has_view = false;
        kernel.walk(|_, inst| has_view |= matches!(inst.op, Op::View { .. }));
        if has_view {
            strip_kernel(kernel, &|op| !matches!(op, Op::View { .. } | Op::LoadGlobal { .. }));
        } else {
            strip_kernel(kernel, &|_| true);
        }
    }
}

/// Removes the layouts written in the instructions `which` accepts, and from the value types
/// those no longer give.
fn strip_kernel(kernel: &mut Kernel, which: &dyn Fn(&Op) -> bool) {
    let ids: Vec<_> = kernel.insts.iter().map(|(i, _)| i).collect();
    for i in ids {
        let inst = &mut kernel.insts[i];
        if !which(&inst.op) {
            continue;
        }
        match &mut inst.op {
            Op::Fill { ty, .. }
            | Op::Iota { ty, .. }
            | Op::View { ty, .. }
            | Op::Broadcast { ty, .. }
            | Op::LoadGlobal { ty, .. }
            | Op::LoadShared { ty, .. } => ty.layout = None,
            Op::Reduce { layout, .. } => *layout = None,
            Op::AllocShared { ty } => ty.layout = None,
            _ => {}
        }
    }
    let ids: Vec<_> = kernel.values.iter().map(|(v, _)| v).collect();
    for v in ids {
        match &mut kernel.values[v].ty {
            Type::Register(t) => t.layout = None,
            Type::Shared(t) => t.layout = None,
            _ => {}
        }
    }
    // Values whose defining instruction keeps its layout get it back (types derive from ops).
    let ids: Vec<_> = kernel.insts.iter().map(|(i, _)| i).collect();
    for i in ids {
        let (op, results) = (kernel.insts[i].op.clone(), kernel.insts[i].results.clone());
        let Some(&r) = results.first() else { continue };
        match (&op, &mut kernel.values[r].ty) {
            (
                Op::Fill { ty, .. }
                | Op::Iota { ty, .. }
                | Op::View { ty, .. }
                | Op::Broadcast { ty, .. }
                | Op::LoadGlobal { ty, .. }
                | Op::LoadShared { ty, .. },
                Type::Register(t),
            ) => t.layout = ty.layout.clone(),
            (Op::Reduce { layout, .. }, Type::Register(t)) => t.layout = layout.clone(),
            (Op::AllocShared { ty }, Type::Shared(t)) => t.layout = ty.layout.clone(),
            _ => {}
        }
    }
}

/// Runs `infer-layouts` with strict verification after it.
fn infer(module: &Module) -> Result<Module, String> {
    let mut module = module.clone();
    PassManager::from_names(&["infer-layouts"])
        .map_err(|e| e.to_string())?
        .verify_each(Some(VerifyOptions::strict()))
        .run(&mut module)
        .map_err(|e| e.to_string())?;
    Ok(module)
}

fn infer_ok(module: &Module, what: &str) -> Module {
    let inferred = infer(module).unwrap_or_else(|e| panic!("{what}: {e}"));
    check_layouts(&inferred, what);
    inferred
}

/// Every register layout has the tile's shape and 32 × warps threads; every shared tile has
/// a layout of its shape.
fn check_layouts(module: &Module, what: &str) {
    verify_module(module, &VerifyOptions::strict()).unwrap_or_else(|e| panic!("{what}: {e}"));
    for kernel in &module.kernels {
        for (_, value) in kernel.values.iter() {
            match &value.ty {
                Type::Register(t) => {
                    let l = t.layout.as_ref().unwrap_or_else(|| panic!("{what}: %{} has no layout", value.name));
                    assert_eq!(l.shape(), t.shape, "{what}: %{}", value.name);
                    assert_eq!(l.num_threads(), kernel.num_threads(), "{what}: %{}", value.name);
                }
                Type::Shared(t) => {
                    let l = t.layout.as_ref().unwrap_or_else(|| panic!("{what}: %{} has no layout", value.name));
                    assert_eq!(l.shape(), t.shape, "{what}: %{}", value.name);
                }
                _ => {}
            }
        }
    }
}

/// Random arguments: scalars by name from `scalars`, every pointer a buffer of its declared
/// shape holding random codes (floats in [−1, 1), integers anywhere).
fn random_args(kernel: &Kernel, scalars: &[(&str, Arg)], rng: &mut SplitMix64) -> Vec<Arg> {
    let scalar = |name: &str| scalars.iter().find(|(n, _)| *n == name).map(|(_, a)| a.clone());
    let ints: Vec<Option<i64>> = kernel
        .params
        .iter()
        .map(|p| match scalar(&p.name) {
            Some(Arg::Int(v)) => Some(v),
            _ => None,
        })
        .collect();
    kernel
        .params
        .iter()
        .map(|p| match p.ty {
            ParamType::Scalar(_) => scalar(&p.name).unwrap_or_else(|| panic!("no value for `{}`", p.name)),
            ParamType::Pointer(dtype) => {
                let len = p.buffer_len(&ints).expect("declared shape").expect("evaluable shape") as usize;
                let codes: Vec<u32> = (0..len)
                    .map(|_| {
                        if dtype.is_float() {
                            dtype.encode(rng.uniform(-1.0, 1.0))
                        } else {
                            rng.below(dtype.num_codes()) as u32
                        }
                    })
                    .collect();
                Arg::Buffer(Buffer::from_codes(dtype, &codes).unwrap())
            }
        })
        .collect()
}

fn outputs(args: &[Arg]) -> Vec<Vec<u8>> {
    args.iter().filter_map(Arg::buffer).map(|b| b.bytes().to_vec()).collect()
}

/// Runs both modules' kernel on the same arguments: outputs must be equal, bit for bit.
fn assert_same_outputs(original: &Module, inferred: &Module, args: &[Arg], what: &str) {
    let (mut before, mut after) = (args.to_vec(), args.to_vec());
    run_kernel(&original.kernels[0], &mut before, &RunOptions::default()).unwrap_or_else(|e| panic!("{what}: {e}"));
    run_kernel(&inferred.kernels[0], &mut after, &RunOptions::default())
        .unwrap_or_else(|e| panic!("{what} (inferred): {e}"));
    assert!(outputs(&before) == outputs(&after), "{what}: the inferred kernel computes something else");
}

/// The scalar arguments of each example's runs.
fn example_runs(name: &str) -> Vec<Vec<(&'static str, Arg)>> {
    match name {
        "vector_add" => vec![vec![("n", Arg::Int(1000))], vec![("n", Arg::Int(512))]],
        "rms_norm" => vec![
            vec![("m", Arg::Int(5)), ("n", Arg::Int(300)), ("eps", Arg::Float(1e-6))],
            vec![("m", Arg::Int(4)), ("n", Arg::Int(512)), ("eps", Arg::Float(1e-3))],
        ],
        "matmul_f16" => vec![
            vec![("m", Arg::Int(70)), ("n", Arg::Int(65)), ("k", Arg::Int(40)), ("relu", Arg::Int(1))],
            vec![("m", Arg::Int(64)), ("n", Arg::Int(64)), ("k", Arg::Int(64)), ("relu", Arg::Int(0))],
        ],
        "lowbit_matmul_u4_g128" => {
            vec![
                vec![("m", Arg::Int(5)), ("n", Arg::Int(130)), ("k", Arg::Int(256)), ("splits", Arg::Int(1))],
                vec![("m", Arg::Int(5)), ("n", Arg::Int(130)), ("k", Arg::Int(256)), ("splits", Arg::Int(3))],
            ]
        }
        other => panic!("no runs for {other}"),
    }
}

#[test]
fn examples_without_layouts_compute_the_same() {
    let mut rng = SplitMix64::new(7);
    for &name in EXAMPLES {
        let original = example(name);
        let mut stripped = original.clone();
        strip(&mut stripped);
        assert!(verify_module(&stripped, &VerifyOptions::strict()).is_err(), "{name}: stripping left every layout");
        let inferred = infer_ok(&stripped, name);
        for scalars in example_runs(name) {
            let args = random_args(&original.kernels[0], &scalars, &mut rng);
            assert_same_outputs(&original, &inferred, &args, name);
        }
    }
}

/// The low-bit formats tested: weight type, group size, zero points, scale, activation (and
/// two lookup-table formats).
fn lowbit_formats() -> Vec<WeightFormat> {
    let f = |w: &str, group_size: usize, zero_point: bool, scale: DType, activation: DType| WeightFormat {
        weight: w.parse().unwrap(),
        lut: None,
        group_size,
        scale,
        zero_point,
        offset: false,
        activation,
    };
    let (h, b) = (DType::F16, DType::BF16);
    vec![
        f("u4", 128, true, h, h),
        f("u4", 32, false, b, b),
        f("u3", 128, false, h, h),
        f("u3", 32, true, h, b),
        f("i8", 64, false, h, h),
        f("i8", 128, true, b, b),
        f("f4e2m1", 32, false, h, h),
        f("f4e2m1", 128, false, b, b),
        f("f8e4m3", 128, false, h, b),
        f("f8e4m3", 16, false, b, h),
        f("u1", 128, true, h, h),
        f("u2", 32, false, h, b),
        f("u5", 128, true, b, h),
        f("i6", 64, false, h, h),
        f("u7", 128, false, h, h),
        f("f6e3m2", 32, false, h, b),
        f("u8", 128, true, h, h),
        // Lookup-table formats: the codes decode with `lookup` instead of `cast`.
        WeightFormat::with_lut(Lut::IQ4_NL, 32, h, h),
        WeightFormat::with_lut(Lut::NF4, 64, b, b),
    ]
}

/// Arguments of a layer module's matmul kernels: K split in `splits` (a workspace of 64-row
/// slabs).
fn lowbit_args(format: WeightFormat, m: usize, n: usize, k: usize, splits: usize, rng: &mut SplitMix64) -> Vec<Arg> {
    let weights = QuantizedWeights::random(format, k, n, rng).unwrap();
    let packed = weights.pack_weights().unwrap();
    let u8 = DType::uint(8).unwrap();
    let act = format.activation;
    let x: Vec<u32> = (0..m * k).map(|_| act.encode(rng.uniform(-1.0, 1.0))).collect();
    let mut args = vec![
        Arg::Buffer(Buffer::from_codes(act, &x).unwrap()),
        Arg::Buffer(Buffer::from_bytes(u8, packed.len(), packed).unwrap()),
        Arg::Buffer(Buffer::from_codes(format.scale, &weights.scales).unwrap()),
    ];
    if format.zero_point {
        args.push(Arg::Buffer(Buffer::from_codes(format.weight, &weights.zeros).unwrap()));
    }
    args.push(Arg::Buffer(Buffer::zeros(act, m * n).unwrap()));
    let workspace = if splits > 1 { m.div_ceil(64) * 64 * splits * n } else { 0 };
    args.push(Arg::Buffer(Buffer::zeros(DType::F32, workspace).unwrap()));
    args.extend([m, n, k, splits].map(|v| Arg::Int(v as i64)));
    args
}

#[test]
fn lowbit_matmul_without_layouts_computes_the_same() {
    let mut rng = SplitMix64::new(11);
    for format in lowbit_formats() {
        let what = format.kernel_name();
        let original = build_module(&format).unwrap();
        let mut stripped = original.clone();
        strip(&mut stripped);
        let inferred = infer_ok(&stripped, &what);
        for (m, n, splits) in [(5, 72, 1), (17, 64, 2)] {
            let args = lowbit_args(format, m, n, 128, splits, &mut rng);
            assert_same_outputs(&original, &inferred, &args, &format!("{what} m={m} n={n} splits={splits}"));
        }
    }
}

/// The register layout of a value of the only kernel.
fn layout_of(kernel: &Kernel, v: anybit_ir::program::ValueId) -> RegisterLayout {
    kernel.values[v].ty.as_register().and_then(|t| t.layout.clone()).expect("a register layout")
}

/// The layouts of a, b, c of the kernel's `dot`s.
fn dot_layouts(kernel: &Kernel) -> Vec<(RegisterLayout, RegisterLayout, RegisterLayout)> {
    let mut dots = Vec::new();
    kernel.walk(|_, inst| {
        if let Op::Dot { a, b, c } = inst.op {
            dots.push((layout_of(kernel, a), layout_of(kernel, b), layout_of(kernel, c)));
        }
    });
    dots
}

/// The `view`s of the only kernel: (operand layout, operand bits, result layout, result bits).
fn views(kernel: &Kernel) -> Vec<(RegisterLayout, u32, RegisterLayout, u32)> {
    let mut views = Vec::new();
    kernel.walk(|_, inst| {
        if let (Op::View { x, ty }, Some(&r)) = (&inst.op, inst.results.first()) {
            let bits = kernel.values[*x].ty.dtype().bits();
            views.push((layout_of(kernel, *x), bits, layout_of(kernel, r), ty.dtype.bits()));
        }
    });
    views
}

/// Whether two layouts give every thread the same elements (then converting between them
/// only renames registers).
fn same_elements_per_thread(a: &RegisterLayout, b: &RegisterLayout) -> bool {
    let elements = |l: &RegisterLayout| {
        let mut per_thread = vec![Vec::new(); l.num_threads()];
        for (thread, _, coords) in l.table() {
            per_thread[thread].push(coords);
        }
        per_thread.iter_mut().for_each(|v| v.sort());
        per_thread
    };
    a.num_threads() == b.num_threads() && elements(a) == elements(b)
}

#[test]
fn lowbit_dot_layouts_are_the_mma_arrangement() {
    let fragment = |operand| MmaInstruction::M16N8K16F16.fragment(operand);
    for format in lowbit_formats() {
        let what = format.kernel_name();
        let mut stripped = build_module(&format).unwrap();
        strip(&mut stripped);
        let inferred = infer_ok(&stripped, &what);
        let kernel = &inferred.kernels[0];
        assert_eq!(kernel.insts.len(), stripped.kernels[0].insts.len(), "{what}: instructions added or removed");
        let dots = dot_layouts(kernel);
        assert_eq!(dots.len(), 1, "{what}");
        let (a, b, c) = &dots[0];
        // The backend's mma.sync path, swapped (`yᵀ = Wᵀ·xᵀ`): c made of transposed C
        // fragments (warps along N, 16 columns of each of two tiles; one 8-row tile), inferred from the
        // operands the views give — the arrangement that takes both as they are.
        let transposed = |l: &RegisterLayout| l.permute(&[1, 0]).unwrap();
        // (Written for cᵀ: two 64-column tiles, warps along N, then the C fragment.)
        let c_t = layout("local(2,1).spatial(4,1).local(2,1).spatial(8,4).local(1,2)");
        assert_eq!(*c, transposed(&c_t), "{what}");
        let quotient = transposed(c).divide_right(&fragment(MmaOperand::Accumulator)).unwrap();
        let (a_target, b_target) = rules::mma_operands(&quotient, 64, MmaInstruction::M16N8K16F16).unwrap();
        // The dequantized weights are the A fragments of Wᵀ (the packing puts them there), x
        // relabeled by its view the B fragments of xᵀ: the `dot` takes both as they are.
        assert!(transposed(b).divide_right(&fragment(MmaOperand::A)).is_ok(), "{what}: {b}");
        assert!(transposed(a).divide_right(&fragment(MmaOperand::B)).is_ok(), "{what}: {a}");
        assert!(same_elements_per_thread(&transposed(b), &a_target), "{what}: {b} against {a_target}");
        assert!(same_elements_per_thread(&transposed(a), &b_target), "{what}: {a} against {b_target}");
        // And the selection takes both as they stand: no conversion.
        let ty =
            |dtype, l: &RegisterLayout| anybit_ir::program::RegisterTensorType::new(dtype, l.shape(), Some(l.clone()));
        let plan = anybit_passes::select::plan_mma(&ty(DType::F16, a), &ty(DType::F16, b), &ty(DType::F32, c)).unwrap();
        assert!(plan.swapped, "{what}");
        assert_eq!((plan.a_layout, plan.b_layout), (transposed(b), transposed(a)), "{what}");
        // Neither view reads its operand in memory order (the weights are re-packed for the B
        // fragments, x is relabeled to the k order σ): both are written out, on both sides.
        for (loaded, from, viewed, to) in views(kernel) {
            assert_ne!(rules::reinterpret(&loaded, from, to, &viewed.shape()), Some(viewed.clone()), "{what}");
        }
    }
}

#[test]
fn matmul_operands_loaded_from_shared_memory_are_fragments() {
    let mut stripped = example("matmul_f16");
    strip(&mut stripped);
    let inferred = infer_ok(&stripped, "matmul_f16");
    assert_eq!(inferred.kernels[0].insts.len(), stripped.kernels[0].insts.len());
    let (a, b, c) = dot_layouts(&inferred.kernels[0]).remove(0);
    let f = |operand| MmaInstruction::M16N8K16F16.fragment(operand);
    assert_eq!(c, layout("local(2,4).spatial(2,2).local(2,1).spatial(8,4).local(1,2)"));
    assert!(a.divide_right(&f(MmaOperand::A)).is_ok() && b.divide_right(&f(MmaOperand::B)).is_ok());
    // `ldmatrix` reads them: a in 8×8 blocks, b transposed.
    assert!(a.divide_right(&ldmatrix_fragment(LdmatrixCount::X1, false)).is_ok(), "{a}");
    assert!(b.divide_right(&ldmatrix_fragment(LdmatrixCount::X1, true)).is_ok(), "{b}");
    // Shared tiles: 16-byte chunks swizzled by the row size.
    let text = print_module(&inferred);
    assert!(text.contains("f16[64, 32] layout row_major(64,32).swizzle(2,4,3)"), "{text}");
    assert!(text.contains("f16[32, 64] layout row_major(32,64).swizzle(3,4,3)"), "{text}");
}

#[test]
fn annotated_kernels_are_unchanged_and_inference_is_idempotent() {
    let mut modules: Vec<(String, Module)> = EXAMPLES.iter().map(|&n| (n.to_string(), example(n))).collect();
    for format in lowbit_formats().into_iter().take(4) {
        modules.push((format.kernel_name(), build_module(&format).unwrap()));
    }
    for (name, module) in modules {
        let after = infer_ok(&module, &name);
        assert_eq!(after, module, "{name}: the pass changed an annotated module");
        assert_eq!(print_module(&after), print_module(&module), "{name}");
        let mut stripped = module.clone();
        strip(&mut stripped);
        let once = infer_ok(&stripped, &name);
        let twice = infer_ok(&once, &name);
        assert_eq!(once, twice, "{name}: a second run changed the module");
    }
}

#[test]
fn written_layouts_are_kept_and_the_rest_fits_them() {
    let mut rng = SplitMix64::new(5);
    // matmul_f16 with only the shared tiles' layouts removed: the register layouts stay.
    let original = example("matmul_f16");
    let mut partial = original.clone();
    strip_kernel(&mut partial.kernels[0], &|op| matches!(op, Op::AllocShared { .. }));
    let inferred = infer_ok(&partial, "matmul_f16 (shared)");
    for ((_, before), (_, after)) in original.kernels[0].values.iter().zip(inferred.kernels[0].values.iter()) {
        if let Type::Register(t) = &before.ty {
            assert_eq!(Some(t), after.ty.as_register(), "%{}", before.name);
        }
    }
    let args = random_args(&original.kernels[0], &example_runs("matmul_f16")[0], &mut rng);
    assert_same_outputs(&original, &inferred, &args, "matmul_f16 (shared)");

    // The low-bit matmul with only the views' layouts written: its views are not memory-order
    // reinterpretations, so inference cannot find their operands' layouts and says so.
    let format = lowbit_formats()[0];
    let mut partial = build_module(&format).unwrap();
    strip_kernel(&mut partial.kernels[0], &|op| !matches!(op, Op::View { .. }));
    partial.layouts.clear();
    let error = infer(&partial).unwrap_err();
    assert!(error.contains("write the layouts of both sides of the view"), "{error}");

    // rms_norm with only a reduce layout written, in another thread order than the loads'
    // natural one: the loop's tiles take a layout that reduces to it.
    let original = example("rms_norm");
    let mut partial = original.clone();
    strip(&mut partial);
    let reduce =
        partial.kernels[0].insts.iter().find(|(_, i)| matches!(i.op, Op::Reduce { .. })).map(|(id, _)| id).unwrap();
    let written = layout("replicated(32).spatial(4,1)");
    if let Op::Reduce { layout, .. } = &mut partial.kernels[0].insts[reduce].op {
        *layout = Some(written.clone());
    }
    let inferred = infer_ok(&partial, "rms_norm (reduce written)");
    let Op::Reduce { x, layout: result, .. } = &inferred.kernels[0].insts[reduce].op else { panic!() };
    assert_eq!(result.as_ref(), Some(&written));
    assert_eq!(layout_of(&inferred.kernels[0], *x).reduce(&[1], true).unwrap(), written);
    let args = random_args(&original.kernels[0], &example_runs("rms_norm")[0], &mut rng);
    assert_same_outputs(&original, &inferred, &args, "rms_norm (reduce written)");
}

#[test]
fn two_written_layouts_meeting_in_one_value_are_an_error_naming_both() {
    let text = "
kernel conflict(x: ptr f32[128], y: ptr f32[128], z: ptr f32[128]) grid(1) warps(1) {
    %gx = global_view %x [128] strides [1]
    %gy = global_view %y [128] strides [1]
    %gz = global_view %z [128] strides [1]
    %a = fill 1.0 : f32[128] layout spatial(32).local(4)
    %b = load_global %gx [0] : f32[128]
    %c = add %a, %b
    %d = load_global %gy [0] : f32[128] layout local(4).spatial(32)
    %e = add %b, %d
    %f = add %c, 1.0
    store_global %f, %gz [0]
    store_global %e, %gz [0]
}";
    let module = parse_module(text).unwrap();
    verify_module(&module, &VerifyOptions::default()).unwrap();
    let error = infer(&module).unwrap_err();
    for part in [
        "`fill` (defining %a)",
        "`load_global` (defining %d)",
        "spatial(32).local(4)",
        "local(4).spatial(32)",
        "`add` (defining %c)",
        "`add` (defining %e)",
    ] {
        assert!(error.contains(part), "`{part}` missing from: {error}");
    }
}

#[test]
fn written_layouts_that_disagree_through_a_view_are_an_error_naming_both() {
    // %bytes's written layout, read in memory order by the two views, gives %back another
    // layout than the one written for %r, which %back is combined with.
    let text = "
kernel conflict(w: ptr u8[16, 16], y: ptr u8[16, 16]) grid(1) warps(1) {
    %gw = global_view %w [16, 16] strides [16, 1]
    %gy = global_view %y [16, 16] strides [16, 1]
    %bytes = load_global %gw [0, 0] : u8[16, 16] layout spatial(16,2).local(1,8)
    %q = view %bytes : u4[16, 32]
    %q1 = add %q, 1
    %back = view %q1 : u8[16, 16]
    %r = load_global %gy [0, 0] : u8[16, 16] layout local(1,2).spatial(16,2).local(1,4)
    %s = xor %back, %r
    store_global %s, %gy [0, 0]
}";
    let module = parse_module(text).unwrap();
    let error = infer(&module).unwrap_err();
    for part in [
        "`load_global` (defining %bytes)",
        "`view` (defining %q)",
        "`view` (defining %back)",
        "`load_global` (defining %r)",
    ] {
        assert!(error.contains(part), "`{part}` missing from: {error}");
    }
    // A written layout whose view has no memory-order reinterpretation is an error too.
    let text = "
kernel no_reinterpretation(w: ptr u8[16, 16], y: ptr u4[16, 32]) grid(1) warps(1) {
    %gw = global_view %w [16, 16] strides [16, 1]
    %gy = global_view %y [16, 32] strides [32, 1]
    %bytes = load_global %gw [0, 0] : u8[16, 16]
    %q = view %bytes : u4[16, 32]
    %r = load_global %gy [0, 0] : u4[16, 32] layout column_local(1,16).spatial(16,2)
    %s = xor %q, %r
    store_global %s, %gy [0, 0]
}";
    let error = infer(&parse_module(text).unwrap()).unwrap_err();
    assert!(error.contains("`view` (defining %q)") && error.contains("`load_global` (defining %r)"), "{error}");
}

#[test]
fn a_view_whose_sides_are_both_written_is_the_authors() {
    // Not a memory-order reinterpretation, but both sides written: kept, no error.
    let text = "
kernel both(w: ptr u8[16, 16], y: ptr u4[16, 32]) grid(1) warps(1) {
    %gw = global_view %w [16, 16] strides [16, 1]
    %gy = global_view %y [16, 32] strides [32, 1]
    %bytes = load_global %gw [0, 0] : u8[16, 16] layout spatial(16,2).local(1,8)
    %q = view %bytes : u4[16, 32] layout local(1,2).spatial(16,2).local(1,8)
    %r = load_global %gy [0, 0] : u4[16, 32]
    %s = xor %q, %r
    store_global %s, %gy [0, 0]
}";
    let inferred = infer_ok(&parse_module(text).unwrap(), "both");
    assert!(
        print_module(&inferred)
            .contains("%r = load_global %gy [0, 0] : u4[16, 32] layout local(1,2).spatial(16,2).local(1,8)")
    );
}

/// A kernel with a `dot` whose shapes do not tile, and the same kernel with layouts written.
#[test]
fn dots_that_do_not_tile_fall_back_to_plain_layouts() {
    let body = |a: &str, b: &str, c: &str| {
        format!(
            "
kernel small_dot(a: ptr f16[8, 16], b: ptr f16[16, 8], c: ptr f32[8, 8]) grid(1) warps(1) {{
    %ga = global_view %a [8, 16] strides [16, 1]
    %gb = global_view %b [16, 8] strides [8, 1]
    %gc = global_view %c [8, 8] strides [8, 1]
    %x = load_global %ga [0, 0] : f16[8, 16]{a}
    %y = load_global %gb [0, 0] : f16[16, 8]{b}
    %z = fill 0.0 : f32[8, 8]{c}
    %d = dot %x, %y, %z
    store_global %d, %gc [0, 0]
}}"
        )
    };
    let original = parse_module(&body(
        " layout spatial(8,4).local(1,4)",
        " layout spatial(16,2).local(1,4)",
        " layout spatial(8,4).local(1,2)",
    ))
    .unwrap();
    let stripped = parse_module(&body("", "", "")).unwrap();
    let inferred = infer_ok(&stripped, "small_dot");
    assert!(!print_module(&inferred).contains("_frag"));
    let args = random_args(&original.kernels[0], &[], &mut SplitMix64::new(3));
    assert_same_outputs(&original, &inferred, &args, "small_dot");
}

#[test]
fn rank_three_iota_select_and_reduce_without_layouts() {
    let text = "
kernel misc(x: ptr i32[8, 4, 16], y: ptr i32[8, 16]) grid(1) warps(2) {
    %gx = global_view %x [8, 4, 16] strides [64, 16, 1]
    %gy = global_view %y [8, 16] strides [16, 1]
    %t = load_global %gx [0, 0, 0] : i32[8, 4, 16]
    %i = iota 2 : i32[8, 4, 16]
    %m = lt %i, 8
    %z = fill 0 : i32[8, 4, 16]
    %s = select %m, %t, %z
    %r = reduce sum %s dims [1]
    %one = fill 1 : i32[8, 16]
    %r1 = add %r, %one
    store_global %r1, %gy [0, 0]
}";
    let inferred = infer_ok(&parse_module(text).unwrap(), "misc");
    let mut rng = SplitMix64::new(9);
    let mut args = random_args(&inferred.kernels[0], &[], &mut rng);
    let x = args[0].buffer().unwrap().codes();
    run_kernel(&inferred.kernels[0], &mut args, &RunOptions::default()).unwrap();
    let y = args[1].buffer().unwrap().codes();
    for a in 0..8 {
        for c in 0..16 {
            let sum = if c < 8 { (0..4).fold(0u32, |s, b| s.wrapping_add(x[a * 64 + b * 16 + c])) } else { 0 };
            assert_eq!(y[a * 16 + c], sum.wrapping_add(1), "y[{a}][{c}]");
        }
    }
}

#[test]
fn snapshots_of_the_inferred_examples() {
    for &name in EXAMPLES {
        let mut stripped = example(name);
        strip(&mut stripped);
        let inferred = infer_ok(&stripped, name);
        let text = print_module(&inferred);
        assert_eq!(parse_module(&text).as_ref(), Ok(&inferred), "{name}: the printed module does not read back");
        insta::assert_snapshot!(format!("infer_{name}"), text);
    }
    for format in [lowbit_formats()[2], lowbit_formats()[4]] {
        let mut stripped = build_module(&format).unwrap();
        strip(&mut stripped);
        let name = format.kernel_name();
        insta::assert_snapshot!(format!("infer_{name}"), print_module(&infer_ok(&stripped, &name)));
    }
}

// ----- the rules on their own -----

#[test]
fn view_is_the_memory_order_reinterpretation() {
    let (u8_layout, u4_layout) = (layout("spatial(16,8).local(4,4)"), layout("spatial(16,8).local(4,8)"));
    assert_eq!(rules::reinterpret(&u8_layout, 8, 4, &[64, 64]), Some(u4_layout.clone()));
    assert_eq!(rules::reinterpret(&u4_layout, 4, 8, &[64, 32]), Some(u8_layout));
    // u3: 3 bytes per thread and row hold 8 codes.
    assert_eq!(
        rules::reinterpret(&layout("spatial(16,8).local(4,3)"), 8, 3, &[64, 64]),
        Some(layout("spatial(16,8).local(4,8)"))
    );
    // A spatial innermost mode splits into a new local mode; it cannot merge.
    assert_eq!(
        rules::reinterpret(&layout("local(4).spatial(32)"), 32, 16, &[256]),
        Some(layout("local(4).spatial(32).local(2)"))
    );
    assert_eq!(rules::reinterpret(&layout("local(4).spatial(32)"), 16, 32, &[64]), None);
    // The B fragment runs along K: no byte of it is two consecutive u4 of a row.
    let b = MmaInstruction::M16N8K16F16.fragment(MmaOperand::B);
    assert_eq!(rules::reinterpret(&b, 4, 8, &[16, 4]), None);
    // Element counts must match.
    assert_eq!(rules::reinterpret(&layout("spatial(32).local(2)"), 8, 4, &[64, 4]), None);
}

#[test]
fn mma_arrangements() {
    let plan = rules::mma_layouts(16, 64, 64, 128, MmaInstruction::M16N8K16F16).unwrap();
    assert_eq!(plan.c, layout("local(1,2).spatial(1,4).local(2,1).spatial(8,4).local(1,2)"));
    assert_eq!(plan.a, layout("replicated(4).local(1,4).column_local(2,2).spatial(8,4).local(1,2)"));
    let plan = rules::mma_layouts(64, 64, 32, 128, MmaInstruction::M16N8K16F16).unwrap();
    assert_eq!(plan.c, layout("local(2,4).spatial(2,2).local(2,1).spatial(8,4).local(1,2)"));
    // 8-bit integers: k32 fragments.
    let plan = rules::mma_layouts(32, 32, 64, 128, MmaInstruction::M16N8K32S8).unwrap();
    assert!(plan.a.divide_right(&MmaInstruction::M16N8K32S8.fragment(MmaOperand::A)).is_ok());
    assert!(plan.b.divide_right(&MmaInstruction::M16N8K32S8.fragment(MmaOperand::B)).is_ok());
    // Fewer tiles than warps: the split replicates.
    let plan = rules::mma_layouts(16, 8, 16, 128, MmaInstruction::M16N8K16F16).unwrap();
    assert_eq!(plan.c, layout("replicated(4).local(2,1).spatial(8,4).local(1,2)"));
    // Shapes that do not tile.
    assert_eq!(rules::mma_layouts(8, 64, 64, 128, MmaInstruction::M16N8K16F16), None);
    assert_eq!(rules::mma_layouts(16, 64, 48, 128, MmaInstruction::M16N8K32U8), None);
    assert_eq!(rules::mma_instruction(DType::F32), None);
}

#[test]
fn conversion_free_accumulators() {
    use anybit_ir::program::RegisterTensorType;
    let f16 = |shape: Vec<usize>, l: &str| RegisterTensorType::new(DType::F16, shape, Some(layout(l)));
    let fit = |a: &RegisterTensorType, b: &RegisterTensorType, threads| {
        rules::conversion_free_accumulator((a, b), DType::F32, threads, MmaInstruction::M16N8K16F16)
    };
    // Operands already in the straight arrangement's fragments: the straight accumulator.
    let plan = rules::mma_layouts(16, 64, 64, 128, MmaInstruction::M16N8K16F16).unwrap();
    let (a, b) = (f16(vec![16, 64], &plan.a.to_string()), f16(vec![64, 64], &plan.b.to_string()));
    assert_eq!(fit(&a, &b, 128), Some(plan.c));
    // x with 8 rows as the B operands of xᵀ and W as the A operands of Wᵀ (warps along N):
    // only the swapped accumulator takes both as they are.
    let x = f16(vec![8, 64], "replicated(4).local(1,8).spatial(8,4).local(1,2)");
    let w = f16(vec![64, 64], "spatial(1,4).local(4,1).local(2,2).column_spatial(4,8).local(2,1)");
    assert_eq!(fit(&x, &w, 128), Some(layout("spatial(1,4).local(1,2).column_spatial(4,8).local(2,1)")));
    // Operands that fit no arrangement as they stand: none (the rule falls back).
    let spread = f16(vec![8, 64], "spatial(8,16).local(1,4)");
    assert_eq!(fit(&spread, &w, 128), None);
}

#[test]
fn loads_broadcasts_and_reduces() {
    let f16 = DType::F16.bits();
    assert_eq!(rules::vector_candidates(&[4, 256], f16, 128)[0], layout("spatial(4,32).local(1,8)"));
    assert_eq!(rules::vector_candidates(&[1, 64], f16, 128)[0], layout("replicated(16).spatial(1,8).local(1,8)"));
    assert_eq!(rules::vector_candidates(&[64, 64], f16, 128)[0], layout("local(4,1).spatial(16,8).local(1,8)"));
    // 24 bytes per row (u3 weights): 12-byte runs, no replication.
    assert_eq!(rules::vector_candidates(&[64, 24], 8, 128)[0], layout("spatial(64,2).local(1,12)"));
    assert!(rules::reasonable_global_load(&layout("spatial(16,8).local(4,4)"), 8));
    assert!(!rules::reasonable_global_load(&MmaInstruction::M16N8K16F16.fragment(MmaOperand::B), 16));
    assert_eq!(
        rules::broadcast_source(&layout("spatial(64,2).local(1,32)"), &[1, 64]),
        Some(layout("replicated(64).spatial(1,2).local(1,32)"))
    );
    assert_eq!(
        rules::broadcast_source(&layout("spatial(4,32).local(1,8)"), &[4, 1]),
        Some(layout("spatial(4,1).replicated(32)"))
    );
    let result = layout("replicated(32).spatial(4,1)");
    let operand = rules::reduce_preimage(&result, &[4, 256], &[1], true).unwrap();
    assert_eq!(operand.reduce(&[1], true).unwrap(), result);
    assert_eq!(operand.shape(), vec![4, 256]);
    let dropped = layout("spatial(4).replicated(32)");
    let operand = rules::reduce_preimage(&dropped, &[4, 256], &[1], false).unwrap();
    assert_eq!(operand.reduce(&[1], false).unwrap(), dropped);
}

/// The 16-byte chunks the 8 rows of an `ldmatrix` phase read (the same column, 8 consecutive
/// rows) fall in 8 different chunks of the 128-byte bank line.
fn ldmatrix_rows_conflict_free(layout: &SharedLayout, bits: u32, shape: &[usize]) -> bool {
    let chunk_elements = 128 / bits as usize;
    (0..shape[0] / 8).all(|group| {
        (0..shape[1] / chunk_elements).all(|chunk| {
            let mut banks: Vec<u64> = (0..8)
                .map(|r| layout.address(&[group * 8 + r, chunk * chunk_elements], bits).unwrap().byte / 16 % 8)
                .collect();
            banks.sort_unstable();
            banks.dedup();
            banks.len() == 8
        })
    })
}

#[test]
fn shared_tiles_are_swizzled_by_their_row_size() {
    let swizzle = |shape: &[usize], bits| rules::shared_swizzle(shape, bits).map(|s| (s.bits(), s.base(), s.shift()));
    assert_eq!(swizzle(&[32, 64], 16), Some((3, 4, 3)));
    assert_eq!(swizzle(&[64, 32], 16), Some((2, 4, 3)));
    assert_eq!(swizzle(&[64, 128], 16), Some((3, 4, 4)));
    assert_eq!(swizzle(&[64, 8], 16), None);
    // Too small for the whole swizzle: only the row bits inside the tile take part.
    assert_eq!(swizzle(&[2, 64], 16), Some((1, 4, 3)));
    assert_eq!(swizzle(&[1, 64], 16), None);
    assert_eq!(swizzle(&[4096], 16), None);
    assert_eq!(swizzle(&[64, 24], 8), None);
    for (shape, bits) in
        [([64, 16], 16), ([64, 32], 16), ([64, 64], 16), ([64, 128], 16), ([32, 256], 16), ([64, 64], 8)]
    {
        let plain = SharedLayout::row_major(&shape).unwrap();
        let chosen = rules::shared_layout(&shape, bits).unwrap();
        assert!(ldmatrix_rows_conflict_free(&chosen, bits, &shape), "{shape:?} × {bits} bits: {chosen}");
        if shape[1] * bits as usize > 128 {
            assert!(!ldmatrix_rows_conflict_free(&plain, bits, &shape), "{shape:?}: the plain layout is already free");
        }
        assert_eq!(chosen.is_injective(), Ok(true));
    }
}

proptest! {
    #[test]
    fn candidate_layouts_fit_their_tile_and_block(
        shape in proptest::collection::vec(1usize..=48, 0..=3),
        bits in prop_oneof![Just(1u32), Just(3), Just(4), Just(8), Just(16), Just(32)],
        warps in 1usize..=8,
    ) {
        let threads = 32 * warps;
        let candidates = rules::vector_candidates(&shape, bits, threads);
        prop_assert!(!candidates.is_empty());
        for l in candidates {
            prop_assert_eq!(l.shape(), shape.clone());
            prop_assert_eq!(l.num_threads(), threads);
        }
    }
}
