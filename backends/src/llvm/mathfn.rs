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

use super::codec::param;
use super::emit::LResult;
use super::emitter::{Conv, Emit, FloatPredicate};

/// Horner evaluation with fused multiply-adds: `c[0] + x·(c[1] + x·(…))`.
fn horner<E: Emit>(em: &E, x: E::V, coefficients: &[f64]) -> LResult<E::V> {
    let mut acc = em.cf32(coefficients.last().copied().unwrap_or(0.0) as f32)?;
    for &c in coefficients.iter().rev().skip(1) {
        acc = em.fma(acc, x, em.cf32(c as f32)?)?;
    }
    Ok(acc)
}

/// `p · 2^n` for an integer `n` in [−160, 140] (an `i32`), rounded once.
fn scale<E: Emit>(em: &E, p: E::V, n: E::V) -> LResult<E::V> {
    let n1 = em.ashr(n, em.c32(1)?)?;
    let n2 = em.sub(n, n1)?;
    let pow = |k: E::V| -> LResult<E::V> { em.from_bits(em.shl(em.add(k, em.c32(127)?)?, em.c32(23)?)?, em.f32()) };
    em.fmul(em.fmul(p, pow(n1)?)?, pow(n2)?)
}

fn clamp<E: Emit>(em: &E, x: E::V, lo: f32, hi: f32) -> LResult<E::V> {
    let lo_v = em.cf32(lo)?;
    let hi_v = em.cf32(hi)?;
    let below = em.fcmp(FloatPredicate::OLT, x, lo_v)?;
    let x = em.select(below, lo_v, x)?;
    let above = em.fcmp(FloatPredicate::OGT, x, hi_v)?;
    em.select(above, hi_v, x)
}

/// NaN in, the input out (callers canonicalize NaNs).
fn keep_nan<E: Emit>(em: &E, x: E::V, r: E::V) -> LResult<E::V> {
    let nan = em.is_nan(x)?;
    em.select(nan, x, r)
}

/// `2^x`.
pub(crate) fn exp2<E: Emit>(em: &E) -> LResult<E::F> {
    em.helper("anybit.exp2.f32", &[em.f32()], em.f32(), |em, params| {
        let x = param(params)?;
        let xc = clamp(em, x, -160.0, 140.0)?;
        let n = em.float_intrinsic1("rint", xc)?;
        let f = em.fsub(xc, n)?;
        let ln2 = std::f64::consts::LN_2;
        let mut c = [1.0f64; 8];
        for k in 1..8 {
            c[k] = c[k - 1] * ln2 / k as f64;
        }
        let p = horner(em, f, &c)?;
        let ni = em.conv(Conv::FpToSi, n, em.i32())?;
        let r = scale(em, p, ni)?;
        keep_nan(em, x, r)
    })
}

/// `e^x`.
pub(crate) fn exp<E: Emit>(em: &E) -> LResult<E::F> {
    em.helper("anybit.exp.f32", &[em.f32()], em.f32(), |em, params| {
        let x = param(params)?;
        let xc = clamp(em, x, -110.0, 95.0)?;
        let n = em.float_intrinsic1("rint", em.fmul(xc, em.cf32(std::f32::consts::LOG2_E)?)?)?;
        // ln 2 = LN2_HI + LN2_LO, LN2_HI with 9 trailing zero bits: n·LN2_HI is exact.
        let ln2_hi = f32::from_bits(0x3f31_7200);
        let ln2_lo = (std::f64::consts::LN_2 - f64::from(ln2_hi)) as f32;
        let neg_n = em.fneg(n)?;
        let r = em.fma(neg_n, em.cf32(ln2_hi)?, xc)?;
        let r = em.fma(neg_n, em.cf32(ln2_lo)?, r)?;
        let mut c = [1.0f64; 8];
        for k in 1..8 {
            c[k] = c[k - 1] / k as f64;
        }
        let p = horner(em, r, &c)?;
        let ni = em.conv(Conv::FpToSi, n, em.i32())?;
        let result = scale(em, p, ni)?;
        keep_nan(em, x, result)
    })
}

/// The common part of the logarithms, in `f64`: `(e, ln m)` with `x = m·2^e`,
/// `m ∈ [√½, √2)`, for a positive finite `x`.
fn log_core<E: Emit>(em: &E, x: E::V) -> LResult<(E::V, E::V)> {
    let tiny = em.fcmp(FloatPredicate::OLT, x, em.cf32(f32::MIN_POSITIVE)?)?;
    let xs = em.select(tiny, em.fmul(x, em.cf32(8_388_608.0)?)?, x)?;
    let adjust = em.select(tiny, em.c32(-23)?, em.c32(0)?)?;
    let bits = em.fbits(xs)?;
    let e = em.add(em.sub(em.lshr(bits, em.c32(23)?)?, em.c32(127)?)?, adjust)?;
    let m = em.from_bits(em.or(em.and(bits, em.c32(0x7f_ffff)?)?, em.c32(0x3f80_0000)?)?, em.f32())?;
    let big = em.fcmp(FloatPredicate::OGT, m, em.cf32(std::f32::consts::SQRT_2)?)?;
    let m = em.select(big, em.fmul(m, em.cf32(0.5)?)?, m)?;
    let e = em.select(big, em.add(e, em.c32(1)?)?, e)?;
    let m = em.fext(m, em.f64())?;
    let t = em.fsub(m, em.cf64(1.0)?)?;
    let s = em.fdiv(t, em.fadd(t, em.cf64(2.0)?)?)?;
    let z = em.fmul(s, s)?;
    let coefficients: Vec<f64> = (0..9).map(|k| 1.0 / f64::from(2 * k + 3)).collect();
    let mut poly = em.cf64(coefficients[coefficients.len() - 1])?;
    for &c in coefficients.iter().rev().skip(1) {
        poly = em.fma(poly, z, em.cf64(c)?)?;
    }
    // ln m = 2s + 2s·z·poly
    let two_s = em.fadd(s, s)?;
    let ln_m = em.fma(em.fmul(two_s, z)?, poly, two_s)?;
    let ef = em.sitofp(e, em.f64())?;
    Ok((ef, ln_m))
}

/// Special values of the logarithms: NaN for NaN and negative inputs, −inf for ±0, +inf for
/// +inf.
fn log_specials<E: Emit>(em: &E, x: E::V, r: E::V) -> LResult<E::V> {
    let zero = em.fcmp(FloatPredicate::OEQ, x, em.cf32(0.0)?)?;
    let r = em.select(zero, em.cf32(f32::NEG_INFINITY)?, r)?;
    let inf = em.fcmp(FloatPredicate::OEQ, x, em.cf32(f32::INFINITY)?)?;
    let r = em.select(inf, x, r)?;
    let bad = em.fcmp(FloatPredicate::ULT, x, em.cf32(0.0)?)?;
    em.select(bad, em.cfloat_bits(em.f32(), 0x7fc0_0000)?, r)
}

/// `ln x`.
pub(crate) fn log<E: Emit>(em: &E) -> LResult<E::F> {
    em.helper("anybit.log.f32", &[em.f32()], em.f32(), |em, params| {
        let x = param(params)?;
        let (e, ln_m) = log_core(em, x)?;
        let r = em.fma(e, em.cf64(std::f64::consts::LN_2)?, ln_m)?;
        let r = em.ftrunc(r, em.f32())?;
        log_specials(em, x, r)
    })
}

/// `log2 x`.
pub(crate) fn log2<E: Emit>(em: &E) -> LResult<E::F> {
    em.helper("anybit.log2.f32", &[em.f32()], em.f32(), |em, params| {
        let x = param(params)?;
        let (e, ln_m) = log_core(em, x)?;
        let r = em.fma(ln_m, em.cf64(std::f64::consts::LOG2_E)?, e)?;
        let r = em.ftrunc(r, em.f32())?;
        log_specials(em, x, r)
    })
}

/// `tanh x`.
pub(crate) fn tanh<E: Emit>(em: &E) -> LResult<E::F> {
    let exp_fn = exp(em)?;
    em.helper("anybit.tanh.f32", &[em.f32()], em.f32(), |em, params| {
        let x = param(params)?;
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
        let e2a = em.call(&exp_fn, &[em.fadd(a, a)?])?;
        let large = em.fsub(em.cf32(1.0)?, em.fdiv(em.cf32(2.0)?, em.fadd(e2a, em.cf32(1.0)?)?)?)?;
        let large = em.float_intrinsic2("copysign", large, x)?;
        let is_small = em.fcmp(FloatPredicate::OLT, a, em.cf32(0.625)?)?;
        let r = em.select(is_small, small, large)?;
        keep_nan(em, x, r)
    })
}
