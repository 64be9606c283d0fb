//! The interpreter's number work: fast conversions between `f64` and the codes of every data
//! type, and correctly rounded arithmetic.
//!
//! The exact codecs of [`crate::dtype`] define what a code means; the functions here compute
//! the same thing faster, with plain integer and `f64` operations, so the interpreter can run
//! real kernels. They are public so that tests can check them, code for code, against the exact
//! codecs.
//!
//! One deliberate difference: a NaN *result* is always the type's canonical NaN
//! ([`canonical_nan`]: the positive quiet NaN of IEEE types, the all-ones magnitude of NaN-only
//! types, and 0 for types without NaN), whatever the sign or payload of the `f64` NaN that
//! produced it. NaN signs and payloads are not values (see [`crate::dtype::ExactValue`]), and
//! hardware does not agree on them, so the interpreter does not let them leak into results.
//! [`DType::encode`] keeps the sign of a NaN input; everything else agrees bit for bit.

use std::cmp::Ordering;

use num_bigint::{BigInt, Sign};
use num_traits::{ToPrimitive, Zero};

use crate::dtype::{DType, FloatFormat, SpecialValues};

/// The code a NaN result gets in `format`: [`FloatFormat::nan_code`], or 0 (the code of +0)
/// for finite-only formats, exactly what [`DType::encode`] gives for a positive NaN.
pub fn canonical_nan(format: FloatFormat) -> u32 {
    format.nan_code().unwrap_or(0)
}

/// The magnitude code a value beyond the finite range gets under the default conversion:
/// infinity for IEEE formats, the largest finite value for the others (they saturate).
fn overflow_magnitude(format: FloatFormat) -> u32 {
    match format.special() {
        SpecialValues::Ieee => format.infinity_code().unwrap_or_else(|| format.max_code()),
        SpecialValues::FiniteOnly | SpecialValues::NanOnly => format.max_code(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tail {
    Exact,
    Below,
    Half,
    Above,
}

/// Rounds `(−1)^negative · (significand + δ) · 2^exponent` to `format` under its default
/// conversion (nearest, ties to the even code; IEEE formats overflow to ±inf, the others
/// saturate), where δ = 0 when `sticky` is false and 0 < δ < 1 when it is true ("a little more
/// than the significand"). Zero rounds to a zero of the given sign.
///
/// This is the single rounding step of every float operation of the interpreter; it agrees
/// with [`DType::encode_exact`] on every value both can express.
pub fn round_float(format: FloatFormat, negative: bool, significand: u128, exponent: i64, sticky: bool) -> u32 {
    let sign = if negative { format.sign_mask() } else { 0 };
    if significand == 0 {
        return sign;
    }
    let m = i64::from(format.mantissa_bits());
    let bias = i64::from(format.bias());
    let min_normal = 1 - bias;
    let lead = exponent + 127 - i64::from(significand.leading_zeros());
    let mut quantum = lead.max(min_normal) - m;
    let shift = quantum - exponent;
    let (floor, tail) = if shift <= 0 {
        // The significand has at most m + 1 bits above the quantum: the shift is small.
        let up = u32::try_from(-shift).unwrap_or(127).min(127);
        (significand << up, if sticky { Tail::Below } else { Tail::Exact })
    } else if shift > 128 {
        // Less than half a quantum (only in the subnormal range).
        (0, Tail::Below)
    } else {
        let (floor, rem) =
            if shift == 128 { (0, significand) } else { (significand >> shift, significand & ((1u128 << shift) - 1)) };
        let half = 1u128 << (shift - 1);
        let tail = if rem == 0 && !sticky {
            Tail::Exact
        } else if rem < half {
            Tail::Below
        } else if rem == half && !sticky {
            Tail::Half
        } else {
            Tail::Above
        };
        (floor, tail)
    };
    // Ties go to the even code: without a mantissa, a normal code's last bit is its exponent's.
    let floor_is_even = if m == 0 && floor >= 1 { (quantum + bias).rem_euclid(2) == 0 } else { floor % 2 == 0 };
    let mut rounded = floor
        + match tail {
            Tail::Above => 1,
            Tail::Half => u128::from(!floor_is_even),
            Tail::Exact | Tail::Below => 0,
        };
    if rounded == 0 {
        return sign;
    }
    if rounded == 1u128 << (m + 1) {
        rounded >>= 1;
        quantum += 1;
    }
    let implicit = 1u128 << m;
    let (exponent_field, mantissa) =
        if rounded < implicit { (0, rounded) } else { (quantum + m + bias, rounded - implicit) };
    let top = (1i64 << format.exponent_bits()) - 1;
    if exponent_field > top || exponent_field < 0 {
        return sign | overflow_magnitude(format);
    }
    let magnitude = ((exponent_field as u32) << m) | mantissa as u32;
    if magnitude > format.max_code() {
        return sign | overflow_magnitude(format);
    }
    sign | magnitude
}

/// `|x| = significand · 2^exponent` for a finite `x`.
pub(crate) fn decompose(x: f64) -> (bool, u64, i32) {
    let bits = x.to_bits();
    let negative = bits >> 63 != 0;
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1u64 << 52) - 1);
    if biased == 0 { (negative, fraction, -1074) } else { (negative, fraction | (1u64 << 52), biased - 1075) }
}

/// The code of `x` in `format`, as [`DType::encode`] computes it (NaN: [`canonical_nan`]).
pub fn encode_float(format: FloatFormat, x: f64) -> u32 {
    if x.is_nan() {
        return canonical_nan(format);
    }
    let negative = x.is_sign_negative();
    let sign = if negative { format.sign_mask() } else { 0 };
    if x.is_infinite() {
        return sign | overflow_magnitude(format);
    }
    let (_, significand, exponent) = decompose(x);
    round_float(format, negative, u128::from(significand), i64::from(exponent), false)
}

/// The code of `x` in an IEEE format with `E` exponent and `M` mantissa bits (2 ≤ E ≤ 8,
/// 1 ≤ M ≤ 10): round to nearest even, overflow to ±inf, NaN to the canonical quiet NaN.
#[inline]
fn encode_ieee<const E: u32, const M: u32>(x: f64) -> u32 {
    let bits = x.to_bits();
    let sign = ((bits >> 63) as u32) << (E + M);
    let biased = ((bits >> 52) & 0x7ff) as i64;
    let fraction = bits & ((1u64 << 52) - 1);
    let infinity = ((1u32 << E) - 1) << M;
    if biased == 0x7ff {
        return if fraction != 0 { infinity | (1 << (M - 1)) } else { sign | infinity };
    }
    let bias = (1i64 << (E - 1)) - 1;
    let unbiased = biased - 1023;
    if unbiased > bias {
        return sign | infinity;
    }
    if biased == 0 {
        // Zero or an f64 subnormal: far below half the smallest subnormal of these formats.
        return sign;
    }
    let significand = fraction | (1u64 << 52);
    let min_normal = 1 - bias;
    // x = significand · 2^(unbiased − 52); codes are spaced 2^quantum apart around it.
    let quantum = unbiased.max(min_normal) - i64::from(M);
    let shift = quantum - (unbiased - 52);
    if shift > 53 {
        return sign;
    }
    let shift = shift as u32;
    let floor = significand >> shift;
    let rem = significand & ((1u64 << shift) - 1);
    let half = 1u64 << (shift - 1);
    let rounded = floor + u64::from(rem > half || (rem == half && floor & 1 == 1));
    let magnitude = if unbiased < min_normal {
        // Subnormal (rounding up to 2^M gives the smallest normal code, as it should).
        rounded
    } else {
        // A carry out of the mantissa moves into the exponent, up to infinity.
        (((unbiased + bias) as u64) << M) + rounded - (1u64 << M)
    };
    sign | (magnitude.min(u64::from(infinity)) as u32)
}

/// The `f16` code of `x`: round to nearest even, overflow to ±inf, NaN to `0x7e00`.
pub fn encode_f16(x: f64) -> u32 {
    encode_ieee::<5, 10>(x)
}

/// The `bf16` code of `x`: round to nearest even, overflow to ±inf, NaN to `0x7fc0`.
pub fn encode_bf16(x: f64) -> u32 {
    encode_ieee::<8, 7>(x)
}

/// The `f32` code of `x`: round to nearest even, overflow to ±inf, NaN to `0x7fc0_0000`.
pub fn encode_f32(x: f64) -> u32 {
    if x.is_nan() { 0x7fc0_0000 } else { (x as f32).to_bits() }
}

/// 2^k as an `f64`, when it is one.
fn pow2(k: i64) -> Option<f64> {
    if (-1022..=1023).contains(&k) {
        Some(f64::from_bits(((k + 1023) as u64) << 52))
    } else if (-1074..-1022).contains(&k) {
        Some(f64::from_bits(1u64 << (k + 1074)))
    } else {
        None
    }
}

/// The value of a code of `format` as an `f64`, or `None` when it is not exactly an `f64`
/// (values of formats with 11 or more exponent bits) or the code has bits above the width.
/// Agrees with [`DType::decode_f64`] (NaN codes give a NaN).
pub fn decode_float(format: FloatFormat, code: u32) -> Option<f64> {
    if format == FloatFormat::F32 {
        return Some(f64::from(f32::from_bits(code)));
    }
    let bits = format.bits();
    if code >> bits != 0 {
        return None;
    }
    let m = format.mantissa_bits();
    let negative = code & format.sign_mask() != 0;
    let magnitude = code & (format.sign_mask() - 1);
    let exponent_field = magnitude >> m;
    let mantissa = magnitude & ((1u32 << m) - 1);
    let top = (1u32 << format.exponent_bits()) - 1;
    match format.special() {
        SpecialValues::Ieee if exponent_field == top => {
            return Some(if mantissa != 0 {
                f64::NAN
            } else if negative {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            });
        }
        SpecialValues::NanOnly if exponent_field == top && mantissa == (1u32 << m) - 1 => return Some(f64::NAN),
        _ => {}
    }
    let bias = i64::from(format.bias());
    let (significand, exponent) = if exponent_field == 0 {
        (mantissa, 1 - bias - i64::from(m))
    } else {
        (mantissa | (1u32 << m), i64::from(exponent_field) - bias - i64::from(m))
    };
    let value = f64::from(significand) * pow2(exponent)?;
    if value.is_infinite() {
        return None;
    }
    Some(if negative { -value } else { value })
}

/// The code of `x` in an integer type, as [`DType::encode`] computes it: round to nearest
/// even, saturate at the type's range (±inf included), NaN to 0. `dtype` must be an integer
/// type (a float type gives [`encode_float`]'s answer).
pub fn encode_int(dtype: DType, x: f64) -> u32 {
    let (min, max) = match dtype {
        DType::Int(t) => (-(1i64 << (t.bits() - 1)), (1i64 << (t.bits() - 1)) - 1),
        DType::Uint(t) => (0, (1i64 << t.bits()) - 1),
        DType::Float(f) => return encode_float(f, x),
    };
    if x.is_nan() {
        return 0;
    }
    let rounded = x.round_ties_even();
    let value = if rounded <= min as f64 {
        min
    } else if rounded >= max as f64 {
        max
    } else {
        rounded as i64
    };
    wrap(dtype.bits(), value)
}

/// `value` modulo 2^bits, as a code.
pub(crate) fn wrap(bits: u32, value: i64) -> u32 {
    let mask = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
    (value as u64 & mask) as u32
}

/// The value of an integer code: sign-extended for signed types.
pub(crate) fn int_value(bits: u32, signed: bool, code: u32) -> i64 {
    if signed {
        let shift = 64 - bits;
        (i64::from(code) << shift) >> shift
    } else {
        i64::from(code)
    }
}

/// `s + e` exactly, where `s = a + b` rounded: Knuth's TwoSum (exact for finite inputs
/// whose sum does not overflow).
#[inline]
pub(crate) fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    let e = (a - (s - bb)) + (b - bb);
    (s, e)
}

/// Rounds `s + e` to `format`, where `s` is an `f64` and `|e| ≤ ulp(s)/2` (a TwoSum pair):
/// the exact result of an addition whose `f64` sum was inexact.
pub(crate) fn round_sum(format: FloatFormat, s: f64, e: f64) -> u32 {
    if !s.is_finite() || e == 0.0 || e.is_nan() {
        return encode_float(format, s);
    }
    let (negative, significand, exponent) = decompose(s);
    let wide = u128::from(significand) << 64;
    let exponent = i64::from(exponent) - 64;
    if (e < 0.0) == negative {
        // |x| is a little more than |s|.
        round_float(format, negative, wide, exponent, true)
    } else {
        // |x| is a little less than |s|: between (wide − 1) and wide units.
        round_float(format, negative, wide - 1, exponent, true)
    }
}

/// `a / b` correctly rounded to `format` (IEEE special cases as `f64` division has them).
pub(crate) fn div_exact(format: FloatFormat, a: f64, b: f64) -> u32 {
    if !a.is_finite() || !b.is_finite() || a == 0.0 || b == 0.0 {
        return encode_float(format, a / b);
    }
    let (na, ma, ea) = decompose(a);
    let (nb, mb, eb) = decompose(b);
    let up = ma.leading_zeros();
    let ma = ma << up;
    let down = mb.trailing_zeros();
    let mb = mb >> down;
    let numerator = u128::from(ma) << 64;
    let quotient = numerator / u128::from(mb);
    let sticky = numerator % u128::from(mb) != 0;
    let exponent = i64::from(ea) - i64::from(up) - 64 - (i64::from(eb) + i64::from(down));
    round_float(format, na != nb, quotient, exponent, sticky)
}

/// ⌊√n⌋.
pub(crate) fn isqrt(n: u128) -> u128 {
    if n == 0 {
        return 0;
    }
    // An estimate from above, then Newton's iteration down to the floor.
    let estimate = (n as f64).sqrt() as u128;
    let mut x = estimate + (estimate >> 40) + 2;
    loop {
        let y = (x + n / x) / 2;
        if y >= x {
            return x;
        }
        x = y;
    }
}

/// `√a` correctly rounded to `format` (IEEE special cases: √−0 = −0, √x = NaN for x < 0).
pub(crate) fn sqrt_exact(format: FloatFormat, a: f64) -> u32 {
    if a.is_nan() || a < 0.0 {
        return canonical_nan(format);
    }
    if a == 0.0 || a.is_infinite() {
        return encode_float(format, a);
    }
    let (_, m, e) = decompose(a);
    // m · 2^e = big · 2^even with big just below 2^126.
    let mut up = i64::from(u128::from(m).leading_zeros()) - 2;
    if (i64::from(e) - up).rem_euclid(2) != 0 {
        up -= 1;
    }
    let big = u128::from(m) << up;
    let root = isqrt(big);
    round_float(format, false, root, (i64::from(e) - up) / 2, root * root != big)
}

/// `1/√a` correctly rounded to `format` (1/√±0 = ±inf, 1/√inf = 0, negative: NaN).
pub(crate) fn rsqrt_exact(format: FloatFormat, a: f64) -> u32 {
    if a.is_nan() || a < 0.0 {
        return canonical_nan(format);
    }
    if a == 0.0 {
        return encode_float(format, if a.is_sign_negative() { f64::NEG_INFINITY } else { f64::INFINITY });
    }
    if a.is_infinite() {
        return encode_float(format, 0.0);
    }
    let (_, mut m, mut e) = decompose(a);
    if e.rem_euclid(2) != 0 {
        m <<= 1;
        e -= 1;
    }
    // 1/√(m·2^e) = √(2^126 / m) · 2^−63 · 2^(−e/2), and ⌊√⌊X⌋⌋ = ⌊√X⌋.
    let numerator = 1u128 << 126;
    let n = numerator / u128::from(m);
    let exact_quotient = numerator.is_multiple_of(u128::from(m));
    let root = isqrt(n);
    let sticky = !exact_quotient || root * root != n;
    round_float(format, false, root, -63 - i64::from(e) / 2, sticky)
}

/// An exact sum of values of a float type: the interpreter's `reduce sum`, rounded once.
#[derive(Debug, Default)]
pub(crate) struct ExactSum {
    terms: Vec<(bool, u64, i32)>,
    nan: bool,
    positive_infinity: bool,
    negative_infinity: bool,
    all_negative_zero: bool,
    count: usize,
}

impl ExactSum {
    pub(crate) fn new() -> ExactSum {
        ExactSum { all_negative_zero: true, ..ExactSum::default() }
    }

    pub(crate) fn add(&mut self, x: f64) {
        self.count += 1;
        if x.is_nan() {
            self.nan = true;
        } else if x.is_infinite() {
            if x > 0.0 {
                self.positive_infinity = true;
            } else {
                self.negative_infinity = true;
            }
        } else if x == 0.0 {
            self.all_negative_zero &= x.is_sign_negative();
        } else {
            self.all_negative_zero = false;
            self.terms.push(decompose(x));
        }
    }

    /// The sum rounded to `format`.
    pub(crate) fn finish(&self, format: FloatFormat) -> u32 {
        if self.nan || (self.positive_infinity && self.negative_infinity) {
            return canonical_nan(format);
        }
        if self.positive_infinity {
            return encode_float(format, f64::INFINITY);
        }
        if self.negative_infinity {
            return encode_float(format, f64::NEG_INFINITY);
        }
        if self.terms.is_empty() {
            return if self.all_negative_zero && self.count > 0 { format.sign_mask() } else { 0 };
        }
        let min_exponent = self.terms.iter().map(|t| t.2).min().unwrap_or(0);
        let max_exponent = self.terms.iter().map(|t| t.2).max().unwrap_or(0);
        // Each term is below 2^(53 + its exponent − the least): with fewer than 2^20 terms the
        // total fits an i128 when the exponents are less than 54 apart.
        let span = i64::from(max_exponent) - i64::from(min_exponent) + 53 + 20;
        if span < 127 && self.terms.len() < (1 << 20) {
            let mut total: i128 = 0;
            for &(negative, significand, exponent) in &self.terms {
                let term = i128::from(significand) << (exponent - min_exponent);
                total += if negative { -term } else { term };
            }
            if total == 0 {
                return 0;
            }
            return round_float(format, total < 0, total.unsigned_abs(), i64::from(min_exponent), false);
        }
        let mut total = BigInt::zero();
        for &(negative, significand, exponent) in &self.terms {
            let term = BigInt::from(significand) << ((exponent - min_exponent) as usize);
            if negative {
                total -= term;
            } else {
                total += term;
            }
        }
        let (sign, magnitude) = total.into_parts();
        if sign == Sign::NoSign {
            return 0;
        }
        let bits = magnitude.bits();
        let (significand, shift, sticky) = if bits <= 128 {
            (magnitude.to_u128().unwrap_or(0), 0u64, false)
        } else {
            let shift = bits - 128;
            let sticky = magnitude.trailing_zeros().is_some_and(|z| z < shift);
            ((&magnitude >> shift).to_u128().unwrap_or(0), shift, sticky)
        };
        let exponent = i64::from(min_exponent) + i64::try_from(shift).unwrap_or(i64::MAX / 2);
        round_float(format, sign == Sign::Minus, significand, exponent, sticky)
    }
}

/// Compares two finite-or-special `f64`s the IEEE way (`None` when either is NaN).
pub(crate) fn compare_f64(a: f64, b: f64) -> Option<Ordering> {
    a.partial_cmp(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formats() -> Vec<FloatFormat> {
        crate::dtype::all_types_up_to(12)
            .into_iter()
            .filter_map(DType::float_format)
            .filter(|f| f.exponent_bits() <= 10)
            .collect()
    }

    #[test]
    fn integer_division_and_roots_match_f64_for_narrow_formats() {
        // For formats of at most 24 significant bits and small exponents, f64 division and
        // square root followed by one rounding are correctly rounded (double rounding is
        // innocuous): the integer algorithms must agree with them.
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for format in [FloatFormat::F16, FloatFormat::BF16, FloatFormat::F32] {
            for _ in 0..20_000 {
                let a = decode_float(format, (next() as u32) & ((1u64 << format.bits()) - 1) as u32).unwrap_or(1.0);
                let b = decode_float(format, (next() as u32) & ((1u64 << format.bits()) - 1) as u32).unwrap_or(3.0);
                assert_eq!(div_exact(format, a, b), encode_float(format, a / b), "{a} / {b} in {format:?}");
                assert_eq!(sqrt_exact(format, a), encode_float(format, a.sqrt()), "sqrt {a} in {format:?}");
            }
        }
        for format in formats() {
            for code in 0..(1u32 << format.bits()) {
                let Some(a) = decode_float(format, code) else { continue };
                if format.exponent_bits() <= 8 {
                    assert_eq!(sqrt_exact(format, a), encode_float(format, a.sqrt()), "sqrt {a} in {format:?}");
                    assert_eq!(div_exact(format, 1.0, a), encode_float(format, 1.0 / a), "1/{a} in {format:?}");
                }
            }
        }
    }

    #[test]
    fn rsqrt_is_correctly_rounded() {
        // Check against the definition: the result r must be the code nearest to 1/√a, which
        // for positive finite values is decided by comparing r's neighbours' midpoints m with
        // 1/√a, i.e. m²·a with 1 — exactly, in integers.
        for format in [FloatFormat::F16, FloatFormat::BF16] {
            for code in 0..(1u32 << (format.bits() - 1)) {
                let a = decode_float(format, code).unwrap_or(f64::NAN);
                if !(a.is_finite() && a > 0.0) {
                    continue;
                }
                let r = rsqrt_exact(format, a);
                let value = decode_float(format, r).unwrap_or(f64::NAN);
                let below = decode_float(format, r.wrapping_sub(1)).filter(|v| v.is_finite() && r > 0);
                let above = decode_float(format, r + 1).filter(|v| v.is_finite());
                // m²·a against 1 decides m against 1/√a; exact in big integers.
                let square_times_a = |m: f64| -> Ordering {
                    let (_, mm, me) = decompose(m);
                    let (_, am, ae) = decompose(a);
                    let product = BigInt::from(mm) * BigInt::from(mm) * BigInt::from(am);
                    let exponent = 2 * i64::from(me) + i64::from(ae);
                    if exponent >= 0 {
                        (product << exponent as usize).cmp(&BigInt::from(1))
                    } else {
                        product.cmp(&(BigInt::from(1) << (-exponent) as usize))
                    }
                };
                if let Some(b) = below {
                    let mid = (b + value) / 2.0;
                    assert_ne!(square_times_a(mid), Ordering::Greater, "rsqrt {a}: {value} too large");
                }
                if let Some(u) = above
                    && value.is_finite()
                {
                    let mid = (u + value) / 2.0;
                    assert_ne!(square_times_a(mid), Ordering::Less, "rsqrt {a}: {value} too small");
                }
            }
        }
    }

    #[test]
    fn round_sum_is_exact() {
        let f = FloatFormat::F16;
        // 1 + 2^-11 is a tie in f16 (rounds to 1), a hair more must round up.
        assert_eq!(round_sum(f, 1.0 + 2f64.powi(-11), 0.0), 0x3c00);
        let (s, e) = two_sum(1.0 + 2f64.powi(-11), 2f64.powi(-80));
        assert_eq!(round_sum(f, s, e), 0x3c01);
        let (s, e) = two_sum(1.0 + 2f64.powi(-11), -(2f64.powi(-80)));
        assert_eq!(round_sum(f, s, e), 0x3c00);
        let (s, e) = two_sum(1.0, -(2f64.powi(-80)));
        assert_eq!(round_sum(f, s, e), 0x3c00);
        let mut sum = ExactSum::new();
        for x in [1e30, 1.0, -1e30, 2f64.powi(-60)] {
            sum.add(x);
        }
        assert_eq!(sum.finish(FloatFormat::F32), (1.0f32).to_bits());
    }
}
