//! The IR codecs (`codec.rs`) and math functions (`mathfn.rs`), JIT-compiled for the host and
//! run over every code of every type of at most 12 bits (and many values), against the exact
//! codecs of `anybit_ir`.
#![allow(unsafe_code)]

use anybit_ir::dtype::{DType, FloatFormat, all_types_up_to};
use anybit_ir::interp::numeric;
use anybit_ir::random::SplitMix64;
use inkwell::context::Context;
use inkwell::values::FunctionValue;

use super::host::{address, jit};
use crate::llvm::codec;
use crate::llvm::emit::{Em, Platform};
use crate::llvm::emitter::Emit;
use crate::llvm::mathfn;

/// A non-inlined wrapper `name(x) = f(x)`, so that the JIT exports it.
fn export<'ctx>(em: &Em<'ctx>, name: &str, f: FunctionValue<'ctx>) {
    let ty = f.get_type();
    let w = em.module.add_function(name, ty, None);
    let entry = em.ctx.append_basic_block(w, "entry");
    em.b.position_at_end(entry);
    let args: Vec<_> = w.get_param_iter().collect();
    let v = em.call(&f, &args).expect("call");
    em.b.build_return(Some(&v)).expect("ret");
}

fn formats() -> Vec<FloatFormat> {
    let mut f: Vec<FloatFormat> = all_types_up_to(12).into_iter().filter_map(DType::float_format).collect();
    f.extend([FloatFormat::F16, FloatFormat::BF16]);
    f
}

fn exact_f64(f: FloatFormat, code: u32) -> Option<f64> {
    DType::Float(f).decode(code).ok().and_then(|v| v.to_f64())
}

/// Same value, NaN matching any NaN, zeros matching by sign.
fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

#[test]
fn decoders_are_exact_for_every_code() {
    let ctx = Context::create();
    let em = Em::new(&ctx, "codecs", Platform::Host);
    let mut names = Vec::new();
    for (i, f) in formats().into_iter().enumerate() {
        let d32 = codec::fits_f32(f).then(|| codec::decode_f32(&em, f).expect("dec32"));
        let d64 = codec::fits_f64(f).then(|| codec::decode_f64(&em, f).expect("dec64"));
        let d16 = codec::fits_f16(f).then(|| codec::decode_f16(&em, f).expect("dec16"));
        if let Some(d) = d32 {
            export(&em, &format!("d32_{i}"), d);
        }
        if let Some(d) = d64 {
            export(&em, &format!("d64_{i}"), d);
        }
        if let Some(d) = d16 {
            // Half results come back widened to f32 (exact).
            let ty = em.ctx.f32_type().fn_type(&[em.ctx.i32_type().into()], false);
            let w = em.module.add_function(&format!("d16_{i}"), ty, None);
            let entry = em.ctx.append_basic_block(w, "entry");
            em.b.position_at_end(entry);
            let h = em.call(&d, &[w.get_nth_param(0).expect("p")]).expect("call");
            let wide = em.fext(h, em.f32()).expect("ext");
            em.b.build_return(Some(&wide)).expect("ret");
        }
        names.push((i, f, d32.is_some(), d64.is_some(), d16.is_some()));
    }
    let ee = jit(&em).expect("jit");
    let mut checked = 0usize;
    for (i, f, has32, has64, has16) in names {
        let dtype = DType::Float(f);
        for code in 0..(1u32 << f.bits()) {
            let Some(exact) = exact_f64(f, code) else { continue };
            if has32 {
                // SAFETY: `d32_i` was built above as `float(i32)`.
                let g: extern "C" fn(u32) -> f32 =
                    unsafe { std::mem::transmute(address(&ee, &format!("d32_{i}")).expect("fn")) };
                let got = f64::from(g(code));
                assert!(same(got, exact), "{dtype} code {code:#x}: decode_f32 gives {got}, exact {exact}");
                if exact.is_nan() {
                    assert_eq!(g(code).to_bits(), 0x7fc0_0000, "{dtype} {code:#x}: NaN is not canonical");
                }
            }
            if has64 {
                // SAFETY: `d64_i` was built above as `double(i32)`.
                let g: extern "C" fn(u32) -> f64 =
                    unsafe { std::mem::transmute(address(&ee, &format!("d64_{i}")).expect("fn")) };
                assert!(same(g(code), exact), "{dtype} code {code:#x}: decode_f64 gives {}, exact {exact}", g(code));
            }
            if has16 {
                // SAFETY: `d16_i` was built above as `float(i32)`.
                let g: extern "C" fn(u32) -> f32 =
                    unsafe { std::mem::transmute(address(&ee, &format!("d16_{i}")).expect("fn")) };
                assert!(
                    same(f64::from(g(code)), exact),
                    "{dtype} code {code:#x}: decode_f16 gives {}, exact {exact}",
                    g(code)
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 100_000, "only {checked} codes checked");
}

/// Values to encode: every code's value, the midpoints between neighbouring codes and their
/// f32 neighbours, values beyond the range, specials, and random f32 bit patterns.
fn probes(f: FloatFormat, rng: &mut SplitMix64) -> Vec<f32> {
    let mut values: Vec<f64> = Vec::new();
    let mut finite: Vec<f64> =
        (0..(1u32 << f.bits())).filter_map(|c| exact_f64(f, c)).filter(|v| v.is_finite()).collect();
    finite.sort_by(|a, b| a.total_cmp(b));
    for w in finite.windows(2) {
        let mid = (w[0] + w[1]) / 2.0;
        values.extend([w[0], mid]);
    }
    values.extend(finite.last().copied());
    let max = finite.last().copied().unwrap_or(1.0);
    values.extend([max * 1.5, max * 2.0, max * 4.0, -max * 1.5, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 0.0, -0.0]);
    let mut out: Vec<f32> = Vec::new();
    for v in values {
        let x = v as f32;
        if f64::from(x) == v || v.is_nan() || v.is_infinite() {
            out.push(x);
            out.push(f32::from_bits(x.to_bits().wrapping_add(1)));
            out.push(f32::from_bits(x.to_bits().wrapping_sub(1)));
        }
    }
    for _ in 0..20_000 {
        out.push(f32::from_bits(rng.next_u64() as u32));
    }
    // Tiny values around the smallest subnormals of the format.
    let tiny = DType::Float(f).min_subnormal().and_then(|d| d.to_f64()).unwrap_or(1e-3);
    for k in 0..200 {
        out.push((tiny * (k as f64) / 64.0) as f32);
    }
    out
}

#[test]
fn encoders_round_like_the_interpreter() {
    let ctx = Context::create();
    let em = Em::new(&ctx, "encoders", Platform::Host);
    let formats = formats();
    for (i, &f) in formats.iter().enumerate() {
        export(&em, &format!("e32_{i}"), codec::encode_f32(&em, f).expect("enc32"));
        export(&em, &format!("e64_{i}"), codec::encode_f64(&em, f).expect("enc64"));
    }
    let ee = jit(&em).expect("jit");
    let mut rng = SplitMix64::new(7);
    let mut checked = 0usize;
    for (i, &f) in formats.iter().enumerate() {
        // SAFETY: built above as `i32(float)` and `i32(double)`.
        let e32: extern "C" fn(f32) -> u32 =
            unsafe { std::mem::transmute(address(&ee, &format!("e32_{i}")).expect("fn")) };
        let e64: extern "C" fn(f64) -> u32 =
            unsafe { std::mem::transmute(address(&ee, &format!("e64_{i}")).expect("fn")) };
        for x in probes(f, &mut rng) {
            let want = numeric::encode_float(f, f64::from(x));
            assert_eq!(e32(x), want, "{}: encode_f32({x:e} = {:#x}) ", DType::Float(f), x.to_bits());
            assert_eq!(e64(f64::from(x)), want, "{}: encode_f64({x:e})", DType::Float(f));
            checked += 1;
        }
        for _ in 0..2000 {
            let x = f64::from_bits(rng.next_u64());
            let want = numeric::encode_float(f, x);
            assert_eq!(e64(x), want, "{}: encode_f64({x:e})", DType::Float(f));
        }
    }
    assert!(checked > 100_000, "only {checked} values checked");
}

/// ulp distance between two f32s (same sign assumed; NaNs equal).
fn ulps(a: f32, b: f32) -> u64 {
    if a.is_nan() && b.is_nan() {
        return 0;
    }
    if a == b {
        return 0;
    }
    let key = |x: f32| {
        let i = x.to_bits() as i32;
        if i < 0 { i64::from(i32::MIN) - i64::from(i) } else { i64::from(i) }
    };
    key(a).abs_diff(key(b))
}

#[test]
fn math_functions_are_accurate() {
    let ctx = Context::create();
    let em = Em::new(&ctx, "math", Platform::Host);
    export(&em, "m_exp", mathfn::exp(&em).expect("exp"));
    export(&em, "m_exp2", mathfn::exp2(&em).expect("exp2"));
    export(&em, "m_log", mathfn::log(&em).expect("log"));
    export(&em, "m_log2", mathfn::log2(&em).expect("log2"));
    export(&em, "m_tanh", mathfn::tanh(&em).expect("tanh"));
    let ee = jit(&em).expect("jit");
    let get = |name: &str| -> extern "C" fn(f32) -> f32 {
        // SAFETY: built above as `float(float)`.
        unsafe { std::mem::transmute(address(&ee, name).expect("fn")) }
    };
    type Case = (&'static str, fn(f64) -> f64, u64, (f32, f32));
    let cases: [Case; 5] = [
        ("m_exp", f64::exp, 1, (-110.0, 95.0)),
        ("m_exp2", f64::exp2, 1, (-160.0, 140.0)),
        ("m_log", f64::ln, 1, (0.0, f32::MAX)),
        ("m_log2", f64::log2, 1, (0.0, f32::MAX)),
        ("m_tanh", f64::tanh, 2, (-20.0, 20.0)),
    ];
    let mut rng = SplitMix64::new(11);
    for (name, reference, max_ulps, (lo, hi)) in cases {
        let f = get(name);
        let mut worst = (0u64, 0f32);
        let mut inputs: Vec<f32> = (0..300_000).map(|_| f32::from_bits(rng.next_u64() as u32)).collect();
        inputs.extend((0..300_000).map(|_| rng.uniform(f64::from(lo.max(-200.0)), f64::from(hi.min(200.0))) as f32));
        inputs.extend((0..100_000).map(|_| rng.uniform(0.5, 2.0) as f32));
        inputs.extend([0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 1.0, f32::MIN_POSITIVE, 1e-45, f32::MAX]);
        for x in inputs {
            let want = reference(f64::from(x)) as f32;
            let got = f(x);
            if want.is_nan() {
                assert!(got.is_nan(), "{name}({x:e}) = {got:e}, expected NaN");
                continue;
            }
            let u = ulps(got, want);
            if u > worst.0 {
                worst = (u, x);
            }
        }
        assert!(
            worst.0 <= max_ulps,
            "{name}: {} ulp at {:e} ({:e} vs {:e})",
            worst.0,
            worst.1,
            f(worst.1),
            reference(f64::from(worst.1))
        );
        eprintln!("{name}: at most {} ulp", worst.0);
    }
}

/// `rsqrt` of every f16/bf16/8-bit code (computed in f64, rounded once) is correctly rounded.
#[test]
fn rsqrt_of_small_types_is_correctly_rounded() {
    use anybit_ir::program::UnaryOp;
    let ctx = Context::create();
    let em = Em::new(&ctx, "rsqrt", Platform::Host);
    let types: Vec<DType> =
        [DType::F16, DType::BF16].into_iter().chain(all_types_up_to(8).into_iter().filter(|d| d.is_float())).collect();
    for (i, &d) in types.iter().enumerate() {
        let ty = em.ctx.i32_type().fn_type(&[em.ctx.i32_type().into()], false);
        let w = em.module.add_function(&format!("r_{i}"), ty, None);
        let entry = em.ctx.append_basic_block(w, "entry");
        em.b.position_at_end(entry);
        let code = w.get_nth_param(0).expect("p");
        let carrier = crate::llvm::arith::from_code(&em, d, code).expect("from");
        let r = crate::llvm::arith::unary(&em, UnaryOp::Rsqrt, d, carrier).expect("rsqrt");
        let r = crate::llvm::arith::canonicalize(&em, d, r).expect("canonical");
        let out = crate::llvm::arith::to_code(&em, d, r).expect("to");
        em.b.build_return(Some(&out)).expect("ret");
    }
    let ee = jit(&em).expect("jit");
    for (i, &d) in types.iter().enumerate() {
        // SAFETY: built above as `i32(i32)`.
        let f: extern "C" fn(u32) -> u32 = unsafe { std::mem::transmute(address(&ee, &format!("r_{i}")).expect("fn")) };
        let DType::Float(format) = d else { continue };
        if !codec::fits_f64(format) {
            continue;
        }
        for code in 0..(1u32 << d.bits()) {
            let Some(x) = exact_f64(format, code) else { continue };
            let want = interp_rsqrt(format, x);
            assert_eq!(f(code), want, "{d}: rsqrt({x}) code {code:#x}");
        }
    }
}

/// The interpreter's rsqrt of one value: 1/√x correctly rounded (ties to even), the NaN,
/// infinity and zero cases as IEEE (the interpreter's `rsqrt_exact`).
fn interp_rsqrt(format: FloatFormat, x: f64) -> u32 {
    if x.is_nan() || x < 0.0 {
        return format.nan_code().unwrap_or(0);
    }
    if x == 0.0 {
        return numeric::encode_float(format, if x.is_sign_negative() { f64::NEG_INFINITY } else { f64::INFINITY });
    }
    if x.is_infinite() {
        return numeric::encode_float(format, 0.0);
    }
    let value = |c: u32| numeric::decode_float(format, c).unwrap_or(f64::NAN);
    let max = format.max_code();
    let mut best = numeric::encode_float(format, 1.0 / x.sqrt());
    if !value(best).is_finite() {
        return best;
    }
    // Walk to the code nearest 1/√x: compare midpoints m with 1/√x exactly (sign of m²x − 1).
    while best < max {
        let mid = (value(best) + value(best + 1)) / 2.0;
        match num_cmp::exact_sign(mid, x) {
            std::cmp::Ordering::Less => best += 1,
            std::cmp::Ordering::Equal => {
                best += best % 2;
                break;
            }
            std::cmp::Ordering::Greater => break,
        }
    }
    while best > 0 {
        let mid = (value(best) + value(best - 1)) / 2.0;
        match num_cmp::exact_sign(mid, x) {
            std::cmp::Ordering::Greater => best -= 1,
            std::cmp::Ordering::Equal => {
                best -= best % 2;
                break;
            }
            std::cmp::Ordering::Less => break,
        }
    }
    if best == max && value(max) < 1.0 / x.sqrt() {
        // Beyond the largest finite value: the overflow behaviour of the type.
        return numeric::encode_float(format, 1.0 / x.sqrt());
    }
    best
}

mod num_cmp {
    use std::cmp::Ordering;

    /// The sign of `m²·x − 1`, exactly, with 128-bit integers and exponent bookkeeping.
    pub(super) fn exact_sign(m: f64, x: f64) -> Ordering {
        let (mm, me) = parts(m);
        let (xm, xe) = parts(x);
        // m²·x = mm²·xm · 2^(2me + xe)
        let product = u128::from(mm) * u128::from(mm);
        let bits = 128 - product.leading_zeros();
        // Reduce product to fit with xm (53 bits) in u128... compare via floating pieces:
        // product < 2^106, xm < 2^53: use big multiplication through two halves.
        let (hi, lo) = (product >> 64, product & u128::from(u64::MAX));
        let (a, b) = (hi * u128::from(xm), lo * u128::from(xm));
        // total = a·2^64 + b, exponent e.
        let e = 2 * me + xe;
        let _ = bits;
        // Compare total·2^e with 1.
        let total_bits = |a: u128, b: u128| -> (u128, u128) { (a + (b >> 64), b & u128::from(u64::MAX)) };
        let (top, low) = total_bits(a, b);
        // value = (top·2^64 + low)·2^e
        if top == 0 && low == 0 {
            return Ordering::Less;
        }
        let lead = if top != 0 { 64 + 127 - top.leading_zeros() as i64 } else { 127 - low.leading_zeros() as i64 };
        let top_exp = lead + e;
        if top_exp > 0 {
            return Ordering::Greater;
        }
        if top_exp < 0 {
            return Ordering::Less;
        }
        // Leading bit is exactly 2^0: equal to 1 only if no other bit is set.
        let only = if top != 0 { top.is_power_of_two() && low == 0 } else { low.is_power_of_two() };
        if only { Ordering::Equal } else { Ordering::Greater }
    }

    fn parts(v: f64) -> (u64, i64) {
        let bits = v.to_bits();
        let exp = ((bits >> 52) & 0x7ff) as i64;
        let frac = bits & ((1u64 << 52) - 1);
        if exp == 0 { (frac, -1074) } else { (frac | (1u64 << 52), exp - 1075) }
    }
}
