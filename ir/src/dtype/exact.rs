//! Exact numbers: every value of every anybit data type, with no rounding.
//!
//! Each finite value of an integer or binary floating-point type is a *dyadic rational*
//! `±s · 2^e` (an integer times a power of two). [`Dyadic`] holds such a number exactly, whatever
//! its exponent — formats such as `f16e15m0` reach `2^16383`, far outside `f64` — and prints it as
//! an exact decimal. [`ExactValue`] adds the special values a type may have (±infinity, NaN).

use std::cmp::Ordering;
use std::fmt;

use num_bigint::BigUint;
use num_traits::Zero;
use thiserror::Error;

/// A dyadic rational `(-1)^negative · significand · 2^exponent`, kept normalized: the significand
/// is odd, or zero (then the exponent is 0). Zero keeps its sign (`-0` is a value of every signed
/// float type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Dyadic {
    negative: bool,
    significand: u64,
    exponent: i32,
}

/// An exact value of a data type: a finite dyadic number, an infinity, or NaN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExactValue {
    /// A finite number.
    Finite(Dyadic),
    /// Positive (`negative == false`) or negative infinity.
    Infinite {
        /// The sign.
        negative: bool,
    },
    /// Not a number. NaN payloads and signs are not values; codecs choose the NaN code.
    Nan,
}

/// Why a decimal string could not be read as an exact value.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ExactParseError {
    /// The text is not a decimal number (`[-]digits[.digits][e[-]digits]`, `inf`, `-inf`, `nan`).
    #[error("`{text}` is not a decimal number (expected e.g. `-1.25`, `3e-2`, `inf`, `nan`)")]
    Syntax {
        /// The rejected text.
        text: String,
    },
    /// The decimal is a number, but not a dyadic rational (e.g. `0.1`), or it is too large.
    #[error("`{text}` is not exactly a binary fraction with a 64-bit significand")]
    NotDyadic {
        /// The rejected text.
        text: String,
    },
}

impl Dyadic {
    /// Positive zero.
    pub const ZERO: Dyadic = Dyadic { negative: false, significand: 0, exponent: 0 };

    /// `(-1)^negative · significand · 2^exponent`, normalized.
    ///
    /// Returns `None` when normalization would move the exponent out of `i32` (impossible for
    /// values of anybit's types, whose exponents stay within ±2^15).
    pub fn new(negative: bool, significand: u64, exponent: i32) -> Option<Dyadic> {
        if significand == 0 {
            return Some(Dyadic { negative, significand: 0, exponent: 0 });
        }
        let shift = significand.trailing_zeros();
        Some(Dyadic { negative, significand: significand >> shift, exponent: exponent.checked_add(shift as i32)? })
    }

    /// An integer, exactly.
    pub fn from_i64(value: i64) -> Dyadic {
        // i64::MIN.unsigned_abs() is 2^63: fits the u64 significand.
        Dyadic::new(value < 0, value.unsigned_abs(), 0).unwrap_or(Dyadic::ZERO)
    }

    /// Whether the sign bit is set (true for `-0`).
    pub fn is_negative(self) -> bool {
        self.negative
    }

    /// Whether the value is ±0.
    pub fn is_zero(self) -> bool {
        self.significand == 0
    }

    /// The odd significand (0 for zero).
    pub fn significand(self) -> u64 {
        self.significand
    }

    /// The power of two the significand is scaled by.
    pub fn exponent(self) -> i32 {
        self.exponent
    }

    /// The value with its sign flipped (zero included).
    pub fn negate(self) -> Dyadic {
        Dyadic { negative: !self.negative, ..self }
    }

    /// The absolute value.
    pub fn abs(self) -> Dyadic {
        Dyadic { negative: false, ..self }
    }

    /// `floor(log2(|self|))`, the exponent of the leading significand bit; `None` for zero.
    pub fn leading_exponent(self) -> Option<i64> {
        if self.significand == 0 {
            return None;
        }
        let width = 64 - i64::from(self.significand.leading_zeros());
        Some(i64::from(self.exponent) + width - 1)
    }

    /// The value as an `f64` if it is exactly representable (including subnormals), else `None`.
    pub fn to_f64(self) -> Option<f64> {
        let sign = if self.negative { 1u64 << 63 } else { 0 };
        let Some(lead) = self.leading_exponent() else {
            return Some(f64::from_bits(sign));
        };
        let width = 64 - self.significand.leading_zeros();
        if width > 53 || lead > 1023 || i64::from(self.exponent) < -1074 {
            return None;
        }
        let bits = if lead >= -1022 {
            // Normal: drop the implicit leading bit, left-align the rest in 52 mantissa bits.
            let mantissa = (self.significand << (53 - width)) & ((1u64 << 52) - 1);
            (((lead + 1023) as u64) << 52) | mantissa
        } else {
            // Subnormal: the significand's lowest bit is worth 2^exponent, the unit is 2^-1074.
            self.significand << (i64::from(self.exponent) + 1074)
        };
        Some(f64::from_bits(sign | bits))
    }

    /// The value as an `f32` if it is exactly representable, else `None`.
    pub fn to_f32(self) -> Option<f32> {
        let wide = self.to_f64()?;
        let narrow = wide as f32;
        (f64::from(narrow) == wide && narrow.is_sign_negative() == wide.is_sign_negative()).then_some(narrow)
    }

    /// Compares two values numerically (`-0 == +0`).
    pub fn cmp_value(self, other: Dyadic) -> Ordering {
        match (self.is_zero(), other.is_zero()) {
            (true, true) => return Ordering::Equal,
            (true, false) => {
                return if other.negative { Ordering::Greater } else { Ordering::Less };
            }
            (false, true) => {
                return if self.negative { Ordering::Less } else { Ordering::Greater };
            }
            (false, false) => {}
        }
        if self.negative != other.negative {
            return if self.negative { Ordering::Less } else { Ordering::Greater };
        }
        let magnitude = self.cmp_magnitude(other);
        if self.negative { magnitude.reverse() } else { magnitude }
    }

    fn cmp_magnitude(self, other: Dyadic) -> Ordering {
        // Both nonzero. Compare leading exponents first, then align the significands.
        let (a, b) = (self.leading_exponent(), other.leading_exponent());
        match a.cmp(&b) {
            Ordering::Equal => {}
            unequal => return unequal,
        }
        let (wa, wb) = (64 - self.significand.leading_zeros(), 64 - other.significand.leading_zeros());
        let (sa, sb) = (u128::from(self.significand) << (64 - wa), u128::from(other.significand) << (64 - wb));
        sa.cmp(&sb)
    }

    /// The exact decimal digits of the magnitude, and the power of ten of the last digit:
    /// `|self| = digits · 10^scale`, with no trailing zeros in `digits` (unless it is "0").
    fn decimal_digits(self) -> (String, i64) {
        if self.significand == 0 {
            return ("0".to_owned(), 0);
        }
        let significand = BigUint::from(self.significand);
        let (mut digits, mut scale) = if self.exponent >= 0 {
            ((significand << self.exponent as u64).to_str_radix(10), 0i64)
        } else {
            // s · 2^-n = s · 5^n / 10^n.
            let n = u32::try_from(-i64::from(self.exponent)).unwrap_or(u32::MAX);
            ((significand * BigUint::from(5u8).pow(n)).to_str_radix(10), -i64::from(n))
        };
        let trimmed = digits.trim_end_matches('0').len();
        scale += (digits.len() - trimmed) as i64;
        digits.truncate(trimmed);
        (digits, scale)
    }

    /// Reads a decimal (`-1.5`, `0.001953125`, `6e4`, `1.25E-3`) as an exact dyadic value.
    /// Fails when the decimal is not exactly a binary fraction (e.g. `0.1`).
    pub fn parse_exact(text: &str) -> Result<Dyadic, ExactParseError> {
        let syntax = || ExactParseError::Syntax { text: text.to_owned() };
        let not_dyadic = || ExactParseError::NotDyadic { text: text.to_owned() };
        let (negative, body) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let (mantissa, exp10) = match body.find(['e', 'E']) {
            Some(at) => {
                let exp: i64 = body[at + 1..].parse().map_err(|_| syntax())?;
                (&body[..at], exp)
            }
            None => (body, 0),
        };
        let (int_part, frac_part) = match mantissa.split_once('.') {
            Some((i, f)) => (i, f),
            None => (mantissa, ""),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (int_part.is_empty() && frac_part.is_empty()) || !all_digits(int_part) || !all_digits(frac_part) {
            return Err(syntax());
        }
        // |value| = digits · 10^scale.
        let digits_text = format!("{int_part}{frac_part}");
        let digits = BigUint::parse_bytes(digits_text.as_bytes(), 10).ok_or_else(syntax)?;
        let scale = exp10.checked_sub(frac_part.len() as i64).ok_or_else(not_dyadic)?;
        if digits.is_zero() {
            return Ok(Dyadic { negative, significand: 0, exponent: 0 });
        }
        if scale.unsigned_abs() > 100_000 {
            return Err(not_dyadic());
        }
        // digits · 10^scale = digits · 5^scale · 2^scale. For scale < 0, 5^-scale must divide.
        let (numerator, exponent) = if scale >= 0 {
            (digits * BigUint::from(5u8).pow(scale as u32), scale)
        } else {
            let five = BigUint::from(5u8).pow((-scale) as u32);
            if !(&digits % &five).is_zero() {
                return Err(not_dyadic());
            }
            (digits / five, scale)
        };
        let shift = numerator.trailing_zeros().unwrap_or(0);
        let odd = &numerator >> shift;
        if odd > BigUint::from(u64::MAX) {
            return Err(not_dyadic());
        }
        let significand = odd.iter_u64_digits().next().unwrap_or(0);
        let exponent = i32::try_from(exponent + shift as i64).map_err(|_| not_dyadic())?;
        Dyadic::new(negative, significand, exponent).ok_or_else(not_dyadic)
    }
}

impl fmt::Display for Dyadic {
    /// The exact decimal value, positional when its magnitude is in `[1e-7, 1e21)` and in
    /// scientific notation (`d.ddde±x`) otherwise; every digit is exact, so the text reads back
    /// as exactly this value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        let (digits, scale) = self.decimal_digits();
        if digits == "0" {
            return f.write_str("0");
        }
        // Power of ten of the leading digit.
        let lead = scale + digits.len() as i64 - 1;
        if (-7..21).contains(&lead) {
            if scale >= 0 {
                write!(f, "{digits}{}", "0".repeat(scale as usize))
            } else if lead >= 0 {
                let point = (lead + 1) as usize;
                write!(f, "{}.{}", &digits[..point], &digits[point..])
            } else {
                write!(f, "0.{}{digits}", "0".repeat((-lead - 1) as usize))
            }
        } else {
            let (first, rest) = digits.split_at(1);
            if rest.is_empty() { write!(f, "{first}e{lead}") } else { write!(f, "{first}.{rest}e{lead}") }
        }
    }
}

impl ExactValue {
    /// The exact value of an `f64` (every `f64` is a dyadic rational, or special).
    pub fn from_f64(value: f64) -> ExactValue {
        if value.is_nan() {
            return ExactValue::Nan;
        }
        let negative = value.is_sign_negative();
        if value.is_infinite() {
            return ExactValue::Infinite { negative };
        }
        let bits = value.to_bits();
        let biased = ((bits >> 52) & 0x7ff) as i32;
        let fraction = bits & ((1u64 << 52) - 1);
        let (significand, exponent) =
            if biased == 0 { (fraction, -1074) } else { (fraction | (1u64 << 52), biased - 1075) };
        ExactValue::Finite(Dyadic::new(negative, significand, exponent).unwrap_or(Dyadic::ZERO))
    }

    /// The value as an `f64`, if exactly representable (infinities and NaN are).
    pub fn to_f64(self) -> Option<f64> {
        match self {
            ExactValue::Finite(d) => d.to_f64(),
            ExactValue::Infinite { negative: false } => Some(f64::INFINITY),
            ExactValue::Infinite { negative: true } => Some(f64::NEG_INFINITY),
            ExactValue::Nan => Some(f64::NAN),
        }
    }

    /// The value as an `f32`, if exactly representable (infinities and NaN are).
    pub fn to_f32(self) -> Option<f32> {
        match self {
            ExactValue::Finite(d) => d.to_f32(),
            other => other.to_f64().map(|v| v as f32),
        }
    }

    /// The finite value, if finite.
    pub fn finite(self) -> Option<Dyadic> {
        match self {
            ExactValue::Finite(d) => Some(d),
            _ => None,
        }
    }

    /// Whether this is NaN.
    pub fn is_nan(self) -> bool {
        matches!(self, ExactValue::Nan)
    }

    /// The value with its sign flipped (NaN stays NaN).
    pub fn negate(self) -> ExactValue {
        match self {
            ExactValue::Finite(d) => ExactValue::Finite(d.negate()),
            ExactValue::Infinite { negative } => ExactValue::Infinite { negative: !negative },
            ExactValue::Nan => ExactValue::Nan,
        }
    }

    /// Reads what [`Display`](fmt::Display) prints: an exact decimal, `inf`, `-inf` or `nan`.
    pub fn parse_exact(text: &str) -> Result<ExactValue, ExactParseError> {
        match text {
            "nan" => Ok(ExactValue::Nan),
            "inf" => Ok(ExactValue::Infinite { negative: false }),
            "-inf" => Ok(ExactValue::Infinite { negative: true }),
            _ => Dyadic::parse_exact(text).map(ExactValue::Finite),
        }
    }
}

impl fmt::Display for ExactValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExactValue::Finite(d) => d.fmt(f),
            ExactValue::Infinite { negative: false } => f.write_str("inf"),
            ExactValue::Infinite { negative: true } => f.write_str("-inf"),
            ExactValue::Nan => f.write_str("nan"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(negative: bool, significand: u64, exponent: i32) -> Dyadic {
        Dyadic::new(negative, significand, exponent).unwrap()
    }

    #[test]
    fn prints_exact_decimals() {
        assert_eq!(d(false, 1, -9).to_string(), "0.001953125");
        assert_eq!(d(true, 3, -1).to_string(), "-1.5");
        assert_eq!(d(false, 7, 6).to_string(), "448");
        assert_eq!(d(false, 1, -24).to_string(), "5.9604644775390625e-8");
        assert_eq!(d(false, 1, 70).to_string(), "1.180591620717411303424e21");
        assert_eq!(d(true, 0, 0).to_string(), "-0");
        assert_eq!(d(false, 1, 69).to_string(), "590295810358705651712");
    }

    #[test]
    fn parses_what_it_prints() {
        for value in [d(false, 1, -9), d(true, 3, -1), d(false, 1, -1074), d(false, 5, 16000), d(true, 0, 0)] {
            assert_eq!(Dyadic::parse_exact(&value.to_string()), Ok(value), "{value}");
        }
        assert!(matches!(Dyadic::parse_exact("0.1"), Err(ExactParseError::NotDyadic { .. })));
        assert!(matches!(Dyadic::parse_exact("1..2"), Err(ExactParseError::Syntax { .. })));
        assert!(matches!(Dyadic::parse_exact(""), Err(ExactParseError::Syntax { .. })));
        assert!(matches!(Dyadic::parse_exact("1e999999999999"), Err(ExactParseError::NotDyadic { .. })));
    }

    #[test]
    fn f64_conversions_are_exact_or_refused() {
        for value in [0.0, -0.0, 1.0, -1.5, 448.0, f64::MAX, f64::MIN_POSITIVE, 5e-324, 1e-310] {
            let exact = ExactValue::from_f64(value);
            assert_eq!(exact.to_f64().map(f64::to_bits), Some(value.to_bits()), "{value}");
        }
        assert_eq!(d(false, 1, 1024).to_f64(), None);
        assert_eq!(d(false, 1, -1075).to_f64(), None);
        assert_eq!(d(false, (1 << 54) - 1, 0).to_f64(), None);
        assert_eq!(d(false, 1, -149).to_f32(), Some(f32::from_bits(1)));
        assert_eq!(d(false, 1, -150).to_f32(), None);
    }

    #[test]
    fn compares_numerically() {
        assert_eq!(d(true, 0, 0).cmp_value(Dyadic::ZERO), Ordering::Equal);
        assert_eq!(d(false, 3, -1).cmp_value(d(false, 1, 0)), Ordering::Greater);
        assert_eq!(d(true, 3, -1).cmp_value(d(true, 1, 0)), Ordering::Less);
        assert_eq!(d(false, 7, 0).cmp_value(d(false, 1, 3)), Ordering::Less);
    }
}
