//! Exact codecs of float formats as IR: integer bit operations only, no branches.
//!
//! Each generator adds (once) an internal, always-inlined function to the module and returns
//! it. The same functions are compiled for the host and run over every code of every type of
//! at most 12 bits in this module's tests, against `anybit_ir`'s exact codecs.
//!
//! - `decode_f32` / `decode_f64` / `decode_f16`: a code (zero-extended in an `i32`) to its exact
//!   value. The code's magnitude bits are placed at the bottom of the wider format's exponent
//!   and mantissa fields, which gives the value scaled by a power of two that one exact
//!   multiplication undoes (subnormal codes land on the wider format's subnormals, so they
//!   need no normalization). Infinities and NaNs are patched in with selects; a NaN decodes to
//!   the wider format's canonical quiet NaN.
//! - `encode_f32` / `encode_f64`: a value to the nearest code, ties to the even code, with the
//!   type's default overflow behaviour (`DType::encode`): IEEE formats overflow to ±inf, the
//!   others saturate at ±max; NaN becomes the canonical NaN (`nan_code`, or +0 for formats
//!   without NaN), as the interpreter's arithmetic produces. The value's significand and
//!   exponent are taken from its bits; the quantum (spacing of codes around the value) is
//!   2^(max(lead, emin) − M); the significand is shifted to it with round-to-nearest-even on
//!   the dropped bits, and the code is `((q + M + bias − 1) << M) + rounded`, in which a carry
//!   out of the mantissa moves into the exponent and subnormals fall out naturally.

use super::emit::{LResult, LowerError, internal};
use super::emitter::Emit;
use anybit_ir::dtype::{FloatFormat, SpecialValues};

/// A short, unique name of a format for helper function names: `e4m3n`.
pub(crate) fn format_key(f: FloatFormat) -> String {
    let policy = match f.special() {
        SpecialValues::FiniteOnly => "f",
        SpecialValues::NanOnly => "n",
        SpecialValues::Ieee => "i",
    };
    format!("e{}m{}{policy}", f.exponent_bits(), f.mantissa_bits())
}

/// Whether every value of the format is exactly an `f16`.
pub(crate) fn fits_f16(f: FloatFormat) -> bool {
    let (e, m) = (f.exponent_bits(), f.mantissa_bits());
    m <= 10 && (e < 5 || (e == 5 && f.special() == SpecialValues::Ieee))
}

/// Whether every value of the format is exactly an `f32`.
pub(crate) fn fits_f32(f: FloatFormat) -> bool {
    anybit_ir::DType::Float(f).fits_f32()
}

/// Whether every value of the format is exactly an `f64` (exponent bits ≤ 10).
pub(crate) fn fits_f64(f: FloatFormat) -> bool {
    f.exponent_bits() <= 10 && f.mantissa_bits() <= 52
}

/// The magnitude code that overflowing values get: +inf for IEEE formats, max otherwise.
pub(crate) fn overflow_magnitude(f: FloatFormat) -> u32 {
    match f.special() {
        SpecialValues::Ieee => f.infinity_code().unwrap_or_else(|| f.max_code()),
        _ => f.max_code(),
    }
}

/// The code of a NaN result: the canonical NaN, or +0 for formats without NaN.
pub(crate) fn canonical_nan_code(f: FloatFormat) -> u32 {
    f.nan_code().unwrap_or(0)
}

/// Splits a code into (sign bit in bit 0, magnitude).
fn sign_and_magnitude<E: Emit>(em: &E, f: FloatFormat, code: E::V) -> LResult<(E::V, E::V)> {
    let magnitude_bits = f.bits() - 1;
    let sign = em.and(em.lshr(code, em.c32(i64::from(magnitude_bits))?)?, em.c32(1)?)?;
    let mag = em.and(code, em.c32((1i64 << magnitude_bits) - 1)?)?;
    Ok((sign, mag))
}

/// Whether the magnitude is a NaN (`i1`), and whether it is an infinity.
fn specials<E: Emit>(em: &E, f: FloatFormat, mag: E::V) -> LResult<(E::V, E::V)> {
    let m = f.mantissa_bits();
    let all_ones = (1i64 << (f.exponent_bits() + m)) - 1;
    match f.special() {
        SpecialValues::FiniteOnly => Ok((em.cfalse()?, em.cfalse()?)),
        SpecialValues::NanOnly => Ok((em.eq(mag, em.c32(all_ones)?)?, em.cfalse()?)),
        SpecialValues::Ieee => {
            let inf = i64::from(f.infinity_code().unwrap_or(0));
            Ok((em.ugt(mag, em.c32(inf)?)?, em.eq(mag, em.c32(inf)?)?))
        }
    }
}

/// The exact value of a code as a float of `width` bits (16, 32 or 64) whose format has
/// `wide_e` exponent and `wide_m` mantissa bits.
fn decode_to<E: Emit>(em: &E, f: FloatFormat, code: E::V, width: u32, wide_m: u32, wide_bias: i32) -> LResult<E::V> {
    let (ty, ity) = match width {
        16 => (em.f16(), em.i16()),
        32 => (em.f32(), em.i32()),
        _ => (em.f64(), em.i64()),
    };
    let m = f.mantissa_bits();
    if m > wide_m {
        return Err(LowerError::Unsupported(format!("decoding {} into a {width}-bit float", format_key(f))));
    }
    let (sign, mag) = sign_and_magnitude(em, f, code)?;
    let sign_w = em.shl(em.resize(sign, ity)?, em.cint(ity, i64::from(width - 1))?)?;
    let mag_w = em.shl(em.resize(mag, ity)?, em.cint(ity, i64::from(wide_m - m))?)?;
    let scaled = em.from_bits(em.or(sign_w, mag_w)?, ty)?;
    // value = scaled · 2^(wide_bias − bias), exactly.
    let k = wide_bias - f.bias();
    let scale_bits = (((k + wide_bias) as u64) & ((1u64 << (width - 1 - wide_m)) - 1)) << wide_m;
    let value = if k == 0 { scaled } else { em.fmul(scaled, em.cfloat_bits(ty, scale_bits)?)? };
    let (is_nan, is_inf) = specials(em, f, mag)?;
    let inf_bits = (((1u64 << (width - 1 - wide_m)) - 1) << wide_m) as i64;
    let nan_bits = inf_bits | (1i64 << (wide_m - 1));
    let inf = em.from_bits(em.or(sign_w, em.cint(ity, inf_bits)?)?, ty)?;
    let nan = em.cfloat_bits(ty, nan_bits as u64)?;
    let value = em.select(is_inf, inf, value)?;
    em.select(is_nan, nan, value)
}

/// `i32 code -> float`: the exact value (the format must fit `f32`).
pub(crate) fn decode_f32<E: Emit>(em: &E, f: FloatFormat) -> LResult<E::F> {
    if !fits_f32(f) {
        return Err(LowerError::Unsupported(format!("{} values do not all fit f32", anybit_ir::DType::Float(f))));
    }
    em.helper(&format!("anybit.dec32.{}", format_key(f)), &[em.i32()], em.f32(), |em, params| {
        let code = param(params)?;
        decode_to(em, f, code, 32, 23, 127)
    })
}

/// `i32 code -> double`: the exact value (exponent bits ≤ 10).
pub(crate) fn decode_f64<E: Emit>(em: &E, f: FloatFormat) -> LResult<E::F> {
    if !fits_f64(f) {
        return Err(LowerError::Unsupported(format!("{} values do not all fit f64", anybit_ir::DType::Float(f))));
    }
    em.helper(&format!("anybit.dec64.{}", format_key(f)), &[em.i32()], em.f64(), |em, params| {
        let code = param(params)?;
        decode_to(em, f, code, 64, 52, 1023)
    })
}

/// `i32 code -> half`: the exact value (the format must fit `f16`, [`fits_f16`]).
pub(crate) fn decode_f16<E: Emit>(em: &E, f: FloatFormat) -> LResult<E::F> {
    if !fits_f16(f) {
        return Err(LowerError::Unsupported(format!("{} values do not all fit f16", anybit_ir::DType::Float(f))));
    }
    em.helper(&format!("anybit.dec16.{}", format_key(f)), &[em.i32()], em.f16(), |em, params| {
        let code = param(params)?;
        decode_to(em, f, code, 16, 10, 15)
    })
}

/// A helper's one parameter.
pub(crate) fn param<V: Copy>(params: &[V]) -> LResult<V> {
    match params.first() {
        Some(&p) => Ok(p),
        None => internal("helper without a parameter"),
    }
}

/// Rounds `sig · 2^e` (`sig` a nonnegative integer below 2^(W−2) of the integer type of `sig`,
/// `e` an `i32`) to the magnitude code of `f` (an `i32`), to nearest, ties to the even code;
/// values beyond the largest finite one give [`overflow_magnitude`].
pub(crate) fn round_parts<E: Emit>(em: &E, f: FloatFormat, sig: E::V, e: E::V) -> LResult<E::V> {
    let wty = em.type_of(sig);
    let w = i64::from(em.width_of(sig));
    let m = i64::from(f.mantissa_bits());
    let bias = i64::from(f.bias());
    let emin = 1 - bias;
    let lz = em.trunc(em.ctlz(sig)?, em.i32())?;
    // floor(log2(value)) for a nonzero significand.
    let lead = em.sub(em.add(e, em.c32(w - 1)?)?, lz)?;
    let q = em.sub(em.smax(lead, em.c32(emin)?)?, em.c32(m)?)?;
    let shift = em.sub(q, e)?;
    // Exact case (shift ≤ 0): the significand moves up by −shift ≤ M bits.
    let up_amount = em.smax(em.sub(em.c32(0)?, shift)?, em.c32(0)?)?;
    let exact = em.shl(sig, em.zext(up_amount, wty)?)?;
    // Rounding case: drop `shift` bits (clamped to 1..W−1: beyond, the value is below half a
    // quantum and rounds to 0, which the clamped computation also gives).
    let clamped = em.smin(em.smax(shift, em.c32(1)?)?, em.c32(w - 1)?)?;
    let cw = em.zext(clamped, wty)?;
    let one = em.cint(wty, 1)?;
    let floor = em.lshr(sig, cw)?;
    let rem = em.and(sig, em.sub(em.shl(one, cw)?, one)?)?;
    let half = em.shl(one, em.sub(cw, one)?)?;
    let floor_odd = em.trunc(em.and(floor, one)?, em.i1())?;
    let odd = if m == 0 {
        // Without a mantissa a normal code's last bit is its exponent field's: q + bias.
        let field_odd = em.trunc(em.and(em.add(q, em.c32(bias)?)?, em.c32(1)?)?, em.i1())?;
        let normal = em.uge(floor, one)?;
        em.select(normal, field_odd, floor_odd)?
    } else {
        floor_odd
    };
    let above = em.ugt(rem, half)?;
    let tie = em.and(em.eq(rem, half)?, odd)?;
    let round_up = em.or(above, tie)?;
    let rounded = em.add(floor, em.zext(round_up, wty)?)?;
    let shifted_down = em.sgt(shift, em.c32(0)?)?;
    let r = em.select(shifted_down, rounded, exact)?;
    let r = em.trunc(r, em.i32())?;
    // ((q + M + bias − 1) << M) + r: a carry out of the mantissa moves into the exponent.
    let field = em.add(q, em.c32(m + bias - 1)?)?;
    // A field of 2^E or more overflows for sure; below that the code fits an i32.
    let too_big = em.sgt(field, em.c32(1i64 << f.exponent_bits())?)?;
    let field = em.smin(field, em.c32(1i64 << f.exponent_bits())?)?;
    let mag = em.add(em.shl(field, em.c32(m)?)?, r)?;
    let overflow = em.or(too_big, em.ugt(mag, em.c32(i64::from(f.max_code()))?)?)?;
    let mag = em.select(overflow, em.c32(i64::from(overflow_magnitude(f)))?, mag)?;
    let zero = em.eq(sig, em.cint(wty, 0)?)?;
    em.select(zero, em.c32(0)?, mag)
}

/// The code of a float value of `width` (32 or 64 bits) in `f`.
fn encode_from<E: Emit>(em: &E, f: FloatFormat, x: E::V, width: u32) -> LResult<E::V> {
    let (ity, mant, bias) = match width {
        32 => (em.i32(), 23i64, 127i64),
        _ => (em.i64(), 52i64, 1023i64),
    };
    let w = i64::from(width);
    let bits = em.fbits(x)?;
    let sign = em.trunc(em.lshr(bits, em.cint(ity, w - 1)?)?, em.i32())?;
    let sign_code = em.shl(sign, em.c32(i64::from(f.bits() - 1))?)?;
    let abs_mask = em.cint(ity, if w == 64 { i64::MAX } else { (1i64 << 31) - 1 })?;
    let mag = em.and(bits, abs_mask)?;
    let inf_bits = em.cint(ity, ((1i64 << (w - 1 - mant)) - 1) << mant)?;
    let is_nan = em.ugt(mag, inf_bits)?;
    let is_inf = em.eq(mag, inf_bits)?;
    let ex = em.lshr(mag, em.cint(ity, mant)?)?;
    let frac = em.and(mag, em.cint(ity, (1i64 << mant) - 1)?)?;
    let implicit = em.or(frac, em.cint(ity, 1i64 << mant)?)?;
    let sig = em.select(em.eq(ex, em.cint(ity, 0)?)?, frac, implicit)?;
    // value = sig · 2^(max(ex, 1) − bias − mant)
    let ex32 = em.trunc(ex, em.i32())?;
    let e = em.sub(em.smax(ex32, em.c32(1)?)?, em.c32(bias + mant)?)?;
    let mag_code = round_parts(em, f, sig, e)?;
    let finite = em.or(sign_code, mag_code)?;
    let inf = em.or(sign_code, em.c32(i64::from(overflow_magnitude(f)))?)?;
    let code = em.select(is_inf, inf, finite)?;
    em.select(is_nan, em.c32(i64::from(canonical_nan_code(f)))?, code)
}

/// `float -> i32 code`: the value rounded to `f` (see the module documentation).
pub(crate) fn encode_f32<E: Emit>(em: &E, f: FloatFormat) -> LResult<E::F> {
    em.helper(&format!("anybit.enc32.{}", format_key(f)), &[em.f32()], em.i32(), |em, params| {
        let x = param(params)?;
        encode_from(em, f, x, 32)
    })
}

/// `double -> i32 code`: the value rounded to `f`.
pub(crate) fn encode_f64<E: Emit>(em: &E, f: FloatFormat) -> LResult<E::F> {
    em.helper(&format!("anybit.enc64.{}", format_key(f)), &[em.f64()], em.i32(), |em, params| {
        let x = param(params)?;
        encode_from(em, f, x, 64)
    })
}
