//! `exp2`, `exp`, `log2`, `log` and `tanh` in `f32`, in software (fused multiply-adds,
//! integer bit manipulation, one division for the logarithms), so that the GPU code and the
//! host code the tests run are the same instructions.
//!
//! Accuracy (measured in this module's tests against the host's `f64` functions over millions
//! of inputs): `exp2` and `exp` within 1 ulp of the exact result, `log2` and `log` within 1 ulp
//! (nearly always correctly rounded), `tanh` within 4 ulp; special values (±inf, NaN, ±0, overflow to inf, underflow to 0 and subnormal
//! results) as IEEE 754 defines them. The interpreter computes these with `f64` functions
//! rounded once, so results in `f32` may differ from it in the last bits; results rounded to
//! narrower types (f16, bf16, 8-bit floats) almost always agree exactly.
//!
//! - `exp2(x)`: `x = n + f` with `n = rint(x)`, `|f| ≤ 1/2` exact; `2^f` by its degree-7 Taylor
//!   polynomial (truncation error below 2^-27); `2^n` applied in two exact power-of-two steps
//!   so that subnormal results are rounded once.
//! - `exp(x)`: `n = rint(x·log2 e)`, `r = x − n·ln2` in two fused steps (Cody–Waite), `e^r` by
//!   its degree-7 Taylor polynomial, then `2^n` as above.
//! - `log(x)`, `log2(x)`: `x = m·2^e` with `m ∈ [√½, √2)` (subnormals scaled up first), then
//!   in `f64`: `ln m = 2 atanh(s)`, `s = (m − 1)/(m + 1)`, `|s| < 0.172`, by an odd polynomial of
//!   degree 19, plus `e·ln 2`; rounded once to `f32` (within 0.51 ulp).
//! - `tanh(x)`: for `|x| < 0.625` the odd polynomial of Cephes' `tanhf`; above,
//!   `1 − 2/(e^(2|x|) + 1)` with the sign of `x`.

use inkwell::FloatPredicate;
use inkwell::types::BasicType;
use inkwell::values::{FloatValue, FunctionValue, IntValue};

use super::emit::{Em, LResult, LowerError};

fn arg<'ctx>(func: FunctionValue<'ctx>) -> LResult<FloatValue<'ctx>> {
    match func.get_nth_param(0) {
        Some(p) if p.is_float_value() => Ok(p.into_float_value()),
        _ => Err(LowerError::Llvm("math helper without a float parameter".into())),
    }
}

fn f32_fn<'ctx>(em: &Em<'ctx>) -> inkwell::types::FunctionType<'ctx> {
    em.f32().fn_type(&[em.f32().as_basic_type_enum().into()], false)
}

/// Horner evaluation with fused multiply-adds: `c[0] + x·(c[1] + x·(…))`.
fn horner<'ctx>(em: &Em<'ctx>, x: FloatValue<'ctx>, coefficients: &[f64]) -> LResult<FloatValue<'ctx>> {
    let mut acc = em.cf32(coefficients.last().copied().unwrap_or(0.0) as f32);
    for &c in coefficients.iter().rev().skip(1) {
        acc = em.fma(acc, x, em.cf32(c as f32))?;
    }
    Ok(acc)
}

/// `p · 2^n` for an integer `n` in [−160, 140] (an `i32`), rounded once.
fn scale<'ctx>(em: &Em<'ctx>, p: FloatValue<'ctx>, n: IntValue<'ctx>) -> LResult<FloatValue<'ctx>> {
    let n1 = em.ashr(n, em.c32(1))?;
    let n2 = em.sub(n, n1)?;
    let pow = |k: IntValue<'ctx>| -> LResult<FloatValue<'ctx>> {
        em.from_bits(em.shl(em.add(k, em.c32(127))?, em.c32(23))?, em.f32())
    };
    em.fmul(em.fmul(p, pow(n1)?)?, pow(n2)?)
}

fn clamp<'ctx>(em: &Em<'ctx>, x: FloatValue<'ctx>, lo: f32, hi: f32) -> LResult<FloatValue<'ctx>> {
    let lo_v = em.cf32(lo);
    let hi_v = em.cf32(hi);
    let below = em.fcmp(FloatPredicate::OLT, x, lo_v)?;
    let x = em.select_float(below, lo_v, x)?;
    let above = em.fcmp(FloatPredicate::OGT, x, hi_v)?;
    em.select_float(above, hi_v, x)
}

/// NaN in, the input out (callers canonicalize NaNs).
fn keep_nan<'ctx>(em: &Em<'ctx>, x: FloatValue<'ctx>, r: FloatValue<'ctx>) -> LResult<FloatValue<'ctx>> {
    let nan = em.is_nan(x)?;
    em.select_float(nan, x, r)
}

/// `2^x`.
pub(crate) fn exp2<'ctx>(em: &Em<'ctx>) -> LResult<FunctionValue<'ctx>> {
    em.helper("anybit.exp2.f32", f32_fn(em), |em, func| {
        let x = arg(func)?;
        let xc = clamp(em, x, -160.0, 140.0)?;
        let n = em.float_intrinsic1("rint", xc)?;
        let f = em.fsub(xc, n)?;
        let ln2 = std::f64::consts::LN_2;
        let mut c = [1.0f64; 8];
        for k in 1..8 {
            c[k] = c[k - 1] * ln2 / k as f64;
        }
        let p = horner(em, f, &c)?;
        let ni = em.b.build_float_to_signed_int(n, em.i32(), "")?;
        let r = scale(em, p, ni)?;
        Ok(keep_nan(em, x, r)?.into())
    })
}

/// `e^x`.
pub(crate) fn exp<'ctx>(em: &Em<'ctx>) -> LResult<FunctionValue<'ctx>> {
    em.helper("anybit.exp.f32", f32_fn(em), |em, func| {
        let x = arg(func)?;
        let xc = clamp(em, x, -110.0, 95.0)?;
        let n = em.float_intrinsic1("rint", em.fmul(xc, em.cf32(std::f32::consts::LOG2_E))?)?;
        // ln 2 = LN2_HI + LN2_LO, LN2_HI with 9 trailing zero bits: n·LN2_HI is exact.
        let ln2_hi = f32::from_bits(0x3f31_7200);
        let ln2_lo = (std::f64::consts::LN_2 - f64::from(ln2_hi)) as f32;
        let neg_n = em.fneg(n)?;
        let r = em.fma(neg_n, em.cf32(ln2_hi), xc)?;
        let r = em.fma(neg_n, em.cf32(ln2_lo), r)?;
        let mut c = [1.0f64; 8];
        for k in 1..8 {
            c[k] = c[k - 1] / k as f64;
        }
        let p = horner(em, r, &c)?;
        let ni = em.b.build_float_to_signed_int(n, em.i32(), "")?;
        let result = scale(em, p, ni)?;
        Ok(keep_nan(em, x, result)?.into())
    })
}

/// The common part of the logarithms, in `f64`: `(e, ln m)` with `x = m·2^e`,
/// `m ∈ [√½, √2)`, for a positive finite `x`.
fn log_core<'ctx>(em: &Em<'ctx>, x: FloatValue<'ctx>) -> LResult<(FloatValue<'ctx>, FloatValue<'ctx>)> {
    let tiny = em.fcmp(FloatPredicate::OLT, x, em.cf32(f32::MIN_POSITIVE))?;
    let xs = em.select_float(tiny, em.fmul(x, em.cf32(8_388_608.0))?, x)?;
    let adjust = em.select_int(tiny, em.c32(-23), em.c32(0))?;
    let bits = em.fbits(xs)?;
    let e = em.add(em.sub(em.lshr(bits, em.c32(23))?, em.c32(127))?, adjust)?;
    let m = em.from_bits(em.or(em.and(bits, em.c32(0x7f_ffff))?, em.c32(0x3f80_0000))?, em.f32())?;
    let big = em.fcmp(FloatPredicate::OGT, m, em.cf32(std::f32::consts::SQRT_2))?;
    let m = em.select_float(big, em.fmul(m, em.cf32(0.5))?, m)?;
    let e = em.select_int(big, em.add(e, em.c32(1))?, e)?;
    let m = em.fext(m, em.f64())?;
    let t = em.fsub(m, em.cf64(1.0))?;
    let s = em.fdiv(t, em.fadd(t, em.cf64(2.0))?)?;
    let z = em.fmul(s, s)?;
    let coefficients: Vec<f64> = (0..9).map(|k| 1.0 / f64::from(2 * k + 3)).collect();
    let mut poly = em.cf64(coefficients[coefficients.len() - 1]);
    for &c in coefficients.iter().rev().skip(1) {
        poly = em.fma(poly, z, em.cf64(c))?;
    }
    // ln m = 2s + 2s·z·poly
    let two_s = em.fadd(s, s)?;
    let ln_m = em.fma(em.fmul(two_s, z)?, poly, two_s)?;
    let ef = em.sitofp(e, em.f64())?;
    Ok((ef, ln_m))
}

/// Special values of the logarithms: NaN for NaN and negative inputs, −inf for ±0, +inf for
/// +inf.
fn log_specials<'ctx>(em: &Em<'ctx>, x: FloatValue<'ctx>, r: FloatValue<'ctx>) -> LResult<FloatValue<'ctx>> {
    let zero = em.fcmp(FloatPredicate::OEQ, x, em.cf32(0.0))?;
    let r = em.select_float(zero, em.cf32(f32::NEG_INFINITY), r)?;
    let inf = em.fcmp(FloatPredicate::OEQ, x, em.cf32(f32::INFINITY))?;
    let r = em.select_float(inf, x, r)?;
    let bad = em.fcmp(FloatPredicate::ULT, x, em.cf32(0.0))?;
    em.select_float(bad, em.cfloat_bits(em.f32(), 0x7fc0_0000)?, r)
}

/// `ln x`.
pub(crate) fn log<'ctx>(em: &Em<'ctx>) -> LResult<FunctionValue<'ctx>> {
    em.helper("anybit.log.f32", f32_fn(em), |em, func| {
        let x = arg(func)?;
        let (e, ln_m) = log_core(em, x)?;
        let r = em.fma(e, em.cf64(std::f64::consts::LN_2), ln_m)?;
        let r = em.ftrunc(r, em.f32())?;
        Ok(log_specials(em, x, r)?.into())
    })
}

/// `log2 x`.
pub(crate) fn log2<'ctx>(em: &Em<'ctx>) -> LResult<FunctionValue<'ctx>> {
    em.helper("anybit.log2.f32", f32_fn(em), |em, func| {
        let x = arg(func)?;
        let (e, ln_m) = log_core(em, x)?;
        let r = em.fma(ln_m, em.cf64(std::f64::consts::LOG2_E), e)?;
        let r = em.ftrunc(r, em.f32())?;
        Ok(log_specials(em, x, r)?.into())
    })
}

/// `tanh x`.
pub(crate) fn tanh<'ctx>(em: &Em<'ctx>) -> LResult<FunctionValue<'ctx>> {
    let exp_fn = exp(em)?;
    em.helper("anybit.tanh.f32", f32_fn(em), |em, func| {
        let x = arg(func)?;
        let a = em.float_intrinsic1("fabs", x)?;
        // Small: x + x·z·P(z), z = x².
        let z = em.fmul(x, x)?;
        let p = horner(
            em,
            z,
            &[
                -3.333_328_194_22e-1,
                1.333_144_220_36e-1,
                -5.373_971_555_31e-2,
                2.063_908_879_54e-2,
                -5.704_988_727_45e-3,
            ],
        )?;
        let small = em.fma(em.fmul(z, x)?, p, x)?;
        // Large: 1 − 2/(e^(2a) + 1), signed.
        let e2a = em.call(exp_fn, &[em.fadd(a, a)?.into()])?.into_float_value();
        let large = em.fsub(em.cf32(1.0), em.fdiv(em.cf32(2.0), em.fadd(e2a, em.cf32(1.0))?)?)?;
        let large = em.float_intrinsic2("copysign", large, x)?;
        let is_small = em.fcmp(FloatPredicate::OLT, a, em.cf32(0.625))?;
        let r = em.select_float(is_small, small, large)?;
        Ok(keep_nan(em, x, r)?.into())
    })
}
