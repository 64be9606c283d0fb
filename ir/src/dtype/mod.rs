//! Data types of any bit width: names, properties and exact codecs.
//!
//! | family | names | values |
//! |---|---|---|
//! | unsigned integers | `u1` … `u32` | `0 ..= 2^N − 1` |
//! | signed integers | `i2` … `i32` | two's complement, `−2^(N−1) ..= 2^(N−1) − 1` |
//! | binary floats | `fNeEmM` (1 ≤ E, 0 ≤ M, N = 1 + E + M ≤ 16), `f16`, `bf16`, `f32` | sign, E exponent bits, M mantissa bits |
//!
//! A float's exponent bias is `2^(E−1) − 1`; exponent field 0 holds zero and the subnormals. What
//! the top of the code space means is the type's [`SpecialValues`] policy, part of its name:
//!
//! - `fNeEmM` is **finite-only** (every code is a number, encoding saturates), as in the OCP MX
//!   formats `f4e2m1`, `f6e2m3`, `f6e3m2` — except two 8-bit names that follow their standards:
//!   `f8e4m3` has a single NaN magnitude `S.1111.111` and no infinities (OCP "e4m3fn"), and
//!   `f8e5m2` is IEEE-like (infinities and NaNs in the all-ones exponent).
//! - A suffix picks another policy explicitly: `_finite`, `_nan` (finite plus the all-ones NaN
//!   magnitude) or `_ieee`, e.g. `f8e4m3_finite` (max 480) or `f6e3m2_ieee`. The printer writes a
//!   suffix only when the policy differs from the name's default.
//! - `f16`, `bf16` and `f32` are the IEEE 754 binary16, bfloat16 and binary32 formats;
//!   `f16e5m10_ieee` and `f16e8m7_ieee` parse to `f16` and `bf16`.
//!
//! Codecs are exact: [`DType::decode`] gives a code's value as an [`ExactValue`] (a dyadic
//! rational, ±inf or NaN), and [`DType::encode`] rounds an `f64` to the nearest code, ties to
//! even, with the overflow behaviour of [`Overflow`]. Values in memory are packed bit streams, see
//! [`crate::packing`].

mod codec;
pub mod exact;

pub use codec::{CodecError, Conversion, Overflow, Rounding};
pub use exact::{Dyadic, ExactParseError, ExactValue};

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// A scalar data type of anybit: an integer or binary floating-point format of 1 to 32 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// Unsigned integer of 1 to 32 bits.
    Uint(UintType),
    /// Two's complement signed integer of 2 to 32 bits.
    Int(IntType),
    /// Binary floating point with a sign bit.
    Float(FloatFormat),
}

/// An unsigned integer type `uN`, 1 ≤ N ≤ 32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UintType {
    bits: u8,
}

/// A signed (two's complement) integer type `iN`, 2 ≤ N ≤ 32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IntType {
    bits: u8,
}

/// What the codes at the top of a float format's exponent range mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpecialValues {
    /// Every code is a finite number: no infinities, no NaN (OCP MX FP4/FP6). Encoding saturates.
    FiniteOnly,
    /// No infinities; the all-ones magnitude `S.11…1.11…1` is NaN and the rest are finite
    /// (OCP FP8 E4M3, "fn").
    NanOnly,
    /// IEEE 754: exponent field all ones is ±infinity (mantissa 0) or NaN (mantissa ≠ 0).
    Ieee,
}

/// A binary floating-point format: a sign bit, `E ≥ 1` exponent bits, `M ≥ 0` mantissa bits and a
/// [`SpecialValues`] policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FloatFormat {
    exponent_bits: u8,
    mantissa_bits: u8,
    special: SpecialValues,
}

/// Why a data type name or description was rejected.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DTypeError {
    /// The name does not have the shape of any data type name.
    #[error(
        "unknown data type `{name}`: expected uN (N = 1..32), iN (N = 2..32), fNeEmM (N = 1+E+M ≤ 16, \
         optional suffix _finite, _nan or _ieee), f16, bf16 or f32"
    )]
    UnknownName {
        /// The rejected name.
        name: String,
    },
    /// The name has a data type's shape but describes no valid type.
    #[error("invalid data type `{name}`: {reason}")]
    Invalid {
        /// The rejected name (or a rendering of the rejected description).
        name: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl UintType {
    /// The number of bits.
    pub fn bits(self) -> u32 {
        u32::from(self.bits)
    }
}

impl IntType {
    /// The number of bits.
    pub fn bits(self) -> u32 {
        u32::from(self.bits)
    }
}

impl SpecialValues {
    /// The suffix that names this policy explicitly (`_finite`, `_nan`, `_ieee`).
    pub fn suffix(self) -> &'static str {
        match self {
            SpecialValues::FiniteOnly => "_finite",
            SpecialValues::NanOnly => "_nan",
            SpecialValues::Ieee => "_ieee",
        }
    }

    /// A one-line description for people.
    pub fn describe(self) -> &'static str {
        match self {
            SpecialValues::FiniteOnly => "finite only: no inf, no NaN; encoding saturates at ±max",
            SpecialValues::NanOnly => "no inf; S.1…1.1…1 is NaN; encoding saturates at ±max",
            SpecialValues::Ieee => "IEEE 754: exponent all ones is ±inf or NaN; overflow rounds to ±inf",
        }
    }
}

impl FloatFormat {
    /// IEEE binary16.
    pub const F16: FloatFormat = FloatFormat { exponent_bits: 5, mantissa_bits: 10, special: SpecialValues::Ieee };
    /// bfloat16.
    pub const BF16: FloatFormat = FloatFormat { exponent_bits: 8, mantissa_bits: 7, special: SpecialValues::Ieee };
    /// IEEE binary32.
    pub const F32: FloatFormat = FloatFormat { exponent_bits: 8, mantissa_bits: 23, special: SpecialValues::Ieee };

    /// A format with `exponent_bits` exponent and `mantissa_bits` mantissa bits under `special`.
    ///
    /// Valid when E ≥ 1 and 1 + E + M ≤ 16 (or the format is `f32`), IEEE formats have E ≥ 2
    /// (else no finite normal number is left) and M ≥ 1 (else there is no NaN code), and NaN-only
    /// formats have E + M ≥ 2 (else NaN is the only nonzero magnitude).
    pub fn new(exponent_bits: u32, mantissa_bits: u32, special: SpecialValues) -> Result<FloatFormat, DTypeError> {
        let rendered = || {
            let bits = 1 + u64::from(exponent_bits) + u64::from(mantissa_bits);
            format!("f{bits}e{exponent_bits}m{mantissa_bits}{}", special.suffix())
        };
        let invalid = |reason: &str| DTypeError::Invalid { name: rendered(), reason: reason.to_owned() };
        if exponent_bits == 8 && mantissa_bits == 23 && special == SpecialValues::Ieee {
            return Ok(FloatFormat::F32);
        }
        if exponent_bits == 0 {
            return Err(invalid("a float needs at least 1 exponent bit (use an integer type instead)"));
        }
        if 1 + u64::from(exponent_bits) + u64::from(mantissa_bits) > 16 {
            return Err(invalid("floats of the fNeEmM family have at most 16 bits (f32 is the only wider one)"));
        }
        if special == SpecialValues::Ieee && exponent_bits < 2 {
            return Err(invalid(
                "an IEEE format needs at least 2 exponent bits (with 1, every normal code is inf/NaN)",
            ));
        }
        if special == SpecialValues::Ieee && mantissa_bits == 0 {
            return Err(invalid("an IEEE format needs at least 1 mantissa bit (with none, it has no NaN)"));
        }
        if special == SpecialValues::NanOnly && exponent_bits + mantissa_bits < 2 {
            return Err(invalid("with a single magnitude bit, NaN would be the only nonzero value"));
        }
        Ok(FloatFormat { exponent_bits: exponent_bits as u8, mantissa_bits: mantissa_bits as u8, special })
    }

    /// The policy a name `fNeEmM` without suffix implies: NaN-only for `f8e4m3`, IEEE for
    /// `f8e5m2`, finite-only otherwise.
    pub fn default_special(exponent_bits: u32, mantissa_bits: u32) -> SpecialValues {
        match (exponent_bits, mantissa_bits) {
            (4, 3) => SpecialValues::NanOnly,
            (5, 2) => SpecialValues::Ieee,
            _ => SpecialValues::FiniteOnly,
        }
    }

    /// Total bits, 1 + E + M.
    pub fn bits(self) -> u32 {
        1 + u32::from(self.exponent_bits) + u32::from(self.mantissa_bits)
    }

    /// Exponent bits E.
    pub fn exponent_bits(self) -> u32 {
        u32::from(self.exponent_bits)
    }

    /// Mantissa (fraction) bits M.
    pub fn mantissa_bits(self) -> u32 {
        u32::from(self.mantissa_bits)
    }

    /// The special-value policy.
    pub fn special(self) -> SpecialValues {
        self.special
    }

    /// The exponent bias, 2^(E−1) − 1.
    pub fn bias(self) -> i32 {
        (1i32 << (self.exponent_bits - 1)) - 1
    }

    /// The exponent of the smallest normal number, 1 − bias.
    pub fn min_normal_exponent(self) -> i32 {
        1 - self.bias()
    }

    fn max_exponent_field(self) -> u32 {
        (1u32 << self.exponent_bits) - 1
    }

    fn mantissa_mask(self) -> u32 {
        (1u32 << self.mantissa_bits) - 1
    }

    /// The sign bit of a code.
    pub fn sign_mask(self) -> u32 {
        1u32 << (self.bits() - 1)
    }

    /// The largest finite magnitude's code (sign bit clear).
    pub fn max_code(self) -> u32 {
        let top = self.max_exponent_field();
        match self.special {
            SpecialValues::FiniteOnly => (top << self.mantissa_bits) | self.mantissa_mask(),
            // All ones is NaN: the largest finite magnitude is the code just below it.
            SpecialValues::NanOnly => ((top << self.mantissa_bits) | self.mantissa_mask()) - 1,
            SpecialValues::Ieee => ((top - 1) << self.mantissa_bits) | self.mantissa_mask(),
        }
    }

    /// Whether the format has ±infinity.
    pub fn has_infinity(self) -> bool {
        self.special == SpecialValues::Ieee
    }

    /// Whether the format has NaN.
    pub fn has_nan(self) -> bool {
        self.special != SpecialValues::FiniteOnly
    }

    /// The code of +infinity, if the format has infinities.
    pub fn infinity_code(self) -> Option<u32> {
        self.has_infinity().then(|| self.max_exponent_field() << self.mantissa_bits)
    }

    /// The code encoding produces for a NaN input (sign bit clear): the quiet NaN with only the
    /// top mantissa bit set for IEEE formats, the all-ones magnitude for NaN-only formats.
    pub fn nan_code(self) -> Option<u32> {
        let top = self.max_exponent_field() << self.mantissa_bits;
        match self.special {
            SpecialValues::FiniteOnly => None,
            SpecialValues::NanOnly => Some(top | self.mantissa_mask()),
            SpecialValues::Ieee => Some(top | (1u32 << (self.mantissa_bits - 1))),
        }
    }
}

impl DType {
    /// IEEE binary16.
    pub const F16: DType = DType::Float(FloatFormat::F16);
    /// bfloat16.
    pub const BF16: DType = DType::Float(FloatFormat::BF16);
    /// IEEE binary32.
    pub const F32: DType = DType::Float(FloatFormat::F32);

    /// `uN`, 1 ≤ N ≤ 32.
    pub fn uint(bits: u32) -> Result<DType, DTypeError> {
        if (1..=32).contains(&bits) {
            Ok(DType::Uint(UintType { bits: bits as u8 }))
        } else {
            Err(DTypeError::Invalid { name: format!("u{bits}"), reason: "unsigned integers have 1 to 32 bits".into() })
        }
    }

    /// `iN`, 2 ≤ N ≤ 32.
    pub fn int(bits: u32) -> Result<DType, DTypeError> {
        if (2..=32).contains(&bits) {
            Ok(DType::Int(IntType { bits: bits as u8 }))
        } else {
            Err(DTypeError::Invalid { name: format!("i{bits}"), reason: "signed integers have 2 to 32 bits".into() })
        }
    }

    /// `fNeEmM` with the name's default policy (see [`FloatFormat::default_special`]).
    pub fn float(exponent_bits: u32, mantissa_bits: u32) -> Result<DType, DTypeError> {
        let special = FloatFormat::default_special(exponent_bits, mantissa_bits);
        FloatFormat::new(exponent_bits, mantissa_bits, special).map(DType::Float)
    }

    /// The number of bits of one value in memory.
    pub fn bits(self) -> u32 {
        match self {
            DType::Uint(t) => t.bits(),
            DType::Int(t) => t.bits(),
            DType::Float(f) => f.bits(),
        }
    }

    /// The number of distinct codes, 2^bits.
    pub fn num_codes(self) -> u64 {
        1u64 << self.bits()
    }

    /// Whether the type has negative values.
    pub fn is_signed(self) -> bool {
        !matches!(self, DType::Uint(_))
    }

    /// Whether the type is a float format.
    pub fn is_float(self) -> bool {
        matches!(self, DType::Float(_))
    }

    /// Whether the type is an integer type.
    pub fn is_integer(self) -> bool {
        !self.is_float()
    }

    /// The float format, for float types.
    pub fn float_format(self) -> Option<FloatFormat> {
        match self {
            DType::Float(f) => Some(f),
            _ => None,
        }
    }

    /// The exponent bias of a float type.
    pub fn bias(self) -> Option<i32> {
        self.float_format().map(FloatFormat::bias)
    }

    /// The special-value policy of a float type.
    pub fn special_values(self) -> Option<SpecialValues> {
        self.float_format().map(FloatFormat::special)
    }

    /// The largest finite value.
    pub fn max(self) -> Dyadic {
        match self {
            DType::Uint(t) => Dyadic::from_i64((1i64 << t.bits()) - 1),
            DType::Int(t) => Dyadic::from_i64((1i64 << (t.bits() - 1)) - 1),
            DType::Float(f) => codec::decode_float_finite(f, f.max_code()),
        }
    }

    /// The smallest (most negative) finite value.
    pub fn min(self) -> Dyadic {
        match self {
            DType::Uint(_) => Dyadic::ZERO,
            DType::Int(t) => Dyadic::from_i64(-(1i64 << (t.bits() - 1))),
            DType::Float(_) => self.max().negate(),
        }
    }

    /// The smallest positive normal value of a float type, 2^(1 − bias).
    pub fn min_normal(self) -> Option<Dyadic> {
        self.float_format().and_then(|f| Dyadic::new(false, 1, f.min_normal_exponent()))
    }

    /// The smallest positive subnormal value of a float type, 2^(1 − bias − M); for M = 0 the
    /// format has no subnormals and this is `None`.
    pub fn min_subnormal(self) -> Option<Dyadic> {
        let f = self.float_format()?;
        if f.mantissa_bits == 0 {
            return None;
        }
        Dyadic::new(false, 1, f.min_normal_exponent() - f.mantissa_bits() as i32)
    }

    /// Whether every finite value of the type is exactly an `f64` (false only for floats with
    /// 11 or more exponent bits).
    pub fn fits_f64(self) -> bool {
        self.max().to_f64().is_some() && self.min_subnormal().is_none_or(|d| d.to_f64().is_some())
    }

    /// Whether every finite value of the type is exactly an `f32`.
    pub fn fits_f32(self) -> bool {
        let precise = match self {
            DType::Float(f) => f.mantissa_bits() <= 23,
            _ => self.bits() <= 24,
        };
        precise && self.max().to_f32().is_some() && self.min_subnormal().is_none_or(|d| d.to_f32().is_some())
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DType::Uint(t) => write!(f, "u{}", t.bits),
            DType::Int(t) => write!(f, "i{}", t.bits),
            DType::Float(FloatFormat::F16) => f.write_str("f16"),
            DType::Float(FloatFormat::BF16) => f.write_str("bf16"),
            DType::Float(FloatFormat::F32) => f.write_str("f32"),
            DType::Float(format) => {
                write!(f, "f{}e{}m{}", format.bits(), format.exponent_bits, format.mantissa_bits)?;
                if format.special != FloatFormat::default_special(format.exponent_bits(), format.mantissa_bits()) {
                    f.write_str(format.special.suffix())?;
                }
                Ok(())
            }
        }
    }
}

/// Parses a decimal number without sign, leading zeros or overflow: the number fields of names.
fn number_field(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 3 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if text.len() > 1 && text.starts_with('0') {
        return None;
    }
    text.parse().ok()
}

impl FromStr for DType {
    type Err = DTypeError;

    fn from_str(name: &str) -> Result<DType, DTypeError> {
        let unknown = || DTypeError::UnknownName { name: name.to_owned() };
        let with_name = |err: DTypeError| match err {
            DTypeError::Invalid { reason, .. } => DTypeError::Invalid { name: name.to_owned(), reason },
            other => other,
        };
        match name {
            "f16" => return Ok(DType::F16),
            "bf16" => return Ok(DType::BF16),
            "f32" => return Ok(DType::F32),
            _ => {}
        }
        if let Some(rest) = name.strip_prefix('u') {
            let bits = number_field(rest).ok_or_else(unknown)?;
            return DType::uint(bits).map_err(with_name);
        }
        if let Some(rest) = name.strip_prefix('i') {
            let bits = number_field(rest).ok_or_else(unknown)?;
            return DType::int(bits).map_err(with_name);
        }
        let rest = name.strip_prefix('f').ok_or_else(unknown)?;
        let (body, special) = match rest.split_once('_') {
            Some((body, "finite")) => (body, Some(SpecialValues::FiniteOnly)),
            Some((body, "nan")) => (body, Some(SpecialValues::NanOnly)),
            Some((body, "ieee")) => (body, Some(SpecialValues::Ieee)),
            Some(_) => {
                return Err(DTypeError::Invalid {
                    name: name.to_owned(),
                    reason: "the policy suffix must be _finite, _nan or _ieee".into(),
                });
            }
            None => (rest, None),
        };
        let (bits, after_bits) = body.split_once('e').ok_or_else(unknown)?;
        let (exponent, mantissa) = after_bits.split_once('m').ok_or_else(unknown)?;
        let (bits, exponent_bits, mantissa_bits) = (
            number_field(bits).ok_or_else(unknown)?,
            number_field(exponent).ok_or_else(unknown)?,
            number_field(mantissa).ok_or_else(unknown)?,
        );
        if bits != 1 + exponent_bits + mantissa_bits {
            return Err(DTypeError::Invalid {
                name: name.to_owned(),
                reason: format!(
                    "{bits} bits ≠ 1 sign + {exponent_bits} exponent + {mantissa_bits} mantissa = {}",
                    1 + exponent_bits + mantissa_bits
                ),
            });
        }
        if bits > 16 {
            return Err(DTypeError::Invalid {
                name: name.to_owned(),
                reason: "floats of the fNeEmM family have at most 16 bits (f32 is the only wider one)".into(),
            });
        }
        let special = special.unwrap_or_else(|| FloatFormat::default_special(exponent_bits, mantissa_bits));
        FloatFormat::new(exponent_bits, mantissa_bits, special).map(DType::Float).map_err(with_name)
    }
}

/// Every data type of at most `max_bits` bits (≤ 16): all integer types, and every float format
/// under every valid policy. Used by exhaustive tests and the CLI.
pub fn all_types_up_to(max_bits: u32) -> Vec<DType> {
    let max_bits = max_bits.min(16);
    let mut types = Vec::new();
    for bits in 1..=max_bits {
        types.extend(DType::uint(bits).ok());
        types.extend(DType::int(bits).ok());
        for exponent_bits in 1..bits {
            let mantissa_bits = bits - 1 - exponent_bits;
            for special in [SpecialValues::FiniteOnly, SpecialValues::NanOnly, SpecialValues::Ieee] {
                types.extend(FloatFormat::new(exponent_bits, mantissa_bits, special).ok().map(DType::Float));
            }
        }
    }
    types
}
