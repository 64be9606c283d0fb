//! Value carriers and elementwise arithmetic on them.
//!
//! # Carriers
//!
//! Every element (a scalar, or one slot of a register tile) lives in one LLVM value, its
//! *carrier*:
//!
//! | type | carrier |
//! |---|---|
//! | `uN`, `iN` | `i32` holding the value, normalized: zero- or sign-extended from N bits |
//! | `f32` | `float` |
//! | `f16` | `half` |
//! | `bf16` | `bfloat` |
//! | every other float type | `i32` holding the **code** |
//!
//! Other float types keep their code rather than their value (the brief suggested an `f32`
//! holding the value): moving, viewing, selecting and storing them is then exact for every
//! code — NaN payloads and signs included, as the interpreter keeps them — and costs nothing,
//! while arithmetic decodes its operands and encodes its result, which rounding through an
//! encoder needs anyway.
//!
//! # Arithmetic
//!
//! Results are what the interpreter computes: exact, then rounded once.
//!
//! - `f32`: native IEEE operations (`add.rn`, `mul.rn`, `div.rn`, `sqrt.rn`; LLVM marks them
//!   `.rn`, which also keeps `ptxas` from contracting a multiply and an add into an `fma`).
//! - `f16`, `bf16`: `add`, `sub`, `mul` natively on the GPU (correctly rounded in hardware);
//!   `div` and `sqrt` in `f32` and rounded once more — double rounding is innocuous for
//!   these (q = 24 ≥ 2p + 2 with p ≤ 11).
//! - Other float types compute in a wider *domain* and round once with the exact encoder
//!   (`codec.rs`): `f32` when E ≤ 7 and M ≤ 10 (products of two values are then exact in
//!   `f32`, and double rounding of sums, quotients and roots is innocuous), else `f64` (types
//!   with E ≤ 10: values, products and sums exact or innocuously rounded in `f64`). Types with
//!   11 or more exponent bits are only moved, viewed and stored: arithmetic on them is
//!   reported unsupported (the interpreter refuses it too).
//! - `rsqrt` is computed in `f64` (`sqrt.rn` then `div.rn`) and rounded once to the type:
//!   correct except when the exact result lies within ~2^-52 (relative) of a rounding
//!   boundary of the type (exhaustively checked for every type of at most 16 bits on the
//!   host; not observed for `f32` inputs in random testing).
//! - `exp`, `exp2`, `log`, `log2`, `tanh`: the `f32` software functions of `mathfn.rs`, then
//!   rounded to the type (unsupported for types that do not fit `f32`).
//! - A NaN result is the type's canonical NaN; `neg` and `abs` flip and clear the sign bit
//!   (NaN in, canonical NaN out); `min`/`max` propagate NaN and order −0 below +0. For the
//!   natively carried types (`f32`, `f16`, `bf16`) the hardware's NaNs have other bits; since
//!   every operation treats all NaNs alike, results are canonicalized lazily, only where their
//!   bits become observable (stores, `view`), on the bits (LLVM may fold float-level NaN
//!   tests); values that cannot hold such a NaN are not touched ([`native_nan_result`]).
//!   Code-carried types get canonical NaNs from their encoder.
//! - Integers wrap modulo 2^N. `div` floors, `rem` takes the divisor's sign, `cdiv` rounds
//!   up. **Division by zero gives 0** (the interpreter reports an error; a GPU cannot), and
//!   `i32` `MIN / −1` wraps to `MIN`. Shift amounts are read as unsigned N-bit codes: `shl`
//!   and `shr` by N or more give 0 (−1 for `shr` of a negative value).
//! - `cast` rounds to nearest even and saturates (IEEE targets overflow to ±inf); float →
//!   integer rounds to nearest even, saturates, NaN → 0; integer → float rounds once (wide
//!   integers go through `f64`, which holds every 32-bit integer exactly).

use super::codec;
use super::emit::{LResult, LowerError, internal};
use super::emitter::{Emit, FloatPredicate, IntPredicate};
use super::mathfn;
use anybit_ir::dtype::{DType, FloatFormat};
use anybit_ir::program::{BinaryOp, CompareOp, UnaryOp};

/// How values of a type are carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Repr {
    /// An integer in an `i32`, normalized.
    Int { bits: u32, signed: bool },
    /// `float`.
    F32,
    /// `half`.
    F16,
    /// `bfloat`.
    Bf16,
    /// The code of another float format, in an `i32`.
    Code(FloatFormat),
}

pub(crate) fn repr(dtype: DType) -> Repr {
    match dtype {
        DType::Uint(_) => Repr::Int { bits: dtype.bits(), signed: false },
        DType::Int(_) => Repr::Int { bits: dtype.bits(), signed: true },
        DType::Float(f) if f == FloatFormat::F32 => Repr::F32,
        DType::Float(f) if f == FloatFormat::F16 => Repr::F16,
        DType::Float(f) if f == FloatFormat::BF16 => Repr::Bf16,
        DType::Float(f) => Repr::Code(f),
    }
}

fn unsupported<T>(what: String) -> LResult<T> {
    Err(LowerError::Unsupported(what))
}

/// Normalizes an `i32` to the N-bit integer type: wraps modulo 2^N and extends.
pub(crate) fn normalize<E: Emit>(em: &E, bits: u32, signed: bool, v: E::V) -> LResult<E::V> {
    if bits >= 32 {
        return Ok(v);
    }
    if signed {
        let s = em.c32(i64::from(32 - bits))?;
        em.ashr(em.shl(v, s)?, s)
    } else {
        em.and(v, em.c32((1i64 << bits) - 1)?)
    }
}

/// The code of a carrier, zero-extended to `i32`.
pub(crate) fn to_code<E: Emit>(em: &E, dtype: DType, v: E::V) -> LResult<E::V> {
    match repr(dtype) {
        Repr::Int { bits, .. } => {
            if bits >= 32 {
                Ok(v)
            } else {
                em.and(v, em.c32((1i64 << bits) - 1)?)
            }
        }
        Repr::Code(_) => Ok(v),
        Repr::F32 => em.fbits(v),
        Repr::F16 | Repr::Bf16 => em.zext(em.fbits(v)?, em.i32()),
    }
}

/// The carrier of a code (zero-extended in an `i32`, no bits above the type's width).
pub(crate) fn from_code<E: Emit>(em: &E, dtype: DType, code: E::V) -> LResult<E::V> {
    Ok(match repr(dtype) {
        Repr::Int { bits, signed } => normalize(em, bits, signed, code)?,
        Repr::Code(_) => code,
        Repr::F32 => em.from_bits(code, em.f32())?,
        Repr::F16 => em.from_bits(em.trunc(code, em.i16())?, em.f16())?,
        Repr::Bf16 => em.from_bits(em.trunc(code, em.i16())?, em.bf16())?,
    })
}

/// The carrier constant of a code.
pub(crate) fn const_code<E: Emit>(em: &E, dtype: DType, code: u32) -> LResult<E::V> {
    Ok(match repr(dtype) {
        Repr::Int { bits, signed } => {
            let value = if signed && bits < 32 {
                let s = 64 - bits;
                ((i64::from(code) << s) >> s) as i32
            } else {
                code as i32
            };
            em.c32(i64::from(value))?
        }
        Repr::Code(_) => em.c32(i64::from(code))?,
        Repr::F32 => em.cfloat_bits(em.f32(), u64::from(code))?,
        Repr::F16 => em.cfloat_bits(em.f16(), u64::from(code))?,
        Repr::Bf16 => em.cfloat_bits(em.bf16(), u64::from(code))?,
    })
}

/// The canonical NaN carrier of a float type.
fn canonical_nan<E: Emit>(em: &E, dtype: DType) -> LResult<E::V> {
    match dtype {
        DType::Float(f) => const_code(em, dtype, codec::canonical_nan_code(f)),
        _ => internal("NaN of an integer type"),
    }
}

/// Whether a carrier is a NaN (`i1`).
pub(crate) fn is_nan<E: Emit>(em: &E, dtype: DType, v: E::V) -> LResult<E::V> {
    match repr(dtype) {
        Repr::Int { .. } => Ok(em.cfalse()?),
        // On the bits: LLVM treats NaN payloads as unspecified and would fold a float test
        // followed by a select of a NaN constant away.
        Repr::F32 | Repr::F16 | Repr::Bf16 => {
            let DType::Float(f) = dtype else { return internal("float repr of a non-float") };
            let code = to_code(em, dtype, v)?;
            let mag = em.and(code, em.c32(i64::from(f.sign_mask() - 1))?)?;
            em.ugt(mag, em.c32(i64::from(f.infinity_code().unwrap_or(0)))?)
        }
        Repr::Code(f) => {
            let code = v;
            let mag = em.and(code, em.c32(i64::from(f.sign_mask() - 1))?)?;
            let m = f.mantissa_bits();
            let all_ones = (1i64 << (f.exponent_bits() + m)) - 1;
            match f.special() {
                anybit_ir::SpecialValues::FiniteOnly => Ok(em.cfalse()?),
                anybit_ir::SpecialValues::NanOnly => em.eq(mag, em.c32(all_ones)?),
                anybit_ir::SpecialValues::Ieee => em.ugt(mag, em.c32(i64::from(f.infinity_code().unwrap_or(0)))?),
            }
        }
    }
}

/// Whether a result of type `dtype` may be a NaN with other bits than the canonical NaN's
/// (native float carriers computed by LLVM or the hardware).
pub(crate) fn native_nan_result(dtype: DType) -> bool {
    matches!(repr(dtype), Repr::F32 | Repr::F16 | Repr::Bf16)
}

/// NaNs replaced by the type's canonical NaN.
pub(crate) fn canonicalize<E: Emit>(em: &E, dtype: DType, v: E::V) -> LResult<E::V> {
    if !dtype.is_float() {
        return Ok(v);
    }
    if let DType::Float(f) = dtype
        && !f.has_nan()
    {
        return Ok(v);
    }
    let nan = is_nan(em, dtype, v)?;
    match repr(dtype) {
        Repr::F32 | Repr::F16 | Repr::Bf16 => {
            // Select on the bits, for the same reason.
            let DType::Float(f) = dtype else { return internal("float repr of a non-float") };
            let code = to_code(em, dtype, v)?;
            let fixed = em.select(nan, em.c32(i64::from(codec::canonical_nan_code(f)))?, code)?;
            from_code(em, dtype, fixed)
        }
        _ => em.select(nan, canonical_nan(em, dtype)?, v),
    }
}

// ----- float domains -----

/// The wider float type a type computes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Domain {
    F32,
    F64,
}

/// The domain of a code-carried float format, or why it has none.
pub(crate) fn code_domain(dtype: DType, f: FloatFormat) -> LResult<Domain> {
    if f.exponent_bits() <= 7 && f.mantissa_bits() <= 10 {
        Ok(Domain::F32)
    } else if codec::fits_f64(f) {
        Ok(Domain::F64)
    } else {
        unsupported(format!("arithmetic on {dtype}: its values do not all fit f64"))
    }
}

/// The exact value of a float carrier as a float of the domain.
pub(crate) fn to_domain<E: Emit>(em: &E, dtype: DType, v: E::V, dom: Domain) -> LResult<E::V> {
    let wide = match dom {
        Domain::F32 => em.f32(),
        Domain::F64 => em.f64(),
    };
    match repr(dtype) {
        Repr::F32 | Repr::F16 | Repr::Bf16 => em.fext(v, wide),
        Repr::Code(f) => {
            let code = v;
            if dom == Domain::F32 && codec::fits_f32(f) {
                Ok(em.call(&codec::decode_f32(em, f)?, &[code])?)
            } else {
                let d = em.call(&codec::decode_f64(em, f)?, &[code])?;
                em.ftrunc(d, wide)
            }
        }
        Repr::Int { .. } => internal("integer in a float domain"),
    }
}

/// A float of the domain (`f32` or `f64`) rounded once to the float type, NaN canonical.
pub(crate) fn from_domain<E: Emit>(em: &E, dtype: DType, x: E::V) -> LResult<E::V> {
    let is64 = em.type_of(x) == em.f64();
    let v: E::V = match repr(dtype) {
        Repr::F32 => em.ftrunc(x, em.f32())?,
        Repr::F16 => em.ftrunc(x, em.f16())?,
        Repr::Bf16 if em.platform().is_nvptx() => em.ftrunc(x, em.bf16())?,
        Repr::Bf16 => {
            // The host has no bfloat conversion library call: round with the exact encoder.
            let f = FloatFormat::BF16;
            let enc = if is64 { codec::encode_f64(em, f)? } else { codec::encode_f32(em, f)? };
            let code = em.call(&enc, &[x])?;
            return from_code(em, dtype, code);
        }
        Repr::Code(f) => {
            let enc = if is64 { codec::encode_f64(em, f)? } else { codec::encode_f32(em, f)? };
            return em.call(&enc, &[x]);
        }
        Repr::Int { .. } => return internal("float domain to an integer type"),
    };
    Ok(v)
}

/// The domain a float type's `div`/`sqrt`/transcendentals go through.
fn slow_domain<E: Emit>(em: &E, dtype: DType) -> LResult<Domain> {
    match repr(dtype) {
        Repr::F32 | Repr::F16 => Ok(Domain::F32),
        Repr::Bf16 if em.platform().is_nvptx() => Ok(Domain::F32),
        Repr::Bf16 => Ok(Domain::F64),
        Repr::Code(f) => code_domain(dtype, f),
        Repr::Int { .. } => internal("float domain of an integer type"),
    }
}

// ----- elementwise operations -----

/// `op x` for one carrier.
pub(crate) fn unary<E: Emit>(em: &E, op: UnaryOp, dtype: DType, x: E::V) -> LResult<E::V> {
    match repr(dtype) {
        Repr::Int { bits, signed } => {
            let v = x;
            let r = match op {
                UnaryOp::Neg => em.sub(em.c32(0)?, v)?,
                UnaryOp::Abs if signed => {
                    let neg = em.sub(em.c32(0)?, v)?;
                    em.select(em.slt(v, em.c32(0)?)?, neg, v)?
                }
                UnaryOp::Abs => v,
                UnaryOp::Not => em.not(v)?,
                _ => return unsupported(format!("`{}` on integer type {dtype}", op.name())),
            };
            Ok(normalize(em, bits, signed, r)?)
        }
        _ => float_unary(em, op, dtype, x),
    }
}

fn float_unary<E: Emit>(em: &E, op: UnaryOp, dtype: DType, x: E::V) -> LResult<E::V> {
    let DType::Float(format) = dtype else { return internal("float op on an integer") };
    match op {
        UnaryOp::Neg | UnaryOp::Abs => {
            let code = to_code(em, dtype, x)?;
            let sign = em.c32(i64::from(format.sign_mask()))?;
            let flipped = match op {
                UnaryOp::Neg => em.xor(code, sign)?,
                _ => em.and(code, em.not(sign)?)?,
            };
            let nan = is_nan(em, dtype, x)?;
            let fixed = em.select(nan, em.c32(i64::from(codec::canonical_nan_code(format)))?, flipped)?;
            return from_code(em, dtype, fixed);
        }
        UnaryOp::Not => return unsupported(format!("`not` on float type {dtype}")),
        _ => {}
    }
    if op == UnaryOp::Rsqrt {
        // In f64, rounded once.
        let dom = Domain::F64;
        if let Repr::Code(f) = repr(dtype) {
            code_domain(dtype, f)?;
        }
        let a = to_domain(em, dtype, x, dom)?;
        let root = em.float_intrinsic1("sqrt", a)?;
        let r = em.fdiv(em.cf64(1.0)?, root)?;
        return from_domain(em, dtype, r);
    }
    let dom = slow_domain(em, dtype)?;
    let transcendental = matches!(op, UnaryOp::Exp | UnaryOp::Exp2 | UnaryOp::Log | UnaryOp::Log2 | UnaryOp::Tanh);
    let dom = if transcendental {
        if let Repr::Code(f) = repr(dtype)
            && !codec::fits_f32(f)
        {
            return unsupported(format!("`{}` on {dtype}: its values do not all fit f32", op.name()));
        }
        Domain::F32
    } else {
        dom
    };
    let a = to_domain(em, dtype, x, dom)?;
    let r = match op {
        UnaryOp::Sqrt => em.float_intrinsic1("sqrt", a)?,
        UnaryOp::Recip => {
            let one = if dom == Domain::F32 { em.cf32(1.0)? } else { em.cf64(1.0)? };
            em.fdiv(one, a)?
        }
        UnaryOp::Exp => em.call(&mathfn::exp(em)?, &[a])?,
        UnaryOp::Exp2 => em.call(&mathfn::exp2(em)?, &[a])?,
        UnaryOp::Log => em.call(&mathfn::log(em)?, &[a])?,
        UnaryOp::Log2 => em.call(&mathfn::log2(em)?, &[a])?,
        UnaryOp::Tanh => em.call(&mathfn::tanh(em)?, &[a])?,
        _ => return internal(format!("unexpected unary op {}", op.name())),
    };
    from_domain(em, dtype, r)
}

/// Floor division, remainder with the divisor's sign, or ceiling division of normalized
/// `i32` carriers; a zero divisor gives 0.
fn int_division<E: Emit>(em: &E, op: BinaryOp, signed: bool, a: E::V, b: E::V) -> LResult<E::V> {
    let zero = em.c32(0)?;
    let one = em.c32(1)?;
    let b_zero = em.eq(b, zero)?;
    if !signed {
        let safe = em.select(b_zero, one, b)?;
        let q = em.udiv(a, safe)?;
        let r = em.urem(a, safe)?;
        let result = match op {
            BinaryOp::Div => q,
            BinaryOp::Rem => r,
            _ => em.add(q, em.zext(em.ne(r, zero)?, em.i32())?)?,
        };
        return em.select(b_zero, zero, result);
    }
    // Signed: avoid both traps of sdiv (b = 0, and MIN / −1).
    let b_minus_one = em.eq(b, em.c32(-1)?)?;
    let safe = em.select(em.or(b_zero, b_minus_one)?, one, b)?;
    let t = em.sdiv(a, safe)?;
    let r = em.srem(a, safe)?;
    let r_nonzero = em.ne(r, zero)?;
    let signs_differ = em.slt(em.xor(r, b)?, zero)?;
    let result = match op {
        BinaryOp::Div => {
            let adjust = em.and(r_nonzero, signs_differ)?;
            em.sub(t, em.zext(adjust, em.i32())?)?
        }
        BinaryOp::Rem => {
            let adjust = em.and(r_nonzero, signs_differ)?;
            em.add(r, em.select(adjust, b, zero)?)?
        }
        _ => {
            let adjust = em.and(r_nonzero, em.not(signs_differ)?)?;
            em.add(t, em.zext(adjust, em.i32())?)?
        }
    };
    // b = −1: the quotient is −a (wrapping), the remainder 0.
    let by_minus_one = match op {
        BinaryOp::Rem => zero,
        _ => em.sub(zero, a)?,
    };
    let result = em.select(b_minus_one, by_minus_one, result)?;
    em.select(b_zero, zero, result)
}

/// `a op b` for carriers of one type.
pub(crate) fn binary<E: Emit>(em: &E, op: BinaryOp, dtype: DType, a: E::V, b: E::V) -> LResult<E::V> {
    match repr(dtype) {
        Repr::Int { bits, signed } => {
            let (x, y) = (a, b);
            let r = match op {
                BinaryOp::Add => em.add(x, y)?,
                BinaryOp::Sub => em.sub(x, y)?,
                BinaryOp::Mul => em.mul(x, y)?,
                BinaryOp::Div | BinaryOp::Rem | BinaryOp::CeilDiv => int_division(em, op, signed, x, y)?,
                BinaryOp::Min | BinaryOp::Max => {
                    let pred = match (op, signed) {
                        (BinaryOp::Min, true) => IntPredicate::SLT,
                        (BinaryOp::Min, false) => IntPredicate::ULT,
                        (_, true) => IntPredicate::SGT,
                        (_, false) => IntPredicate::UGT,
                    };
                    // The interpreter keeps x unless y is strictly smaller (larger).
                    let take_y = em.icmp(pred, y, x)?;
                    em.select(take_y, y, x)?
                }
                BinaryOp::And => em.and(x, y)?,
                BinaryOp::Or => em.or(x, y)?,
                BinaryOp::Xor => em.xor(x, y)?,
                BinaryOp::Shl | BinaryOp::Shr => {
                    // The amount is y's code, unsigned.
                    let amount = if bits >= 32 { y } else { em.and(y, em.c32((1i64 << bits) - 1)?)? };
                    let big = em.uge(amount, em.c32(i64::from(bits))?)?;
                    let clamped = em.select(big, em.c32(31)?, amount)?;
                    if op == BinaryOp::Shl {
                        let shifted = em.shl(x, clamped)?;
                        em.select(big, em.c32(0)?, shifted)?
                    } else if signed {
                        // x is sign-extended: shifting by 31 gives 0 or −1, as shifting by ≥ N does.
                        em.ashr(x, clamped)?
                    } else {
                        let shifted = em.lshr(x, clamped)?;
                        em.select(big, em.c32(0)?, shifted)?
                    }
                }
            };
            Ok(normalize(em, bits, signed, r)?)
        }
        _ => float_binary(em, op, dtype, a, b),
    }
}

fn float_binary<E: Emit>(em: &E, op: BinaryOp, dtype: DType, a: E::V, b: E::V) -> LResult<E::V> {
    match op {
        BinaryOp::Min | BinaryOp::Max => return float_min_max(em, op == BinaryOp::Max, dtype, a, b),
        BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div => {}
        _ => return unsupported(format!("`{}` on float type {dtype}", op.name())),
    }
    let native = match repr(dtype) {
        Repr::F32 => true,
        Repr::F16 => op != BinaryOp::Div,
        Repr::Bf16 => op != BinaryOp::Div && em.platform().is_nvptx(),
        _ => false,
    };
    let apply = |x: E::V, y: E::V| -> LResult<E::V> {
        match op {
            BinaryOp::Add => em.fadd(x, y),
            BinaryOp::Sub => em.fsub(x, y),
            BinaryOp::Mul => em.fmul(x, y),
            _ => em.fdiv(x, y),
        }
    };
    if native {
        return apply(a, b);
    }
    let dom = match (repr(dtype), op) {
        // The host's bfloat multiplications go through f64 (exact products).
        (Repr::Bf16, _) => slow_domain(em, dtype)?,
        (Repr::Code(f), _) => code_domain(dtype, f)?,
        _ => Domain::F32,
    };
    let r = apply(to_domain(em, dtype, a, dom)?, to_domain(em, dtype, b, dom)?)?;
    from_domain(em, dtype, r)
}

/// `min`/`max` of floats: NaN if either is NaN, −0 < +0, otherwise the smaller (larger)
/// operand's own carrier.
fn float_min_max<E: Emit>(em: &E, want_max: bool, dtype: DType, a: E::V, b: E::V) -> LResult<E::V> {
    let native = match repr(dtype) {
        Repr::F32 | Repr::F16 => true,
        // The host has no bfloat rounding library call: compare decoded values instead.
        Repr::Bf16 => em.platform().is_nvptx(),
        _ => false,
    };
    match repr(dtype) {
        _ if native => {
            let name = if want_max { "maximum" } else { "minimum" };
            Ok(em.float_intrinsic2(name, a, b)?)
        }
        _ => {
            let dom = match repr(dtype) {
                Repr::Code(f) if !codec::fits_f32(f) => Domain::F64,
                _ => Domain::F32,
            };
            let (x, y) = (to_domain(em, dtype, a, dom)?, to_domain(em, dtype, b, dom)?);
            let (less, greater) = (em.fcmp(FloatPredicate::OLT, y, x)?, em.fcmp(FloatPredicate::OGT, y, x)?);
            let take_y_strict = if want_max { greater } else { less };
            // Equal values with different codes are ±0: max takes +0, min −0.
            let DType::Float(f) = dtype else { return internal("min of an integer") };
            let a_code = to_code(em, dtype, a)?;
            let a_negative = em.ne(em.and(a_code, em.c32(i64::from(f.sign_mask()))?)?, em.c32(0)?)?;
            let equal = em.fcmp(FloatPredicate::OEQ, x, y)?;
            let take_y_equal = if want_max { a_negative } else { em.not(a_negative)? };
            let take_y = em.or(take_y_strict, em.and(equal, take_y_equal)?)?;
            let r = em.select(take_y, b, a)?;
            let nan = em.or(is_nan(em, dtype, a)?, is_nan(em, dtype, b)?)?;
            em.select(nan, canonical_nan(em, dtype)?, r)
        }
    }
}

/// A comparison of two carriers; the `u1` result as an `i32` 0/1.
pub(crate) fn compare<E: Emit>(em: &E, op: CompareOp, dtype: DType, a: E::V, b: E::V) -> LResult<E::V> {
    let r = match repr(dtype) {
        Repr::Int { signed, .. } => {
            let pred = match (op, signed) {
                (CompareOp::Eq, _) => IntPredicate::EQ,
                (CompareOp::Ne, _) => IntPredicate::NE,
                (CompareOp::Lt, true) => IntPredicate::SLT,
                (CompareOp::Le, true) => IntPredicate::SLE,
                (CompareOp::Gt, true) => IntPredicate::SGT,
                (CompareOp::Ge, true) => IntPredicate::SGE,
                (CompareOp::Lt, false) => IntPredicate::ULT,
                (CompareOp::Le, false) => IntPredicate::ULE,
                (CompareOp::Gt, false) => IntPredicate::UGT,
                (CompareOp::Ge, false) => IntPredicate::UGE,
            };
            em.icmp(pred, a, b)?
        }
        _ => {
            let (x, y) = match repr(dtype) {
                Repr::F32 | Repr::F16 | Repr::Bf16 => (a, b),
                Repr::Code(f) => {
                    let dom = if codec::fits_f32(f) { Domain::F32 } else { Domain::F64 };
                    (to_domain(em, dtype, a, dom)?, to_domain(em, dtype, b, dom)?)
                }
                Repr::Int { .. } => return internal("unreachable"),
            };
            let pred = match op {
                CompareOp::Eq => FloatPredicate::OEQ,
                CompareOp::Ne => FloatPredicate::UNE,
                CompareOp::Lt => FloatPredicate::OLT,
                CompareOp::Le => FloatPredicate::OLE,
                CompareOp::Gt => FloatPredicate::OGT,
                CompareOp::Ge => FloatPredicate::OGE,
            };
            em.fcmp(pred, x, y)?
        }
    };
    em.bool_to_i32(r)
}

/// `select`: `a` where the `u1` carrier `cond` is 1.
pub(crate) fn select<E: Emit>(em: &E, cond: E::V, a: E::V, b: E::V) -> LResult<E::V> {
    let c = em.truth(cond)?;
    em.select(c, a, b)
}

/// `table[code]` for a carrier `v` of the unsigned code type `from` (`lookup`), `table` the
/// entries' codes of `to`: a binary tree of selects on the code's bits, lowest bit first —
/// 2^N − 1 selects, no memory access and no divergent branch (a `prmt`-based selection for
/// 16-bit tables is future work). The selects run on the entries' codes as `i32`s, then the
/// code becomes a carrier of `to`: integer selects are native on every target (the host's
/// x86 backend would call a run-time library to select `bfloat` vectors).
pub(crate) fn lookup<E: Emit>(em: &E, from: DType, to: DType, table: &[u32], v: E::V) -> LResult<E::V> {
    let bits = from.bits();
    if !matches!(from, DType::Uint(_)) || bits > 8 || table.len() != 1usize << bits {
        return internal(format!("`lookup` of {from} codes with {} entries", table.len()));
    }
    let code = to_code(em, from, v)?;
    let mut level: Vec<E::V> = table.iter().map(|&c| em.c32(i64::from(c))).collect::<LResult<_>>()?;
    for bit in 0..bits {
        let set = em.ne(em.and(code, em.c32(1i64 << bit)?)?, em.c32(0)?)?;
        level = level.chunks_exact(2).map(|pair| em.select(set, pair[1], pair[0])).collect::<LResult<Vec<_>>>()?;
    }
    match level[..] {
        [entry] => from_code(em, to, entry),
        _ => internal("`lookup` select tree did not reduce to one value"),
    }
}

/// The smallest and largest value of an integer type, as `i64`.
fn int_range(dtype: DType) -> (i64, i64) {
    let bits = dtype.bits();
    if dtype.is_signed() { (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1) } else { (0, (1i64 << bits) - 1) }
}

/// An integer carrier's exact value as `i64`.
fn int_to_i64<E: Emit>(em: &E, dtype: DType, v: E::V) -> LResult<E::V> {
    if dtype.is_signed() { em.sext(v, em.i64()) } else { em.zext(v, em.i64()) }
}

/// The exact value of a float carrier in `f32` when it fits, else in `f64`.
fn float_exact<E: Emit>(em: &E, dtype: DType, v: E::V) -> LResult<E::V> {
    match repr(dtype) {
        Repr::F32 => Ok(v),
        Repr::F16 | Repr::Bf16 => em.fext(v, em.f32()),
        Repr::Code(f) if codec::fits_f32(f) => to_domain(em, dtype, v, Domain::F32),
        Repr::Code(f) if codec::fits_f64(f) => to_domain(em, dtype, v, Domain::F64),
        Repr::Code(_) => unsupported(format!("converting {dtype}: its values do not all fit f64")),
        Repr::Int { .. } => internal("float_exact of an integer"),
    }
}

/// `cast x : to`.
pub(crate) fn cast<E: Emit>(em: &E, from: DType, to: DType, x: E::V) -> LResult<E::V> {
    if from == to {
        // Every value converts to itself; a NaN to the canonical NaN (for native carriers,
        // the lowering canonicalizes where NaN bits become observable, see `nan.rs`).
        if native_nan_result(to) {
            return Ok(x);
        }
        return canonicalize(em, to, x);
    }
    match (from.is_integer(), to.is_integer()) {
        (true, true) => {
            let v = int_to_i64(em, from, x)?;
            let (lo, hi) = int_range(to);
            let v = em.smax(v, em.c64(lo)?)?;
            let v = em.smin(v, em.c64(hi)?)?;
            Ok(em.trunc(v, em.i32())?)
        }
        (true, false) => int_to_float(em, from, to, x),
        (false, true) => {
            let v = float_exact(em, from, x)?;
            let r = em.float_intrinsic1("rint", v)?;
            let bits = to.bits();
            let ty = em.int(bits);
            let name = format!(
                "llvm.{}.sat.i{bits}.{}",
                if to.is_signed() { "fptosi" } else { "fptoui" },
                em.float_suffix(em.type_of(r))
            );
            let n = em.intrinsic_value(&name, ty, &[r])?;
            let n = if to.is_signed() { em.sext(n, em.i32())? } else { em.zext(n, em.i32())? };
            Ok(n)
        }
        (false, false) => float_to_float(em, from, to, x),
    }
}

/// Small integers into `f16`/`bf16` without a conversion instruction (those run on a slow
/// pipe): `v + bias` placed in the mantissa of a power of two `2^p` (p = 10 for `f16`, 7 for
/// `bf16`, so the mantissa's unit is 1) gives exactly `2^p + v + bias`; subtracting
/// `2^p + bias` is exact (the result is an integer of at most p + 1 bits). `bias` is 0 for
/// unsigned types and `2^(N−1)` for signed ones; the type's values must fit: `N ≤ p`.
fn small_int_to_half<E: Emit>(em: &E, from: DType, to: DType, v: E::V) -> LResult<Option<E::V>> {
    let (p, one, ty) = match repr(to) {
        Repr::F16 => (10u32, 0x6400i64, em.f16()),
        Repr::Bf16 if em.platform().is_nvptx() => (7, 0x4300, em.bf16()),
        _ => return Ok(None),
    };
    if from.bits() > p {
        return Ok(None);
    }
    let bias = if from.is_signed() { 1i64 << (from.bits() - 1) } else { 0 };
    let bits = em.add(v, em.c32(one + bias)?)?;
    let magic = em.from_bits(em.trunc(bits, em.i16())?, ty)?;
    let offset = f64::from(1u32 << p) + bias as f64;
    let offset = if ty == em.f16() {
        em.cfloat_bits(ty, u64::from(anybit_ir::DType::F16.encode(offset)))?
    } else {
        em.cfloat_bits(ty, u64::from(anybit_ir::DType::BF16.encode(offset)))?
    };
    Ok(Some(em.fsub(magic, offset)?))
}

fn int_to_float<E: Emit>(em: &E, from: DType, to: DType, v: E::V) -> LResult<E::V> {
    if let Some(h) = small_int_to_half(em, from, to, v)? {
        return Ok(h);
    }
    let signed = from.is_signed();
    let conv = |ty| if signed { em.sitofp(v, ty) } else { em.uitofp(v, ty) };
    let small = from.bits() <= 24;
    match repr(to) {
        // One rounding in hardware (`cvt.rn.f32.s32`).
        Repr::F32 => Ok(conv(em.f32())?),
        // `cvt.rn.f16.s32` rounds once on the GPU; the host may go through f32.
        Repr::F16 if em.platform().is_nvptx() || small => Ok(conv(em.f16())?),
        // Exact in f32, then one rounding.
        _ if small => from_domain(em, to, conv(em.f32())?),
        // Exact in f64, then one rounding.
        _ => from_domain(em, to, conv(em.f64())?),
    }
}

fn float_to_float<E: Emit>(em: &E, from: DType, to: DType, x: E::V) -> LResult<E::V> {
    // Fast exact decodes into the target.
    if let (Repr::Code(f), Repr::F16) = (repr(from), repr(to))
        && codec::fits_f16(f)
    {
        return em.call(&codec::decode_f16(em, f)?, &[x]);
    }
    if let (Repr::Code(f), Repr::F32) = (repr(from), repr(to))
        && codec::fits_f32(f)
    {
        return em.call(&codec::decode_f32(em, f)?, &[x]);
    }
    let v = float_exact(em, from, x)?;
    from_domain(em, to, v)
}
