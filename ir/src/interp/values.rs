//! Runtime values, per-type codecs, and elementwise arithmetic on codes.
//!
//! Every element is kept as its *code* (the bits of its type, in a `u32`), so moving, viewing
//! and storing values is exact for every type, NaN payloads included. Arithmetic decodes codes
//! to `f64` (floats: exact for every type whose values fit `f64`) or `i64` (integers), computes
//! exactly, and rounds once to the result type.

use std::cmp::Ordering;
use std::rc::Rc;

use crate::dtype::{DType, ExactValue, FloatFormat, SpecialValues};
use crate::program::{BinaryOp, CompareOp, UnaryOp};

use super::error::{ErrorKind, InterpError, fail};
use super::numeric::{self, canonical_nan, int_value, two_sum, wrap};

/// A register tile: its elements' codes, row-major over its shape.
#[derive(Clone, Debug)]
pub(crate) struct Tile {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub codes: Vec<u32>,
}

/// A view of global memory.
#[derive(Clone, Debug)]
pub(crate) struct GlobalView {
    /// The pointer parameter's position.
    pub param: usize,
    pub dtype: DType,
    pub shape: Vec<i64>,
    pub strides: Vec<i64>,
}

/// The value of an SSA value while a block runs.
#[derive(Clone, Debug)]
pub(crate) enum Val {
    Scalar { dtype: DType, code: u32 },
    Pointer { param: usize, dtype: DType },
    Global(Rc<GlobalView>),
    Shared { tile: usize, dtype: DType },
    Register(Rc<Tile>),
}

impl Val {
    pub fn describe(&self) -> String {
        match self {
            Val::Scalar { dtype, .. } => format!("scalar {dtype}"),
            Val::Pointer { dtype, .. } => format!("pointer to {dtype}"),
            Val::Global(g) => format!("global {}, rank {}", g.dtype, g.shape.len()),
            Val::Shared { dtype, .. } => format!("shared {dtype} tile"),
            Val::Register(t) => format!("register {}{:?}", t.dtype, t.shape),
        }
    }
}

/// An elementwise operand: one code for every element, or a tile's codes.
pub(crate) enum Lane<'a> {
    Scalar(u32),
    Tile(&'a [u32]),
}

impl Lane<'_> {
    #[inline]
    fn at(&self, i: usize) -> u32 {
        match self {
            Lane::Scalar(c) => *c,
            Lane::Tile(codes) => codes.get(i).copied().unwrap_or(0),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoder {
    F32,
    F16,
    Bf16,
    Generic,
}

/// How to decode and encode one float type fast.
#[derive(Debug)]
pub(crate) struct FloatCodec {
    pub format: FloatFormat,
    pub dtype: DType,
    encoder: Encoder,
    /// Decoded values of every code (types of at most 16 bits whose values fit `f64`).
    table: Option<Vec<f64>>,
    /// Whether every value is exactly an `f64` (else arithmetic is unsupported).
    pub fits: bool,
    /// Whether `f64` division and square root, rounded once more, are correctly rounded
    /// (double rounding is innocuous: at most 24 significant bits, no `f64` underflow).
    native: bool,
}

impl FloatCodec {
    fn new(format: FloatFormat) -> FloatCodec {
        let dtype = DType::Float(format);
        let encoder = match format {
            FloatFormat::F32 => Encoder::F32,
            FloatFormat::F16 => Encoder::F16,
            FloatFormat::BF16 => Encoder::Bf16,
            _ => Encoder::Generic,
        };
        let fits = dtype.fits_f64();
        let table = (fits && format.bits() <= 16).then(|| {
            (0..1u32 << format.bits()).map(|code| numeric::decode_float(format, code).unwrap_or(f64::NAN)).collect()
        });
        let native = format.exponent_bits() <= 8 && format.mantissa_bits() <= 23;
        FloatCodec { format, dtype, encoder, table, fits, native }
    }

    /// The value of a code (exact when `fits`).
    #[inline]
    pub fn dec(&self, code: u32) -> f64 {
        match &self.table {
            Some(table) => table.get(code as usize).copied().unwrap_or(f64::NAN),
            None if self.encoder == Encoder::F32 => f64::from(f32::from_bits(code)),
            None => numeric::decode_float(self.format, code).unwrap_or(f64::NAN),
        }
    }

    /// The code of `x`, rounded once.
    #[inline]
    pub fn enc(&self, x: f64) -> u32 {
        match self.encoder {
            Encoder::F32 => numeric::encode_f32(x),
            Encoder::F16 => numeric::encode_f16(x),
            Encoder::Bf16 => numeric::encode_bf16(x),
            Encoder::Generic => numeric::encode_float(self.format, x),
        }
    }

    /// The code of `a + b`, exactly rounded.
    #[inline]
    pub fn add(&self, a: f64, b: f64) -> u32 {
        let (s, e) = two_sum(a, b);
        if e == 0.0 { self.enc(s) } else { numeric::round_sum(self.format, s, e) }
    }

    /// The code of `a / b`, exactly rounded.
    pub fn div(&self, a: f64, b: f64) -> u32 {
        if self.native { self.enc(a / b) } else { numeric::div_exact(self.format, a, b) }
    }

    fn sqrt(&self, a: f64) -> u32 {
        if self.native { self.enc(a.sqrt()) } else { numeric::sqrt_exact(self.format, a) }
    }

    pub fn nan(&self) -> u32 {
        canonical_nan(self.format)
    }

    pub fn is_nan(&self, code: u32) -> bool {
        is_nan_code(self.format, code)
    }

    /// Orders two codes by value (`None` when either is NaN); exact for every type.
    pub fn cmp(&self, a: u32, b: u32) -> Option<Ordering> {
        if self.fits {
            return numeric::compare_f64(self.dec(a), self.dec(b));
        }
        let (x, y) = (self.dtype.decode(a).ok()?, self.dtype.decode(b).ok()?);
        match (x, y) {
            (ExactValue::Nan, _) | (_, ExactValue::Nan) => None,
            (ExactValue::Infinite { negative: p }, ExactValue::Infinite { negative: q }) => Some(q.cmp(&p)),
            (ExactValue::Infinite { negative }, ExactValue::Finite(_)) => {
                Some(if negative { Ordering::Less } else { Ordering::Greater })
            }
            (ExactValue::Finite(_), ExactValue::Infinite { negative }) => {
                Some(if negative { Ordering::Greater } else { Ordering::Less })
            }
            (ExactValue::Finite(p), ExactValue::Finite(q)) => Some(p.cmp_value(q)),
        }
    }

    fn require_fits(&self, what: &str) -> Result<(), InterpError> {
        if self.fits {
            Ok(())
        } else {
            fail(
                ErrorKind::UnsupportedType,
                format!(
                    "{what} on {} is not supported: its values are not all exact f64s (cast to a narrower type first)",
                    self.dtype
                ),
            )
        }
    }
}

/// Whether a code of `format` is a NaN.
pub(crate) fn is_nan_code(format: FloatFormat, code: u32) -> bool {
    let m = format.mantissa_bits();
    let magnitude = code & (format.sign_mask() - 1);
    let exponent_field = magnitude >> m;
    let mantissa = magnitude & ((1u32 << m) - 1);
    let top = (1u32 << format.exponent_bits()) - 1;
    match format.special() {
        SpecialValues::Ieee => exponent_field == top && mantissa != 0,
        SpecialValues::NanOnly => exponent_field == top && mantissa == (1u32 << m) - 1,
        SpecialValues::FiniteOnly => false,
    }
}

/// How to decode and wrap one integer type.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IntCodec {
    pub dtype: DType,
    pub bits: u32,
    pub signed: bool,
}

impl IntCodec {
    #[inline]
    pub fn dec(&self, code: u32) -> i64 {
        int_value(self.bits, self.signed, code)
    }

    #[inline]
    pub fn wrap(&self, value: i64) -> u32 {
        wrap(self.bits, value)
    }

    fn mask(&self) -> u32 {
        wrap(self.bits, -1)
    }
}

/// The codec of a data type.
#[derive(Debug)]
pub(crate) enum Codec {
    Int(IntCodec),
    Float(FloatCodec),
}

impl Codec {
    pub fn new(dtype: DType) -> Codec {
        match dtype {
            DType::Float(f) => Codec::Float(FloatCodec::new(f)),
            _ => Codec::Int(IntCodec { dtype, bits: dtype.bits(), signed: dtype.is_signed() }),
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            Codec::Int(c) => c.dtype,
            Codec::Float(c) => c.dtype,
        }
    }

    /// The value of a code as an `f64` (exact for integers and fitting floats).
    #[inline]
    pub fn value(&self, code: u32) -> f64 {
        match self {
            Codec::Int(c) => c.dec(code) as f64,
            Codec::Float(c) => c.dec(code),
        }
    }
}

fn map1(x: &Lane, n: usize, mut f: impl FnMut(u32) -> u32) -> Vec<u32> {
    match x {
        Lane::Tile(codes) => codes.iter().map(|&c| f(c)).collect(),
        Lane::Scalar(c) => (0..n).map(|_| f(*c)).collect(),
    }
}

fn map2(a: &Lane, b: &Lane, n: usize, mut f: impl FnMut(u32, u32) -> u32) -> Vec<u32> {
    match (a, b) {
        (Lane::Tile(x), Lane::Tile(y)) => x.iter().zip(y.iter()).map(|(&p, &q)| f(p, q)).collect(),
        (Lane::Tile(x), Lane::Scalar(q)) => x.iter().map(|&p| f(p, *q)).collect(),
        (Lane::Scalar(p), Lane::Tile(y)) => y.iter().map(|&q| f(*p, q)).collect(),
        (Lane::Scalar(p), Lane::Scalar(q)) => (0..n).map(|_| f(*p, *q)).collect(),
    }
}

fn malformed<T>(message: String) -> Result<T, InterpError> {
    fail(ErrorKind::Malformed, message)
}

/// A unary elementwise operation on `n` elements.
pub(crate) fn unary(op: UnaryOp, codec: &Codec, x: &Lane, n: usize) -> Result<Vec<u32>, InterpError> {
    match codec {
        Codec::Int(c) => {
            let c = *c;
            Ok(match op {
                UnaryOp::Neg => map1(x, n, |a| c.wrap(c.dec(a).wrapping_neg())),
                UnaryOp::Abs => map1(x, n, |a| c.wrap(c.dec(a).wrapping_abs())),
                UnaryOp::Not => {
                    let mask = c.mask();
                    map1(x, n, |a| !a & mask)
                }
                _ => return malformed(format!("`{}` needs a float type, found {}", op.name(), c.dtype)),
            })
        }
        Codec::Float(c) => {
            let sign = c.format.sign_mask();
            let nan = c.nan();
            match op {
                UnaryOp::Neg => return Ok(map1(x, n, |a| if c.is_nan(a) { nan } else { a ^ sign })),
                UnaryOp::Abs => return Ok(map1(x, n, |a| if c.is_nan(a) { nan } else { a & !sign })),
                UnaryOp::Not => return malformed(format!("`not` needs an integer type, found {}", c.dtype)),
                _ => {}
            }
            c.require_fits(&format!("`{}`", op.name()))?;
            let f: fn(f64) -> f64 = match op {
                UnaryOp::Exp => f64::exp,
                UnaryOp::Exp2 => f64::exp2,
                UnaryOp::Log => f64::ln,
                UnaryOp::Log2 => f64::log2,
                UnaryOp::Tanh => f64::tanh,
                UnaryOp::Sqrt => return Ok(map1(x, n, |a| c.sqrt(c.dec(a)))),
                UnaryOp::Rsqrt => return Ok(map1(x, n, |a| numeric::rsqrt_exact(c.format, c.dec(a)))),
                UnaryOp::Recip => return Ok(map1(x, n, |a| c.div(1.0, c.dec(a)))),
                UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Not => {
                    return malformed(format!("`{}` is misplaced", op.name()));
                }
            };
            Ok(map1(x, n, |a| c.enc(f(c.dec(a)))))
        }
    }
}

/// ⌊a / b⌋ for b ≠ 0 (values of at most 32 bits: no overflow).
fn floor_div(a: i64, b: i64) -> i64 {
    let q = a / b;
    if a % b != 0 && ((a < 0) != (b < 0)) { q - 1 } else { q }
}

/// The element index and the instruction's division by zero.
fn division_by_zero(index: usize, n: usize) -> InterpError {
    let at = if n > 1 { format!(" (element {index})") } else { String::new() };
    InterpError::new(ErrorKind::DivisionByZero, format!("integer division by zero{at}"))
}

fn try_map2(
    a: &Lane,
    b: &Lane,
    n: usize,
    mut f: impl FnMut(usize, u32, u32) -> Result<u32, InterpError>,
) -> Result<Vec<u32>, InterpError> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(f(i, a.at(i), b.at(i))?);
    }
    Ok(out)
}

/// A binary elementwise operation on `n` elements of one type.
pub(crate) fn binary(op: BinaryOp, codec: &Codec, a: &Lane, b: &Lane, n: usize) -> Result<Vec<u32>, InterpError> {
    match codec {
        Codec::Int(c) => {
            let c = *c;
            let bits = c.bits;
            Ok(match op {
                BinaryOp::Add => map2(a, b, n, |x, y| c.wrap(c.dec(x).wrapping_add(c.dec(y)))),
                BinaryOp::Sub => map2(a, b, n, |x, y| c.wrap(c.dec(x).wrapping_sub(c.dec(y)))),
                BinaryOp::Mul => map2(a, b, n, |x, y| c.wrap(c.dec(x).wrapping_mul(c.dec(y)))),
                BinaryOp::Div | BinaryOp::Rem | BinaryOp::CeilDiv => try_map2(a, b, n, |i, x, y| {
                    let (x, y) = (c.dec(x), c.dec(y));
                    if y == 0 {
                        return Err(division_by_zero(i, n));
                    }
                    let q = floor_div(x, y);
                    Ok(c.wrap(match op {
                        BinaryOp::Div => q,
                        BinaryOp::Rem => x - y * q,
                        _ => -floor_div(-x, y),
                    }))
                })?,
                BinaryOp::Min => map2(a, b, n, |x, y| if c.dec(y) < c.dec(x) { y } else { x }),
                BinaryOp::Max => map2(a, b, n, |x, y| if c.dec(y) > c.dec(x) { y } else { x }),
                BinaryOp::And => map2(a, b, n, |x, y| x & y),
                BinaryOp::Or => map2(a, b, n, |x, y| x | y),
                BinaryOp::Xor => map2(a, b, n, |x, y| x ^ y),
                // The shift amount is the code read as unsigned: a negative amount is huge.
                BinaryOp::Shl => map2(a, b, n, |x, y| if y >= bits { 0 } else { c.wrap(((x as u64) << y) as i64) }),
                BinaryOp::Shr => map2(a, b, n, |x, y| c.wrap(c.dec(x) >> y.min(63))),
            })
        }
        Codec::Float(c) => {
            match op {
                BinaryOp::Min | BinaryOp::Max => {
                    let want_max = op == BinaryOp::Max;
                    let sign = c.format.sign_mask();
                    let nan = c.nan();
                    return Ok(map2(a, b, n, |x, y| match c.cmp(x, y) {
                        None => nan,
                        Some(Ordering::Less) => {
                            if want_max {
                                y
                            } else {
                                x
                            }
                        }
                        Some(Ordering::Greater) => {
                            if want_max {
                                x
                            } else {
                                y
                            }
                        }
                        // Equal values with different codes are ±0: max is +0, min is −0.
                        Some(Ordering::Equal) => {
                            if (x & sign != 0) == want_max {
                                y
                            } else {
                                x
                            }
                        }
                    }));
                }
                BinaryOp::Rem
                | BinaryOp::CeilDiv
                | BinaryOp::And
                | BinaryOp::Or
                | BinaryOp::Xor
                | BinaryOp::Shl
                | BinaryOp::Shr => {
                    return malformed(format!("`{}` needs an integer type, found {}", op.name(), c.dtype));
                }
                BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div => {}
            }
            c.require_fits(&format!("`{}`", op.name()))?;
            Ok(match op {
                BinaryOp::Add => map2(a, b, n, |x, y| c.add(c.dec(x), c.dec(y))),
                BinaryOp::Sub => map2(a, b, n, |x, y| c.add(c.dec(x), -c.dec(y))),
                // Products of two values of a fitting type are exact f64s (or overflow f64,
                // far beyond the type's range, which rounds the same way).
                BinaryOp::Mul => map2(a, b, n, |x, y| c.enc(c.dec(x) * c.dec(y))),
                _ => map2(a, b, n, |x, y| c.div(c.dec(x), c.dec(y))),
            })
        }
    }
}

/// A comparison on `n` elements; codes of the `u1` results.
pub(crate) fn compare(op: CompareOp, codec: &Codec, a: &Lane, b: &Lane, n: usize) -> Vec<u32> {
    let decide = move |ordering: Option<Ordering>| -> u32 {
        u32::from(match ordering {
            None => op == CompareOp::Ne,
            Some(o) => match op {
                CompareOp::Eq => o == Ordering::Equal,
                CompareOp::Ne => o != Ordering::Equal,
                CompareOp::Lt => o == Ordering::Less,
                CompareOp::Le => o != Ordering::Greater,
                CompareOp::Gt => o == Ordering::Greater,
                CompareOp::Ge => o != Ordering::Less,
            },
        })
    };
    match codec {
        Codec::Int(c) => map2(a, b, n, |x, y| decide(Some(c.dec(x).cmp(&c.dec(y))))),
        Codec::Float(c) => map2(a, b, n, |x, y| decide(c.cmp(x, y))),
    }
}

/// `select` on `n` elements.
/// `fma` on `n` f32 elements (`codec` is f32's): `a · b + c` rounded once (`f32::mul_add` is
/// correctly rounded), a NaN result the canonical NaN.
pub(crate) fn fma_f32(codec: &Codec, a: &Lane, b: &Lane, c: &Lane, n: usize) -> Result<Vec<u32>, InterpError> {
    let Codec::Float(f) = codec else { return malformed("`fma` computes on f32".to_string()) };
    let nan = f.nan();
    Ok((0..n)
        .map(|i| {
            let r = f32::from_bits(a.at(i)).mul_add(f32::from_bits(b.at(i)), f32::from_bits(c.at(i)));
            if r.is_nan() { nan } else { r.to_bits() }
        })
        .collect())
}

pub(crate) fn select(cond: &Lane, on_true: &Lane, on_false: &Lane, n: usize) -> Vec<u32> {
    (0..n).map(|i| if cond.at(i) != 0 { on_true.at(i) } else { on_false.at(i) }).collect()
}

/// The code of a `cast` of one code: the exact value rounded to nearest even and saturated
/// (IEEE targets overflow to ±inf), float → integer NaN → 0.
pub(crate) fn cast_code(from: &Codec, to: &Codec, code: u32) -> Result<u32, InterpError> {
    if from.dtype() == to.dtype() {
        // Every value converts to itself; a NaN, which is no value, to the canonical NaN.
        return Ok(match from {
            Codec::Float(c) if c.is_nan(code) => c.nan(),
            _ => code,
        });
    }
    let exact_enough = match from {
        Codec::Int(_) => true,
        Codec::Float(c) => c.fits,
    };
    if exact_enough {
        let x = from.value(code);
        return Ok(match to {
            Codec::Int(t) => numeric::encode_int(t.dtype, x),
            Codec::Float(t) => t.enc(x),
        });
    }
    let value = from.dtype().decode(code).map_err(|e| InterpError::new(ErrorKind::Malformed, e.to_string()))?;
    let to = to.dtype();
    Ok(to.encode_exact(value, to.default_conversion()))
}
