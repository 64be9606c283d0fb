//! Exact decoding and correctly rounded encoding for every [`DType`].

use thiserror::Error;

use super::exact::{Dyadic, ExactValue};
use super::{DType, FloatFormat, SpecialValues};

/// How encoding rounds a value that falls between two codes.
///
/// Ties go to the *even code* (the one whose last bit is 0). For every format with a mantissa
/// that is IEEE 754's ties-to-even; for formats without one (`f5e4m0`, …), where IEEE's rule has
/// no even significand to pick, it picks the even exponent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rounding {
    /// To the nearest code; a tie goes to the code with an even last bit (IEEE default).
    NearestEven,
    /// Toward zero (truncation), as C and C++ convert floats to integers.
    TowardZero,
}

/// What encoding does with a value beyond the largest finite value, and with ±inf and NaN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Overflow {
    /// Clamp to ±max, infinities included. NaN becomes NaN where the type has one, else 0. This is what quantizers want, and what PTX's `.satfinite` conversions do.
    Saturate,
    /// Keep overflow visible, as a C++ `static_cast` (and the `ml_dtypes` package) does: a float
    /// rounds to ±inf when its type has infinities, else to NaN when it has NaN, else saturates
    /// (a finite-only type has no other choice); an integer wraps modulo 2^N, and ±inf and NaN
    /// become 0; NaN becomes NaN where the type has one, else 0. Rounding toward zero never
    /// overflows to infinity: it stops at ±max (IEEE 754).
    NonSaturating,
}

/// A rounding and an overflow behaviour: everything [`DType::encode_with`] needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conversion {
    /// How values between codes round.
    pub rounding: Rounding,
    /// What happens beyond the finite range.
    pub overflow: Overflow,
}

/// Why a code could not be decoded as asked.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CodecError {
    /// The code has bits set above the type's width.
    #[error("code {code:#x} does not fit the {bits} bits of {dtype}")]
    CodeOutOfRange {
        /// The type.
        dtype: DType,
        /// Its width.
        bits: u32,
        /// The rejected code.
        code: u32,
    },
    /// The code's value exists but has no exact representation in the requested host type.
    #[error("the value {value} of {dtype} code {code:#x} is not exactly representable as {target}")]
    NotRepresentable {
        /// The type.
        dtype: DType,
        /// The code.
        code: u32,
        /// Its exact value.
        value: ExactValue,
        /// The host type asked for (`f64` or `f32`).
        target: &'static str,
    },
}

impl Conversion {
    /// Round to nearest even, saturate.
    pub const SATURATING: Conversion = Conversion { rounding: Rounding::NearestEven, overflow: Overflow::Saturate };
}

impl DType {
    /// The conversion [`DType::encode`] uses: round to nearest even; IEEE formats overflow to
    /// ±inf as IEEE 754 says, every other type saturates at its finite range.
    pub fn default_conversion(self) -> Conversion {
        let overflow = match self {
            DType::Float(f) if f.special() == SpecialValues::Ieee => Overflow::NonSaturating,
            _ => Overflow::Saturate,
        };
        Conversion { rounding: Rounding::NearestEven, overflow }
    }

    /// The exact value of `code`.
    pub fn decode(self, code: u32) -> Result<ExactValue, CodecError> {
        let bits = self.bits();
        if bits < 32 && code >> bits != 0 {
            return Err(CodecError::CodeOutOfRange { dtype: self, bits, code });
        }
        Ok(match self {
            DType::Uint(_) => ExactValue::Finite(Dyadic::from_i64(i64::from(code))),
            DType::Int(_) => {
                // Sign-extend the N-bit code.
                let shift = 64 - bits;
                ExactValue::Finite(Dyadic::from_i64((i64::from(code) << shift) >> shift))
            }
            DType::Float(f) => decode_float(f, code),
        })
    }

    /// The value of `code` as an `f64`: exact, or an error for codes of types whose range
    /// exceeds `f64` (see [`DType::fits_f64`]).
    pub fn decode_f64(self, code: u32) -> Result<f64, CodecError> {
        let value = self.decode(code)?;
        value.to_f64().ok_or(CodecError::NotRepresentable { dtype: self, code, value, target: "f64" })
    }

    /// The value of `code` as an `f32`: exact, or an error when `f32` cannot hold it.
    pub fn decode_f32(self, code: u32) -> Result<f32, CodecError> {
        let value = self.decode(code)?;
        value.to_f32().ok_or(CodecError::NotRepresentable { dtype: self, code, value, target: "f32" })
    }

    /// The code of `value` under the type's [`default_conversion`](DType::default_conversion).
    pub fn encode(self, value: f64) -> u32 {
        self.encode_with(value, self.default_conversion())
    }

    /// The code of `value` under `conversion`. Any `f64` has a code: nothing fails.
    pub fn encode_with(self, value: f64, conversion: Conversion) -> u32 {
        let negative = value.is_sign_negative();
        match self {
            DType::Uint(_) | DType::Int(_) => encode_integer(self, ExactValue::from_f64(value), conversion),
            DType::Float(f) => encode_float(f, negative, ExactValue::from_f64(value), conversion),
        }
    }

    /// The code of an exact value under `conversion` (values beyond `f64`'s range included).
    pub fn encode_exact(self, value: ExactValue, conversion: Conversion) -> u32 {
        match self {
            DType::Uint(_) | DType::Int(_) => encode_integer(self, value, conversion),
            DType::Float(f) => encode_float(f, false, value, conversion),
        }
    }
}

/// Splits a float code into (sign, exponent field, mantissa field).
fn fields(f: FloatFormat, code: u32) -> (bool, u32, u32) {
    let mantissa_bits = f.mantissa_bits();
    let negative = code & f.sign_mask() != 0;
    let magnitude = code & (f.sign_mask() - 1);
    (negative, magnitude >> mantissa_bits, magnitude & ((1u32 << mantissa_bits) - 1))
}

fn decode_float(f: FloatFormat, code: u32) -> ExactValue {
    let (negative, exponent_field, mantissa) = fields(f, code);
    let top = (1u32 << f.exponent_bits()) - 1;
    match f.special() {
        SpecialValues::Ieee if exponent_field == top => {
            return if mantissa == 0 { ExactValue::Infinite { negative } } else { ExactValue::Nan };
        }
        SpecialValues::NanOnly if exponent_field == top && mantissa == (1u32 << f.mantissa_bits()) - 1 => {
            return ExactValue::Nan;
        }
        _ => {}
    }
    ExactValue::Finite(decode_float_finite(f, code))
}

/// The value of a code known to be finite.
pub(super) fn decode_float_finite(f: FloatFormat, code: u32) -> Dyadic {
    let (negative, exponent_field, mantissa) = fields(f, code);
    let mantissa_bits = f.mantissa_bits() as i32;
    let (significand, exponent) = if exponent_field == 0 {
        (u64::from(mantissa), f.min_normal_exponent() - mantissa_bits)
    } else {
        (u64::from(mantissa) | (1u64 << mantissa_bits), exponent_field as i32 - f.bias() - mantissa_bits)
    };
    // Exponents of 16-bit formats stay within ±2^15: normalization cannot overflow.
    Dyadic::new(negative, significand, exponent).unwrap_or(Dyadic::ZERO)
}

/// Where a value lies relative to the multiples of its quantum below and above it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tail {
    /// Exactly a multiple.
    Exact,
    /// Less than half a quantum above the multiple below.
    BelowHalf,
    /// Exactly halfway: a tie.
    Half,
    /// More than half a quantum above the multiple below.
    AboveHalf,
}

/// `significand · 2^(exponent − quantum)` split into its integer part and its [`Tail`].
fn split_at_quantum(significand: u64, exponent: i32, quantum: i64) -> (u128, Tail) {
    let exponent = i64::from(exponent);
    if exponent >= quantum {
        // Callers keep this shift small (at most the mantissa width plus one).
        return (u128::from(significand) << (exponent - quantum).min(64), Tail::Exact);
    }
    let shift = quantum - exponent;
    if shift > 64 {
        // Significands have at most 64 bits: the value is below half a quantum.
        return (0, if significand == 0 { Tail::Exact } else { Tail::BelowHalf });
    }
    let significand = u128::from(significand);
    let remainder = significand & ((1u128 << shift) - 1);
    let half = 1u128 << (shift - 1);
    let tail = match remainder.cmp(&half) {
        _ if remainder == 0 => Tail::Exact,
        std::cmp::Ordering::Less => Tail::BelowHalf,
        std::cmp::Ordering::Equal => Tail::Half,
        std::cmp::Ordering::Greater => Tail::AboveHalf,
    };
    (significand >> shift, tail)
}

/// Rounds `floor + tail` to an integer; on a tie, `floor_is_even` says whether the code of
/// `floor` is the even one (the one IEEE's ties-to-even picks).
fn round(floor: u128, tail: Tail, rounding: Rounding, floor_is_even: bool) -> u128 {
    match (rounding, tail) {
        (Rounding::TowardZero, _) | (_, Tail::Exact | Tail::BelowHalf) => floor,
        (Rounding::NearestEven, Tail::AboveHalf) => floor + 1,
        (Rounding::NearestEven, Tail::Half) => floor + u128::from(!floor_is_even),
    }
}

fn encode_float(f: FloatFormat, nan_negative: bool, value: ExactValue, conversion: Conversion) -> u32 {
    let sign_bit = f.sign_mask();
    let max_code = f.max_code();
    let signed = |negative: bool, magnitude: u32| if negative { magnitude | sign_bit } else { magnitude };
    // What ±inf and overflowing values become under this conversion.
    let overflowed = |negative: bool, infinite_input: bool| {
        let magnitude = match (conversion.overflow, f.special()) {
            (Overflow::Saturate, _) | (Overflow::NonSaturating, SpecialValues::FiniteOnly) => max_code,
            // IEEE 754: rounding toward zero stops at the largest finite value.
            (Overflow::NonSaturating, _) if conversion.rounding == Rounding::TowardZero && !infinite_input => max_code,
            (Overflow::NonSaturating, SpecialValues::Ieee) => f.infinity_code().unwrap_or(max_code),
            (Overflow::NonSaturating, SpecialValues::NanOnly) => f.nan_code().unwrap_or(max_code),
        };
        signed(negative, magnitude)
    };
    let finite = match value {
        // NaN keeps its sign where the type has NaN; a type without NaN has no better answer
        // than +0 (a NaN's sign means nothing).
        ExactValue::Nan => return f.nan_code().map_or(0, |nan| signed(nan_negative, nan)),
        ExactValue::Infinite { negative } => return overflowed(negative, true),
        ExactValue::Finite(d) => d,
    };
    let negative = finite.is_negative();
    let Some(lead) = finite.leading_exponent() else {
        return signed(negative, 0);
    };
    let mantissa_bits = i64::from(f.mantissa_bits());
    let min_normal = i64::from(f.min_normal_exponent());
    // The spacing of codes around the value is 2^quantum; below the normal range it is the
    // subnormal spacing.
    let mut quantum = lead.max(min_normal) - mantissa_bits;
    let (floor, tail) = split_at_quantum(finite.significand(), finite.exponent(), quantum);
    // Ties go to the even *code*. With a mantissa, or below the normal range, the code's last
    // bit is the last bit of `floor`; without a mantissa (M = 0) a normal code's last bit is
    // its exponent field's, quantum + bias. (IEEE's "even significand" says nothing when the
    // significand is the single implicit 1; the even code is the rule that generalizes.)
    let floor_is_even =
        if mantissa_bits == 0 && floor >= 1 { (quantum + i64::from(f.bias())) % 2 == 0 } else { floor % 2 == 0 };
    let mut rounded = round(floor, tail, conversion.rounding, floor_is_even);
    if rounded == 0 {
        return signed(negative, 0);
    }
    if rounded == 1u128 << (mantissa_bits + 1) {
        // Rounding carried into the next binade.
        rounded >>= 1;
        quantum += 1;
    }
    let implicit = 1u128 << mantissa_bits;
    let (exponent_field, mantissa) = if rounded < implicit {
        (0i64, rounded)
    } else {
        (quantum + mantissa_bits + i64::from(f.bias()), rounded - implicit)
    };
    let top = (1i64 << f.exponent_bits()) - 1;
    if exponent_field > top {
        return overflowed(negative, false);
    }
    let magnitude = ((exponent_field as u32) << mantissa_bits) | mantissa as u32;
    if magnitude > max_code {
        return overflowed(negative, false);
    }
    signed(negative, magnitude)
}

fn encode_integer(dtype: DType, value: ExactValue, conversion: Conversion) -> u32 {
    let bits = dtype.bits();
    let (min, max): (i64, i64) = match dtype {
        DType::Int(_) => (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1),
        _ => (0, (1i64 << bits) - 1),
    };
    let code_mask = if bits == 32 { u32::MAX } else { (1u32 << bits) - 1 };
    let to_code = |v: i64| (v as u32) & code_mask;
    let finite = match (value, conversion.overflow) {
        (ExactValue::Nan, _) => return 0,
        (ExactValue::Infinite { .. }, Overflow::NonSaturating) => return 0,
        (ExactValue::Infinite { negative }, Overflow::Saturate) => return to_code(if negative { min } else { max }),
        (ExactValue::Finite(d), _) => d,
    };
    let negative = finite.is_negative();
    // The rounded magnitude, or None when it is at least 2^64 (beyond every integer type).
    let magnitude: Option<u128> = if finite.exponent() >= 64 {
        None
    } else {
        let (floor, tail) = split_at_quantum(finite.significand(), finite.exponent(), 0);
        Some(round(floor, tail, conversion.rounding, floor % 2 == 0))
    };
    match conversion.overflow {
        Overflow::Saturate => {
            let clamp = |limit: i64| limit.unsigned_abs() as u128;
            let v = match (negative, magnitude) {
                (false, Some(m)) if m <= clamp(max) => m as i64,
                (false, _) => max,
                (true, Some(m)) if m <= clamp(min) => -(m as i64),
                (true, _) => min,
            };
            to_code(v)
        }
        Overflow::NonSaturating => {
            // A magnitude ≥ 2^64 is a multiple of 2^64, hence of 2^bits: it wraps to 0.
            let low = magnitude.map_or(0, |m| (m as u64) & u64::from(code_mask));
            let wrapped = if negative { low.wrapping_neg() } else { low };
            (wrapped as u32) & code_mask
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> DType {
        name.parse().unwrap()
    }

    #[test]
    fn decodes_known_codes() {
        let e4m3 = t("f8e4m3");
        assert_eq!(e4m3.decode_f64(0x7e), Ok(448.0));
        assert!(e4m3.decode(0x7f).unwrap().is_nan());
        assert_eq!(e4m3.decode_f64(0x01), Ok(2f64.powi(-9)));
        assert_eq!(t("f8e5m2").decode(0x7c), Ok(ExactValue::Infinite { negative: false }));
        assert_eq!(t("f4e2m1").decode_f64(0x7), Ok(6.0));
        assert_eq!(t("f4e2m1").decode_f64(0xf), Ok(-6.0));
        assert_eq!(t("i4").decode_f64(0x8), Ok(-8.0));
        assert_eq!(t("u4").decode_f64(0xf), Ok(15.0));
        assert_eq!(t("i32").decode_f64(0x8000_0000), Ok(-2147483648.0));
        assert_eq!(DType::F32.decode_f32(0x3f80_0000), Ok(1.0));
        assert!(matches!(t("u4").decode(16), Err(CodecError::CodeOutOfRange { .. })));
        assert!(matches!(t("f12e11m0").decode_f64(0x7ff), Err(CodecError::NotRepresentable { .. })));
    }

    #[test]
    fn encodes_with_both_overflow_behaviours() {
        let e4m3 = t("f8e4m3");
        let cast = Conversion { rounding: Rounding::NearestEven, overflow: Overflow::NonSaturating };
        assert_eq!(e4m3.encode(464.0), 0x7e);
        assert_eq!(e4m3.encode(1e9), 0x7e);
        assert_eq!(e4m3.encode_with(465.0, cast), 0x7f);
        assert_eq!(e4m3.encode_with(f64::NEG_INFINITY, cast), 0xff);
        assert_eq!(t("f8e5m2").encode(1e6), 0x7c);
        assert_eq!(t("f8e5m2").encode_with(1e6, Conversion::SATURATING), 0x7b);
        assert_eq!(t("f4e2m1").encode(0.25), 0x0);
        assert_eq!(t("f4e2m1").encode(0.26), 0x1);
        assert_eq!(t("f4e2m1").encode(-5.0), 0xe);
        let truncate = Conversion { rounding: Rounding::TowardZero, overflow: Overflow::NonSaturating };
        assert_eq!(t("i4").encode(2.5), 2);
        assert_eq!(t("i4").encode(3.5), 4);
        assert_eq!(t("i4").encode(100.0), 7);
        assert_eq!(t("i4").encode(-100.0), 8);
        assert_eq!(t("i4").encode_with(9.0, truncate), 9);
        assert_eq!(t("i4").encode_with(-1.6, truncate), 15);
        assert_eq!(t("u32").encode(1e300), u32::MAX);
        assert_eq!(t("i32").encode(-1e300), 0x8000_0000);
        assert_eq!(t("u8").encode_with(1e300, truncate), 0);
        assert_eq!(DType::F32.encode(1.0 + f64::EPSILON), 0x3f80_0000);
        assert_eq!(DType::F16.encode(65520.0), 0x7c00);
        assert_eq!(DType::F16.encode(65519.99), 0x7bff);
    }
}
