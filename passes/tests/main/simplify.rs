//! `simplify-indices`: the semantic model against the interpreter, the interval analysis and
//! every rewrite rule exhaustively on small types, translation validation on random programs,
//! the examples and the generated low-bit matmuls, and the runner's limits.

use std::time::{Duration, Instant};

use anybit_frontend::lowbit::{self, WeightFormat};
use anybit_ir::DType;
use anybit_ir::builder::KernelBuilder;
use anybit_ir::interp::{Arg, Buffer, RunOptions, run_kernel};
use anybit_ir::program::{Axis, BinaryOp, GridExpr, Kernel, Module, Op, Operand, ParamType, RegisterTensorType, Type};
use anybit_ir::random::SplitMix64;
use anybit_ir::verify::{VerifyOptions, verify_module};
use anybit_passes::PassManager;
use anybit_passes::simplify::lang::{IndexOp, IntTy, Range, eval, transfer};
use anybit_passes::simplify::rules::{Ctx, RULES, Rule, parse_pattern};
use anybit_passes::simplify::{KernelReport, SimplifyIndices};
use proptest::prelude::*;

fn ity(bits: u32, signed: bool) -> IntTy {
    IntTy::new(bits, signed).unwrap()
}

/// Every value of a type, in order.
fn values(ty: IntTy) -> Vec<i64> {
    (ty.min()..=ty.max()).collect()
}

/// Interesting values of a type: the extremes, small values, powers of two and their
/// neighbours, and a few random ones.
fn interesting(ty: IntTy, rng: &mut SplitMix64, random: usize) -> Vec<i64> {
    let mut out =
        vec![ty.min(), ty.min() + 1, ty.max(), ty.max() - 1, 0, 1, 2, 3, 5, 6, 7, 12, 100, -1, -2, -3, -7, -64];
    for k in 0..ty.bits() {
        let p = 1i64 << k;
        out.extend([p, p - 1, p + 1, -p, -p + 1]);
    }
    for _ in 0..random {
        out.push(ty.wrap(i128::from(rng.next_u64() as i64)));
    }
    out.retain(|&v| ty.contains(v));
    out.sort();
    out.dedup();
    out
}

// ----- the model against the interpreter -----

/// `op(a, b)` for each pair, computed by the interpreter (elementwise on a register tile,
/// which runs the same code as on scalars).
fn interp_pairs(ty: IntTy, op: IndexOp, pairs: &[(i64, i64)]) -> Vec<i64> {
    let dtype = ty.dtype().unwrap();
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(1 << 16) {
        let n = chunk.len().div_ceil(32) * 32;
        let mut k = KernelBuilder::new("pairs", 1);
        let shape = vec![GridExpr::Const(n as u64)];
        let a = k.shaped_pointer_param("a", dtype, shape.clone()).unwrap();
        let b = k.shaped_pointer_param("b", dtype, shape.clone()).unwrap();
        let o = k.shaped_pointer_param("o", dtype, shape).unwrap();
        let tile = RegisterTensorType::new(
            dtype,
            vec![n],
            Some(KernelBuilder::layout(&format!("local({}).spatial(32)", n / 32)).unwrap()),
        );
        let (va, vb, vo) = (
            k.global_view(a, &[(n as i64).into()], None).unwrap(),
            k.global_view(b, &[(n as i64).into()], None).unwrap(),
            k.global_view(o, &[(n as i64).into()], None).unwrap(),
        );
        let ta = k.load_global(va, &[0.into()], tile.clone()).unwrap();
        let tb = k.load_global(vb, &[0.into()], tile).unwrap();
        let r = k.binary(op.binary(), ta, tb).unwrap();
        k.store_global(r, vo, &[0.into()]).unwrap();
        let kernel = k.finish();
        let padded = |f: fn(&(i64, i64)) -> i64, pad: i64| -> Vec<u32> {
            chunk.iter().map(f).chain(std::iter::repeat(pad)).take(n).map(|v| ty.code(v) as u32).collect()
        };
        let mut args = vec![
            Arg::Buffer(Buffer::from_codes(dtype, &padded(|p| p.0, 0)).unwrap()),
            Arg::Buffer(Buffer::from_codes(dtype, &padded(|p| p.1, 1)).unwrap()),
            Arg::Buffer(Buffer::zeros(dtype, n).unwrap()),
        ];
        run_kernel(&kernel, &mut args, &RunOptions::default()).unwrap();
        let codes = args[2].buffer().unwrap().codes();
        out.extend(codes[..chunk.len()].iter().map(|&c| ty.wrap(i128::from(c))));
    }
    out
}

fn check_model(ty: IntTy, pairs: &[(i64, i64)]) {
    for op in IndexOp::ALL {
        let pairs: Vec<(i64, i64)> = pairs.iter().copied().filter(|&(_, b)| !(op.divides() && b == 0)).collect();
        let interp = interp_pairs(ty, op, &pairs);
        for (&(a, b), &want) in pairs.iter().zip(&interp) {
            assert_eq!(eval(ty, op, a, b), Some(want), "{} {a}, {b} in {ty}", op.name());
        }
    }
    assert_eq!(eval(ty, IndexOp::Div, 1, 0), None);
}

#[test]
fn the_model_is_the_interpreter_on_every_pair_of_small_types() {
    let types = [
        ity(1, false),
        ity(2, false),
        ity(3, false),
        ity(4, false),
        ity(2, true),
        ity(3, true),
        ity(4, true),
        ity(8, false),
        ity(8, true),
    ];
    for ty in types {
        let all = values(ty);
        let pairs: Vec<(i64, i64)> = all.iter().flat_map(|&a| all.iter().map(move |&b| (a, b))).collect();
        check_model(ty, &pairs);
    }
}

#[test]
fn the_model_is_the_interpreter_on_wide_types() {
    let mut rng = SplitMix64::new(7);
    for ty in [ity(16, false), ity(16, true), ity(32, false), ity(32, true), ity(13, true), ity(31, false)] {
        let special = interesting(ty, &mut rng, 40);
        let mut pairs: Vec<(i64, i64)> = special.iter().flat_map(|&a| special.iter().map(move |&b| (a, b))).collect();
        for _ in 0..4000 {
            pairs.push((ty.wrap(i128::from(rng.next_u64() as i64)), ty.wrap(i128::from(rng.next_u64() as i64))));
        }
        check_model(ty, &pairs);
    }
}

// ----- the interval analysis -----

fn all_intervals(ty: IntTy) -> Vec<Range> {
    let vs = values(ty);
    vs.iter().flat_map(|&lo| vs.iter().filter(move |&&hi| hi >= lo).map(move |&hi| Range::new(lo, hi))).collect()
}

fn random_interval(ty: IntTy, rng: &mut SplitMix64) -> Range {
    let a = ty.wrap(i128::from(rng.next_u64() as i64));
    let b = if rng.below(2) == 0 {
        a.saturating_add(rng.below(8) as i64).min(ty.max())
    } else {
        ty.wrap(i128::from(rng.next_u64() as i64))
    };
    Range::new(a.min(b), a.max(b))
}

fn check_transfer(ty: IntTy, op: IndexOp, a: Range, b: Range) {
    let r = transfer(ty, op, a, b);
    assert!(r.lo <= r.hi && ty.contains(r.lo) && ty.contains(r.hi), "{} {a:?} {b:?} in {ty}: {r:?}", op.name());
    for x in a.lo..=a.hi {
        for y in b.lo..=b.hi {
            if let Some(v) = eval(ty, op, x, y) {
                assert!(r.contains(v), "{} {x}, {y} in {ty} = {v}, outside {r:?} (from {a:?}, {b:?})", op.name());
            }
        }
    }
}

#[test]
fn intervals_hold_every_value_on_small_types() {
    for ty in [ity(3, false), ity(3, true)] {
        let intervals = all_intervals(ty);
        for op in IndexOp::ALL {
            for &a in &intervals {
                for &b in &intervals {
                    check_transfer(ty, op, a, b);
                }
            }
        }
    }
    let mut rng = SplitMix64::new(3);
    for ty in [ity(4, false), ity(4, true), ity(8, false), ity(8, true)] {
        for op in IndexOp::ALL {
            for _ in 0..3000 {
                let (a, b) = (random_interval(ty, &mut rng), random_interval(ty, &mut rng));
                check_transfer(ty, op, a, b);
            }
        }
    }
}

// ----- the rules -----

/// How thoroughly a type is searched.
struct Plan {
    /// Candidate values of each constant variable, by position among the constants.
    constants: Vec<Vec<i64>>,
    /// Candidate intervals of each other variable.
    intervals: Vec<Range>,
    /// At most this many values per interval are tried (endpoints and random ones beyond).
    values_per_interval: usize,
}

fn plan(ty: IntTy, rule: &Rule, ranged: usize, rng: &mut SplitMix64) -> Plan {
    let bits = ty.bits();
    let mut sampled = interesting(ty, rng, 12);
    if bits == 8 && rule.constants.len() > 1 {
        // The first constant takes every value; the second a random third of the interesting ones.
        sampled.retain(|_| rng.below(3) == 0);
    }
    let constants = (0..rule.constants.len())
        .map(|i| if bits <= 4 || (bits == 8 && i == 0) { values(ty) } else { sampled.clone() })
        .collect();
    let intervals = if bits <= 3 || (bits == 4 && ranged <= 1) {
        all_intervals(ty)
    } else {
        // Every point (so every value), the widest intervals, and some random ones.
        let mut v: Vec<Range> =
            if bits <= 8 && ranged <= 1 { values(ty).into_iter().map(Range::point).collect() } else { Vec::new() };
        v.push(ty.full());
        v.push(Range::new(0, ty.max()));
        let extra = match (bits, ranged, rule.constants.len()) {
            (8, 0 | 1, 2..) => 0,
            (8, 0 | 1, _) => 6,
            _ => 16,
        };
        for _ in 0..extra {
            v.push(random_interval(ty, rng));
        }
        for &s in sampled.iter().take(12) {
            v.push(Range::point(s));
        }
        v
    };
    Plan { constants, intervals, values_per_interval: if bits <= 8 { 256 } else { 24 } }
}

fn sample_values(r: Range, max: usize, rng: &mut SplitMix64) -> Vec<i64> {
    let size = (r.hi - r.lo + 1) as u64;
    if size as usize <= max {
        return (r.lo..=r.hi).collect();
    }
    let mut v = vec![r.lo, r.hi];
    for _ in 0..max {
        v.push(r.lo + rng.below(size) as i64);
    }
    v
}

/// Checks `rule` on type `ty`; returns how many (facts, constants) cases it fired on.
fn check_rule(rule: &Rule, ty: IntTy, rng: &mut SplitMix64) -> u64 {
    let lhs = parse_pattern(rule.lhs).unwrap();
    let vars = lhs.vars();
    for c in rule.constants {
        assert!(vars.contains(c), "rule {}: constant {c} is not in the pattern", rule.name);
    }
    let ranged: Vec<&'static str> = vars.iter().copied().filter(|v| !rule.constants.contains(v)).collect();
    let plan = plan(ty, rule, ranged.len(), rng);
    let mut fired = 0u64;
    // Every combination of constants, then of intervals for the other variables.
    let mut const_choice = vec![0usize; rule.constants.len()];
    loop {
        let mut interval_choice = vec![0usize; ranged.len()];
        loop {
            let mut facts: Vec<(&'static str, Range)> = Vec::new();
            for (i, c) in rule.constants.iter().enumerate() {
                facts.push((c, Range::point(plan.constants[i][const_choice[i]])));
            }
            for (i, v) in ranged.iter().enumerate() {
                facts.push((v, plan.intervals[interval_choice[i]]));
            }
            let ctx = Ctx::new(ty, &facts);
            if let Some(rhs) = (rule.apply)(&ctx) {
                fired += 1;
                // Every assignment of values in the intervals.
                let choices: Vec<Vec<i64>> =
                    facts.iter().map(|(_, r)| sample_values(*r, plan.values_per_interval, rng)).collect();
                let mut pick = vec![0usize; facts.len()];
                loop {
                    let env = |name: &str| facts.iter().position(|(n, _)| *n == name).map(|i| choices[i][pick[i]]);
                    let want = lhs.eval(ty, &env);
                    let got = rhs.eval(ty, &env);
                    let point: Vec<(&str, i64)> = facts
                        .iter()
                        .map(|(n, _)| *n)
                        .zip(pick.iter().enumerate().map(|(i, &p)| choices[i][p]))
                        .collect();
                    assert!(
                        want.is_some(),
                        "rule {} fires on an undefined left side in {ty}: {point:?} ({facts:?})",
                        rule.name
                    );
                    assert_eq!(want, got, "rule {} in {ty} at {point:?} with facts {facts:?}: {rhs:?}", rule.name);
                    if !advance(&mut pick, &choices.iter().map(Vec::len).collect::<Vec<_>>()) {
                        break;
                    }
                }
            }
            if !advance(&mut interval_choice, &vec![plan.intervals.len(); ranged.len()]) {
                break;
            }
        }
        if !advance(&mut const_choice, &plan.constants.iter().map(Vec::len).collect::<Vec<_>>()) {
            break;
        }
    }
    fired
}

/// The next combination (odometer order); false after the last.
fn advance(pick: &mut [usize], sizes: &[usize]) -> bool {
    for (p, &n) in pick.iter_mut().zip(sizes) {
        *p += 1;
        if *p < n {
            return true;
        }
        *p = 0;
    }
    false
}

#[test]
fn every_rule_is_sound_on_every_input_of_small_types() {
    let mut rng = SplitMix64::new(11);
    let types = [
        ity(1, false),
        ity(3, false),
        ity(3, true),
        ity(4, false),
        ity(4, true),
        ity(8, false),
        ity(8, true),
        ity(16, false),
        ity(16, true),
    ];
    for rule in RULES {
        let mut fired = 0;
        for ty in types {
            fired += check_rule(rule, ty, &mut rng);
        }
        // A rule that never fires would be tested by nothing.
        assert!(fired > 0, "rule {} never applied", rule.name);
    }
}

#[test]
fn rule_names_are_unique_and_documented() {
    let doc = include_str!("../../src/simplify.rs");
    let mut names: Vec<&str> = RULES.iter().map(|r| r.name).collect();
    names.sort();
    let before = names.len();
    names.dedup();
    assert_eq!(names.len(), before, "duplicate rule names");
    for rule in RULES {
        let documented = if rule.name.starts_with("comm-") {
            "`comm-add/mul/min/max/and/or/xor`".to_owned()
        } else {
            format!("`{}`", rule.name)
        };
        assert!(doc.contains(&documented), "rule {} is not in the module documentation", rule.name);
        parse_pattern(rule.lhs).unwrap();
    }
}

// ----- kernels -----

fn verify(module: &Module) {
    verify_module(module, &VerifyOptions::strict())
        .unwrap_or_else(|e| panic!("{e}\n{}", anybit_ir::text::print_module(module)));
}

fn run_pass(module: &Module) -> (Module, Vec<KernelReport>) {
    let mut out = module.clone();
    let reports = SimplifyIndices::default().run_with_reports(&mut out).unwrap();
    verify(&out);
    (out, reports)
}

/// Runs the kernel; the outputs (every buffer) and the kind of error, if any.
fn outcome(kernel: &Kernel, args: &[Arg]) -> (Option<String>, Vec<Vec<u8>>) {
    let mut args = args.to_vec();
    let result = run_kernel(kernel, &mut args, &RunOptions::default());
    (
        result.err().map(|e| format!("{:?}", e.kind)),
        args.iter().filter_map(Arg::buffer).map(|b| b.bytes().to_vec()).collect(),
    )
}

fn text(module: &Module) -> String {
    anybit_ir::text::print_module(module)
}

fn scalar_count(kernel: &Kernel) -> usize {
    let mut n = 0;
    kernel.walk(|_, inst| {
        let scalar =
            inst.results.first().is_some_and(|&r| matches!(kernel.value_type(r), Type::Scalar(d) if d.is_integer()));
        if scalar && matches!(inst.op, Op::Const { .. } | Op::BlockIndex { .. } | Op::Binary { .. }) {
            n += 1;
        }
    });
    n
}

fn parse(source: &str) -> Module {
    let module = anybit_ir::text::parse_module(source).unwrap_or_else(|e| panic!("{e}"));
    verify(&module);
    module
}

#[test]
fn the_pass_is_registered() {
    let pass = anybit_passes::manager::pass("simplify-indices").unwrap();
    assert_eq!(pass.name(), "simplify-indices");
    let mut module = parse(VECTOR_ADD);
    PassManager::from_names(&["simplify-indices", "dce"])
        .unwrap()
        .verify_each(Some(VerifyOptions::strict()))
        .run(&mut module)
        .unwrap();
}

const VECTOR_ADD: &str = include_str!("../../../examples/vector_add.abk");

#[test]
fn divisions_by_powers_of_two_become_shifts_and_constants_fold() {
    let module = parse(
        "kernel k(o: ptr i32[64], n: i32, d: i32) grid(1) warps(1) {
            %v = global_view %o [64] strides [1]
            %a = const 12 : i32
            %b = mul %a, 3
            %c = sub %b, 36
            %e = add %n, %c
            for %k0 = 0 to %n step 64 {
                %g = div %k0, 128
                %r = rem %k0, 64
                %q = div %n, %d
                %s = add %g, %r
                %s2 = add %s, %q
                %t = fill %s2 : i32[32] layout spatial(32)
                store_global %t, %v [%e]
            }
        }",
    );
    let (out, reports) = run_pass(&module);
    let printed = text(&out);
    assert!(printed.contains("shr %k0, 7"), "{printed}");
    assert!(printed.contains("and %k0, 63"), "{printed}");
    // The division by a value that may be 0 stays, as it was.
    assert!(printed.contains("div %n, %d"), "{printed}");
    // 12·3 − 36 = 0: `%e` is `%n`, and the constants are gone.
    assert!(!printed.contains("const") && !printed.contains("mul"), "{printed}");
    assert!(printed.contains("store_global %t, %v [%n]"), "{printed}");
    assert!(reports[0].insts_after < reports[0].insts_before);
    let i32t = DType::int(32).unwrap();
    for (n, d) in [(200, 3), (200, 0), (0, 0), (-5, 2)] {
        let args = vec![Arg::Buffer(Buffer::zeros(i32t, 64).unwrap()), Arg::Int(n), Arg::Int(d)];
        let (before, after) = (outcome(&module.kernels[0], &args), outcome(&out.kernels[0], &args));
        assert_eq!(before.0.is_some(), n > 0 && d == 0, "{before:?}");
        assert_eq!(before, after, "n = {n}, d = {d}");
    }
}

#[test]
fn a_possible_division_by_zero_stays_even_when_its_value_does_not_matter() {
    let module = parse(
        "kernel k(o: ptr i32[64], n: i32, d: i32) grid(1) warps(1) {
            %v = global_view %o [64] strides [1]
            %q = div %n, %d
            %z = mul %q, 0
            %e = add %z, 1
            %t = fill %e : i32[32] layout spatial(32)
            store_global %t, %v [0]
        }",
    );
    let (out, _) = run_pass(&module);
    let printed = text(&out);
    assert!(printed.contains("div %n, %d") && !printed.contains("mul"), "{printed}");
    let args = vec![Arg::Buffer(Buffer::zeros(DType::int(32).unwrap(), 64).unwrap()), Arg::Int(7), Arg::Int(0)];
    let (before, after) = (outcome(&module.kernels[0], &args), outcome(&out.kernels[0], &args));
    assert_eq!(before.0.as_deref(), Some("DivisionByZero"));
    assert_eq!(before, after);
}

#[test]
fn the_pass_is_deterministic() {
    for seed in 0..20 {
        let (module, _) = Program::build(seed);
        let (a, _) = run_pass(&module);
        let (b, _) = run_pass(&module);
        assert_eq!(text(&a), text(&b), "seed {seed}");
    }
}

#[test]
fn equal_expressions_are_computed_once_and_invariants_leave_loops() {
    let module = parse(
        "kernel k(o: ptr i32[4096], n: i32, m: i32) grid(1) warps(1) {
            %v = global_view %o [4096] strides [1]
            for %i = 0 to 4 step 1 {
                %a = mul %n, %m
                %b = mul %m, %n
                %c = add %a, %i
                %d = add %i, %b
                %t = fill %c : i32[32] layout spatial(32)
                store_global %t, %v [%d]
            }
        }",
    );
    let (out, _) = run_pass(&module);
    let printed = text(&out);
    assert_eq!(printed.matches("mul").count(), 1, "{printed}");
    assert_eq!(printed.matches("add").count(), 1, "{printed}");
    // The product of parameters is computed before the loop.
    assert!(printed.find("mul").unwrap() < printed.find("for").unwrap(), "{printed}");
    let args = vec![Arg::Buffer(Buffer::zeros(DType::int(32).unwrap(), 4096).unwrap()), Arg::Int(5), Arg::Int(7)];
    assert_eq!(outcome(&module.kernels[0], &args), outcome(&out.kernels[0], &args));
}

#[test]
fn ranges_decide_conditional_rules() {
    // `%bn < 2^25` (from the grid), so `%bn · 64` does not wrap: `(bn·64)/128` is `bn >> 1`
    // and `(bn·64) rem 64` is 0; `%n` is a declared dimension, so ≥ 0, and `cdiv(n, 8)`
    // becomes a shift of `n + 7` only when that cannot wrap — it can, so it stays.
    let module = parse(
        "kernel k(x: ptr i32[n], o: ptr i32[4096], n: i32) grid(cdiv(n, 64)) warps(1) {
            %v = global_view %o [4096] strides [1]
            %bn = block_index x
            %n0 = mul %bn, 64
            %h = div %n0, 128
            %z = rem %n0, 64
            %c = cdiv %n, 8
            %w = min %n, 2147483647
            %s = add %h, %z
            %s2 = add %s, %c
            %s3 = add %s2, %w
            %t = fill %s3 : i32[32] layout spatial(32)
            store_global %t, %v [%n0]
        }",
    );
    let (out, _) = run_pass(&module);
    let printed = text(&out);
    assert!(printed.contains("shr %bn, 1"), "{printed}");
    assert!(!printed.contains("rem") && !printed.contains("min"), "{printed}");
    assert!(printed.contains("cdiv %n, 8"), "{printed}");
    for n in [0, 1, 63, 64, 65, 200] {
        let i32t = DType::int(32).unwrap();
        let args = vec![
            Arg::Buffer(Buffer::zeros(i32t, n as usize).unwrap()),
            Arg::Buffer(Buffer::zeros(i32t, 4096).unwrap()),
            Arg::Int(n),
        ];
        assert_eq!(outcome(&module.kernels[0], &args), outcome(&out.kernels[0], &args), "n = {n}");
    }
}

// ----- the examples and the low-bit matmuls -----

fn random_buffer(dtype: DType, len: usize, rng: &mut SplitMix64) -> Buffer {
    if dtype.is_float() {
        let values: Vec<f64> = (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect();
        Buffer::from_f64(dtype, &values).unwrap()
    } else {
        let codes: Vec<u32> = (0..len).map(|_| (rng.next_u64() % dtype.num_codes()) as u32).collect();
        Buffer::from_codes(dtype, &codes).unwrap()
    }
}

/// Arguments for `kernel` with these scalar values by name, buffers random by their declared
/// shapes.
fn arguments(kernel: &Kernel, scalars: &[(&str, Arg)], seed: u64) -> Vec<Arg> {
    let mut rng = SplitMix64::new(seed);
    let ints: Vec<Option<i64>> = kernel
        .params
        .iter()
        .map(|p| {
            scalars
                .iter()
                .find(|(n, _)| *n == p.name)
                .and_then(|(_, a)| if let Arg::Int(v) = a { Some(*v) } else { None })
        })
        .collect();
    kernel
        .params
        .iter()
        .map(|p| match p.ty {
            ParamType::Scalar(_) => scalars
                .iter()
                .find(|(n, _)| *n == p.name)
                .unwrap_or_else(|| panic!("no value for {}", p.name))
                .1
                .clone(),
            ParamType::Pointer(d) => {
                let len = p.buffer_len(&ints).unwrap_or_else(|| panic!("{} has no shape", p.name)).unwrap();
                Arg::Buffer(random_buffer(d, len as usize, &mut rng))
            }
        })
        .collect()
}

fn scalars_for(name: &str) -> Vec<Vec<(&'static str, Arg)>> {
    match name {
        "vector_add" => vec![vec![("n", Arg::Int(1000))], vec![("n", Arg::Int(512))]],
        "rms_norm" => vec![vec![("m", Arg::Int(5)), ("n", Arg::Int(300)), ("eps", Arg::Float(1e-5))]],
        "matmul_f16" => vec![
            vec![("m", Arg::Int(70)), ("n", Arg::Int(65)), ("k", Arg::Int(40)), ("relu", Arg::Int(1))],
            vec![("m", Arg::Int(64)), ("n", Arg::Int(64)), ("k", Arg::Int(64)), ("relu", Arg::Int(0))],
        ],
        _ => vec![
            vec![("m", Arg::Int(17)), ("n", Arg::Int(70)), ("k", Arg::Int(256)), ("splits", Arg::Int(1))],
            vec![("m", Arg::Int(3)), ("n", Arg::Int(64)), ("k", Arg::Int(128)), ("splits", Arg::Int(2))],
        ],
    }
}

/// Simplifies `module`, checks it verifies strictly, gives identical results on random
/// inputs and has no more scalar instructions; returns (before, after) scalar counts.
fn check_case(label: &str, module: &Module) -> (usize, usize) {
    let start = Instant::now();
    let (out, reports) = run_pass(module);
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_secs(5), "{label}: {elapsed:?}");
    let (before, after) = (scalar_count(&module.kernels[0]), scalar_count(&out.kernels[0]));
    assert!(after <= before, "{label}: {before} → {after} scalar instructions\n{}", text(&out));
    assert!(out.kernels[0].insts.len() <= module.kernels[0].insts.len(), "{label}");
    for (i, scalars) in scalars_for(&module.kernels[0].name).into_iter().enumerate() {
        let args = arguments(&module.kernels[0], &scalars, 100 + i as u64);
        let (a, b) = (outcome(&module.kernels[0], &args), outcome(&out.kernels[0], &args));
        assert_eq!(a.0, None, "{label}: the original fails");
        assert!(a == b, "{label}: results differ with {scalars:?}");
    }
    eprintln!(
        "{label}: scalar instructions {before} → {after}, all instructions {} → {}, {} e-nodes, {} iterations, {} ({elapsed:?})",
        reports[0].insts_before,
        reports[0].insts_after,
        reports[0].egraph_nodes,
        reports[0].iterations,
        reports[0].stop_reason
    );
    (before, after)
}

#[test]
fn every_example_keeps_its_meaning() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "abk") {
            let module = parse(&std::fs::read_to_string(&path).unwrap());
            check_case(&path.file_name().unwrap().to_string_lossy(), &module);
            seen += 1;
        }
    }
    assert!(seen >= 4);
}

#[test]
fn the_lowbit_matmul_gets_shifts() {
    let u4 = DType::uint(4).unwrap();
    let formats = [
        WeightFormat {
            weight: u4,
            lut: None,
            group_size: 128,
            scale: DType::F16,
            zero_point: true,
            offset: false,
            activation: DType::F16,
        },
        WeightFormat {
            weight: DType::uint(2).unwrap(),
            lut: None,
            group_size: 64,
            scale: DType::F16,
            zero_point: false,
            offset: false,
            activation: DType::F16,
        },
        WeightFormat {
            weight: DType::uint(3).unwrap(),
            lut: None,
            group_size: 128,
            scale: DType::F16,
            zero_point: true,
            offset: false,
            activation: DType::F16,
        },
    ];
    for format in formats {
        format.validate().unwrap();
        let module = lowbit::build_module(&format).unwrap();
        let label = module.kernels[0].name.clone();
        check_case(&label, &module);
        let (out, _) = run_pass(&module);
        let printed = text(&out);
        // The group of the step loaded ahead (`k_ahead = k0 + 2·64`, or in the 8- and 16-row
        // kernels `k_fetch`, that clamped to the block's last step): a floor division by a
        // power of two is an arithmetic shift.
        let log = format.group_size.trailing_zeros();
        for ahead in ["k_ahead", "k_fetch"] {
            assert!(!printed.contains(&format!("div %{ahead}, {}", format.group_size)), "{printed}");
        }
        let shifts = ["k_ahead", "k_fetch"].map(|ahead| format!("shr %{ahead}, {log}"));
        assert!(shifts.iter().any(|s| printed.contains(s)), "{label}: no `{shifts:?}`\n{printed}");
    }
}

// ----- random programs -----

const SLOTS: i64 = 64;

/// A random scalar integer program over parameters, the block index and a loop index, with a
/// branch and a loop, storing its values to `out`.
struct Program {
    rng: SplitMix64,
    ty: IntTy,
    dtype: DType,
    slot: i64,
}

impl Program {
    fn literal(&mut self) -> i64 {
        let choices = interesting(self.ty, &mut self.rng, 2);
        choices[self.rng.below(choices.len() as u64) as usize]
    }

    fn operand(&mut self, pool: &[anybit_ir::program::ValueId]) -> Operand {
        if self.rng.below(5) == 0 {
            self.literal().into()
        } else {
            pool[self.rng.below(pool.len() as u64) as usize].into()
        }
    }

    fn op(&mut self, k: &mut KernelBuilder, pool: &mut Vec<anybit_ir::program::ValueId>) {
        let op = IndexOp::ALL[self.rng.below(IndexOp::ALL.len() as u64) as usize];
        let lhs = pool[self.rng.below(pool.len() as u64) as usize].into();
        let rhs = if op.divides() {
            match self.rng.below(8) {
                0..=4 => {
                    let c = self.literal();
                    (if c == 0 { 1 } else { c }).into()
                }
                5 | 6 => {
                    let v = self.operand(pool);
                    match v {
                        Operand::Value(v) => k.binary(BinaryOp::Or, v, 1).unwrap().into(),
                        literal => literal,
                    }
                }
                _ => pool[self.rng.below(pool.len() as u64) as usize].into(),
            }
        } else if matches!(op, IndexOp::Shl | IndexOp::Shr) && self.rng.below(3) > 0 {
            let n = self.ty.bits() as i64 + 2;
            let s = self.rng.below(n as u64) as i64;
            (if self.ty.contains(s) { s } else { 1 }).into()
        } else {
            self.operand(pool)
        };
        let (lhs, rhs) = if self.rng.below(6) == 0 { (rhs, lhs) } else { (lhs, rhs) };
        let (lhs, rhs) = match (lhs, rhs) {
            (Operand::Literal(_), Operand::Literal(_)) => (Operand::Value(pool[0]), rhs),
            pair => pair,
        };
        // A literal divisor of 0 can come from swapping operands: keep it (the program then
        // fails at run time, before and after the pass alike).
        let v = k.binary(op.binary(), lhs, rhs).unwrap();
        pool.push(v);
    }

    fn store(
        &mut self,
        k: &mut KernelBuilder,
        value: anybit_ir::program::ValueId,
        view: anybit_ir::program::ValueId,
        offset: Operand,
    ) {
        let tile = RegisterTensorType::new(self.dtype, vec![32], Some(KernelBuilder::layout("spatial(32)").unwrap()));
        let t = k.fill(value, tile).unwrap();
        k.store_global(t, view, &[offset]).unwrap();
    }

    fn next_slot(&mut self, k: &mut KernelBuilder, base: anybit_ir::program::ValueId) -> Operand {
        let slot = self.slot;
        self.slot += 1;
        assert!(self.slot <= SLOTS);
        k.add(base, slot * 32).unwrap().into()
    }

    fn build(seed: u64) -> (Module, IntTy) {
        let mut rng = SplitMix64::new(seed);
        let types = [
            ity(32, true),
            ity(32, false),
            ity(16, true),
            ity(16, false),
            ity(8, true),
            ity(8, false),
            ity(4, true),
            ity(5, false),
        ];
        let ty = types[rng.below(types.len() as u64) as usize];
        let dtype = ty.dtype().unwrap();
        let i32t = DType::int(32).unwrap();
        let mut g = Program { rng, ty, dtype, slot: 0 };
        let mut k = KernelBuilder::new("random", 1);
        k.set_grid(vec![GridExpr::Const(2)]);
        let out = k.shaped_pointer_param("out", dtype, vec![GridExpr::Const(2 * SLOTS as u64 * 32)]).unwrap();
        let mut pool: Vec<_> = (0..3).map(|i| k.scalar_param(&format!("p{i}"), dtype).unwrap()).collect();
        let view = k.global_view(out, &[(2 * SLOTS * 32).into()], None).unwrap();
        let b = k.block_index(Axis::X).unwrap();
        let base = k.mul(b, SLOTS * 32).unwrap();
        pool.push(if ty == ity(32, true) { b } else { k.cast(b, dtype).unwrap() });
        for _ in 0..(4 + g.rng.below(8)) {
            g.op(&mut k, &mut pool);
        }
        // A branch yielding one value.
        let cond = pool[g.rng.below(pool.len() as u64) as usize];
        let snapshot = pool.clone();
        let (then_n, else_n) = (1 + g.rng.below(3), 1 + g.rng.below(3));
        let cell = std::cell::RefCell::new(g);
        let r = k
            .if_else(
                cond,
                |k| {
                    let mut p = snapshot.clone();
                    for _ in 0..then_n {
                        cell.borrow_mut().op(k, &mut p);
                    }
                    Ok(vec![(*p.last().unwrap()).into()])
                },
                |k| {
                    let mut p = snapshot.clone();
                    for _ in 0..else_n {
                        cell.borrow_mut().op(k, &mut p);
                    }
                    Ok(vec![(*p.last().unwrap()).into()])
                },
            )
            .unwrap();
        let mut g = cell.into_inner();
        pool.push(r[0]);
        // A loop of up to 4 iterations with a carried value; each iteration stores to its own
        // slots.
        let start = if ty.signed() { g.rng.below(7) as i64 - 3 } else { g.rng.below(4) as i64 };
        let iterations = 1 + g.rng.below(4) as i64;
        let (s, e) = (k.constant(start, dtype).unwrap(), k.constant(start + iterations, dtype).unwrap());
        let loop_slots = g.slot;
        g.slot += 4 * 2;
        let body_ops = 2 + g.rng.below(5);
        let init = pool[g.rng.below(pool.len() as u64) as usize];
        let outer = pool.clone();
        let carried = k
            .for_range(s, e, 1, None, &[init.into()], |k, i, c| {
                let mut p = outer.clone();
                p.push(i);
                p.push(c[0]);
                for _ in 0..body_ops {
                    g.op(k, &mut p);
                }
                let d = k.sub(i, start).unwrap();
                let d = if ty == ity(32, true) { d } else { k.cast(d, i32t).unwrap() };
                let row = k.mul(d, 64).unwrap();
                let at = k.add(row, base).unwrap();
                for j in 0..2 {
                    let value = p[p.len() - 1 - j];
                    let offset = k.add(at, (loop_slots + 4 * j as i64) * 32).unwrap();
                    g.store(k, value, view, offset.into());
                }
                Ok(vec![(*p.last().unwrap()).into()])
            })
            .unwrap();
        pool.push(carried[0]);
        for _ in 0..(2 + g.rng.below(4)) {
            g.op(&mut k, &mut pool);
        }
        let stores = 3 + g.rng.below(5);
        for _ in 0..stores {
            let value = pool[3 + g.rng.below(pool.len() as u64 - 3) as usize];
            let offset = g.next_slot(&mut k, base);
            g.store(&mut k, value, view, offset);
        }
        let last = *pool.last().unwrap();
        let offset = g.next_slot(&mut k, base);
        g.store(&mut k, last, view, offset);
        (Module { layouts: vec![], kernels: vec![k.finish()] }, ty)
    }
}

fn scalar_args(ty: IntTy, seed: u64) -> Vec<Arg> {
    let mut rng = SplitMix64::new(seed);
    let choices = interesting(ty, &mut rng, 6);
    (0..3).map(|_| Arg::Int(choices[rng.below(choices.len() as u64) as usize])).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn random_programs_keep_their_meaning(seed in any::<u64>()) {
        let (module, ty) = Program::build(seed);
        verify(&module);
        let (out, reports) = run_pass(&module);
        prop_assert!(out.kernels[0].insts.len() <= module.kernels[0].insts.len(), "{:?}", reports);
        for run in 0..4u64 {
            let mut args = vec![Arg::Buffer(Buffer::zeros(ty.dtype().unwrap(), (2 * SLOTS * 32) as usize).unwrap())];
            args.extend(scalar_args(ty, seed ^ run.wrapping_mul(0x9e37_79b9)));
            let (a, b) = (outcome(&module.kernels[0], &args), outcome(&out.kernels[0], &args));
            prop_assert!(a == b, "results differ with {:?}:\n{}\n-- after --\n{}", &args[1..], text(&module), text(&out));
        }
    }
}

// ----- limits -----

/// A long chain of multiply-adds with shared operands: a large e-graph.
fn pathological(length: usize) -> Module {
    let i32t = DType::int(32).unwrap();
    let mut k = KernelBuilder::new("chain", 1);
    let o = k.shaped_pointer_param("o", i32t, vec![GridExpr::Const(32)]).unwrap();
    let p: Vec<_> = (0..4).map(|i| k.scalar_param(&format!("p{i}"), i32t).unwrap()).collect();
    let view = k.global_view(o, &[32.into()], None).unwrap();
    let mut v = p[0];
    let mut rng = SplitMix64::new(5);
    for i in 0..length {
        // Horner steps with constants and parameters: distribution and re-association keep
        // finding new forms of every prefix.
        let a = k.add(v, 1 + rng.below(9) as i64).unwrap();
        let b = k.mul(a, 3 + rng.below(5) as i64).unwrap();
        let c = k.add(b, p[i % 4]).unwrap();
        v = if i % 3 == 0 { k.binary(BinaryOp::Shl, c, 1 + rng.below(3) as i64).unwrap() } else { c };
    }
    let tile = RegisterTensorType::new(i32t, vec![32], Some(KernelBuilder::layout("spatial(32)").unwrap()));
    let t = k.fill(v, tile).unwrap();
    k.store_global(t, view, &[0.into()]).unwrap();
    Module { layouts: vec![], kernels: vec![k.finish()] }
}

#[test]
fn the_runner_limits_hold() {
    let cases = [
        (400, SimplifyIndices { node_limit: 2_000, ..SimplifyIndices::default() }, "NodeLimit"),
        (400, SimplifyIndices { iter_limit: 2, ..SimplifyIndices::default() }, "IterationLimit"),
        (
            400,
            SimplifyIndices {
                time_limit: Duration::from_millis(10),
                node_limit: 1_000_000,
                iter_limit: 1000,
                ..SimplifyIndices::default()
            },
            "TimeLimit",
        ),
        // Over the default node limit before the first rule applies.
        (3000, SimplifyIndices::default(), "NodeLimit"),
    ];
    for (length, pass, reason) in cases {
        let module = pathological(length);
        let args = vec![
            Arg::Buffer(Buffer::zeros(DType::int(32).unwrap(), 32).unwrap()),
            Arg::Int(3),
            Arg::Int(-7),
            Arg::Int(i32::MAX as i64),
            Arg::Int(12345),
        ];
        let expected = outcome(&module.kernels[0], &args);
        let mut out = module.clone();
        let start = Instant::now();
        let reports = pass.run_with_reports(&mut out).unwrap();
        let elapsed = start.elapsed();
        verify(&out);
        let report = &reports[0];
        eprintln!("{length} steps, {pass:?}: {report:?} in {elapsed:?}");
        assert!(report.stop_reason.starts_with(reason), "{report:?}");
        assert!(report.iterations <= pass.iter_limit, "{report:?}");
        // Limits are checked after each rule's matches are applied: one rule can overshoot.
        assert!(report.egraph_nodes <= pass.node_limit * 3 + 20_000, "{report:?}");
        assert!(elapsed < pass.time_limit + Duration::from_secs(2), "{elapsed:?}");
        assert!(out.kernels[0].insts.len() <= module.kernels[0].insts.len());
        assert_eq!(outcome(&out.kernels[0], &args), expected);
    }
}
