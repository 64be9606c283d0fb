//! Tests of the verifier: valid kernels verify (strictly, when they have layouts); every
//! invariant of `anybit_ir::verify` has a failing example, made by breaking a valid kernel
//! through its public fields, with the diagnostic it must produce; random corruptions never
//! panic the verifier.

use anybit_ir::builder::KernelBuilder;
use anybit_ir::diag::{Diagnostic, Span};
use anybit_ir::program::{
    Axis, BinaryOp, Block, CompareOp, GridExpr, InstData, InstId, Kernel, LayoutDef, Literal, Module, NamedLayout, Op,
    Operand, ParamType, ReduceOp, RegisterTensorType, SharedTensorType, Type, UnaryOp, ValueData, ValueDef, ValueId,
};
use anybit_ir::verify::{H100_SHARED_MEMORY_LIMIT, VerifyOptions, verify_kernel, verify_module};
use anybit_layouts::{RegisterLayout, SharedLayout};
use proptest::prelude::*;

use super::common::dtype;

/// The accumulator fragment of `mma.m16n8k16`: [16, 8] over 32 threads, 4 slots each.
const C: &str = "local(2,1).spatial(8,4).local(1,2)";
/// Its A fragment: [16, 16] over 32 threads, 8 slots each.
const A: &str = "local(2,2).spatial(8,4).local(1,2)";
/// Packed bytes of the B operand: [16, 4] over 32 threads, 2 slots (16 bits) each.
const W8: &str = "local(2,1).spatial(8,4)";

fn reg(dt: &str, shape: &[usize], layout: Option<&str>) -> RegisterTensorType {
    RegisterTensorType::new(dtype(dt), shape.to_vec(), layout.map(|l| l.parse::<RegisterLayout>().unwrap()))
}

fn shared(dt: &str, shape: &[usize], layout: Option<&str>) -> SharedTensorType {
    SharedTensorType::new(dtype(dt), shape.to_vec(), layout.map(|l| l.parse::<SharedLayout>().unwrap()))
}

/// A small quantized GEMM tile kernel, with the handles the tests break.
struct Gemm {
    kernel: Kernel,
    /// Parameter `a` (ptr f16) and `m` (i32).
    a: ValueId,
    m: ValueId,
    /// `%m0 = mul %bx, 16`.
    m0: ValueId,
    /// `%tile = alloc_shared : f16[16, 16]`.
    tile: ValueId,
    /// `%acc0 = fill 0.0 : f32[16, 8]`.
    acc0: ValueId,
    /// The loop, its index `%kk`, its carried value `%acc`, its result `%res`.
    for_inst: InstId,
    kk: ValueId,
    acc: ValueId,
    res: ValueId,
    /// In the body: `%x = load_shared`, `%w4 = view`, `%d = dot` (yielded).
    x: ValueId,
    w4: ValueId,
    d: ValueId,
    /// `%inside = lt %m0, %m`, the `if` on it, `%zero` in its else branch, its result `%out`.
    inside: ValueId,
    if_inst: InstId,
    zero: ValueId,
    out: ValueId,
    /// `%rowsum = reduce sum %out dims [1] keep`.
    rowsum: ValueId,
    /// The `commit_group` in the body, the final `store_global` and `free_shared`.
    commit: InstId,
    store: InstId,
    free: InstId,
}

fn gemm(layouts: bool) -> Gemm {
    let l = |s: &'static str| layouts.then_some(s);
    let (f16, i32) = (dtype("f16"), dtype("i32"));
    let mut k = KernelBuilder::new("gemm", 1);
    let a = k.pointer_param("a", f16).unwrap();
    let b = k.pointer_param("b", dtype("u8")).unwrap();
    let c = k.pointer_param("c", dtype("f32")).unwrap();
    let m = k.scalar_param("m", i32).unwrap();
    let n = k.scalar_param("n", i32).unwrap();
    let kdim = k.scalar_param("k", i32).unwrap();
    let grid = vec![
        GridExpr::cdiv(k.grid_param(m).unwrap(), GridExpr::Const(16)),
        GridExpr::cdiv(k.grid_param(n).unwrap(), GridExpr::Const(8)),
    ];
    k.set_grid(grid);
    let ga = k.global_view(a, &[m.into(), kdim.into()], None).unwrap();
    let half_n = k.binary(BinaryOp::Div, n, 2).unwrap();
    let gb = k.global_view(b, &[kdim.into(), half_n.into()], None).unwrap();
    let gc = k.global_view(c, &[m.into(), n.into()], None).unwrap();
    let bx = k.block_index(Axis::X).unwrap();
    let by = k.block_index(Axis::Y).unwrap();
    let m0 = k.mul(bx, 16).unwrap();
    k.name(m0, "m0").unwrap();
    let n0 = k.mul(by, 8).unwrap();
    let n0_bytes = k.mul(by, 4).unwrap();
    let tile = k.alloc_shared(shared("f16", &[16, 16], l("row_major(16,16)"))).unwrap();
    k.name(tile, "tile").unwrap();
    let acc0 = k.fill(0.0, reg("f32", &[16, 8], l(C))).unwrap();
    k.name(acc0, "acc0").unwrap();
    let mut inner = None;
    let res = k
        .for_range(0, kdim, 16, Some(2), &[acc0.into()], |k, kk, carried| {
            k.name(kk, "kk")?;
            k.name(carried[0], "acc")?;
            k.copy_async(ga, &[m0.into(), kk.into()], tile, &[0.into(), 0.into()], &[16, 16])?;
            k.commit_group()?;
            k.wait_group(0)?;
            k.sync()?;
            let x = k.load_shared(tile, &[0.into(), 0.into()], reg("f16", &[16, 16], l(A)))?;
            k.name(x, "x")?;
            let wq = k.load_global(gb, &[kk.into(), n0_bytes.into()], reg("u8", &[16, 4], l(W8)))?;
            let w4 = k.view(wq, reg("u4", &[16, 8], l(C)))?;
            k.name(w4, "w4")?;
            let w = k.cast(w4, f16)?;
            let d = k.dot(x, w, carried[0])?;
            k.name(d, "d")?;
            k.sync()?;
            inner = Some((x, w4, d));
            Ok(vec![d.into()])
        })
        .unwrap()[0];
    k.name(res, "res").unwrap();
    let (x, w4, d) = inner.unwrap();
    let inside = k.compare(CompareOp::Lt, m0, m).unwrap();
    k.name(inside, "inside").unwrap();
    let mut zero = None;
    let out = k
        .if_else(
            inside,
            |_| Ok(vec![res.into()]),
            |k| {
                let z = k.fill(0.0, reg("f32", &[16, 8], l(C)))?;
                k.name(z, "zero")?;
                zero = Some(z);
                Ok(vec![z.into()])
            },
        )
        .unwrap()[0];
    k.name(out, "out").unwrap();
    let rowsum = k.reduce(ReduceOp::Sum, out, &[1], true).unwrap();
    k.name(rowsum, "rowsum").unwrap();
    k.store_global(out, gc, &[m0.into(), n0.into()]).unwrap();
    k.free_shared(tile).unwrap();
    let kernel = k.finish();
    let def = |v: ValueId| match kernel.values[v].def {
        ValueDef::Result(i, _) | ValueDef::LoopIndex(i) | ValueDef::LoopCarried(i, _) => i,
        ValueDef::Param(_) => unreachable!(),
    };
    let for_inst = def(res);
    let if_inst = def(out);
    let body = &kernel.body.insts;
    let store = body[body.len() - 2];
    let free = body[body.len() - 1];
    let commit = match &kernel.insts[for_inst].op {
        Op::For { body, .. } => body.insts[1],
        _ => unreachable!(),
    };
    let kk = match &kernel.insts[for_inst].op {
        Op::For { index, .. } => *index,
        _ => unreachable!(),
    };
    let acc = match &kernel.insts[for_inst].op {
        Op::For { carried, .. } => carried[0],
        _ => unreachable!(),
    };
    Gemm {
        kernel,
        a,
        m,
        m0,
        tile,
        acc0,
        for_inst,
        kk,
        acc,
        res,
        x,
        w4,
        d,
        inside,
        if_inst,
        zero: zero.unwrap(),
        out,
        rowsum,
        commit,
        store,
        free,
    }
}

/// Loops in loops, a branch and a shared scratch tile in the inner loop, and the elementwise
/// and tensor instructions the gemm kernel lacks.
fn nested() -> Kernel {
    let (i32, f32) = (dtype("i32"), dtype("f32"));
    let mut k = KernelBuilder::new("nested", 1);
    let n = k.scalar_param("n", i32).unwrap();
    let out = k.pointer_param("out", f32).unwrap();
    let rows_out = k.pointer_param("rows_out", f32).unwrap();
    let g = k.global_view(out, &[16.into(), 8.into()], None).unwrap();
    let g_rows = k.global_view(rows_out, &[16.into()], None).unwrap();
    let one = k.constant(1, i32).unwrap();
    let init = k.fill(0.0, reg("f32", &[16, 8], Some(C))).unwrap();
    let res = k
        .for_range(0, n, 1, None, &[init.into()], |k, i, outer| {
            let inner = k.for_range(i, n, one, Some(4), &[outer[0].into()], |k, j, acc| {
                let scratch = k.alloc_shared(shared("f32", &[16, 8], Some("row_major(16,8)")))?;
                k.store_shared(acc[0], scratch, &[0.into(), 0.into()])?;
                k.sync()?;
                let back = k.load_shared(scratch, &[0.into(), 0.into()], reg("f32", &[16, 8], Some(C)))?;
                k.sync()?;
                k.free_shared(scratch)?;
                let odd = k.binary(BinaryOp::Rem, j, 2)?;
                let next = k.if_else(
                    odd,
                    |k| {
                        let cols = k.iota(1, reg("i32", &[16, 8], Some(C)))?;
                        let cols = k.cast(cols, f32)?;
                        let sum = k.add(back, cols)?;
                        Ok(vec![sum.into()])
                    },
                    |k| {
                        let neg = k.unary(UnaryOp::Neg, back)?;
                        Ok(vec![neg.into()])
                    },
                )?;
                let small = k.compare(CompareOp::Lt, next[0], 100.0)?;
                let clipped = k.select(small, next[0], 100.0)?;
                Ok(vec![clipped.into()])
            })?;
            Ok(vec![inner[0].into()])
        })
        .unwrap();
    let row_max = k.reduce(ReduceOp::Max, res[0], &[1], false).unwrap();
    k.store_global(row_max, g_rows, &[0.into()]).unwrap();
    let row_sum = k.reduce(ReduceOp::Sum, res[0], &[1], true).unwrap();
    let spread = k.broadcast(row_sum, reg("f32", &[16, 8], Some(C))).unwrap();
    let total = k.add(spread, res[0]).unwrap();
    k.store_global(total, g, &[0.into(), 0.into()]).unwrap();
    k.finish()
}

// ----- spans, so the tests can check which one a diagnostic carries -----

const KERNEL_SPAN: Span = Span { start: 0, end: 99_999 };

fn inst_span(i: InstId) -> Span {
    Span::new(10_000 + 10 * i.index(), 10_000 + 10 * i.index() + 5)
}

fn value_span(v: ValueId) -> Span {
    Span::new(50_000 + 10 * v.index(), 50_000 + 10 * v.index() + 5)
}

fn param_span(p: usize) -> Span {
    Span::new(90_000 + 10 * p, 90_000 + 10 * p + 5)
}

/// The gemm kernel with a distinct span on the kernel, every parameter, value and instruction.
fn spanned(layouts: bool) -> Gemm {
    let mut g = gemm(layouts);
    let k = &mut g.kernel;
    k.span = Some(KERNEL_SPAN);
    for (p, param) in k.params.iter_mut().enumerate() {
        param.span = Some(param_span(p));
    }
    for i in 0..k.values.len() {
        let v = ValueId::from_index(i);
        k.values[v].span = Some(value_span(v));
    }
    for i in 0..k.insts.len() {
        let id = InstId::from_index(i);
        k.insts[id].span = Some(inst_span(id));
    }
    g
}

// ----- helpers -----

fn def_inst(k: &Kernel, v: ValueId) -> InstId {
    match k.values[v].def {
        ValueDef::Result(i, _) | ValueDef::LoopIndex(i) | ValueDef::LoopCarried(i, _) => i,
        ValueDef::Param(p) => panic!("{v:?} is parameter {p}"),
    }
}

fn for_body(k: &mut Kernel, i: InstId) -> &mut Block {
    match &mut k.insts[i].op {
        Op::For { body, .. } => body,
        op => panic!("not a loop: {op:?}"),
    }
}

fn branches(k: &mut Kernel, i: InstId) -> (&mut Block, &mut Block) {
    match &mut k.insts[i].op {
        Op::If { then_body, else_body, .. } => (then_body, else_body),
        op => panic!("not an if: {op:?}"),
    }
}

fn diagnostics(k: &Kernel, options: &VerifyOptions) -> Vec<Diagnostic> {
    match verify_kernel(k, options) {
        Ok(()) => panic!("the verifier accepted a broken kernel"),
        Err(d) => d.0,
    }
}

fn listing(diags: &[Diagnostic]) -> String {
    diags.iter().map(|d| format!("  {} @ {:?}", d.message, d.span)).collect::<Vec<_>>().join("\n")
}

/// The diagnostic whose message contains every part.
fn find(diags: &[Diagnostic], parts: &[&str]) -> Diagnostic {
    diags
        .iter()
        .find(|d| parts.iter().all(|p| d.message.contains(p)))
        .cloned()
        .unwrap_or_else(|| panic!("no diagnostic contains all of {parts:?}; got:\n{}", listing(diags)))
}

/// Verifies with the default options, expects failure, returns the diagnostic with `parts`.
fn expect(k: &Kernel, parts: &[&str]) -> Diagnostic {
    find(&diagnostics(k, &VerifyOptions::default()), parts)
}

fn expect_strict(k: &Kernel, parts: &[&str]) -> Diagnostic {
    find(&diagnostics(k, &VerifyOptions::strict()), parts)
}

fn ok(k: &Kernel, options: &VerifyOptions) {
    if let Err(d) = verify_kernel(k, options) {
        panic!("the verifier rejected a valid kernel:\n{}", listing(&d.0));
    }
}

// ----- valid kernels -----

#[test]
fn options_default_and_strict() {
    let default = VerifyOptions::default();
    assert!(!default.require_layouts);
    assert_eq!(default.shared_memory_limit, 232_448);
    assert_eq!(H100_SHARED_MEMORY_LIMIT, 227 * 1024);
    assert_eq!(VerifyOptions::new(), default);
    assert!(VerifyOptions::strict().require_layouts);
    assert_eq!(VerifyOptions::strict().shared_memory_limit, H100_SHARED_MEMORY_LIMIT);
    let custom = VerifyOptions::new().with_require_layouts(true).with_shared_memory_limit(100);
    assert_eq!(custom, VerifyOptions { require_layouts: true, shared_memory_limit: 100 });
}

#[test]
fn valid_kernels_verify() {
    let with = gemm(true).kernel;
    ok(&with, &VerifyOptions::default());
    ok(&with, &VerifyOptions::strict());
    let spanned = spanned(true).kernel;
    ok(&spanned, &VerifyOptions::strict());
    // Without layouts: fine by default, not in strict mode.
    let without = gemm(false).kernel;
    ok(&without, &VerifyOptions::default());
    ok(&nested(), &VerifyOptions::strict());
    let module = Module {
        layouts: vec![
            NamedLayout { name: "c".into(), layout: LayoutDef::Register(C.parse().unwrap()), span: None },
            NamedLayout {
                name: "s".into(),
                layout: LayoutDef::Shared("row_major(16,16)".parse().unwrap()),
                span: None,
            },
        ],
        kernels: vec![with.clone(), {
            let mut other = with;
            other.name = "gemm2".into();
            other
        }],
    };
    assert_eq!(verify_module(&module, &VerifyOptions::strict()), Ok(()));
    assert_eq!(verify_module(&Module::default(), &VerifyOptions::strict()), Ok(()));
}

#[test]
fn strict_mode_needs_every_layout() {
    let g = spanned(false);
    let diags = diagnostics(&g.kernel, &VerifyOptions::strict());
    // Every written type is reported where it is written; derived types are not reported again.
    let fill = find(&diags, &["`fill` (instruction #", "defining %acc0", "has no layout (strict verification"]);
    assert_eq!(fill.span, Some(inst_span(def_inst(&g.kernel, g.acc0))));
    find(&diags, &["defining %x", "register f16[16, 16] has no layout"]);
    find(&diags, &["defining %w4", "register u4[16, 8] has no layout"]);
    find(&diags, &["defining %zero", "has no layout"]);
    find(&diags, &["defining %tile", "shared f16[16, 16] has no layout"]);
    find(&diags, &["defining %rowsum", "`reduce` has no result layout"]);
    assert!(diags.iter().all(|d| !d.message.contains("%d:") && !d.message.contains("%out")), "{}", listing(&diags));
    assert!(diags.iter().all(|d| d.message.starts_with("kernel `gemm`: ")));
    // One layout missing in an otherwise complete kernel.
    let mut g = spanned(true);
    let i = def_inst(&g.kernel, g.x);
    let Op::LoadShared { ty, .. } = &mut g.kernel.insts[i].op else { panic!() };
    ty.layout = None;
    g.kernel.values[g.x].ty = Type::Register(reg("f16", &[16, 16], None));
    ok(&g.kernel, &VerifyOptions::default());
    let d = expect_strict(&g.kernel, &["defining %x", "f16[16, 16] has no layout"]);
    assert_eq!(d.span, Some(inst_span(i)));
}

// ----- 1. handles and structure -----

#[test]
fn operand_handle_out_of_range() {
    let mut g = spanned(true);
    let i = def_inst(&g.kernel, g.m0);
    let Op::Binary { lhs, .. } = &mut g.kernel.insts[i].op else { panic!() };
    *lhs = Operand::Value(ValueId::from_index(9999));
    let d = expect(
        &g.kernel,
        &["`mul` (instruction #", "defining %m0", "operand 0 refers to value #9999, which does not exist"],
    );
    assert_eq!(d.span, Some(inst_span(i)));
}

#[test]
fn result_and_loop_handles_out_of_range() {
    let mut g = spanned(true);
    let f = g.for_inst;
    if let Op::For { index, carried, .. } = &mut g.kernel.insts[f].op {
        *index = ValueId::from_index(7777);
        carried[0] = ValueId::from_index(7778);
    }
    g.kernel.insts[g.store].results.push(ValueId::from_index(7779));
    g.kernel.params[0].value = ValueId::from_index(7780);
    let diags = diagnostics(&g.kernel, &VerifyOptions::default());
    assert_eq!(find(&diags, &["the loop index is value #7777, which does not exist"]).span, Some(inst_span(f)));
    find(&diags, &["carried value 0 is value #7778, which does not exist"]);
    find(&diags, &["`store_global`", "result 0 is value #7779, which does not exist"]);
    assert_eq!(find(&diags, &["parameter `a` stands for value #7780"]).span, Some(param_span(0)));
    // The values they used to point at are now defined nowhere.
    assert_eq!(find(&diags, &["value %kk is defined nowhere"]).span, Some(value_span(g.kk)));
    find(&diags, &["value %a is defined nowhere"]);
}

#[test]
fn block_lists_missing_instruction() {
    let mut g = spanned(true);
    g.kernel.body.insts.insert(0, InstId::from_index(555));
    let d = expect(&g.kernel, &["the kernel body lists instruction #555, which does not exist"]);
    assert_eq!(d.span, Some(KERNEL_SPAN));
    let mut g = spanned(true);
    let f = g.for_inst;
    for_body(&mut g.kernel, f).insts.push(InstId::from_index(556));
    let d = expect(&g.kernel, &["the body of `for` (instruction #", "lists instruction #556"]);
    assert_eq!(d.span, Some(inst_span(f)));
}

#[test]
fn instruction_in_two_blocks() {
    let mut g = spanned(true);
    let commit = g.commit;
    g.kernel.body.insts.push(commit);
    let d = expect(
        &g.kernel,
        &["`commit_group` (instruction #", "is listed in the body of `for`", "and again in the kernel body"],
    );
    assert_eq!(d.span, Some(inst_span(commit)));
    // Twice in one block.
    let mut g = spanned(true);
    let store = g.store;
    g.kernel.body.insts.push(store);
    expect(&g.kernel, &["`store_global` (instruction #", "is listed more than once in the kernel body"]);
}

#[test]
fn instruction_inside_itself() {
    let mut g = spanned(true);
    let f = g.for_inst;
    for_body(&mut g.kernel, f).insts.push(f);
    let d = expect(&g.kernel, &["`for` (instruction #", "defining %res", "is listed inside its own block"]);
    assert_eq!(d.span, Some(inst_span(f)));
    // A cycle through two blocks: the `if` lists the loop, which lists the `if`.
    let mut g = spanned(true);
    let (f, i) = (g.for_inst, g.if_inst);
    for_body(&mut g.kernel, f).insts.push(i);
    branches(&mut g.kernel, i).0.insts.push(f);
    let diags = diagnostics(&g.kernel, &VerifyOptions::default());
    find(&diags, &["`for` (instruction #", "is listed inside its own block"]);
}

#[test]
fn orphan_instruction() {
    let mut g = spanned(true);
    let commit = g.commit;
    let f = g.for_inst;
    for_body(&mut g.kernel, f).insts.retain(|&i| i != commit);
    let d = expect(&g.kernel, &["`commit_group` (instruction #", "is in no block"]);
    assert_eq!(d.span, Some(inst_span(commit)));
}

#[test]
fn inconsistent_definitions() {
    // A result that says it is another instruction's result.
    let mut g = spanned(true);
    let store = g.store;
    g.kernel.values[g.m0].def = ValueDef::Result(store, 0);
    let d = expect(
        &g.kernel,
        &["value %m0 is recorded as result 0 of `store_global` (instruction #", "but it is result 0 of `mul`"],
    );
    assert_eq!(d.span, Some(value_span(g.m0)));
    // A loop index that points at a non-loop.
    let mut g = spanned(true);
    let mul = def_inst(&g.kernel, g.m0);
    g.kernel.values[g.kk].def = ValueDef::LoopIndex(mul);
    expect(&g.kernel, &["value %kk is recorded as the index of `mul`", "but it is the index of `for`"]);
    // A carried value with the wrong position.
    let mut g = spanned(true);
    let f = g.for_inst;
    g.kernel.values[g.acc].def = ValueDef::LoopCarried(f, 3);
    expect(&g.kernel, &["value %acc is recorded as carried value 3 of `for`", "but it is carried value 0 of `for`"]);
    // A parameter value naming another parameter.
    let mut g = spanned(true);
    g.kernel.values[g.a].def = ValueDef::Param(1);
    expect(&g.kernel, &["value %a is recorded as parameter #1 (`b`), but it is parameter #0 (`a`)"]);
}

#[test]
fn parameter_and_value_disagree() {
    let mut g = spanned(true);
    g.kernel.values[g.a].name = "a2".into();
    let d = expect(&g.kernel, &["parameter `a` stands for a value named %a2"]);
    assert_eq!(d.span, Some(param_span(0)));
    let mut g = spanned(true);
    g.kernel.values[g.m].ty = Type::Scalar(dtype("i16"));
    expect(&g.kernel, &["parameter `m` is a `i32`, but its value %m is recorded as a scalar i16"]);
    let mut g = spanned(true);
    g.kernel.params[0].ty = ParamType::Pointer(dtype("f32"));
    expect(&g.kernel, &["parameter `a` is a `ptr f32`, but its value %a is recorded as a pointer to f16"]);
}

#[test]
fn value_defined_twice_or_nowhere() {
    // Two instructions claim one value.
    let mut g = spanned(true);
    let zero_inst = def_inst(&g.kernel, g.zero);
    g.kernel.insts[zero_inst].results = vec![g.acc0];
    let diags = diagnostics(&g.kernel, &VerifyOptions::default());
    let d = find(&diags, &["value %acc0 is defined 2 times: as result 0 of `fill`", "as result 0 of `fill`"]);
    assert_eq!(d.span, Some(value_span(g.acc0)));
    find(&diags, &["value %zero is defined nowhere"]);
    // A value nothing defines.
    let mut g = spanned(true);
    let store = g.store;
    g.kernel.values.append(ValueData {
        name: "ghost".into(),
        ty: Type::Scalar(dtype("i32")),
        def: ValueDef::Result(store, 5),
        span: None,
    });
    let d = expect(&g.kernel, &["value %ghost is defined nowhere: it is recorded as result 5 of `store_global`"]);
    assert_eq!(d.span, Some(inst_span(store)), "falls back to the defining instruction's span");
    // A loop index that is also a result.
    let mut g = spanned(true);
    let f = g.for_inst;
    if let Op::For { index, .. } = &mut g.kernel.insts[f].op {
        *index = g.m0;
    }
    let diags = diagnostics(&g.kernel, &VerifyOptions::default());
    find(&diags, &["value %m0 is defined 2 times", "the index of `for`"]);
}

// ----- 2. SSA and scoping -----

#[test]
fn use_before_definition() {
    let mut g = spanned(true);
    // Move `%m0 = mul %bx, 16` to the very end of the body.
    let mul = def_inst(&g.kernel, g.m0);
    g.kernel.body.insts.retain(|&i| i != mul);
    g.kernel.body.insts.push(mul);
    let diags = diagnostics(&g.kernel, &VerifyOptions::default());
    let d = find(
        &diags,
        &["`lt` (instruction #", "defining %inside", "operand 0 %m0 is used before it is defined (by `mul`"],
    );
    assert_eq!(d.span, Some(inst_span(def_inst(&g.kernel, g.inside))));
    // Also inside the loop body, in the `copy_async`.
    find(&diags, &["`copy_async`", "%m0 is used before it is defined"]);
}

#[test]
fn own_result_as_operand() {
    let mut g = spanned(true);
    let mul = def_inst(&g.kernel, g.m0);
    let Op::Binary { rhs, .. } = &mut g.kernel.insts[mul].op else { panic!() };
    *rhs = Operand::Value(g.m0);
    expect(&g.kernel, &["defining %m0): operand 1 %m0 is the instruction's own result"]);
}

#[test]
fn loop_values_after_the_loop() {
    // The carried value used after the loop.
    let mut g = spanned(true);
    let store = g.store;
    let Op::StoreGlobal { value, .. } = &mut g.kernel.insts[store].op else { panic!() };
    *value = g.acc;
    let d = expect(
        &g.kernel,
        &[
            "`store_global` (instruction #",
            "operand 0 %acc is a carried value of `for`",
            "visible only inside that loop's body",
        ],
    );
    assert_eq!(d.span, Some(inst_span(store)));
    // The index used after the loop.
    let mut g = spanned(true);
    let inside = def_inst(&g.kernel, g.inside);
    let Op::Compare { rhs, .. } = &mut g.kernel.insts[inside].op else { panic!() };
    *rhs = Operand::Value(g.kk);
    expect(
        &g.kernel,
        &["defining %inside): operand 1 %kk is the index of `for`", "visible only inside that loop's body"],
    );
    // The carried value as its own initial value.
    let mut g = spanned(true);
    let f = g.for_inst;
    if let Op::For { inits, .. } = &mut g.kernel.insts[f].op {
        inits[0] = Operand::Value(g.acc);
    }
    expect(&g.kernel, &["`for` (instruction #", "operand 3 %acc is a carried value of `for`"]);
}

#[test]
fn loop_result_inside_the_loop() {
    let mut g = spanned(true);
    let f = g.for_inst;
    for_body(&mut g.kernel, f).yields[0] = Operand::Value(g.res);
    let d = expect(
        &g.kernel,
        &["`yield` 0 of the body of `for` (instruction #", "%res is a result of the enclosing `for`"],
    );
    assert_eq!(d.span, Some(inst_span(f)));
}

#[test]
fn branch_value_after_the_branch() {
    let mut g = spanned(true);
    let store = g.store;
    let Op::StoreGlobal { value, .. } = &mut g.kernel.insts[store].op else { panic!() };
    *value = g.zero;
    expect(
        &g.kernel,
        &[
            "operand 0 %zero is defined by `fill` (instruction #",
            "in the `else` branch of `if`",
            "which does not enclose this use",
        ],
    );
    // A value of one branch yielded by the other.
    let mut g = spanned(true);
    let i = g.if_inst;
    branches(&mut g.kernel, i).0.yields[0] = Operand::Value(g.zero);
    expect(&g.kernel, &["`yield` 0 of the `then` branch of `if`", "%zero is used before it is defined"]);
}

#[test]
fn kernel_body_yields_nothing() {
    let mut g = spanned(true);
    g.kernel.body.yields.push(Operand::Value(g.m0));
    let d = expect(&g.kernel, &["the kernel body yields 1 values; it must yield none"]);
    assert_eq!(d.span, Some(KERNEL_SPAN));
}

// ----- 3. types -----

#[test]
fn recorded_type_differs_from_inferred() {
    let mut g = spanned(true);
    g.kernel.values[g.m0].ty = Type::Scalar(dtype("i16"));
    let diags = diagnostics(&g.kernel, &VerifyOptions::default());
    let d =
        find(&diags, &["`mul` (instruction #", "result %m0 is recorded as a scalar i16, but `mul` gives a scalar i32"]);
    assert_eq!(d.span, Some(value_span(g.m0)));
    // A layout change alone is a type change too, and the text shows the layouts.
    let mut g = spanned(true);
    g.kernel.values[g.d].ty = Type::Register(reg("f32", &[16, 8], Some("spatial(16,2).local(1,4)")));
    expect(
        &g.kernel,
        &[
            "result %d is recorded as a register f32[16, 8] layout spatial(16,2).local(1,4)",
            "`dot` gives a register f32[16, 8] layout local(2,1).spatial(8,4).local(1,2)",
        ],
    );
}

#[test]
fn result_count_differs() {
    let mut g = spanned(true);
    let store = g.store;
    let extra = g.kernel.values.append(ValueData {
        name: "extra".into(),
        ty: Type::Scalar(dtype("i32")),
        def: ValueDef::Result(store, 0),
        span: None,
    });
    g.kernel.insts[store].results.push(extra);
    let d = expect(
        &g.kernel,
        &["`store_global` (instruction #", "defining %extra) has 1 results, but `store_global` defines 0 here"],
    );
    assert_eq!(d.span, Some(inst_span(store)));
}

#[test]
fn operand_type_errors_come_from_the_typing_rules() {
    // `copy_async` from shared memory.
    let mut g = spanned(true);
    let f = g.for_inst;
    let copy = for_body(&mut g.kernel, f).insts[0];
    let Op::CopyAsync { src, .. } = &mut g.kernel.insts[copy].op else { panic!() };
    *src = g.tile;
    let d = expect(
        &g.kernel,
        &[
            "`copy_async` (instruction #",
            "copies from global memory to shared memory; its source is a shared f16[16, 16]",
        ],
    );
    assert_eq!(d.span, Some(inst_span(copy)));
    // A load of the wrong element type.
    let mut g = spanned(true);
    let load = def_inst(&g.kernel, g.x);
    let Op::LoadShared { ty, .. } = &mut g.kernel.insts[load].op else { panic!() };
    ty.dtype = dtype("bf16");
    expect(&g.kernel, &["defining %x", "`load_shared`: memory holds f16, the tile is bf16"]);
    // A literal out of range.
    let mut g = spanned(true);
    let mul = def_inst(&g.kernel, g.m0);
    let Op::Binary { rhs, .. } = &mut g.kernel.insts[mul].op else { panic!() };
    *rhs = Operand::Literal(Literal::Int(1 << 40));
    expect(&g.kernel, &["defining %m0", "is outside the range of i32"]);
    // `dot` with mismatched shapes.
    let mut g = spanned(true);
    let dot = def_inst(&g.kernel, g.d);
    let Op::Dot { b, .. } = &mut g.kernel.insts[dot].op else { panic!() };
    *b = g.x;
    expect(&g.kernel, &["defining %d", "`dot` operand shapes do not agree"]);
    // `free_shared` of a register tensor.
    let mut g = spanned(true);
    let free = g.free;
    g.kernel.insts[free].op = Op::FreeShared { tensor: g.acc0 };
    expect(&g.kernel, &["`free_shared`", "must be a shared tensor, found a register f32[16, 8]"]);
}

#[test]
fn loop_typing() {
    // The index's type.
    let mut g = spanned(true);
    g.kernel.values[g.kk].ty = Type::Scalar(dtype("i16"));
    let d = expect(
        &g.kernel,
        &[
            "`for` (instruction #",
            "the loop index %kk is recorded as a scalar i16, but the bounds make it a scalar i32",
        ],
    );
    assert_eq!(d.span, Some(value_span(g.kk)));
    // Bounds of different types: the builder refuses them, and so does the verifier when a
    // kernel is edited into that state.
    let mut k = KernelBuilder::new("bounds", 1);
    let n = k.scalar_param("n", dtype("i32")).unwrap();
    let m = k.scalar_param("m", dtype("i16")).unwrap();
    let refused = k.for_range(n, m, 1, None, &[], |_, _, _| Ok(vec![])).unwrap_err().to_string();
    assert!(refused.contains("`for` end is a scalar i16, expected scalar i32"), "{refused}");
    k.for_range(n, n, 1, None, &[], |_, _, _| Ok(vec![])).unwrap();
    let t = k.fill(0, reg("i32", &[4], None)).unwrap();
    k.name(t, "tensor").unwrap();
    k.for_range(0, n, 1, None, &[], |_, _, _| Ok(vec![])).unwrap();
    let mut kernel = k.finish();
    let first = kernel.body.insts[0];
    if let Op::For { end, .. } = &mut kernel.insts[first].op {
        *end = Operand::Value(m);
    }
    let second = *kernel.body.insts.last().unwrap();
    if let Op::For { step, .. } = &mut kernel.insts[second].op {
        *step = Operand::Value(t);
    }
    let diags = diagnostics(&kernel, &VerifyOptions::default());
    find(&diags, &["`for` (instruction #0)", "`for` end is a scalar i16, expected scalar i32 like the other bounds"]);
    find(&diags, &["`for` step is a register i32[4], expected scalar i32 like the other bounds"]);
    assert_eq!(diags.len(), 2, "{}", listing(&diags));
    // A carried value's type.
    let mut g = spanned(true);
    g.kernel.values[g.acc].ty = Type::Register(reg("f16", &[16, 8], Some(C)));
    let diags = diagnostics(&g.kernel, &VerifyOptions::default());
    find(
        &diags,
        &["carried value %acc is recorded as a register f16[16, 8]", "but its initial value is a register f32[16, 8]"],
    );
    // The yield count.
    let mut g = spanned(true);
    let f = g.for_inst;
    for_body(&mut g.kernel, f).yields.clear();
    expect(&g.kernel, &["`for` (instruction #", "the body yields 0 values for 1 carried values"]);
    // The yield's type.
    let mut g = spanned(true);
    for_body(&mut g.kernel, f).yields[0] = Operand::Value(g.x);
    expect(
        &g.kernel,
        &["the body's yield 0 %x is a register f16[16, 16]", "but carried value 0 is a register f32[16, 8]"],
    );
    // A literal yield.
    let mut g = spanned(true);
    for_body(&mut g.kernel, f).yields[0] = Operand::Literal(Literal::Float(0.0));
    expect(&g.kernel, &["the body's yield 0 is the literal 0.0; yield a typed value"]);
    // Carried values and initial values in different numbers.
    let mut g = spanned(true);
    if let Op::For { carried, .. } = &mut g.kernel.insts[f].op {
        carried.clear();
    }
    expect(&g.kernel, &["`for` (instruction #", "has 0 carried values for 1 initial values"]);
    // `unroll 0`.
    let mut g = spanned(true);
    if let Op::For { unroll, .. } = &mut g.kernel.insts[f].op {
        *unroll = Some(0);
    }
    expect(&g.kernel, &["`unroll 0`: the unroll factor must be at least 1"]);
}

#[test]
fn branch_typing() {
    let mut g = spanned(true);
    let i = g.if_inst;
    branches(&mut g.kernel, i).1.yields.push(Operand::Value(g.zero));
    let d = expect(
        &g.kernel,
        &["`if` (instruction #", "defining %out", "the `then` branch yields 1 values, the `else` branch 2"],
    );
    assert_eq!(d.span, Some(inst_span(i)));
    let mut g = spanned(true);
    branches(&mut g.kernel, i).1.yields[0] = Operand::Value(g.m0);
    expect(
        &g.kernel,
        &["yield 0: the `then` branch yields %res, a register f32[16, 8]", "the `else` branch %m0, a scalar i32"],
    );
    let mut g = spanned(true);
    branches(&mut g.kernel, i).1.yields[0] = Operand::Literal(Literal::Int(0));
    expect(&g.kernel, &["the `else` branch's yield 0 is the literal 0; yield a typed value"]);
    // The `then` branch's yields give the results' types.
    let mut g = spanned(true);
    g.kernel.values[g.out].ty = Type::Register(reg("f32", &[16, 8], None));
    expect(
        &g.kernel,
        &["result %out is recorded as a register f32[16, 8] (no layout), but `if` gives a register f32[16, 8] layout"],
    );
}

#[test]
fn zero_sized_operand_types_are_not_inferred_from() {
    // The typing rules divide by the operand's sizes in `broadcast`: a recorded operand type
    // with a zero-sized dimension is reported, not divided by.
    let mut k = KernelBuilder::new("zero", 1);
    let x = k.fill(1.0, reg("f32", &[1, 8], None)).unwrap();
    k.name(x, "row").unwrap();
    let y = k.broadcast(x, reg("f32", &[16, 8], None)).unwrap();
    k.name(y, "rows").unwrap();
    let mut kernel = k.finish();
    ok(&kernel, &VerifyOptions::default());
    kernel.values[x].ty = Type::Register(reg("f32", &[0, 8], None));
    let diags = diagnostics(&kernel, &VerifyOptions::default());
    find(
        &diags,
        &["result %row is recorded as a register f32[0, 8] (no layout), but `fill` gives a register f32[1, 8]"],
    );
    find(
        &diags,
        &[
            "`broadcast` (instruction #1, defining %rows): operands with a zero-sized dimension cannot be typed: %row is a \
         register f32[0, 8]",
        ],
    );
}

#[test]
fn select_condition_layout() {
    // The builder refuses a condition whose layout differs from the operands'; the verifier
    // catches a kernel edited into that state.
    let mut k = KernelBuilder::new("select", 1);
    let x = k.fill(1.0, reg("f32", &[16, 8], Some(C))).unwrap();
    k.name(x, "x").unwrap();
    let same = k.fill(1, reg("u1", &[16, 8], Some(C))).unwrap();
    k.select(same, x, 0.0).unwrap();
    let other = k.fill(1, reg("u1", &[16, 8], Some("spatial(16,2).local(1,4)"))).unwrap();
    k.name(other, "mask").unwrap();
    let refused = k.select(other, 0.0, x).unwrap_err().to_string();
    assert!(refused.contains("`select` condition layout spatial(16,2).local(1,4) differs"), "{refused}");
    let chosen = k.select(same, 0.0, x).unwrap();
    k.name(chosen, "chosen").unwrap();
    let mut kernel = k.finish();
    let select = def_inst(&kernel, chosen);
    if let Op::Select { cond, .. } = &mut kernel.insts[select].op {
        *cond = Operand::Value(other);
    }
    let diags = diagnostics(&kernel, &VerifyOptions::strict());
    find(
        &diags,
        &["`select` (instruction #4, defining %chosen): `select` condition layout spatial(16,2).local(1,4) differs \
             from the operands' local(2,1).spatial(8,4).local(1,2)"],
    );
    assert_eq!(diags.len(), 1, "{}", listing(&diags));
}

// ----- 4. `view` keeps every thread's bits -----

#[test]
fn view_bit_counts() {
    // Same total (512 bits), but with two copies of every element each thread holds 32 bits
    // instead of 16.
    let mut g = spanned(true);
    let view = def_inst(&g.kernel, g.w4);
    let replicated = reg("u4", &[16, 8], Some("layout(dims=[[16],[8]], threads=[r2,0], slots=[1])"));
    assert_eq!(replicated.layout.as_ref().unwrap().num_threads(), 32);
    let Op::View { ty, .. } = &mut g.kernel.insts[view].op else { panic!() };
    *ty = replicated.clone();
    g.kernel.values[g.w4].ty = Type::Register(replicated);
    let d = expect(
        &g.kernel,
        &["defining %w4", "`view` must keep the bits of every thread: 32 threads × 16 bits → 32 threads × 32 bits"],
    );
    assert_eq!(d.span, Some(inst_span(view)));
    // A different total.
    let mut g = spanned(true);
    let Op::View { ty, .. } = &mut g.kernel.insts[view].op else { panic!() };
    ty.dtype = dtype("u8");
    expect(&g.kernel, &["defining %w4", "`view` changes the total number of bits: 64 × 8 bits → 128 × 8 bits"]);
}

// ----- 5. layouts -----

#[test]
fn register_layout_threads() {
    // The block has 64 threads; every written layout spreads over 32.
    let mut g = spanned(true);
    g.kernel.warps = 2;
    let diags = diagnostics(&g.kernel, &VerifyOptions::default());
    let d = find(
        &diags,
        &[
            "defining %acc0",
            "layout local(2,1).spatial(8,4).local(1,2) spreads the tile over 32 threads, but a block of this kernel has 32 × 2 = 64 threads",
        ],
    );
    assert_eq!(d.span, Some(inst_span(def_inst(&g.kernel, g.acc0))));
    find(&diags, &["defining %x", "spreads the tile over 32 threads"]);
    find(&diags, &["defining %rowsum", "the result layout", "spreads the tile over 32 threads"]);
    // Derived types (`%d`, `%out`, …) are not reported again.
    assert!(diags.iter().all(|d| !d.message.contains("defining %d)")), "{}", listing(&diags));
    // One layout with the wrong number of threads, in a type that matches its instruction.
    let mut g = spanned(true);
    let fill = def_inst(&g.kernel, g.zero);
    let wide = reg("f32", &[16, 8], Some("local(2,1).spatial(8,8)"));
    let Op::Fill { ty, .. } = &mut g.kernel.insts[fill].op else { panic!() };
    *ty = wide.clone();
    g.kernel.values[g.zero].ty = Type::Register(wide);
    let diags = diagnostics(&g.kernel, &VerifyOptions::default());
    find(
        &diags,
        &["defining %zero", "layout local(2,1).spatial(8,8) spreads the tile over 64 threads", "32 × 1 = 32 threads"],
    );
}

#[test]
fn register_layout_shape() {
    // In a written type: the typing rules report it.
    let mut g = spanned(true);
    let fill = def_inst(&g.kernel, g.acc0);
    let Op::Fill { ty, .. } = &mut g.kernel.insts[fill].op else { panic!() };
    ty.layout = Some(A.parse().unwrap());
    expect(
        &g.kernel,
        &["defining %acc0", "layout local(2,2).spatial(8,4).local(1,2) has shape [16, 16], the tensor [16, 8]"],
    );
    // In a value's recorded type (a carried value): reported on the value.
    let mut g = spanned(true);
    g.kernel.values[g.acc].ty = Type::Register(reg("f32", &[16, 8], None));
    if let Type::Register(t) = &mut g.kernel.values[g.acc].ty {
        t.layout = Some(A.parse().unwrap());
    }
    let d = expect(
        &g.kernel,
        &["the type of %acc: layout local(2,2).spatial(8,4).local(1,2) has shape [16, 16], the tensor [16, 8]"],
    );
    assert_eq!(d.span, Some(value_span(g.acc)));
}

#[test]
fn shared_layouts() {
    // Not injective: element (i, j) at offset i + j.
    let mut g = spanned(true);
    let alloc = def_inst(&g.kernel, g.tile);
    let diagonal = shared("f16", &[16, 16], Some("strided([16,16],[1,1])"));
    let Op::AllocShared { ty } = &mut g.kernel.insts[alloc].op else { panic!() };
    *ty = diagonal.clone();
    g.kernel.values[g.tile].ty = Type::Shared(diagonal);
    let d = expect(
        &g.kernel,
        &["`alloc_shared` (instruction #", "defining %tile", "shared layout strided([16,16],[1,1]) is not injective"],
    );
    assert_eq!(d.span, Some(inst_span(alloc)));
    // The shape of a written layout: reported by the typing rules.
    let mut g = spanned(true);
    let Op::AllocShared { ty } = &mut g.kernel.insts[alloc].op else { panic!() };
    ty.layout = Some("row_major(16,32)".parse().unwrap());
    expect(
        &g.kernel,
        &["defining %tile", "`alloc_shared`: layout row_major(16,32) has shape [16, 32], the tile [16, 16]"],
    );
    // A swizzle whose 1-byte chunks would split 6-bit elements.
    let mut k = KernelBuilder::new("sw", 1);
    let split = shared("u6", &[16, 16], Some("row_major(16,16).swizzle(1,0,3)"));
    k.alloc_shared(split).unwrap();
    let kernel = k.finish();
    expect(
        &kernel,
        &["the swizzle of row_major(16,16).swizzle(1,0,3) permutes chunks of 2^0 bytes, which split 6-bit elements"],
    );
    // The same swizzle is fine for bytes.
    let mut k = KernelBuilder::new("sw", 1);
    k.alloc_shared(shared("u8", &[16, 16], Some("row_major(16,16).swizzle(1,0,3)"))).unwrap();
    ok(&k.finish(), &VerifyOptions::strict());
    // Injectivity is only checked for tiles up to 2^16 elements (the check enumerates them).
    let mut k = KernelBuilder::new("big", 1);
    k.alloc_shared(shared("u1", &[512, 512], Some("strided([512,512],[1,1])"))).unwrap();
    ok(&k.finish(), &VerifyOptions::strict());
    let mut k = KernelBuilder::new("small", 1);
    k.alloc_shared(shared("u1", &[256, 256], Some("strided([256,256],[1,1])"))).unwrap();
    expect(&k.finish(), &["is not injective"]);
}

// ----- 6. shared memory -----

fn tile_128k() -> SharedTensorType {
    shared("f16", &[256, 256], Some("row_major(256,256)"))
}

#[test]
fn shared_memory_limit() {
    assert_eq!(tile_128k().size_in_bytes(), 131_072);
    let mut k = KernelBuilder::new("big", 1);
    let a = k.alloc_shared(tile_128k()).unwrap();
    k.name(a, "first").unwrap();
    let b = k.alloc_shared(tile_128k()).unwrap();
    k.name(b, "second").unwrap();
    let mut kernel = k.finish();
    let second = def_inst(&kernel, b);
    kernel.insts[second].span = Some(inst_span(second));
    let d = expect(
        &kernel,
        &[
            "`alloc_shared` (instruction #1, defining %second): 262144 bytes of shared memory may be allocated at once here, over the limit of 232448 bytes",
        ],
    );
    assert_eq!(d.span, Some(inst_span(second)));
    assert!(d.notes.iter().any(|n| n.contains("%first (131072 bytes")), "{:?}", d.notes);
    // A larger limit accepts it; a free in between too.
    ok(&kernel, &VerifyOptions::new().with_shared_memory_limit(262_144));
    let mut k = KernelBuilder::new("reuse", 1);
    let a = k.alloc_shared(tile_128k()).unwrap();
    k.free_shared(a).unwrap();
    k.alloc_shared(tile_128k()).unwrap();
    ok(&k.finish(), &VerifyOptions::strict());
    // A single tile over a smaller limit.
    let mut k = KernelBuilder::new("one", 1);
    k.alloc_shared(tile_128k()).unwrap();
    find(
        &diagnostics(&k.finish(), &VerifyOptions::new().with_shared_memory_limit(101_376)),
        &["131072 bytes of shared memory may be allocated at once here, over the limit of 101376 bytes"],
    );
}

#[test]
fn shared_memory_over_branches() {
    let i1 = dtype("u1");
    // Each branch allocates 128 KiB and keeps it: only one of them runs, so 128 KiB stay
    // allocated after the `if`, and 64 KiB more fit.
    let mut k = KernelBuilder::new("branches", 1);
    let c = k.scalar_param("c", i1).unwrap();
    k.if_else(
        c,
        |k| {
            k.alloc_shared(tile_128k())?;
            Ok(vec![])
        },
        |k| {
            k.alloc_shared(tile_128k())?;
            Ok(vec![])
        },
    )
    .unwrap();
    k.alloc_shared(shared("f16", &[128, 256], Some("row_major(128,256)"))).unwrap();
    ok(&k.finish(), &VerifyOptions::strict());
    // A tile freed in one branch only may still be live after the `if`.
    let mut k = KernelBuilder::new("half_freed", 1);
    let c = k.scalar_param("c", i1).unwrap();
    let t = k.alloc_shared(tile_128k()).unwrap();
    k.name(t, "t").unwrap();
    k.if_else(
        c,
        |k| {
            k.free_shared(t)?;
            Ok(vec![])
        },
        |_| Ok(vec![]),
    )
    .unwrap();
    k.alloc_shared(tile_128k()).unwrap();
    let diags = diagnostics(&k.finish(), &VerifyOptions::default());
    find(&diags, &["262144 bytes of shared memory may be allocated at once here"]);
}

#[test]
fn double_free_and_use_after_free() {
    let mut g = spanned(true);
    let free = g.free;
    let again = g.kernel.insts.append(InstData {
        op: Op::FreeShared { tensor: g.tile },
        results: vec![],
        via: None,
        span: None,
    });
    g.kernel.body.insts.push(again);
    let d = expect(
        &g.kernel,
        &["`free_shared` (instruction #", "frees %tile, which was already freed by `free_shared` (instruction #"],
    );
    assert_eq!(d.span, Some(KERNEL_SPAN), "the new instruction has no span: the kernel's is the best");
    // Use after free: move the `free_shared` into the loop body, before the `load_shared`.
    let mut g = spanned(true);
    let f = g.for_inst;
    g.kernel.body.insts.retain(|&i| i != free);
    for_body(&mut g.kernel, f).insts.insert(4, free);
    let diags = diagnostics(&g.kernel, &VerifyOptions::default());
    let d = find(
        &diags,
        &["`load_shared` (instruction #", "defining %x", "uses %tile after it was freed by `free_shared`"],
    );
    assert_eq!(d.span, Some(inst_span(def_inst(&g.kernel, g.x))));
    // … which also frees, on every iteration, a tile allocated before the loop.
    find(
        &diags,
        &[
            "frees %tile inside the body of `for`",
            "allocated outside that loop: the next iteration would free it again",
        ],
    );
    // Freed in one branch, then again after the `if`.
    let mut g = spanned(true);
    let i = g.if_inst;
    let early = g.kernel.insts.append(InstData {
        op: Op::FreeShared { tensor: g.tile },
        results: vec![],
        via: None,
        span: None,
    });
    branches(&mut g.kernel, i).0.insts.push(early);
    expect(&g.kernel, &["frees %tile, which may already have been freed by `free_shared`"]);
}

#[test]
fn free_of_a_value_that_is_not_an_allocation() {
    // Shared tiles cannot be carried through loops (the builder refuses it), so an alias only
    // arises from an edited kernel: a loop carrying a register tile, retyped as shared.
    let mut k = KernelBuilder::new("alias", 1);
    let t = k.alloc_shared(shared("f16", &[16, 16], Some("row_major(16,16)"))).unwrap();
    let refused =
        k.for_range(0, 4, 1, None, &[t.into()], |_, _, carried| Ok(vec![carried[0].into()])).unwrap_err().to_string();
    assert!(refused.contains("only scalars and register tensors can be carried"), "{refused}");
    let free_target = k.constant(0, dtype("i32")).unwrap();
    k.name(free_target, "alias").unwrap();
    k.free_shared(t).unwrap();
    let mut kernel = k.finish();
    let free = *kernel.body.insts.last().unwrap();
    if let Op::FreeShared { tensor } = &mut kernel.insts[free].op {
        *tensor = free_target;
    }
    kernel.values[free_target].ty = Type::Shared(shared("f16", &[16, 16], Some("row_major(16,16)")));
    expect(
        &kernel,
        &[
            "`free_shared` (instruction #",
            "frees %alias, which is result 0 of `const`",
            "not the result of an `alloc_shared`",
        ],
    );
}

#[test]
fn allocation_in_a_loop_must_be_freed_there() {
    let build = |free: bool| {
        let mut k = KernelBuilder::new("looping", 1);
        k.for_range(0, 8, 1, None, &[], |k, _, _| {
            let t = k.alloc_shared(shared("f16", &[16, 16], Some("row_major(16,16)")))?;
            k.name(t, "scratch")?;
            if free {
                k.free_shared(t)?;
            }
            Ok(vec![])
        })
        .unwrap();
        k.finish()
    };
    ok(&build(true), &VerifyOptions::strict());
    let kernel = build(false);
    let d = expect(
        &kernel,
        &[
            "`alloc_shared` (instruction #",
            "defining %scratch",
            "is allocated inside the body of `for`",
            "not freed before the end of its block",
        ],
    );
    assert_eq!(d.span, None, "no spans anywhere");
    // Freed on one path only.
    let mut k = KernelBuilder::new("looping", 1);
    let c = k.scalar_param("c", dtype("u1")).unwrap();
    k.for_range(0, 8, 1, None, &[], |k, _, _| {
        let t = k.alloc_shared(shared("f16", &[16, 16], None))?;
        k.if_else(
            c,
            |k| {
                k.free_shared(t)?;
                Ok(vec![])
            },
            |_| Ok(vec![]),
        )?;
        Ok(vec![])
    })
    .unwrap();
    expect(&k.finish(), &["is allocated inside the body of `for`", "not freed on every path"]);
}

// ----- 7. kernel signature, grid, names -----

#[test]
fn warps_out_of_range() {
    for warps in [0, 33] {
        let mut g = spanned(true);
        g.kernel.warps = warps;
        let diags = diagnostics(&g.kernel, &VerifyOptions::default());
        let d = find(&diags, &[&format!("warps({warps}) is out of range: a block has 1 to 32 warps")]);
        assert_eq!(d.span, Some(KERNEL_SPAN));
        // Layouts are not compared with a thread count that does not exist.
        assert_eq!(diags.len(), 1, "{}", listing(&diags));
    }
}

#[test]
fn grid_checks() {
    let mut g = spanned(true);
    g.kernel.grid.clear();
    expect(&g.kernel, &["the grid has 0 dimensions; it must have 1 to 3"]);
    g.kernel.grid = vec![GridExpr::Const(1); 4];
    expect(&g.kernel, &["the grid has 4 dimensions; it must have 1 to 3"]);
    // A pointer parameter, nested in an expression.
    g.kernel.grid = vec![GridExpr::Const(1), GridExpr::cdiv(GridExpr::Param(3), GridExpr::Param(0))];
    let d = expect(
        &g.kernel,
        &[
            "grid dimension 1 uses parameter `a`, a `ptr f16`; grid and shape expressions use integer scalar parameters only",
        ],
    );
    assert_eq!(d.span, Some(param_span(0)));
    g.kernel.grid = vec![GridExpr::Param(42)];
    expect(&g.kernel, &["grid dimension 0 uses parameter #42, but the kernel has 6 parameters"]);
    // A float scalar parameter.
    let mut k = KernelBuilder::new("g", 1);
    k.scalar_param("scale", dtype("f32")).unwrap();
    k.set_grid(vec![GridExpr::Param(0)]);
    expect(&k.finish(), &["uses parameter `scale`, a `f32`"]);
    // Buffer shapes follow the grid's rules, and only pointers have them.
    let mut k = KernelBuilder::new("shapes", 1);
    let scale = k.scalar_param("scale", dtype("f32")).unwrap();
    let n = k.scalar_param("n", dtype("i32")).unwrap();
    let n_expr = k.grid_param(n).unwrap();
    k.shaped_pointer_param("x", dtype("f16"), vec![n_expr.clone(), GridExpr::Const(4)]).unwrap();
    assert!(k.shaped_pointer_param("y", dtype("f16"), vec![GridExpr::Param(0)]).is_ok());
    let mut kernel = k.finish();
    let diags = diagnostics(&kernel, &VerifyOptions::default());
    find(&diags, &["the shape of `y` (dimension 0) uses parameter `scale`, a `f32`"]);
    assert_eq!(diags.len(), 1, "{}", listing(&diags));
    kernel.params[1].shape = vec![n_expr];
    find(
        &diagnostics(&kernel, &VerifyOptions::default()),
        &["scalar parameter `n` has a shape; only pointers declare buffer shapes"],
    );
    let _ = scale;
}

#[test]
fn names() {
    let mut g = spanned(true);
    g.kernel.values[g.m0].name = "0m".into();
    let d = expect(&g.kernel, &["is named `%0m`, which is not a valid identifier"]);
    assert_eq!(d.span, Some(value_span(g.m0)));
    let mut g = spanned(true);
    g.kernel.values[g.x].name = "m0".into();
    let diags = diagnostics(&g.kernel, &VerifyOptions::default());
    let d = find(&diags, &["the name `%m0` of value #", "is already used by value #"]);
    assert_eq!(d.span, Some(value_span(g.x)));
    // A value named like a parameter.
    let mut g = spanned(true);
    g.kernel.values[g.x].name = "m".into();
    expect(&g.kernel, &["the name `%m` of value #", "is already used by parameter #3"]);
    // Parameters.
    let mut g = spanned(true);
    g.kernel.params[1].name = "a".into();
    g.kernel.values[g.kernel.params[1].value].name = "a".into();
    let diags = diagnostics(&g.kernel, &VerifyOptions::default());
    let d = find(&diags, &["the name `a` of parameter #1 is already used by parameter #0"]);
    assert_eq!(d.span, Some(param_span(1)));
    assert_eq!(diags.len(), 1, "reported once, as the parameter: {}", listing(&diags));
    let mut g = spanned(true);
    g.kernel.params[0].name = "a-b".into();
    g.kernel.values[g.a].name = "a-b".into();
    expect(&g.kernel, &["parameter #0 is named `a-b`, which is not a valid identifier"]);
    let mut g = spanned(true);
    g.kernel.name = "9lives".into();
    expect(&g.kernel, &["the kernel name `9lives` is not a valid identifier"]);
}

#[test]
fn module_names() {
    let kernel = gemm(true).kernel;
    let register = LayoutDef::Register(C.parse().unwrap());
    let module = Module {
        layouts: vec![
            NamedLayout { name: "c".into(), layout: register.clone(), span: Some(Span::new(1, 2)) },
            NamedLayout { name: "c".into(), layout: register.clone(), span: Some(Span::new(3, 4)) },
            NamedLayout { name: "no good".into(), layout: register, span: None },
        ],
        kernels: vec![kernel.clone(), kernel],
    };
    let diags = verify_module(&module, &VerifyOptions::default()).unwrap_err().0;
    let d = find(&diags, &["layout `@c` is defined more than once"]);
    assert_eq!(d.span, Some(Span::new(3, 4)));
    assert_eq!(d.notes, vec!["first defined as layout #0".to_string()]);
    find(&diags, &["layout #2 is named `@no good`, which is not a valid identifier"]);
    find(&diags, &["kernel `gemm` is defined more than once"]);
    assert_eq!(diags.len(), 3, "{}", listing(&diags));
    // Kernel problems are reported through the module too.
    let mut broken = gemm(true).kernel;
    broken.warps = 0;
    let module = Module { layouts: vec![], kernels: vec![broken] };
    let diags = verify_module(&module, &VerifyOptions::default()).unwrap_err().0;
    find(&diags, &["kernel `gemm`: warps(0) is out of range"]);
}

// ----- all problems at once -----

#[test]
fn reports_every_independent_problem() {
    let mut g = spanned(true);
    g.kernel.grid.clear();
    g.kernel.values[g.x].name = "m0".into();
    g.kernel.values[g.m0].ty = Type::Scalar(dtype("i16"));
    let again = g.kernel.insts.append(InstData {
        op: Op::FreeShared { tensor: g.tile },
        results: vec![],
        via: None,
        span: None,
    });
    g.kernel.body.insts.push(again);
    let commit = g.commit;
    g.kernel.body.insts.push(commit);
    let store = g.store;
    let Op::StoreGlobal { value, .. } = &mut g.kernel.insts[store].op else { panic!() };
    *value = g.acc;
    let i = g.if_inst;
    branches(&mut g.kernel, i).1.yields.push(Operand::Value(g.zero));
    g.kernel.values[g.rowsum].ty = Type::Register(reg("f32", &[16, 1], None));
    let diags = diagnostics(&g.kernel, &VerifyOptions::default());
    let expected: &[&[&str]] = &[
        &["the grid has 0 dimensions"],
        &["the name `%m0` of value #"],
        &["result %m0 is recorded as a scalar i16"],
        &["which was already freed by"],
        &["is listed in the body of `for`", "and again in the kernel body"],
        &["%acc is a carried value of `for`"],
        &["the `then` branch yields 1 values, the `else` branch 2"],
        &["result %rowsum is recorded as a register f32[16, 1] (no layout)"],
    ];
    for parts in expected {
        find(&diags, parts);
    }
    assert!(diags.len() >= expected.len());
    assert!(diags.iter().all(|d| d.message.starts_with("kernel `gemm`: ")), "{}", listing(&diags));
}

// ----- random corruptions never panic the verifier -----

/// Calls `f` on every value handle of the kernel: parameters' values, operands and handle
/// fields of every instruction, results, loop indices and carried values, yields.
fn for_each_value_slot(k: &mut Kernel, f: &mut dyn FnMut(&mut ValueId)) {
    for p in &mut k.params {
        f(&mut p.value);
    }
    let operand = |o: &mut Operand, f: &mut dyn FnMut(&mut ValueId)| {
        if let Operand::Value(v) = o {
            f(v);
        }
    };
    let block = |b: &mut Block, f: &mut dyn FnMut(&mut ValueId)| {
        for y in &mut b.yields {
            if let Operand::Value(v) = y {
                f(v);
            }
        }
    };
    for y in &mut k.body.yields {
        operand(y, f);
    }
    for i in 0..k.insts.len() {
        let Some(inst) = k.insts.get_mut(InstId::from_index(i)) else { continue };
        for r in &mut inst.results {
            f(r);
        }
        match &mut inst.op {
            Op::Const { .. } | Op::BlockIndex { .. } | Op::Iota { .. } | Op::AllocShared { .. } => {}
            Op::CommitGroup | Op::WaitGroup { .. } | Op::Sync => {}
            Op::Unary { x, .. } | Op::Cast { x, .. } | Op::Fill { value: x, .. } => operand(x, f),
            Op::Binary { lhs, rhs, .. } | Op::Compare { lhs, rhs, .. } => {
                operand(lhs, f);
                operand(rhs, f);
            }
            Op::Select { cond: a, on_true: b, on_false: c } | Op::Fma { a, b, c } => {
                operand(a, f);
                operand(b, f);
                operand(c, f);
            }
            Op::View { x, .. } | Op::Broadcast { x, .. } | Op::Reduce { x, .. } | Op::Lookup { x, .. } => f(x),
            Op::Dot { a, b, c } => {
                f(a);
                f(b);
                f(c);
            }
            Op::GlobalView { ptr, shape, strides } => {
                f(ptr);
                shape.iter_mut().chain(strides.iter_mut()).for_each(|o| operand(o, f));
            }
            Op::LoadGlobal { src, offsets, .. } | Op::LoadShared { src, offsets, .. } => {
                f(src);
                offsets.iter_mut().for_each(|o| operand(o, f));
            }
            Op::StoreGlobal { value, dst, offsets } | Op::StoreShared { value, dst, offsets } => {
                f(value);
                f(dst);
                offsets.iter_mut().for_each(|o| operand(o, f));
            }
            Op::FreeShared { tensor } => f(tensor),
            Op::CopyAsync { src, src_offsets, dst, dst_offsets, .. } => {
                f(src);
                f(dst);
                src_offsets.iter_mut().chain(dst_offsets.iter_mut()).for_each(|o| operand(o, f));
            }
            Op::For { start, end, step, index, carried, inits, body, .. } => {
                operand(start, f);
                operand(end, f);
                operand(step, f);
                f(index);
                carried.iter_mut().for_each(&mut *f);
                inits.iter_mut().for_each(|o| operand(o, f));
                block(body, f);
            }
            Op::If { cond, then_body, else_body } => {
                operand(cond, f);
                block(then_body, f);
                block(else_body, f);
            }
        }
    }
}

/// Calls `f` on every block: the body, then every instruction's nested blocks.
fn for_each_block(k: &mut Kernel, f: &mut dyn FnMut(&mut Block)) {
    f(&mut k.body);
    for i in 0..k.insts.len() {
        let Some(inst) = k.insts.get_mut(InstId::from_index(i)) else { continue };
        match &mut inst.op {
            Op::For { body, .. } => f(body),
            Op::If { then_body, else_body, .. } => {
                f(then_body);
                f(else_body);
            }
            _ => {}
        }
    }
}

/// Applies corruption `kind` with random numbers `a`, `b`, `c`.
fn corrupt(k: &mut Kernel, kind: u8, a: usize, b: usize, c: usize) {
    let (nv, ni) = (k.values.len(), k.insts.len());
    match kind {
        // Rewrite one value handle, possibly out of range.
        0 => {
            let mut slots = 0;
            for_each_value_slot(k, &mut |_| slots += 1);
            let target = b % (nv + 3);
            let mut n = 0;
            for_each_value_slot(k, &mut |v| {
                if n == a % slots {
                    *v = ValueId::from_index(target);
                }
                n += 1;
            });
        }
        // Rewrite, insert or remove an instruction handle in a block.
        1..=3 => {
            let mut blocks = 0;
            for_each_block(k, &mut |_| blocks += 1);
            let mut n = 0;
            let target = b % (ni + 2);
            for_each_block(k, &mut |block| {
                if n == a % blocks {
                    let len = block.insts.len();
                    match kind {
                        1 if len > 0 => {
                            block.insts[c % len] = InstId::from_index(target);
                        }
                        2 => {
                            block.insts.insert(c % (len + 1), InstId::from_index(target));
                        }
                        3 if len > 0 => {
                            block.insts.remove(c % len);
                        }
                        _ => {}
                    }
                }
                n += 1;
            });
        }
        // Swap two blocks' contents (moves instructions between loops and branches).
        4 => {
            let (x, y) = (a % 4, b % 4);
            if x != y {
                let mut held = Block::default();
                for target in [x, y, x] {
                    let mut n = 0;
                    for_each_block(k, &mut |block| {
                        if n == target {
                            std::mem::swap(block, &mut held);
                        }
                        n += 1;
                    });
                }
            }
        }
        // Change a value's definition.
        5 => {
            let v = ValueId::from_index(a % nv);
            let i = InstId::from_index(b % (ni + 2));
            k.values[v].def = match c % 4 {
                0 => ValueDef::Param(c % 8),
                1 => ValueDef::Result(i, c % 3),
                2 => ValueDef::LoopIndex(i),
                _ => ValueDef::LoopCarried(i, c % 3),
            };
        }
        // Give a value another value's type, perhaps with one dimension resized (to 0 too).
        6 => {
            let mut ty = k.values[ValueId::from_index(b % nv)].ty.clone();
            let shape = match &mut ty {
                Type::Register(t) => Some(&mut t.shape),
                Type::Shared(t) => Some(&mut t.shape),
                _ => None,
            };
            if let Some(shape) = shape
                && !shape.is_empty()
                && c.is_multiple_of(2)
            {
                let len = shape.len();
                shape[c % len] = b % 3;
            }
            k.values[ValueId::from_index(a % nv)].ty = ty;
        }
        // Change the warps, the grid, a name, or a parameter's type.
        7 => match c % 4 {
            0 => k.warps = (a % 70) as u32,
            1 => k.grid = vec![GridExpr::Param(a % 8); b % 5],
            2 => {
                let name = k.values[ValueId::from_index(b % nv)].name.clone();
                k.values[ValueId::from_index(a % nv)].name = name;
            }
            _ => {
                if let Some(p) = k.params.get_mut(a % 8) {
                    p.ty = ParamType::Scalar(dtype("f32"));
                }
            }
        },
        // Add or drop a yield.
        _ => {
            let mut n = 0;
            let target = Operand::Value(ValueId::from_index(b % nv));
            for_each_block(k, &mut |block| {
                if n == a % 5 {
                    if c.is_multiple_of(2) {
                        block.yields.push(target);
                    } else {
                        block.yields.pop();
                    }
                }
                n += 1;
            });
        }
    }
}

/// Whether some value or instruction handle of the kernel is out of range.
fn has_foreign_handle(k: &mut Kernel) -> bool {
    let (nv, ni) = (k.values.len(), k.insts.len());
    let mut foreign = false;
    for_each_value_slot(k, &mut |v| foreign |= v.index() >= nv);
    for_each_block(k, &mut |b| foreign |= b.insts.iter().any(|i| i.index() >= ni));
    foreign
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_corruptions_never_panic(
        base in 0u8..3,
        edits in prop::collection::vec((0u8..9, any::<usize>(), any::<usize>(), any::<usize>()), 1..6),
    ) {
        let mut kernel = match base {
            0 => gemm(true).kernel,
            1 => gemm(false).kernel,
            _ => nested(),
        };
        for &(kind, a, b, c) in &edits {
            corrupt(&mut kernel, kind, a, b, c);
        }
        let out_of_range = has_foreign_handle(&mut kernel);
        let strict = verify_kernel(&kernel, &VerifyOptions::strict());
        let default = verify_kernel(&kernel, &VerifyOptions::default());
        // Deterministic, and strict mode only adds problems.
        prop_assert_eq!(&default, &verify_kernel(&kernel, &VerifyOptions::default()));
        if default.is_err() {
            prop_assert!(strict.is_err());
        }
        if out_of_range {
            prop_assert!(default.is_err(), "a handle out of range was accepted");
        }
        // Any other module holding the kernel is checked the same way, without panicking.
        let module = Module { layouts: vec![], kernels: vec![kernel] };
        prop_assert_eq!(verify_module(&module, &VerifyOptions::default()).is_err(), default.is_err());
    }
}

/// Guards the corruption helpers themselves: they reach every kind of handle.
#[test]
fn corruption_helpers_reach_every_handle() {
    let mut kernel = gemm(true).kernel;
    let mut slots = 0;
    for_each_value_slot(&mut kernel, &mut |_| slots += 1);
    let mut blocks = 0;
    for_each_block(&mut kernel, &mut |_| blocks += 1);
    // 6 parameters, and at least one handle per operand and result.
    assert!(slots > kernel.values.len(), "{slots} slots for {} values", kernel.values.len());
    assert_eq!(blocks, 4, "body, loop body, two branches");
    // Rewriting every slot out of range is always caught.
    let mut all = kernel.clone();
    let n = all.values.len();
    for_each_value_slot(&mut all, &mut |v| *v = ValueId::from_index(n + 1));
    assert!(verify_kernel(&all, &VerifyOptions::default()).is_err());
}
