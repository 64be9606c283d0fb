//! Tests of the CPU interpreter: the fast numeric paths against the exact codecs, every
//! instruction's semantics against references computed independently from the exact codecs,
//! the shared-memory rules and every error kind, and the low-bit matmul against an f64
//! reference.

use std::cmp::Ordering;

use anybit_ir::DType;
use anybit_ir::builder::{BuildError, KernelBuilder};
use anybit_ir::dtype::{FloatFormat, SpecialValues, all_types_up_to};
use anybit_ir::interp::{Arg, Buffer, ErrorKind, InterpError, RunOptions, RunReport, numeric, run_kernel};
use anybit_ir::program::{
    Axis, BinaryOp, CompareOp, GridExpr, GridOp, InstId, Kernel, Op, Operand, ReduceOp, RegisterTensorType,
    SharedTensorType, Type, UnaryOp, ValueId,
};
use anybit_layouts::{RegisterLayout, SharedLayout};

use super::common::{Rng, dtype};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn rl(expr: &str) -> RegisterLayout {
    expr.parse().unwrap_or_else(|e| panic!("layout `{expr}`: {e}"))
}

fn sl(expr: &str) -> SharedLayout {
    expr.parse().unwrap_or_else(|e| panic!("shared layout `{expr}`: {e}"))
}

fn reg(d: DType, shape: &[usize], layout: &str) -> RegisterTensorType {
    RegisterTensorType::new(d, shape.to_vec(), Some(rl(layout)))
}

fn i32t() -> DType {
    dtype("i32")
}

fn lit(v: i64) -> Operand {
    Operand::from(v)
}

fn run(kernel: &Kernel, args: &mut [Arg]) -> RunReport {
    run_kernel(kernel, args, &RunOptions::default()).unwrap_or_else(|e| panic!("run of `{}` failed: {e}", kernel.name))
}

fn run_err(kernel: &Kernel, args: &mut [Arg]) -> InterpError {
    match run_kernel(kernel, args, &RunOptions::default()) {
        Ok(_) => panic!("the run of `{}` should fail", kernel.name),
        Err(e) => e,
    }
}

fn buf(d: DType, codes: &[u32]) -> Arg {
    Arg::Buffer(Buffer::from_codes(d, codes).unwrap())
}

fn zeros(d: DType, n: usize) -> Arg {
    Arg::Buffer(Buffer::zeros(d, n).unwrap())
}

fn codes_of(arg: &Arg) -> Vec<u32> {
    arg.buffer().expect("a buffer").codes()
}

/// The mnemonic and kind of an error, checked, and its message returned.
fn expect_error(e: &InterpError, kind: ErrorKind, mnemonic: Option<&str>) -> String {
    assert_eq!(e.kind, kind, "unexpected error: {e}");
    assert_eq!(e.mnemonic, mnemonic, "error names the wrong instruction: {e}");
    if mnemonic.is_some() {
        assert!(e.inst.is_some(), "{e}");
        assert!(e.to_string().contains(&format!("`{}`", mnemonic.unwrap_or(""))), "{e}");
    }
    e.to_string()
}

/// The canonical code of an f64 value in `d` (NaN: the positive canonical NaN).
/// The code of `x` in `d`, with every NaN the canonical one (sign clear). Built from the
/// format, not from a host NaN: the optimizer may give host NaNs either sign.
fn canon(d: DType, x: f64) -> u32 {
    if x.is_nan() { d.float_format().and_then(|f| f.nan_code()).unwrap_or(0) } else { d.encode(x) }
}

fn value(d: DType, code: u32) -> f64 {
    d.decode_f64(code).unwrap()
}

/// `out = f(x0, x1, …)` on 1-D tiles of `n` elements (a multiple of 32) in one warp.
fn map_kernel(
    inputs: &[DType],
    n: usize,
    f: impl FnOnce(&mut KernelBuilder, &[ValueId]) -> Result<ValueId, BuildError>,
) -> Kernel {
    let mut k = KernelBuilder::new("map", 1);
    let layout = format!("spatial(32).local({})", n / 32);
    let ptrs: Vec<ValueId> =
        inputs.iter().enumerate().map(|(i, &d)| k.pointer_param(&format!("x{i}"), d).unwrap()).collect();
    let mut tiles = vec![];
    for (&p, &d) in ptrs.iter().zip(inputs) {
        let view = k.global_view(p, &[lit(n as i64)], None).unwrap();
        tiles.push(k.load_global(view, &[lit(0)], reg(d, &[n], &layout)).unwrap());
    }
    let y = f(&mut k, &tiles).unwrap();
    let out_dtype = k.type_of(y).unwrap().dtype();
    let out = k.pointer_param("out", out_dtype).unwrap();
    let view = k.global_view(out, &[lit(n as i64)], None).unwrap();
    k.store_global(y, view, &[lit(0)]).unwrap();
    k.finish()
}

/// Runs a map kernel on input codes (padded to a multiple of 32) and returns the output codes.
fn run_map(
    inputs: &[(DType, Vec<u32>)],
    out: DType,
    f: impl FnOnce(&mut KernelBuilder, &[ValueId]) -> Result<ValueId, BuildError>,
) -> Vec<u32> {
    let len = inputs[0].1.len();
    let n = len.div_ceil(32).max(1) * 32;
    let types: Vec<DType> = inputs.iter().map(|(d, _)| *d).collect();
    let kernel = map_kernel(&types, n, f);
    let mut args: Vec<Arg> = inputs
        .iter()
        .map(|(d, c)| {
            let mut c = c.clone();
            c.resize(n, c[0]);
            buf(*d, &c)
        })
        .collect();
    args.push(zeros(out, n));
    run(&kernel, &mut args);
    let mut result = codes_of(&args[args.len() - 1]);
    result.truncate(len);
    result
}

/// Interesting codes of a float type: zeros, ±1, extremes, subnormals, inf and NaN codes.
fn special_codes(d: DType) -> Vec<u32> {
    let f = d.float_format().unwrap();
    let sign = f.sign_mask();
    let mut v = vec![0, sign, 1, sign | 1, f.max_code(), sign | f.max_code(), f.max_code() - 1];
    v.extend(f.infinity_code().into_iter().flat_map(|c| [c, c | sign]));
    v.extend(f.nan_code().into_iter().flat_map(|c| [c, c | sign, c | 1]));
    v.push(d.encode(1.0));
    v.push(d.encode(-1.0));
    v.push(d.encode(0.5));
    v.retain(|&c| d.decode(c).is_ok());
    v
}

/// Codes of `d`: all of them for up to 10 bits, else the special ones and `count` random ones.
fn some_codes(d: DType, count: usize, rng: &mut Rng) -> Vec<u32> {
    if d.bits() <= 10 {
        return (0..1u32 << d.bits()).collect();
    }
    let mut v = if d.is_float() { special_codes(d) } else { vec![] };
    let mask = if d.bits() == 32 { u32::MAX } else { (1u32 << d.bits()) - 1 };
    if d.is_integer() {
        let (min, max) = (d.encode(-1e300), d.encode(1e300));
        v.extend([0, 1, mask, min, max, min.wrapping_add(1) & mask, max.wrapping_sub(1) & mask, 2, 3]);
    }
    v.extend((0..count).map(|_| (rng.next_u64() as u32) & mask));
    v
}

// ---------------------------------------------------------------------------------------------
// The numeric fast paths against the exact codecs
// ---------------------------------------------------------------------------------------------

/// f64 values to convert: every value of `d`, midpoints between neighbours and a hair on each
/// side, values beyond the range, and random values across the exponent range.
fn probe_values(d: DType, rng: &mut Rng) -> Vec<f64> {
    let f = d.float_format().unwrap();
    let positive: Vec<u32> = if d.bits() <= 16 {
        (0..f.sign_mask()).collect()
    } else {
        (0..20_000).map(|_| (rng.next_u64() as u32) & (f.sign_mask() - 1)).chain([0, 1, f.max_code()]).collect()
    };
    let mut out = vec![0.0, -0.0, f64::INFINITY, f64::NEG_INFINITY, f64::MAX, f64::MIN_POSITIVE, 5e-324, 1e-300];
    for &c in &positive {
        let Some(v) = numeric::decode_float(f, c) else { continue };
        if !v.is_finite() {
            continue;
        }
        let next = numeric::decode_float(f, c + 1).filter(|x| x.is_finite()).unwrap_or(v * 2.0 + 1.0);
        let mid = (v + next) / 2.0;
        for x in [v, mid, mid.next_up(), mid.next_down(), next.next_down()] {
            out.push(x);
            out.push(-x);
        }
    }
    for _ in 0..4000 {
        let exponent = (rng.below(600) as i32) - 300;
        out.push((rng.unit() * 2.0 - 1.0) * 2f64.powi(exponent));
    }
    out
}

#[test]
fn fast_encoders_match_the_codec() {
    let mut rng = Rng::new(1);
    type Encoder = fn(f64) -> u32;
    let cases: [(DType, Encoder); 3] =
        [(DType::F16, numeric::encode_f16), (DType::BF16, numeric::encode_bf16), (DType::F32, numeric::encode_f32)];
    for (d, encode) in cases {
        let f = d.float_format().unwrap();
        for x in probe_values(d, &mut rng) {
            assert_eq!(encode(x), d.encode(x), "{d} {x:e}");
            assert_eq!(numeric::encode_float(f, x), d.encode(x), "generic {d} {x:e}");
        }
        assert_eq!(encode(f64::NAN), f.nan_code().unwrap());
        assert_eq!(encode(-f64::NAN), f.nan_code().unwrap(), "NaN results are canonical");
    }
}

#[test]
fn generic_encoder_and_decoder_match_the_codec_for_every_small_type() {
    let mut rng = Rng::new(2);
    let mut types: Vec<DType> = all_types_up_to(9).into_iter().filter(|d| d.is_float()).collect();
    types.extend(
        ["f16", "bf16", "f16e6m9", "f16e8m7_finite", "f12e6m5", "f16e10m5", "f16e10m5_nan", "f14e9m4"].map(dtype),
    );
    for d in types {
        let f = d.float_format().unwrap();
        for code in 0..1u32 << d.bits() {
            let exact = d.decode_f64(code).unwrap();
            let fast = numeric::decode_float(f, code).unwrap();
            assert!(exact.to_bits() == fast.to_bits() || (exact.is_nan() && fast.is_nan()), "{d} code {code:#x}");
        }
        let values = if d.bits() <= 9 {
            probe_values(d, &mut rng)
        } else {
            probe_values(d, &mut rng).into_iter().step_by(7).collect()
        };
        for x in values {
            assert_eq!(numeric::encode_float(f, x), d.encode(x), "{d} {x:e}");
        }
        assert_eq!(numeric::encode_float(f, f64::NAN), numeric::canonical_nan(f));
        assert_eq!(numeric::canonical_nan(f), d.encode(f64::NAN));
    }
    // Formats whose values exceed f64 decode only where exact.
    let wide = dtype("f16e11m4");
    let f = wide.float_format().unwrap();
    assert_eq!(numeric::decode_float(f, wide.encode(1.5)), Some(1.5));
    assert_eq!(numeric::decode_float(f, f.max_code()), None);
    for x in [1.0, -3.5e300, 1e-310, 7.0e-320] {
        assert_eq!(numeric::encode_float(f, x), wide.encode(x), "{x:e}");
    }
}

#[test]
fn integer_encoder_matches_the_codec() {
    let mut rng = Rng::new(3);
    for d in ["u1", "u4", "i2", "i4", "u8", "i8", "i16", "u16", "i31", "i32", "u32"].map(dtype) {
        let mut values =
            vec![0.5, 1.5, 2.5, -0.5, -1.5, -2.5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300, -1e300];
        values.extend([2147483647.5, -2147483648.5, 4294967295.5, 4294967296.0, -1.0e-300]);
        values.extend((0..3000).map(|_| (rng.unit() - 0.5) * 2f64.powi(rng.below(40) as i32)));
        for x in values {
            assert_eq!(numeric::encode_int(d, x), d.encode(x), "{d} {x:e}");
        }
    }
}

#[test]
fn round_float_agrees_with_exact_encoding() {
    // (significand, exponent, sticky): "a little more" must round like any value strictly
    // between significand and significand + 1 units.
    let f = FloatFormat::F16;
    assert_eq!(numeric::round_float(f, false, 4097, -12, false), 0x3c00); // 1 + 2^-12: below half
    assert_eq!(numeric::round_float(f, false, 2049, -11, false), 0x3c00); // 1 + 2^-11: a tie, to even
    assert_eq!(numeric::round_float(f, false, 2049, -11, true), 0x3c01); // a hair above the tie
    assert_eq!(numeric::round_float(f, false, 2051, -11, false), 0x3c02); // 1 + 3·2^-11: a tie, to even
    assert_eq!(numeric::round_float(f, true, 1, -25, true), 0x8001); // above half the least subnormal
    assert_eq!(numeric::round_float(f, true, 1, -25, false), 0x8000); // exactly half: to even (zero)
    assert_eq!(numeric::round_float(f, false, 65520, 0, false), 0x7c00); // overflow rounds to inf
    let e4m3 = dtype("f8e4m3").float_format().unwrap();
    assert_eq!(numeric::round_float(e4m3, false, 1, 100, false), 0x7e, "saturates");
    assert_eq!(numeric::round_float(f, false, u128::MAX, -200, true), DType::F16.encode(2f64.powi(-72)));
}

// ---------------------------------------------------------------------------------------------
// Elementwise arithmetic
// ---------------------------------------------------------------------------------------------

fn floor_div(a: i128, b: i128) -> i128 {
    if b > 0 { a.div_euclid(b) } else { (-a).div_euclid(-b) }
}

/// The reference of an integer binary operation on codes, from the language reference.
fn int_binary_ref(op: BinaryOp, d: DType, x: u32, y: u32) -> u32 {
    let bits = d.bits();
    let (a, b) = (value(d, x) as i128, value(d, y) as i128);
    let modulus = 1i128 << bits;
    let wrap = |v: i128| v.rem_euclid(modulus) as u32;
    match op {
        BinaryOp::Add => wrap(a + b),
        BinaryOp::Sub => wrap(a - b),
        BinaryOp::Mul => wrap(a * b),
        BinaryOp::Div => wrap(floor_div(a, b)),
        BinaryOp::Rem => wrap(a - b * floor_div(a, b)),
        BinaryOp::CeilDiv => wrap(-floor_div(-a, b)),
        BinaryOp::Min => wrap(a.min(b)),
        BinaryOp::Max => wrap(a.max(b)),
        BinaryOp::And => x & y,
        BinaryOp::Or => x | y,
        BinaryOp::Xor => x ^ y,
        BinaryOp::Shl => {
            if y >= bits {
                0
            } else {
                wrap(a << y)
            }
        }
        BinaryOp::Shr => {
            if y >= bits {
                if a < 0 { wrap(-1) } else { 0 }
            } else {
                wrap(a >> y)
            }
        }
    }
}

#[test]
fn integer_binary_operations_wrap_floor_and_shift_as_specified() {
    let mut rng = Rng::new(4);
    for d in ["u1", "u3", "i3", "u8", "i8", "i16", "u32", "i32"].map(dtype) {
        let pairs: Vec<(u32, u32)> = if d.bits() <= 8 {
            let all = 1u32 << d.bits();
            (0..all * all).map(|i| (i / all, i % all)).collect()
        } else {
            let codes = some_codes(d, 600, &mut rng);
            (0..4000)
                .map(|_| (codes[rng.below(codes.len() as u64) as usize], codes[rng.below(codes.len() as u64) as usize]))
                .collect()
        };
        for &op in BinaryOp::ALL {
            let divides = matches!(op, BinaryOp::Div | BinaryOp::Rem | BinaryOp::CeilDiv);
            let pairs: Vec<(u32, u32)> = pairs.iter().copied().filter(|&(_, y)| !divides || y != 0).collect();
            if pairs.is_empty() {
                continue;
            }
            let xs: Vec<u32> = pairs.iter().map(|p| p.0).collect();
            let ys: Vec<u32> = pairs.iter().map(|p| p.1).collect();
            let got = run_map(&[(d, xs), (d, ys)], d, |k, t| k.binary(op, t[0], t[1]));
            for (i, &(x, y)) in pairs.iter().enumerate() {
                assert_eq!(got[i], int_binary_ref(op, d, x, y), "{d} {op} {} {}", value(d, x), value(d, y));
            }
        }
    }
    // Spot checks of the rules themselves.
    let i8 = dtype("i8");
    let enc = |v: i64| i8.encode(v as f64);
    assert_eq!(int_binary_ref(BinaryOp::Div, i8, enc(-7), enc(2)), enc(-4), "div floors");
    assert_eq!(int_binary_ref(BinaryOp::Rem, i8, enc(-7), enc(2)), enc(1), "rem has the divisor's sign");
    assert_eq!(int_binary_ref(BinaryOp::Rem, i8, enc(7), enc(-2)), enc(-1));
    assert_eq!(int_binary_ref(BinaryOp::CeilDiv, i8, enc(7), enc(2)), enc(4));
    assert_eq!(int_binary_ref(BinaryOp::Div, i8, enc(-128), enc(-1)), enc(-128), "wraps");
    assert_eq!(int_binary_ref(BinaryOp::Shr, i8, enc(-128), enc(9)), enc(-1));
}

#[test]
fn integer_unary_operations() {
    for d in ["u4", "i4", "u8", "i8"].map(dtype) {
        let xs: Vec<u32> = (0..1u32 << d.bits()).collect();
        let bits = d.bits();
        let modulus = 1i64 << bits;
        for op in [UnaryOp::Neg, UnaryOp::Abs, UnaryOp::Not] {
            let got = run_map(&[(d, xs.clone())], d, |k, t| k.unary(op, t[0]));
            for &x in &xs {
                let a = value(d, x) as i64;
                let want = match op {
                    UnaryOp::Neg => (-a).rem_euclid(modulus) as u32,
                    UnaryOp::Abs => a.abs().rem_euclid(modulus) as u32,
                    _ => !x & (modulus as u32 - 1),
                };
                assert_eq!(got[x as usize], want, "{op} {d} {a}");
            }
        }
    }
}

/// The reference of a float binary operation: f64 arithmetic rounded once is correctly rounded
/// for these types (≤ 24 significant bits, exponents within f64's).
fn float_binary_ref(op: BinaryOp, d: DType, x: u32, y: u32) -> u32 {
    let (a, b) = (value(d, x), value(d, y));
    let sign = d.float_format().unwrap().sign_mask();
    match op {
        BinaryOp::Add => canon(d, a + b),
        BinaryOp::Sub => canon(d, a - b),
        BinaryOp::Mul => canon(d, a * b),
        BinaryOp::Div => canon(d, a / b),
        BinaryOp::Min | BinaryOp::Max => {
            let max = op == BinaryOp::Max;
            match a.partial_cmp(&b) {
                None => canon(d, f64::NAN),
                Some(Ordering::Less) => {
                    if max {
                        y
                    } else {
                        x
                    }
                }
                Some(Ordering::Greater) => {
                    if max {
                        x
                    } else {
                        y
                    }
                }
                Some(Ordering::Equal) => {
                    // ±0: max is +0, min is −0.
                    let negative_zero = if x & sign != 0 { x } else { y };
                    let positive_zero = if x & sign != 0 { y } else { x };
                    if max { positive_zero } else { negative_zero }
                }
            }
        }
        _ => unreachable!("not a float operation"),
    }
}

#[test]
fn float_binary_operations_round_once() {
    let mut rng = Rng::new(5);
    for d in ["f4e2m1", "f6e3m2", "f6e2m3", "f8e4m3", "f8e5m2", "f16", "bf16", "f32", "f10e4m5_ieee"].map(dtype) {
        let pairs: Vec<(u32, u32)> = if d.bits() <= 8 {
            let all = 1u32 << d.bits();
            (0..all * all).map(|i| (i / all, i % all)).collect()
        } else {
            let codes = some_codes(d, 3000, &mut rng);
            let specials = special_codes(d);
            let mut p: Vec<(u32, u32)> = specials.iter().flat_map(|&a| specials.iter().map(move |&b| (a, b))).collect();
            p.extend((0..6000).map(|_| {
                (codes[rng.below(codes.len() as u64) as usize], codes[rng.below(codes.len() as u64) as usize])
            }));
            p
        };
        let xs: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        let ys: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Min, BinaryOp::Max] {
            let got = run_map(&[(d, xs.clone()), (d, ys.clone())], d, |k, t| k.binary(op, t[0], t[1]));
            for (i, &(x, y)) in pairs.iter().enumerate() {
                assert_eq!(got[i], float_binary_ref(op, d, x, y), "{d} {op} {:e} {:e}", value(d, x), value(d, y));
            }
        }
    }
    // The f16 rounding rules themselves: ties to even, overflow to inf, a finite-only type
    // saturates, subnormal results.
    let f16 = DType::F16;
    let e = |v: f64| f16.encode(v);
    assert_eq!(float_binary_ref(BinaryOp::Add, f16, e(1.0), e(2f64.powi(-11))), e(1.0));
    assert_eq!(
        float_binary_ref(BinaryOp::Add, f16, e(1.0 + 2f64.powi(-10)), e(2f64.powi(-11))),
        e(1.0 + 2f64.powi(-9))
    );
    assert_eq!(float_binary_ref(BinaryOp::Mul, f16, e(256.0), e(256.0)), 0x7c00);
    let got = run_map(&[(f16, vec![e(60000.0), e(2f64.powi(-14))]), (f16, vec![e(10000.0), e(0.25)])], f16, |k, t| {
        k.binary(BinaryOp::Add, t[0], t[1])
    });
    assert_eq!(got, vec![0x7c00, e(2f64.powi(-14) + 0.25)]);
    let e2m1 = dtype("f4e2m1");
    let got = run_map(&[(e2m1, vec![e2m1.encode(6.0)]), (e2m1, vec![e2m1.encode(4.0)])], e2m1, |k, t| {
        k.binary(BinaryOp::Mul, t[0], t[1])
    });
    assert_eq!(got, vec![e2m1.encode(6.0)], "finite-only types saturate");
}

#[test]
fn float_unary_operations() {
    let mut rng = Rng::new(6);
    for d in ["f16", "bf16", "f32", "f8e4m3", "f6e3m2"].map(dtype) {
        let xs = some_codes(d, 3000, &mut rng);
        let f = d.float_format().unwrap();
        for op in UnaryOp::ALL.iter().copied().filter(|&op| op != UnaryOp::Not) {
            let got = run_map(&[(d, xs.clone())], d, |k, t| k.unary(op, t[0]));
            for (i, &x) in xs.iter().enumerate() {
                let a = value(d, x);
                let want = match op {
                    UnaryOp::Neg if a.is_nan() => canon(d, a),
                    UnaryOp::Neg => x ^ f.sign_mask(),
                    UnaryOp::Abs if a.is_nan() => canon(d, a),
                    UnaryOp::Abs => x & !f.sign_mask(),
                    UnaryOp::Exp => canon(d, a.exp()),
                    UnaryOp::Exp2 => canon(d, a.exp2()),
                    UnaryOp::Log => canon(d, a.ln()),
                    UnaryOp::Log2 => canon(d, a.log2()),
                    UnaryOp::Sqrt => canon(d, a.sqrt()),
                    UnaryOp::Recip => canon(d, 1.0 / a),
                    UnaryOp::Tanh => canon(d, a.tanh()),
                    UnaryOp::Rsqrt => {
                        // Correctly rounded (checked exactly in the unit tests); here: within
                        // one code of the f64 estimate, and exact where the root is.
                        let estimate = canon(d, 1.0 / a.sqrt());
                        assert!(got[i].abs_diff(estimate) <= 1, "rsqrt {a:e} in {d}");
                        got[i]
                    }
                    UnaryOp::Not => unreachable!(),
                };
                assert_eq!(got[i], want, "{op} {a:e} in {d}");
            }
        }
    }
    let f16 = DType::F16;
    let xs: Vec<u32> = [4.0, 0.25, 16.0, 0.0, -0.0, -4.0, f64::INFINITY].map(|v| f16.encode(v)).to_vec();
    let got = run_map(&[(f16, xs)], f16, |k, t| k.unary(UnaryOp::Rsqrt, t[0]));
    let want: Vec<u32> =
        [0.5, 2.0, 0.25, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 0.0].map(|v| canon(f16, v)).to_vec();
    assert_eq!(got, want);
    let got = run_map(&[(f16, vec![f16.encode(0.0)])], f16, |k, t| k.unary(UnaryOp::Neg, t[0]));
    assert_eq!(got, vec![0x8000], "neg 0 is -0");
}

#[test]
fn comparisons_and_select() {
    let mut rng = Rng::new(7);
    for d in ["i8", "u8", "f8e4m3", "f16", "f32", "i32"].map(dtype) {
        let codes = some_codes(d, 400, &mut rng);
        let mut pairs: Vec<(u32, u32)> = (0..3000)
            .map(|_| (codes[rng.below(codes.len() as u64) as usize], codes[rng.below(codes.len() as u64) as usize]))
            .collect();
        if d.is_float() {
            let f = d.float_format().unwrap();
            pairs.push((0, f.sign_mask()));
        }
        let xs: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        let ys: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        for &op in CompareOp::ALL {
            let got = run_map(&[(d, xs.clone()), (d, ys.clone())], dtype("u1"), |k, t| k.compare(op, t[0], t[1]));
            for (i, &(x, y)) in pairs.iter().enumerate() {
                let o = value(d, x).partial_cmp(&value(d, y));
                let want = match (op, o) {
                    (CompareOp::Ne, None) => true,
                    (_, None) => false,
                    (CompareOp::Eq, Some(o)) => o.is_eq(),
                    (CompareOp::Ne, Some(o)) => o.is_ne(),
                    (CompareOp::Lt, Some(o)) => o.is_lt(),
                    (CompareOp::Le, Some(o)) => o.is_le(),
                    (CompareOp::Gt, Some(o)) => o.is_gt(),
                    (CompareOp::Ge, Some(o)) => o.is_ge(),
                };
                assert_eq!(got[i], u32::from(want), "{d} {op} {x:#x} {y:#x}");
            }
        }
        // select(x < y, x, y) is the minimum's code (or y when unordered).
        let got = run_map(&[(d, xs.clone()), (d, ys.clone())], d, |k, t| {
            let m = k.compare(CompareOp::Lt, t[0], t[1])?;
            k.select(m, t[0], t[1])
        });
        for (i, &(x, y)) in pairs.iter().enumerate() {
            let want = if value(d, x) < value(d, y) { x } else { y };
            assert_eq!(got[i], want);
        }
    }
}

/// `lookup`: every code of u1 … u8 decodes to its table entry, converted to the result type
/// as the codec rounds a value (exhaustive over the codes, random tables); a scalar code too.
#[test]
fn lookup_decodes_every_code_through_its_table() {
    use anybit_ir::program::Literal;
    let mut rng = Rng::new(19);
    for bits in 1..=8 {
        let codes_type = DType::uint(bits).unwrap();
        for to in ["f16", "bf16", "f32", "f8e4m3", "i8", "u3"].map(dtype) {
            let table: Vec<Literal> = (0..1u32 << bits)
                .map(|_| match to.is_float() {
                    true => Literal::Float(rng.uniform(-300.0, 300.0)),
                    false => Literal::Int(to.min().to_f64().unwrap() as i64 + rng.below(to.num_codes()) as i64),
                })
                .collect();
            let codes: Vec<u32> = (0..1u32 << bits).collect();
            let got = run_map(&[(codes_type, codes.clone())], to, |k, t| k.lookup(t[0], table.clone(), to));
            for (&code, &entry) in codes.iter().zip(&table) {
                let want = match entry {
                    Literal::Float(v) => to.encode(v),
                    Literal::Int(v) => to.encode(v as f64),
                };
                assert_eq!(got[code as usize], want, "u{bits} code {code} → {to}: entry {entry}");
            }
        }
    }
    let src = "kernel k(out: ptr f16[32]) grid(1) warps(1) {
    %c = const 2 : u2
    %v = lookup %c [0.5, 1.5, -2.5, 3.5] : f16
    %t = fill %v : f16[32] layout spatial(32)
    %g = global_view %out [32] strides [1]
    store_global %t, %g [0]
}
";
    let kernel = anybit_ir::text::parse_module(src).expect("parse").kernels.remove(0);
    let mut args = [zeros(dtype("f16"), 32)];
    run(&kernel, &mut args);
    assert_eq!(codes_of(&args[0]), vec![dtype("f16").encode(-2.5); 32]);
}

#[test]
fn scalar_arithmetic_and_literals() {
    // Scalars: parameters, constants, block indices, literals typed by the other operand.
    let f16 = DType::F16;
    let mut k = KernelBuilder::new("scalars", 1);
    let a = k.scalar_param("a", f16).unwrap();
    let n = k.scalar_param("n", dtype("i8")).unwrap();
    let out = k.pointer_param("out", f16).unwrap();
    let iout = k.pointer_param("iout", dtype("i8")).unwrap();
    k.set_grid(vec![GridExpr::Const(3)]);
    let b = k.block_index(Axis::X).unwrap();
    let b8 = k.cast(b, dtype("i8")).unwrap();
    let s = k.mul(a, 3.0).unwrap(); // literal typed f16
    let s = k.add(s, 0.0009765625).unwrap();
    let bf = k.cast(b, f16).unwrap();
    let s = k.add(s, bf).unwrap();
    let m = k.binary(BinaryOp::Shl, n, 2).unwrap();
    let m = k.add(m, b8).unwrap();
    let c = k.constant(-5, dtype("i8")).unwrap();
    let m = k.binary(BinaryOp::Rem, m, c).unwrap();
    let view = k.global_view(out, &[lit(96)], None).unwrap();
    let start = k.mul(b, 32).unwrap();
    let tile = k.fill(s, reg(f16, &[32], "spatial(32)")).unwrap();
    k.store_global(tile, view, &[start.into()]).unwrap();
    let iview = k.global_view(iout, &[lit(96)], None).unwrap();
    let itile = k.fill(m, reg(dtype("i8"), &[32], "spatial(32)")).unwrap();
    k.store_global(itile, iview, &[start.into()]).unwrap();
    let kernel = k.finish();
    let mut args = vec![Arg::Float(1.5), Arg::Int(37), zeros(f16, 96), zeros(dtype("i8"), 96)];
    let report = run(&kernel, &mut args);
    assert_eq!(report.blocks, 3);
    let got = codes_of(&args[2]);
    for block in 0..3 {
        let want = f16.encode(4.5 + 0.0009765625 + block as f64);
        assert!(got[block * 32..block * 32 + 32].iter().all(|&c| c == want), "block {block}");
    }
    // 37 << 2 = 148 wraps to -108 in i8; plus the block index; rem -5 takes the divisor's sign:
    // -108 rem -5 = -3, -107 rem -5 = -2, -106 rem -5 = -1.
    let got = codes_of(&args[3]);
    for (block, want) in [-3.0, -2.0, -1.0].into_iter().enumerate() {
        assert!(got[block * 32..block * 32 + 32].iter().all(|&c| c == dtype("i8").encode(want)), "block {block}");
    }
}

#[test]
fn scalar_and_mixed_operands_agree_with_the_reference() {
    // For scalars a, b and a tile x: op(a, b), op(x, b) and op(a, x), each stored as a tile.
    let mut rng = Rng::new(18);
    for d in ["i16", "u8", "f16", "f32"].map(dtype) {
        let ops: Vec<BinaryOp> = if d.is_float() {
            vec![BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Min, BinaryOp::Max]
        } else {
            BinaryOp::ALL.to_vec()
        };
        for op in ops {
            let mut k = KernelBuilder::new("mixed", 1);
            let a = k.scalar_param("a", d).unwrap();
            let b = k.scalar_param("b", d).unwrap();
            let x = k.pointer_param("x", d).unwrap();
            let y = k.pointer_param("y", d).unwrap();
            let layout = reg(d, &[32], "spatial(32)");
            let xv = k.global_view(x, &[lit(32)], None).unwrap();
            let yv = k.global_view(y, &[lit(96)], None).unwrap();
            let xt = k.load_global(xv, &[lit(0)], layout.clone()).unwrap();
            let s = k.binary(op, a, b).unwrap();
            let st = k.fill(s, layout).unwrap();
            let m1 = k.binary(op, xt, b).unwrap();
            let m2 = k.binary(op, a, xt).unwrap();
            for (i, t) in [st, m1, m2].into_iter().enumerate() {
                k.store_global(t, yv, &[lit(32 * i as i64)]).unwrap();
            }
            let kernel = k.finish();
            let pick = |rng: &mut Rng| loop {
                let codes = some_codes(d, 64, rng);
                let c = codes[rng.below(codes.len() as u64) as usize];
                if !d.is_integer() || value(d, c) != 0.0 {
                    break c;
                }
            };
            let (ca, cb) = (pick(&mut rng), pick(&mut rng));
            let xs: Vec<u32> = (0..32).map(|_| pick(&mut rng)).collect();
            let arg = |c: u32| if d.is_float() { Arg::Float(value(d, c)) } else { Arg::Int(value(d, c) as i64) };
            let mut args = vec![arg(ca), arg(cb), buf(d, &xs), zeros(d, 96)];
            run(&kernel, &mut args);
            let got = codes_of(&args[3]);
            let reference =
                |x: u32, y: u32| if d.is_float() { float_binary_ref(op, d, x, y) } else { int_binary_ref(op, d, x, y) };
            for i in 0..32 {
                assert_eq!(got[i], reference(ca, cb), "{d} {op} scalars");
                assert_eq!(got[32 + i], reference(xs[i], cb), "{d} {op} tile, scalar");
                assert_eq!(got[64 + i], reference(ca, xs[i]), "{d} {op} scalar, tile");
            }
        }
    }
}

#[test]
fn buffers_convert_values_and_codes() {
    let f16 = DType::F16;
    let b = Buffer::from_f64(f16, &[1.0, 0.1, 1e6, -0.0, f64::NAN]).unwrap();
    assert_eq!(b.codes(), vec![0x3c00, f16.encode(0.1), 0x7c00, 0x8000, 0x7e00]);
    let values = b.to_f64().unwrap();
    assert_eq!(&values[..4], &[1.0, value(f16, f16.encode(0.1)), f64::INFINITY, -0.0]);
    assert!(values[4].is_nan());
    let u3 = dtype("u3");
    let mut b = Buffer::from_codes(u3, &[1, 2, 3, 4, 5, 6]).unwrap();
    assert_eq!(b.bytes(), &[0b1101_0001, 0b0101_1000, 0b0000_0011]);
    b.set(5, 7).unwrap();
    assert_eq!(b.get(5), Ok(7));
    assert!(b.set(5, 8).is_err(), "codes must fit the width");
    assert!(Buffer::from_codes(u3, &[9]).is_err());
    let wide = dtype("f16e11m4");
    let b = Buffer::from_codes(wide, &[wide.float_format().unwrap().max_code()]).unwrap();
    assert!(b.to_f64().is_err(), "values beyond f64");
    assert_eq!(Buffer::zeros(f16, 3).unwrap().len(), 3);
}

// ---------------------------------------------------------------------------------------------
// Casts
// ---------------------------------------------------------------------------------------------

#[test]
fn casts_round_to_nearest_even_and_saturate() {
    let mut rng = Rng::new(8);
    let types = [
        "u1", "u4", "i4", "u8", "i8", "i16", "u16", "i32", "u32", "f4e2m1", "f6e3m2", "f8e4m3", "f8e5m2", "f16",
        "bf16", "f32", "f16e11m4",
    ]
    .map(dtype);
    for from in types {
        let codes = some_codes(from, 1500, &mut rng);
        for to in types {
            let got = run_map(&[(from, codes.clone())], to, |k, t| k.cast(t[0], to));
            for (i, &c) in codes.iter().enumerate() {
                let want = to.encode_exact(from.decode(c).unwrap(), to.default_conversion());
                assert_eq!(got[i], want, "cast {from} {c:#x} → {to}");
            }
        }
    }
    // The rules: ties to even, saturation, IEEE overflow, NaN → 0 for integers.
    let f32 = DType::F32;
    let cases: [(f64, &str, f64); 8] = [
        (2.5, "i8", 2.0),
        (3.5, "i8", 4.0),
        (-300.0, "i8", -128.0),
        (1e10, "u16", 65535.0),
        (f64::NAN, "i32", 0.0),
        (70000.0, "f16", f64::INFINITY),
        (1000.0, "f8e4m3", 448.0),
        (-7.0, "f4e2m1", -6.0),
    ];
    for (x, to, want) in cases {
        let to = dtype(to);
        let got = run_map(&[(f32, vec![f32.encode(x)])], to, |k, t| k.cast(t[0], to));
        assert_eq!(got, vec![to.encode(want)], "cast {x} → {to}");
    }
}

#[test]
fn arithmetic_on_types_beyond_f64_is_refused_but_moving_them_works() {
    let wide = dtype("f16e11m4");
    let codes = vec![wide.encode(1.5), wide.float_format().unwrap().max_code(), 3];
    // max and select work on exact values.
    let got = run_map(&[(wide, codes.clone()), (wide, vec![wide.encode(2.0); 3])], wide, |k, t| {
        k.binary(BinaryOp::Max, t[0], t[1])
    });
    assert_eq!(got, vec![wide.encode(2.0), codes[1], wide.encode(2.0)]);
    let kernel = map_kernel(&[wide, wide], 32, |k, t| k.add(t[0], t[1]));
    let mut args = vec![buf(wide, &[0; 32]), buf(wide, &[0; 32]), zeros(wide, 32)];
    let e = run_err(&kernel, &mut args);
    expect_error(&e, ErrorKind::UnsupportedType, Some("add"));
}

// ---------------------------------------------------------------------------------------------
// view, broadcast, reduce, iota, dot
// ---------------------------------------------------------------------------------------------

/// Loads `src` tile, views it, stores the result.
fn view_kernel(from: RegisterTensorType, to: RegisterTensorType) -> Kernel {
    let warps = (from.layout.as_ref().unwrap().num_threads() / 32) as u32;
    let mut k = KernelBuilder::new("view", warps);
    let x = k.pointer_param("x", from.dtype).unwrap();
    let y = k.pointer_param("y", to.dtype).unwrap();
    let (fs, ts) = (from.shape.clone(), to.shape.clone());
    let xv = k.global_view(x, &[lit(fs[0] as i64), lit(fs[1] as i64)], None).unwrap();
    let yv = k.global_view(y, &[lit(ts[0] as i64), lit(ts[1] as i64)], None).unwrap();
    let t = k.load_global(xv, &[lit(0), lit(0)], from).unwrap();
    let v = k.view(t, to).unwrap();
    k.store_global(v, yv, &[lit(0), lit(0)]).unwrap();
    k.finish()
}

#[test]
fn view_regroups_each_threads_bits() {
    let mut rng = Rng::new(9);
    let (u8t, u4t, u3t, u16t, u32t) = (dtype("u8"), dtype("u4"), dtype("u3"), dtype("u16"), dtype("u32"));
    // u8 → u4: element (r, 2j + h) is nibble h of byte (r, j).
    let bytes: Vec<u32> = (0..32 * 4).map(|_| rng.below(256) as u32).collect();
    let kernel =
        view_kernel(reg(u8t, &[32, 4], "spatial(32,1).local(1,4)"), reg(u4t, &[32, 8], "spatial(32,1).local(1,8)"));
    let mut args = vec![buf(u8t, &bytes), zeros(u4t, 256)];
    run(&kernel, &mut args);
    let nibbles = codes_of(&args[1]);
    for r in 0..32 {
        for j in 0..8 {
            assert_eq!(nibbles[r * 8 + j], (bytes[r * 4 + j / 2] >> (4 * (j % 2))) & 15);
        }
    }
    // And back: u4 → u8 restores the bytes.
    let kernel =
        view_kernel(reg(u4t, &[32, 8], "spatial(32,1).local(1,8)"), reg(u8t, &[32, 4], "spatial(32,1).local(1,4)"));
    let mut args = vec![buf(u4t, &nibbles), zeros(u8t, 128)];
    run(&kernel, &mut args);
    assert_eq!(codes_of(&args[1]), bytes);

    // Slot order matters: with column_local slots, thread t's bytes are (2t,0), (2t+1,0), (2t,1),
    // (2t+1,1), least significant first.
    let kernel =
        view_kernel(reg(u8t, &[64, 2], "spatial(32,1).column_local(2,2)"), reg(u32t, &[32, 1], "spatial(32,1)"));
    let bytes: Vec<u32> = (0..128).map(|_| rng.below(256) as u32).collect();
    let mut args = vec![buf(u8t, &bytes), zeros(u32t, 32)];
    run(&kernel, &mut args);
    let words = codes_of(&args[1]);
    assert_eq!(words.len(), 32);
    for (t, &word) in words.iter().enumerate() {
        let b = |r: usize, c: usize| bytes[r * 2 + c];
        let want = b(2 * t, 0) | (b(2 * t + 1, 0) << 8) | (b(2 * t, 1) << 16) | (b(2 * t + 1, 1) << 24);
        assert_eq!(word, want, "thread {t}");
    }

    // u8 → u3: 24-bit groups, codes straddle bytes.
    let bytes: Vec<u32> = (0..96).map(|_| rng.below(256) as u32).collect();
    let kernel =
        view_kernel(reg(u8t, &[32, 3], "spatial(32,1).local(1,3)"), reg(u3t, &[32, 8], "spatial(32,1).local(1,8)"));
    let mut args = vec![buf(u8t, &bytes), zeros(u3t, 256)];
    run(&kernel, &mut args);
    let threes = codes_of(&args[1]);
    for t in 0..32 {
        let group = bytes[3 * t] | (bytes[3 * t + 1] << 8) | (bytes[3 * t + 2] << 16);
        for j in 0..8 {
            assert_eq!(threes[t * 8 + j], (group >> (3 * j)) & 7);
        }
    }
    let kernel =
        view_kernel(reg(u3t, &[32, 8], "spatial(32,1).local(1,8)"), reg(u8t, &[32, 3], "spatial(32,1).local(1,3)"));
    let mut args = vec![buf(u3t, &threes), zeros(u8t, 96)];
    run(&kernel, &mut args);
    assert_eq!(codes_of(&args[1]), bytes);

    // u16 ↔ f16: bit patterns, NaN payloads included, pass unchanged.
    let bits: Vec<u32> =
        (0..64).map(|i| if i < 4 { [0x7e01, 0xfd55, 0x7c00, 0x8000][i] } else { rng.below(65536) as u32 }).collect();
    let kernel = view_kernel(
        reg(u16t, &[32, 2], "spatial(32,1).local(1,2)"),
        reg(DType::F16, &[32, 2], "spatial(32,1).local(1,2)"),
    );
    let mut args = vec![buf(u16t, &bits), zeros(DType::F16, 64)];
    run(&kernel, &mut args);
    assert_eq!(codes_of(&args[1]), bits);

    // A replicated source and result: every holder has the same bits.
    let bytes: Vec<u32> = (0..64).map(|_| rng.below(256) as u32).collect();
    let kernel = view_kernel(
        reg(u8t, &[16, 4], "replicated(2).spatial(16,1).local(1,4)"),
        reg(u4t, &[16, 8], "replicated(2).spatial(16,1).local(1,8)"),
    );
    let mut args = vec![buf(u8t, &bytes), zeros(u4t, 128)];
    run(&kernel, &mut args);
    let nibbles = codes_of(&args[1]);
    for r in 0..16 {
        for j in 0..8 {
            assert_eq!(nibbles[r * 8 + j], (bytes[r * 4 + j / 2] >> (4 * (j % 2))) & 15);
        }
    }
}

#[test]
fn view_errors_on_uneven_or_disagreeing_bits() {
    let (u8t, u4t) = (dtype("u8"), dtype("u4"));
    // Built valid, then the result's layout changed so that each thread holds 64 bits, not 32.
    let mut kernel =
        view_kernel(reg(u8t, &[32, 4], "spatial(32,1).local(1,4)"), reg(u4t, &[32, 8], "spatial(32,1).local(1,8)"));
    let view_inst = find_inst(&kernel, "view");
    let result = kernel.insts[view_inst].results[0];
    kernel.values[result].ty = Type::Register(reg(u4t, &[32, 8], "spatial(16,1).local(2,8).replicated(2)"));
    let mut args = vec![buf(u8t, &[0; 128]), zeros(u4t, 256)];
    let e = run_err(&kernel, &mut args);
    expect_error(&e, ErrorKind::InvalidView, Some("view"));
    // The holders of a replicated result element would get different bits.
    let mut kernel =
        view_kernel(reg(u8t, &[32, 4], "spatial(32,1).local(1,4)"), reg(u4t, &[32, 8], "spatial(32,1).local(1,8)"));
    let result = kernel.insts[find_inst(&kernel, "view")].results[0];
    kernel.values[result].ty = Type::Register(reg(u4t, &[16, 16], "replicated(2).spatial(16,1).local(1,16)"));
    let store = find_inst(&kernel, "store_global");
    kernel.body.insts.retain(|&i| i != store);
    let bytes: Vec<u32> = (0..128).collect();
    let mut args = vec![buf(u8t, &bytes), zeros(u4t, 256)];
    let e = run_err(&kernel, &mut args);
    expect_error(&e, ErrorKind::InvalidView, Some("view"));
}

fn find_inst(kernel: &Kernel, mnemonic: &str) -> InstId {
    let mut found = None;
    kernel.walk(|id, inst| {
        if found.is_none() && inst.op.mnemonic() == mnemonic {
            found = Some(id);
        }
    });
    found.unwrap_or_else(|| panic!("no `{mnemonic}` in the kernel"))
}

#[test]
fn broadcast_repeats_blocks() {
    let f16 = DType::F16;
    let mut rng = Rng::new(10);
    for (from, from_layout, to, to_layout) in [
        ([1usize, 64], "spatial(1,32).local(1,2)", [64usize, 64], "spatial(32,1).local(2,64)"),
        ([4, 8], "spatial(4,8)", [8, 32], "spatial(8,4).local(1,8)"),
        ([2, 16], "spatial(2,16)", [2, 64], "spatial(2,16).local(1,4)"),
    ] {
        let mut k = KernelBuilder::new("broadcast", 1);
        let x = k.pointer_param("x", f16).unwrap();
        let y = k.pointer_param("y", f16).unwrap();
        let xv = k.global_view(x, &[lit(from[0] as i64), lit(from[1] as i64)], None).unwrap();
        let yv = k.global_view(y, &[lit(to[0] as i64), lit(to[1] as i64)], None).unwrap();
        let t = k.load_global(xv, &[lit(0), lit(0)], reg(f16, &from, from_layout)).unwrap();
        let b = k.broadcast(t, reg(f16, &to, to_layout)).unwrap();
        k.store_global(b, yv, &[lit(0), lit(0)]).unwrap();
        let kernel = k.finish();
        let xs: Vec<u32> = (0..from[0] * from[1]).map(|_| rng.below(0x7c00) as u32).collect();
        let mut args = vec![buf(f16, &xs), zeros(f16, to[0] * to[1])];
        run(&kernel, &mut args);
        let got = codes_of(&args[1]);
        let (fr, fc) = (to[0] / from[0], to[1] / from[1]);
        for i in 0..to[0] {
            for j in 0..to[1] {
                assert_eq!(got[i * to[1] + j], xs[(i / fr) * from[1] + j / fc], "[{i}, {j}] of {from:?} → {to:?}");
            }
        }
    }
}

fn reduce_kernel(d: DType, op: ReduceOp, dims: &[usize], keep: bool, out_len: usize) -> Kernel {
    let mut k = KernelBuilder::new("reduce", 1);
    let x = k.pointer_param("x", d).unwrap();
    let y = k.pointer_param("y", d).unwrap();
    let xv = k.global_view(x, &[lit(8), lit(16)], None).unwrap();
    let t = k.load_global(xv, &[lit(0), lit(0)], reg(d, &[8, 16], "spatial(8,4).local(1,4)")).unwrap();
    let r = k.reduce(op, t, dims, keep).unwrap();
    let shape = k.type_of(r).unwrap().as_register().unwrap().shape.clone();
    let operands: Vec<Operand> = shape.iter().map(|&s| lit(s as i64)).collect();
    let yv = k.global_view(y, &operands, None).unwrap();
    let zeros: Vec<Operand> = shape.iter().map(|_| lit(0)).collect();
    k.store_global(r, yv, &zeros).unwrap();
    assert_eq!(shape.iter().product::<usize>(), out_len);
    k.finish()
}

#[test]
fn reduce_sums_exactly_and_finds_extremes() {
    let mut rng = Rng::new(11);
    for d in ["f32", "f16", "i32", "u8"].map(dtype) {
        let values: Vec<f64> = (0..128)
            .map(|_| {
                if d.is_float() {
                    (rng.unit() - 0.5) * 2f64.powi(rng.below(30) as i32 - 10)
                } else {
                    (rng.below(200) as f64) - if d.is_signed() { 100.0 } else { 0.0 }
                }
            })
            .collect();
        let codes: Vec<u32> = values.iter().map(|&v| d.encode(v)).collect();
        let vals: Vec<f64> = codes.iter().map(|&c| value(d, c)).collect();
        for (dims, keep) in [(vec![1], true), (vec![1], false), (vec![0], true), (vec![0], false), (vec![0, 1], true)] {
            let out_len = if dims.len() == 2 {
                1
            } else if dims == [1] {
                8
            } else {
                16
            };
            for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min] {
                let kernel = reduce_kernel(d, op, &dims, keep, out_len);
                let mut args = vec![buf(d, &codes), zeros(d, out_len)];
                run(&kernel, &mut args);
                let got = codes_of(&args[1]);
                for (o, &g) in got.iter().enumerate() {
                    let members: Vec<f64> = (0..128)
                        .filter(|&i| match dims.as_slice() {
                            [1] => i / 16 == o,
                            [0] => i % 16 == o,
                            _ => true,
                        })
                        .map(|i| vals[i])
                        .collect();
                    let want = match op {
                        // The members are small dyadics: their f64 sum is exact.
                        ReduceOp::Sum if d.is_integer() => {
                            let s: i64 = members.iter().map(|&v| v as i64).sum();
                            (s.rem_euclid(1 << d.bits())) as u32
                        }
                        ReduceOp::Sum => canon(d, members.iter().sum()),
                        ReduceOp::Max => d.encode(members.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
                        ReduceOp::Min => d.encode(members.iter().copied().fold(f64::INFINITY, f64::min)),
                    };
                    assert_eq!(g, want, "{d} {op} dims {dims:?} keep {keep} output {o}");
                }
            }
        }
    }
    // The sum is exact, rounded once: 2^24 + 1 − 2^24 = 1 in f32 (a running f32 sum gives 0),
    // and a NaN makes max NaN.
    let f32 = DType::F32;
    let mut codes = vec![f32.encode(0.0); 128];
    codes[0] = f32.encode(16777216.0);
    codes[1] = f32.encode(1.0);
    codes[2] = f32.encode(-16777216.0);
    codes[20] = 0x7fc0_0001;
    let kernel = reduce_kernel(f32, ReduceOp::Sum, &[1], false, 8);
    let mut args = vec![buf(f32, &codes), zeros(f32, 8)];
    run(&kernel, &mut args);
    assert_eq!(codes_of(&args[1])[0], f32.encode(1.0));
    assert_eq!(codes_of(&args[1])[1], 0x7fc0_0000, "NaN in the sum: canonical NaN");
    let kernel = reduce_kernel(f32, ReduceOp::Max, &[1], false, 8);
    let mut args = vec![buf(f32, &codes), zeros(f32, 8)];
    run(&kernel, &mut args);
    assert_eq!(codes_of(&args[1])[1], 0x7fc0_0000);
    assert_eq!(codes_of(&args[1])[0], f32.encode(16777216.0));
}

#[test]
fn iota_gives_coordinates() {
    let i8 = dtype("i8");
    let mut k = KernelBuilder::new("iota", 1);
    let y = k.pointer_param("y", i8).unwrap();
    let yv = k.global_view(y, &[lit(8), lit(16)], None).unwrap();
    let a = k.iota(0, reg(i8, &[8, 16], "spatial(8,4).local(1,4)")).unwrap();
    let b = k.iota(1, reg(i8, &[8, 16], "spatial(8,4).local(1,4)")).unwrap();
    let s = k.mul(a, 16).unwrap();
    let s = k.add(s, b).unwrap();
    k.store_global(s, yv, &[lit(0), lit(0)]).unwrap();
    let kernel = k.finish();
    let mut args = vec![zeros(i8, 128)];
    run(&kernel, &mut args);
    let want: Vec<u32> = (0..128).map(|i| i8.encode(i as f64)).collect();
    assert_eq!(codes_of(&args[0]), want);
}

fn dot_kernel(ab: DType, acc: DType, m: usize, kk: usize, n: usize) -> Kernel {
    let mut k = KernelBuilder::new("dot", 1);
    let a = k.pointer_param("a", ab).unwrap();
    let b = k.pointer_param("b", ab).unwrap();
    let c = k.pointer_param("c", acc).unwrap();
    let av = k.global_view(a, &[lit(m as i64), lit(kk as i64)], None).unwrap();
    let bv = k.global_view(b, &[lit(kk as i64), lit(n as i64)], None).unwrap();
    let cv = k.global_view(c, &[lit(m as i64), lit(n as i64)], None).unwrap();
    let at = k
        .load_global(av, &[lit(0), lit(0)], reg(ab, &[m, kk], &format!("spatial(8,4).local({},{})", m / 8, kk / 4)))
        .unwrap();
    let bt = k
        .load_global(bv, &[lit(0), lit(0)], reg(ab, &[kk, n], &format!("spatial(4,8).local({},{})", kk / 4, n / 8)))
        .unwrap();
    let ct = k
        .load_global(cv, &[lit(0), lit(0)], reg(acc, &[m, n], &format!("spatial(8,4).local({},{})", m / 8, n / 4)))
        .unwrap();
    let d = k.dot(at, bt, ct).unwrap();
    k.store_global(d, cv, &[lit(0), lit(0)]).unwrap();
    k.finish()
}

#[test]
fn dot_accumulates_in_order_with_one_rounding_per_step() {
    let mut rng = Rng::new(12);
    let (m, kk, n) = (16, 32, 16);
    // f16 × f16 → f32, against f32 arithmetic (products are exact in f32).
    // bf16 × bf16 → f32 and f16 × f16 → f16, against f64 arithmetic rounded each step.
    for (ab, acc) in
        [(DType::F16, DType::F32), (DType::BF16, DType::F32), (DType::F16, DType::F16), (dtype("f8e4m3"), DType::F32)]
    {
        let a: Vec<u32> = (0..m * kk).map(|_| ab.encode((rng.unit() - 0.5) * 4.0)).collect();
        let b: Vec<u32> = (0..kk * n).map(|_| ab.encode((rng.unit() - 0.5) * 4.0)).collect();
        let c: Vec<u32> = (0..m * n).map(|_| acc.encode((rng.unit() - 0.5) * 8.0)).collect();
        let kernel = dot_kernel(ab, acc, m, kk, n);
        let mut args = vec![buf(ab, &a), buf(ab, &b), buf(acc, &c)];
        run(&kernel, &mut args);
        let got = codes_of(&args[2]);
        for i in 0..m {
            for j in 0..n {
                let mut code = c[i * n + j];
                for l in 0..kk {
                    let p = value(ab, a[i * kk + l]) * value(ab, b[l * n + j]);
                    // acc + p is exact in f64 for these magnitudes.
                    code = acc.encode(value(acc, code) + p);
                }
                if (ab, acc) == (DType::F16, DType::F32) {
                    let mut x = f32::from_bits(c[i * n + j]);
                    for l in 0..kk {
                        x += value(ab, a[i * kk + l]) as f32 * value(ab, b[l * n + j]) as f32;
                    }
                    assert_eq!(x.to_bits(), code);
                }
                assert_eq!(got[i * n + j], code, "{ab}→{acc} [{i}, {j}]");
            }
        }
    }
    // i8 × i8 → i32 and u4 × u4 → u8 (wrapping).
    for (ab, acc) in [(dtype("i8"), dtype("i32")), (dtype("u4"), dtype("u8")), (dtype("i8"), dtype("i16"))] {
        let a: Vec<u32> = (0..m * kk).map(|_| rng.below(1 << ab.bits()) as u32).collect();
        let b: Vec<u32> = (0..kk * n).map(|_| rng.below(1 << ab.bits()) as u32).collect();
        let c: Vec<u32> = (0..m * n).map(|_| rng.below(1 << acc.bits().min(31)) as u32).collect();
        let kernel = dot_kernel(ab, acc, m, kk, n);
        let mut args = vec![buf(ab, &a), buf(ab, &b), buf(acc, &c)];
        run(&kernel, &mut args);
        let got = codes_of(&args[2]);
        for i in 0..m {
            for j in 0..n {
                let mut s = value(acc, c[i * n + j]) as i64;
                for l in 0..kk {
                    s += value(ab, a[i * kk + l]) as i64 * value(ab, b[l * n + j]) as i64;
                }
                assert_eq!(got[i * n + j], s.rem_euclid(1 << acc.bits()) as u32, "{ab}→{acc} [{i}, {j}]");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Control flow and global memory
// ---------------------------------------------------------------------------------------------

fn loop_kernel() -> Kernel {
    let f32 = DType::F32;
    let mut k = KernelBuilder::new("loop", 1);
    let x = k.pointer_param("x", f32).unwrap();
    let y = k.pointer_param("y", f32).unwrap();
    let n = k.scalar_param("n", i32t()).unwrap();
    let xv = k.global_view(x, &[n.into()], None).unwrap();
    let yv = k.global_view(y, &[lit(32)], None).unwrap();
    let layout = reg(f32, &[32], "spatial(32)");
    let acc0 = k.fill(0.0, layout.clone()).unwrap();
    let count0 = k.constant(0, i32t()).unwrap();
    let r = k
        .for_range(0, n, 32, Some(2), &[acc0.into(), count0.into()], |k, i, c| {
            let t = k.load_global(xv, &[i.into()], layout.clone())?;
            let s = k.add(c[0], t)?;
            let count = k.add(c[1], 1)?;
            Ok(vec![s.into(), count.into()])
        })
        .unwrap();
    let big = k.compare(CompareOp::Gt, r[1], 2).unwrap();
    let out = k
        .if_else(
            big,
            |k| {
                let t = k.add(r[0], 1000.0)?;
                Ok(vec![t.into()])
            },
            |_| Ok(vec![r[0].into()]),
        )
        .unwrap();
    k.store_global(out[0], yv, &[lit(0)]).unwrap();
    k.finish()
}

#[test]
fn loops_carry_values_and_branches_choose() {
    let f32 = DType::F32;
    let mut rng = Rng::new(13);
    let kernel = loop_kernel();
    for n in [0usize, 1, 32, 64, 100, 200] {
        let xs: Vec<u32> = (0..n.max(1)).map(|_| f32.encode(rng.unit() * 10.0 - 5.0)).collect();
        let mut args = vec![buf(f32, &xs[..n]), zeros(f32, 32), Arg::Int(n as i64)];
        if n == 0 {
            args[0] = zeros(f32, 0);
        }
        let report = run(&kernel, &mut args);
        assert_eq!(report.loop_iterations, n.div_ceil(32) as u64);
        let got = codes_of(&args[1]);
        for (i, &g) in got.iter().enumerate() {
            let mut acc = 0.0f32;
            for block in 0..n.div_ceil(32) {
                let e = block * 32 + i;
                acc += if e < n { f32::from_bits(xs[e]) } else { 0.0 };
            }
            if n.div_ceil(32) > 2 {
                acc += 1000.0;
            }
            assert_eq!(g, acc.to_bits(), "n = {n}, element {i}");
        }
    }
}

#[test]
fn global_loads_and_stores_are_masked_at_the_view_bounds() {
    // x is [rows, cols] in a buffer with row stride cols; tiles of 16×16 cover it. Each block
    // stores its tile twice: into `full` (64×32, covering every tile: masked elements read as
    // 0) and into `y` through a [rows, cols] view with row stride 24 (columns cols..24 of y
    // must keep their sentinel: masked elements are not written).
    let f16 = DType::F16;
    let mut k = KernelBuilder::new("masked", 1);
    let x = k.pointer_param("x", f16).unwrap();
    let full = k.pointer_param("full", f16).unwrap();
    let y = k.pointer_param("y", f16).unwrap();
    let rows = k.scalar_param("rows", i32t()).unwrap();
    let cols = k.scalar_param("cols", i32t()).unwrap();
    let (gr, gc) = (k.grid_param(rows).unwrap(), k.grid_param(cols).unwrap());
    k.set_grid(vec![GridExpr::cdiv(gc, GridExpr::Const(16)), GridExpr::cdiv(gr, GridExpr::Const(16))]);
    let xv = k.global_view(x, &[rows.into(), cols.into()], None).unwrap();
    let fv = k.global_view(full, &[lit(64), lit(32)], None).unwrap();
    let yv = k.global_view(y, &[rows.into(), cols.into()], Some(&[lit(24), lit(1)])).unwrap();
    let bx = k.block_index(Axis::X).unwrap();
    let by = k.block_index(Axis::Y).unwrap();
    let c0 = k.mul(bx, 16).unwrap();
    let r0 = k.mul(by, 16).unwrap();
    let t = k.load_global(xv, &[r0.into(), c0.into()], reg(f16, &[16, 16], "spatial(8,4).local(2,4)")).unwrap();
    k.store_global(t, fv, &[r0.into(), c0.into()]).unwrap();
    let t2 = k.mul(t, 2.0).unwrap();
    k.store_global(t2, yv, &[r0.into(), c0.into()]).unwrap();
    let kernel = k.finish();
    let (nr, nc) = (50usize, 20usize);
    let xs: Vec<u32> = (0..nr * nc).map(|i| f16.encode(i as f64 / 8.0 + 1.0)).collect();
    let sentinel = f16.encode(-7.0);
    let mut args = vec![
        buf(f16, &xs),
        buf(f16, &vec![sentinel; 64 * 32]),
        buf(f16, &vec![sentinel; 50 * 24]),
        Arg::Int(50),
        Arg::Int(20),
    ];
    let report = run(&kernel, &mut args);
    assert_eq!(report.blocks, 8);
    assert_eq!(report.grid, [2, 4, 1]);
    let full = codes_of(&args[1]);
    for r in 0..64 {
        for c in 0..32 {
            let want = if r < nr && c < nc { xs[r * nc + c] } else { 0 };
            assert_eq!(full[r * 32 + c], want, "full [{r}, {c}]");
        }
    }
    let y = codes_of(&args[2]);
    for r in 0..nr {
        for c in 0..24 {
            let want = if c < nc { f16.encode(2.0 * value(f16, xs[r * nc + c])) } else { sentinel };
            assert_eq!(y[r * 24 + c], want, "y [{r}, {c}]");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shared memory
// ---------------------------------------------------------------------------------------------

const ROWS: &str = "spatial(32,1).local(1,32)";
const COLUMNS: &str = "spatial(1,32).local(32,1)";

/// x → registers (thread t holds row t) → shared → registers (with `load_layout`) → y.
fn shared_kernel(shared_layout: &str, sync: bool, load_layout: &str) -> Kernel {
    let f16 = DType::F16;
    let mut k = KernelBuilder::new("shared", 1);
    let x = k.pointer_param("x", f16).unwrap();
    let y = k.pointer_param("y", f16).unwrap();
    let xv = k.global_view(x, &[lit(32), lit(32)], None).unwrap();
    let yv = k.global_view(y, &[lit(32), lit(32)], None).unwrap();
    let t = k.load_global(xv, &[lit(0), lit(0)], reg(f16, &[32, 32], ROWS)).unwrap();
    let s = k.alloc_shared(SharedTensorType::new(f16, vec![32, 32], Some(sl(shared_layout)))).unwrap();
    k.store_shared(t, s, &[lit(0), lit(0)]).unwrap();
    if sync {
        k.sync().unwrap();
    }
    let u = k.load_shared(s, &[lit(0), lit(0)], reg(f16, &[32, 32], load_layout)).unwrap();
    k.store_global(u, yv, &[lit(0), lit(0)]).unwrap();
    k.free_shared(s).unwrap();
    k.finish()
}

fn tile_codes(rng: &mut Rng) -> Vec<u32> {
    (0..1024).map(|_| rng.below(0x7c00) as u32).collect()
}

#[test]
fn shared_memory_round_trips_through_every_layout() {
    let mut rng = Rng::new(14);
    let f16 = DType::F16;
    for layout in [
        "row_major(32,32)",
        "column_major(32,32)",
        "row_major(32,32).swizzle(3,4,3)",
        "strided([32,32],[40,1])",
        "column_major(32,32).swizzle(2,3,4)",
    ] {
        let xs = tile_codes(&mut rng);
        let kernel = shared_kernel(layout, true, COLUMNS);
        let mut args = vec![buf(f16, &xs), zeros(f16, 1024)];
        let report = run(&kernel, &mut args);
        assert_eq!(codes_of(&args[1]), xs, "through {layout}");
        assert_eq!(report.shared_elements_written, 1024);
        assert_eq!(report.shared_elements_read, 1024);
        assert_eq!(report.syncs, 1);
    }
    // Reading back with the layout that wrote needs no sync: every thread reads its own writes.
    let xs = tile_codes(&mut rng);
    let kernel = shared_kernel("row_major(32,32)", false, ROWS);
    let mut args = vec![buf(f16, &xs), zeros(f16, 1024)];
    run(&kernel, &mut args);
    assert_eq!(codes_of(&args[1]), xs);
}

#[test]
fn a_read_after_another_threads_write_needs_a_sync() {
    let kernel = shared_kernel("row_major(32,32)", false, COLUMNS);
    let mut args = vec![buf(DType::F16, &[0; 1024]), zeros(DType::F16, 1024)];
    let e = run_err(&kernel, &mut args);
    let message = expect_error(&e, ErrorKind::SharedRace, Some("load_shared"));
    assert!(
        message.contains("element [0, 1]")
            && message.contains("read by thread 1")
            && message.contains("thread 0 wrote it"),
        "{message}"
    );
    assert!(message.contains("`store_shared`, inst"), "{message}");
    assert!(message.starts_with("block (0, 0, 0): `load_shared` (inst "), "{message}");
    // With race checks off the run completes (and, here, even gives the tile back).
    let options = RunOptions { check_races: false, ..RunOptions::default() };
    run_kernel(&kernel, &mut args, &options).unwrap();
}

#[test]
fn a_write_after_another_threads_read_needs_a_sync() {
    let f16 = DType::F16;
    let build = |sync_before_second_store: bool| {
        let mut k = KernelBuilder::new("war", 1);
        let x = k.pointer_param("x", f16).unwrap();
        let y = k.pointer_param("y", f16).unwrap();
        let xv = k.global_view(x, &[lit(32), lit(32)], None).unwrap();
        let yv = k.global_view(y, &[lit(32), lit(32)], None).unwrap();
        let t = k.load_global(xv, &[lit(0), lit(0)], reg(f16, &[32, 32], ROWS)).unwrap();
        let s = k.alloc_shared(SharedTensorType::new(f16, vec![32, 32], Some(sl("row_major(32,32)")))).unwrap();
        k.store_shared(t, s, &[lit(0), lit(0)]).unwrap();
        k.sync().unwrap();
        let u = k.load_shared(s, &[lit(0), lit(0)], reg(f16, &[32, 32], COLUMNS)).unwrap();
        if sync_before_second_store {
            k.sync().unwrap();
        }
        let t2 = k.add(t, 1.0).unwrap();
        k.store_shared(t2, s, &[lit(0), lit(0)]).unwrap();
        k.store_global(u, yv, &[lit(0), lit(0)]).unwrap();
        k.finish()
    };
    let mut args = vec![buf(f16, &[0; 1024]), zeros(f16, 1024)];
    let e = run_err(&build(false), &mut args);
    let message = expect_error(&e, ErrorKind::SharedRace, Some("store_shared"));
    assert!(message.contains("written by thread 0, but thread 1 read it (`load_shared`"), "{message}");
    run(&build(true), &mut args);
}

#[test]
fn replicated_holders_are_one_access() {
    // A replicated tile stored and read back with its own layout: fine without a sync; read
    // with a layout that gives elements to other threads: a race.
    let f16 = DType::F16;
    let build = |load: &str| {
        let mut k = KernelBuilder::new("replicated", 2);
        let x = k.pointer_param("x", f16).unwrap();
        let y = k.pointer_param("y", f16).unwrap();
        let xv = k.global_view(x, &[lit(16), lit(32)], None).unwrap();
        let yv = k.global_view(y, &[lit(16), lit(32)], None).unwrap();
        let t = k
            .load_global(xv, &[lit(0), lit(0)], reg(f16, &[16, 32], "replicated(4).spatial(16,1).local(1,32)"))
            .unwrap();
        let s = k.alloc_shared(SharedTensorType::new(f16, vec![16, 32], Some(sl("row_major(16,32)")))).unwrap();
        k.store_shared(t, s, &[lit(0), lit(0)]).unwrap();
        let u = k.load_shared(s, &[lit(0), lit(0)], reg(f16, &[16, 32], load)).unwrap();
        k.store_global(u, yv, &[lit(0), lit(0)]).unwrap();
        k.finish()
    };
    let mut rng = Rng::new(15);
    let xs: Vec<u32> = (0..512).map(|_| rng.below(0x7c00) as u32).collect();
    let mut args = vec![buf(f16, &xs), zeros(f16, 512)];
    run(&build("replicated(4).spatial(16,1).local(1,32)"), &mut args);
    assert_eq!(codes_of(&args[1]), xs);
    let e = run_err(&build("spatial(16,4).local(1,8)"), &mut args);
    let message = expect_error(&e, ErrorKind::SharedRace, Some("load_shared"));
    assert!(message.contains("threads 0, 16, 32 and 48 wrote it") || message.contains("wrote it"), "{message}");
}

/// copy_async of a [32, 32] tile of x (rows 16.., masked past `rows`) into shared memory, then
/// `steps` of commit, wait and sync before reading it back.
fn copy_kernel(commit: bool, wait: bool, sync: bool) -> Kernel {
    let f16 = DType::F16;
    let mut k = KernelBuilder::new("copy", 1);
    let x = k.pointer_param("x", f16).unwrap();
    let y = k.pointer_param("y", f16).unwrap();
    let rows = k.scalar_param("rows", i32t()).unwrap();
    let xv = k.global_view(x, &[rows.into(), lit(32)], None).unwrap();
    let yv = k.global_view(y, &[lit(32), lit(32)], None).unwrap();
    let s =
        k.alloc_shared(SharedTensorType::new(f16, vec![32, 32], Some(sl("row_major(32,32).swizzle(3,4,3)")))).unwrap();
    k.copy_async(xv, &[lit(16), lit(0)], s, &[lit(0), lit(0)], &[32, 32]).unwrap();
    if commit {
        k.commit_group().unwrap();
    }
    if wait {
        k.wait_group(0).unwrap();
    }
    if sync {
        k.sync().unwrap();
    }
    let u = k.load_shared(s, &[lit(0), lit(0)], reg(f16, &[32, 32], COLUMNS)).unwrap();
    k.store_global(u, yv, &[lit(0), lit(0)]).unwrap();
    k.finish()
}

#[test]
fn copy_async_lands_at_wait_group_and_is_visible_after_sync() {
    let f16 = DType::F16;
    let mut rng = Rng::new(16);
    let xs: Vec<u32> = (0..40 * 32).map(|_| rng.below(0x7c00) as u32).collect();
    let mut args = vec![buf(f16, &xs), zeros(f16, 1024), Arg::Int(40)];
    run(&copy_kernel(true, true, true), &mut args);
    let got = codes_of(&args[1]);
    for r in 0..32 {
        for c in 0..32 {
            let want = if r + 16 < 40 { xs[(r + 16) * 32 + c] } else { 0 };
            assert_eq!(got[r * 32 + c], want, "[{r}, {c}]");
        }
    }
    // Read before the group completes: no commit, or committed but not waited for.
    for (commit, wait) in [(false, false), (true, false), (false, true)] {
        let e = run_err(&copy_kernel(commit, wait, true), &mut args);
        let message = expect_error(&e, ErrorKind::AsyncPending, Some("load_shared"));
        assert!(message.contains("still in flight") && message.contains("`copy_async`, inst"), "{message}");
    }
    // Completed, but no sync before the read.
    let e = run_err(&copy_kernel(true, true, false), &mut args);
    let message = expect_error(&e, ErrorKind::SharedRace, Some("load_shared"));
    assert!(message.contains("after its `copy_async` completed (`wait_group`, inst"), "{message}");
}

#[test]
fn double_buffered_copies_keep_their_groups_apart() {
    // Four 32×32 tiles of x summed with a two-stage pipeline: the copy of tile i+1 is in flight
    // while tile i is read; `wait_group 1` completes exactly tile i.
    let f32 = DType::F32;
    let mut k = KernelBuilder::new("pipeline", 1);
    let x = k.pointer_param("x", f32).unwrap();
    let y = k.pointer_param("y", f32).unwrap();
    let xv = k.global_view(x, &[lit(128), lit(32)], None).unwrap();
    let yv = k.global_view(y, &[lit(32), lit(32)], None).unwrap();
    let shared =
        |k: &mut KernelBuilder| k.alloc_shared(SharedTensorType::new(f32, vec![32, 32], Some(sl("row_major(32,32)"))));
    let s0 = shared(&mut k).unwrap();
    let s1 = shared(&mut k).unwrap();
    let layout = reg(f32, &[32, 32], COLUMNS);
    k.copy_async(xv, &[lit(0), lit(0)], s0, &[lit(0), lit(0)], &[32, 32]).unwrap();
    k.commit_group().unwrap();
    let acc0 = k.fill(0.0, layout.clone()).unwrap();
    let acc = k
        .for_range(0, 4, 1, None, &[acc0.into()], |k, i, c| {
            let next = k.add(i, 1)?;
            let more = k.compare(CompareOp::Lt, next, 4)?;
            let odd = k.binary(BinaryOp::And, i, 1)?;
            let row = k.mul(next, 32)?;
            k.if_else(
                more,
                |k| {
                    k.if_else(
                        odd,
                        |k| {
                            k.copy_async(xv, &[row.into(), lit(0)], s0, &[lit(0), lit(0)], &[32, 32])?;
                            Ok(vec![])
                        },
                        |k| {
                            k.copy_async(xv, &[row.into(), lit(0)], s1, &[lit(0), lit(0)], &[32, 32])?;
                            Ok(vec![])
                        },
                    )?;
                    Ok(vec![])
                },
                |_| Ok(vec![]),
            )?;
            k.commit_group()?;
            k.wait_group(1)?;
            k.sync()?;
            let t = k.if_else(
                odd,
                |k| Ok(vec![k.load_shared(s1, &[lit(0), lit(0)], layout.clone())?.into()]),
                |k| Ok(vec![k.load_shared(s0, &[lit(0), lit(0)], layout.clone())?.into()]),
            )?;
            let s = k.add(c[0], t[0])?;
            k.sync()?;
            Ok(vec![s.into()])
        })
        .unwrap();
    k.store_global(acc[0], yv, &[lit(0), lit(0)]).unwrap();
    let kernel = k.finish();
    let mut rng = Rng::new(17);
    let xs: Vec<u32> = (0..128 * 32).map(|_| f32.encode(rng.unit() * 4.0 - 2.0)).collect();
    let mut args = vec![buf(f32, &xs), zeros(f32, 1024)];
    run(&kernel, &mut args);
    let got = codes_of(&args[1]);
    for e in 0..1024 {
        let mut acc = 0.0f32;
        for tile in 0..4 {
            acc += f32::from_bits(xs[tile * 1024 + e]);
        }
        assert_eq!(got[e], acc.to_bits(), "element {e}");
    }
    // Waiting for all groups but one, without the copy of the next tile in its own group,
    // reads a tile still in flight: `wait_group 2` instead of 1.
    let mut broken = kernel.clone();
    let wait = find_inst(&broken, "wait_group");
    broken.insts[wait].op = Op::WaitGroup { pending: 2 };
    let e = run_err(&broken, &mut args);
    expect_error(&e, ErrorKind::AsyncPending, Some("load_shared"));
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// `y = x` in 32-element tiles over a view of `n` elements of x (whose buffer may be shorter).
fn copy_1d_kernel() -> Kernel {
    let f16 = DType::F16;
    let mut k = KernelBuilder::new("copy1d", 1);
    let w = k.pointer_param("w", f16).unwrap();
    let y = k.pointer_param("y", f16).unwrap();
    let n = k.scalar_param("n", i32t()).unwrap();
    let start = k.scalar_param("start", i32t()).unwrap();
    let wv = k.global_view(w, &[n.into()], None).unwrap();
    let yv = k.global_view(y, &[lit(32)], None).unwrap();
    let t = k.load_global(wv, &[start.into()], reg(f16, &[32], "spatial(32)")).unwrap();
    k.store_global(t, yv, &[lit(0)]).unwrap();
    k.finish()
}

#[test]
fn out_of_buffer_accesses_are_errors_out_of_view_ones_are_masked() {
    let f16 = DType::F16;
    let kernel = copy_1d_kernel();
    let xs: Vec<u32> = (0..64).map(|i| f16.encode(i as f64)).collect();
    // The view (128 elements) is larger than the buffer (64): element 70 is in the view, not in
    // the buffer.
    let mut args = vec![buf(f16, &xs), zeros(f16, 32), Arg::Int(128), Arg::Int(70)];
    let e = run_err(&kernel, &mut args);
    let message = expect_error(&e, ErrorKind::OutOfBounds, Some("load_global"));
    assert!(message.starts_with("block (0, 0, 0): `load_global` (inst "), "{message}");
    assert!(message.contains("element 70 is outside the 64-element buffer of `w`"), "{message}");
    assert_eq!(e.block, Some([0, 0, 0]));
    // Outside the view: masked, no error.
    let mut args = vec![buf(f16, &xs), zeros(f16, 32), Arg::Int(64), Arg::Int(48)];
    run(&kernel, &mut args);
    let got = codes_of(&args[1]);
    assert_eq!(&got[..16], &xs[48..]);
    assert!(got[16..].iter().all(|&c| c == 0));
    // Negative offsets are outside the view too.
    let mut args = vec![buf(f16, &xs), zeros(f16, 32), Arg::Int(64), Arg::Int(-8)];
    run(&kernel, &mut args);
    let got = codes_of(&args[1]);
    assert!(got[..8].iter().all(|&c| c == 0));
    assert_eq!(&got[8..], &xs[..24]);
}

#[test]
fn a_shared_sub_tile_must_lie_inside_its_tile() {
    let f16 = DType::F16;
    let mut k = KernelBuilder::new("subtile", 1);
    let o = k.scalar_param("o", i32t()).unwrap();
    let t = k.fill(1.0, reg(f16, &[16, 32], "spatial(16,2).local(1,16)")).unwrap();
    let s = k.alloc_shared(SharedTensorType::new(f16, vec![32, 32], Some(sl("row_major(32,32)")))).unwrap();
    k.store_shared(t, s, &[o.into(), lit(0)]).unwrap();
    let kernel = k.finish();
    run(&kernel, &mut [Arg::Int(16)]);
    for bad in [17, -1] {
        let e = run_err(&kernel, &mut [Arg::Int(bad)]);
        let message = expect_error(&e, ErrorKind::SubTileOutOfBounds, Some("store_shared"));
        assert!(message.contains("along dimension 0"), "{message}");
    }
}

#[test]
fn reading_never_written_shared_memory_is_an_error() {
    let f16 = DType::F16;
    let mut k = KernelBuilder::new("uninit", 1);
    let t = k.fill(1.0, reg(f16, &[16, 32], "spatial(16,2).local(1,16)")).unwrap();
    let s = k.alloc_shared(SharedTensorType::new(f16, vec![32, 32], Some(sl("row_major(32,32)")))).unwrap();
    k.store_shared(t, s, &[lit(0), lit(0)]).unwrap();
    k.sync().unwrap();
    k.load_shared(s, &[lit(0), lit(0)], reg(f16, &[32, 32], ROWS)).unwrap();
    let kernel = k.finish();
    let e = run_err(&kernel, &mut []);
    let message = expect_error(&e, ErrorKind::UninitializedRead, Some("load_shared"));
    assert!(
        message.contains("element [16, 0]") && message.contains("read by thread 16 but was never written"),
        "{message}"
    );
}

#[test]
fn freed_tiles_and_copies_in_flight() {
    let f16 = DType::F16;
    let build = |free_before_wait: bool, store_while_in_flight: bool| {
        let mut k = KernelBuilder::new("free", 1);
        let x = k.pointer_param("x", f16).unwrap();
        let xv = k.global_view(x, &[lit(32), lit(32)], None).unwrap();
        let s = k.alloc_shared(SharedTensorType::new(f16, vec![32, 32], Some(sl("row_major(32,32)")))).unwrap();
        k.copy_async(xv, &[lit(0), lit(0)], s, &[lit(0), lit(0)], &[32, 32]).unwrap();
        k.commit_group().unwrap();
        if store_while_in_flight {
            let t = k.fill(1.0, reg(f16, &[32, 32], ROWS)).unwrap();
            k.store_shared(t, s, &[lit(0), lit(0)]).unwrap();
        }
        if free_before_wait {
            k.free_shared(s).unwrap();
        }
        k.wait_group(0).unwrap();
        k.sync().unwrap();
        k.free_shared(s).unwrap();
        k.finish()
    };
    let mut args = vec![buf(f16, &[0; 1024])];
    let e = run_err(&build(true, false), &mut args);
    expect_error(&e, ErrorKind::AsyncPending, Some("free_shared"));
    let e = run_err(&build(false, true), &mut args);
    expect_error(&e, ErrorKind::AsyncPending, Some("store_shared"));
    // Freed twice (the second `free_shared` uses a freed tile).
    let mut kernel = build(false, false);
    let free = find_inst(&kernel, "free_shared");
    kernel.body.insts.push(free);
    let e = run_err(&kernel, &mut args);
    let message = expect_error(&e, ErrorKind::Malformed, Some("free_shared"));
    assert!(message.contains("after `free_shared`"), "{message}");
}

#[test]
fn every_register_and_shared_tensor_needs_a_layout() {
    let f16 = DType::F16;
    let mut k = KernelBuilder::new("nolayout", 1);
    let t = k.fill(1.0, RegisterTensorType::new(f16, vec![32], None)).unwrap();
    k.name(t, "ones").unwrap();
    let kernel = k.finish();
    let e = run_err(&kernel, &mut []);
    let message = expect_error(&e, ErrorKind::MissingLayout, Some("fill"));
    assert!(message.contains("%ones"), "{message}");

    let mut k = KernelBuilder::new("nolayout", 1);
    let s = k.alloc_shared(SharedTensorType::new(f16, vec![32], None)).unwrap();
    k.name(s, "buffer").unwrap();
    let e = run_err(&k.finish(), &mut []);
    let message = expect_error(&e, ErrorKind::MissingLayout, Some("alloc_shared"));
    assert!(message.contains("%buffer"), "{message}");

    // A layout for another number of threads than the block has.
    let mut k = KernelBuilder::new("threads", 2);
    k.fill(1.0, reg(f16, &[32], "spatial(32)")).unwrap();
    let e = run_err(&k.finish(), &mut []);
    expect_error(&e, ErrorKind::Malformed, Some("fill"));
}

#[test]
fn integer_division_by_zero_is_an_error() {
    let i32 = i32t();
    for op in [BinaryOp::Div, BinaryOp::Rem, BinaryOp::CeilDiv] {
        let kernel = map_kernel(&[i32, i32], 32, |k, t| k.binary(op, t[0], t[1]));
        let mut divisors = vec![1u32; 32];
        divisors[5] = 0;
        let mut args = vec![buf(i32, &[7; 32]), buf(i32, &divisors), zeros(i32, 32)];
        let e = run_err(&kernel, &mut args);
        let message = expect_error(&e, ErrorKind::DivisionByZero, Some(op.name()));
        assert!(message.contains("element 5"), "{message}");
    }
    // Floats divide by zero the IEEE way.
    let f16 = DType::F16;
    let got = run_map(&[(f16, vec![f16.encode(1.0), f16.encode(-1.0), 0]), (f16, vec![0, 0, 0])], f16, |k, t| {
        k.binary(BinaryOp::Div, t[0], t[1])
    });
    assert_eq!(got, vec![0x7c00, 0xfc00, 0x7e00]);
}

#[test]
fn bad_arguments_are_reported() {
    let kernel = copy_1d_kernel();
    let f16 = DType::F16;
    let cases: Vec<(Vec<Arg>, &str)> = vec![
        (vec![zeros(f16, 64), zeros(f16, 32), Arg::Int(64)], "4 parameters, but 3 arguments"),
        (
            vec![zeros(dtype("u16"), 64), zeros(f16, 32), Arg::Int(64), Arg::Int(0)],
            "argument `w`: expected a buffer of f16, found a buffer of 64 u16",
        ),
        (
            vec![Arg::Int(3), zeros(f16, 32), Arg::Int(64), Arg::Int(0)],
            "argument `w`: expected a buffer of f16, found the integer 3",
        ),
        (
            vec![zeros(f16, 64), zeros(f16, 32), Arg::Int(1 << 40), Arg::Int(0)],
            "argument `n`: 1099511627776 is outside the range of i32",
        ),
        (
            vec![zeros(f16, 64), zeros(f16, 32), Arg::Float(2.0), Arg::Int(0)],
            "argument `n`: the float 2 cannot be a i32",
        ),
        (vec![zeros(f16, 64), zeros(f16, 32), zeros(f16, 1), Arg::Int(0)], "argument `n`: expected a scalar i32"),
    ];
    for (mut args, text) in cases {
        let e = run_err(&kernel, &mut args);
        assert_eq!(e.kind, ErrorKind::BadArgument, "{e}");
        assert!(e.to_string().contains(text), "{e} (expected: {text})");
        assert_eq!((e.inst, e.block), (None, None));
    }
    // A float parameter takes integers and floats, rounded.
    let mut k = KernelBuilder::new("scale", 1);
    let s = k.scalar_param("s", f16).unwrap();
    let y = k.pointer_param("y", f16).unwrap();
    let yv = k.global_view(y, &[lit(32)], None).unwrap();
    let t = k.fill(s, reg(f16, &[32], "spatial(32)")).unwrap();
    k.store_global(t, yv, &[lit(0)]).unwrap();
    let kernel = k.finish();
    for (arg, want) in [(Arg::Int(3), 3.0), (Arg::Float(0.1), 0.1), (Arg::Int(100_000), f64::INFINITY)] {
        let mut args = vec![arg, zeros(f16, 32)];
        run(&kernel, &mut args);
        assert_eq!(codes_of(&args[1])[0], f16.encode(want));
    }
}

#[test]
fn buffers_must_match_their_declared_shapes() {
    // `x: ptr f16[n, add(n, 2)]` with n declared after it.
    let f16 = DType::F16;
    let mut k = KernelBuilder::new("shaped", 1);
    let shape = vec![GridExpr::Param(1), GridExpr::binary(GridOp::Add, GridExpr::Param(1), GridExpr::Const(2))];
    k.shaped_pointer_param("x", f16, shape).unwrap();
    k.scalar_param("n", i32t()).unwrap();
    let kernel = k.finish();
    run(&kernel, &mut [zeros(f16, 15), Arg::Int(3)]);
    let e = run_err(&kernel, &mut [zeros(f16, 16), Arg::Int(3)]);
    assert_eq!(e.kind, ErrorKind::BadArgument, "{e}");
    assert!(
        e.to_string().contains("argument `x`: the buffer has 16 elements, but `x: ptr f16[n, add(n, 2)]` needs 15"),
        "{e}"
    );
    let e = run_err(&kernel, &mut [zeros(f16, 16), Arg::Int(-3)]);
    assert_eq!(e.kind, ErrorKind::BadArgument, "{e}");
}

#[test]
fn loops_need_a_positive_step_and_end_within_the_budget() {
    let mut k = KernelBuilder::new("steps", 1);
    let step = k.scalar_param("step", i32t()).unwrap();
    let end = k.scalar_param("end", i32t()).unwrap();
    let zero = k.constant(0, i32t()).unwrap();
    k.for_range(0, end, step, None, &[zero.into()], |k, i, c| Ok(vec![k.add(c[0], i)?.into()])).unwrap();
    let kernel = k.finish();
    for bad in [0, -2] {
        let e = run_err(&kernel, &mut [Arg::Int(bad), Arg::Int(10)]);
        let message = expect_error(&e, ErrorKind::BadLoopStep, Some("for"));
        assert!(message.contains(&format!("step is {bad}")), "{message}");
    }
    let report = run(&kernel, &mut [Arg::Int(3), Arg::Int(10)]);
    assert_eq!(report.loop_iterations, 4);
    let options = RunOptions { max_instructions: 10_000, ..RunOptions::default() };
    let e = run_kernel(&kernel, &mut [Arg::Int(1), Arg::Int(i32::MAX as i64)], &options).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BudgetExceeded, "{e}");
    assert!(matches!(e.mnemonic, Some("add" | "for")), "the error names the instruction that ran out: {e}");
}

#[test]
fn results_must_not_depend_on_the_order_of_blocks() {
    // Every block writes the same 32 elements: with its own block index (a conflict), or with
    // the same value (fine); or reads what another block wrote (a conflict).
    let i32 = i32t();
    let build = |same_value: bool, read_back: bool| {
        let mut k = KernelBuilder::new("blocks", 1);
        let y = k.pointer_param("y", i32).unwrap();
        k.set_grid(vec![GridExpr::Const(2), GridExpr::Const(2)]);
        let yv = k.global_view(y, &[lit(64)], None).unwrap();
        let b = k.block_index(Axis::Y).unwrap();
        let layout = reg(i32, &[32], "spatial(32)");
        if read_back {
            // Block (x, y) writes the 32 elements at 32·x, then reads those at 0 (or, with
            // `same_value`, at 32·(x xor 1)).
            let x = k.block_index(Axis::X).unwrap();
            let at = k.mul(x, 32).unwrap();
            let t = k.fill(b, layout.clone()).unwrap();
            let t = k.add(t, x).unwrap();
            k.store_global(t, yv, &[at.into()]).unwrap();
            let from = if same_value {
                let other = k.binary(BinaryOp::Xor, x, 1).unwrap();
                k.mul(other, 32).unwrap().into()
            } else {
                lit(0)
            };
            k.load_global(yv, &[from], layout).unwrap();
        } else {
            let v = if same_value { k.constant(7, i32).unwrap() } else { b };
            let t = k.fill(v, layout).unwrap();
            k.store_global(t, yv, &[lit(0)]).unwrap();
        }
        k.finish()
    };
    let e = run_err(&build(false, false), &mut [zeros(i32, 64)]);
    let message = expect_error(&e, ErrorKind::BlockConflict, Some("store_global"));
    assert!(
        message.contains("element 0 of `y` is written by block (0, 1, 0) and, with another value, by block (1, 0, 0)"),
        "{message}"
    );
    run(&build(true, false), &mut [zeros(i32, 64)]);
    // Block (1, 0, 0) reads what block (0, 0, 0) wrote.
    let e = run_err(&build(false, true), &mut [zeros(i32, 64)]);
    let message = expect_error(&e, ErrorKind::BlockConflict, Some("load_global"));
    assert!(
        message.contains("element 0 of `y` is read by block (1, 0, 0) but written by block (0, 0, 0)"),
        "{message}"
    );
    // Block (0, 0, 0) reads elements 32.. before block (1, 0, 0) writes them.
    let e = run_err(&build(true, true), &mut [zeros(i32, 64)]);
    let message = expect_error(&e, ErrorKind::BlockConflict, Some("store_global"));
    assert!(
        message.contains("element 32 of `y` is written by block (1, 0, 0) but read by block (0, 0, 0)"),
        "{message}"
    );
    let options = RunOptions { check_block_conflicts: false, ..RunOptions::default() };
    run_kernel(&build(false, false), &mut [zeros(i32, 64)], &options).unwrap();
}

#[test]
fn malformed_kernels_give_errors_not_panics() {
    // A value used before its definition.
    let mut kernel = copy_1d_kernel();
    kernel.body.insts.swap(0, 2);
    let mut args = vec![zeros(DType::F16, 64), zeros(DType::F16, 32), Arg::Int(64), Arg::Int(0)];
    let e = run_err(&kernel, &mut args);
    assert_eq!(e.kind, ErrorKind::Malformed, "{e}");
    assert!(e.to_string().contains("is used before it is defined"), "{e}");
    // A foreign instruction handle.
    let mut kernel = copy_1d_kernel();
    kernel.body.insts.push(InstId::from_index(9999));
    let e = run_err(&kernel, &mut args);
    assert_eq!(e.kind, ErrorKind::Malformed, "{e}");
    // A result whose declared type is not what the instruction computes.
    let mut kernel = copy_1d_kernel();
    let load = find_inst(&kernel, "load_global");
    let result = kernel.insts[load].results[0];
    kernel.values[result].ty = Type::Scalar(DType::F16);
    let e = run_err(&kernel, &mut args);
    assert_eq!(e.kind, ErrorKind::Malformed, "{e}");
    // A loop nested in itself.
    let mut k = KernelBuilder::new("nest", 1);
    let zero = k.constant(0, i32t()).unwrap();
    k.for_range(0, 2, 1, None, &[zero.into()], |_, _, c| Ok(vec![c[0].into()])).unwrap();
    let mut kernel = k.finish();
    let for_id = find_inst(&kernel, "for");
    if let Op::For { body, .. } = &mut kernel.insts[for_id].op {
        body.insts.push(for_id);
    }
    let e = run_err(&kernel, &mut []);
    assert_eq!(e.kind, ErrorKind::Malformed, "{e}");
    // A grid that divides by zero.
    let mut k = KernelBuilder::new("grid", 1);
    let n = k.scalar_param("n", i32t()).unwrap();
    let g = k.grid_param(n).unwrap();
    k.set_grid(vec![GridExpr::cdiv(GridExpr::Const(4), g)]);
    let e = run_err(&k.finish(), &mut [Arg::Int(0)]);
    assert_eq!(e.kind, ErrorKind::BadGrid, "{e}");
}

// ---------------------------------------------------------------------------------------------
// The low-bit matmul: y[m, n] = Σ_k x[m, k] · f16(q[k, n] · s[k / 128, n])
// ---------------------------------------------------------------------------------------------

const ACC: &str = "local(1,2).spatial(1,4).local(2,1).spatial(8,4).local(1,2)";
const X_TILE: &str = "replicated(4).local(1,4).column_local(2,2).spatial(8,4).local(1,2)";
const BYTES: &str = "spatial(16,8).local(4,4)";
const NIBBLES: &str = "spatial(16,8).local(4,8)";
const SCALES: &str = "replicated(2).spatial(1,64)";

/// x f16 [M, K]; w u8 [K, N/2] (two u4 per byte, low nibble first); s f16 [⌈K/128⌉, N];
/// y f16 [M, N]. Grid (⌈N/64⌉, ⌈M/16⌉), 4 warps, a loop over K in steps of 64.
fn lowbit_matmul_kernel() -> Kernel {
    let (f16, f32, u8t, u4t) = (DType::F16, DType::F32, dtype("u8"), dtype("u4"));
    let mut k = KernelBuilder::new("lowbit_matmul", 4);
    let x = k.pointer_param("x", f16).unwrap();
    let w = k.pointer_param("w", u8t).unwrap();
    let s = k.pointer_param("s", f16).unwrap();
    let y = k.pointer_param("y", f16).unwrap();
    let m = k.scalar_param("m", i32t()).unwrap();
    let n = k.scalar_param("n", i32t()).unwrap();
    let kk = k.scalar_param("k", i32t()).unwrap();
    let (gm, gn) = (k.grid_param(m).unwrap(), k.grid_param(n).unwrap());
    k.set_grid(vec![GridExpr::cdiv(gn, GridExpr::Const(64)), GridExpr::cdiv(gm, GridExpr::Const(16))]);
    let xv = k.global_view(x, &[m.into(), kk.into()], Some(&[kk.into(), lit(1)])).unwrap();
    let half_n = k.binary(BinaryOp::Div, n, 2).unwrap();
    let wv = k.global_view(w, &[kk.into(), half_n.into()], Some(&[half_n.into(), lit(1)])).unwrap();
    let groups = k.binary(BinaryOp::CeilDiv, kk, 128).unwrap();
    let sv = k.global_view(s, &[groups.into(), n.into()], Some(&[n.into(), lit(1)])).unwrap();
    let yv = k.global_view(y, &[m.into(), n.into()], Some(&[n.into(), lit(1)])).unwrap();
    let bx = k.block_index(Axis::X).unwrap();
    let by = k.block_index(Axis::Y).unwrap();
    let n0 = k.mul(bx, 64).unwrap();
    let byte0 = k.mul(bx, 32).unwrap();
    let m0 = k.mul(by, 16).unwrap();
    let acc0 = k.fill(0.0, reg(f32, &[16, 64], ACC)).unwrap();
    let acc = k
        .for_range(0, kk, 64, Some(2), &[acc0.into()], |k, k0, c| {
            let xt = k.load_global(xv, &[m0.into(), k0.into()], reg(f16, &[16, 64], X_TILE))?;
            let wb = k.load_global(wv, &[k0.into(), byte0.into()], reg(u8t, &[64, 32], BYTES))?;
            let w4 = k.view(wb, reg(u4t, &[64, 64], NIBBLES))?;
            let wf = k.cast(w4, f16)?;
            let g = k.binary(BinaryOp::Div, k0, 128)?;
            let st = k.load_global(sv, &[g.into(), n0.into()], reg(f16, &[1, 64], SCALES))?;
            let sb = k.broadcast(st, reg(f16, &[64, 64], NIBBLES))?;
            let wd = k.mul(wf, sb)?;
            let a2 = k.dot(xt, wd, c[0])?;
            Ok(vec![a2.into()])
        })
        .unwrap();
    let yt = k.cast(acc[0], f16).unwrap();
    k.store_global(yt, yv, &[m0.into(), n0.into()]).unwrap();
    k.finish()
}

struct Problem {
    m: usize,
    k: usize,
    n: usize,
    x: Vec<u32>,
    q: Vec<u8>,
    s: Vec<u32>,
}

impl Problem {
    fn new(m: usize, k: usize, n: usize, seed: u64) -> Problem {
        let mut rng = Rng::new(seed);
        let f16 = DType::F16;
        let x = (0..m * k).map(|_| f16.encode(rng.unit() * 2.0 - 1.0)).collect();
        let q = (0..k * n).map(|_| rng.below(16) as u8).collect();
        let s = (0..k.div_ceil(128) * n).map(|_| f16.encode(0.001 + rng.unit() * 0.02)).collect();
        Problem { m, k, n, x, q, s }
    }

    fn args(&self) -> Vec<Arg> {
        let (f16, u8t) = (DType::F16, dtype("u8"));
        let bytes: Vec<u8> = (0..self.k * self.n / 2).map(|i| self.q[2 * i] | (self.q[2 * i + 1] << 4)).collect();
        vec![
            buf(f16, &self.x),
            Arg::Buffer(Buffer::from_bytes(u8t, bytes.len(), bytes).unwrap()),
            buf(f16, &self.s),
            zeros(f16, self.m * self.n),
            Arg::Int(self.m as i64),
            Arg::Int(self.n as i64),
            Arg::Int(self.k as i64),
        ]
    }

    /// The dequantized weight, rounded to f16 as the kernel rounds it.
    fn weight(&self, k: usize, n: usize) -> f64 {
        let f16 = DType::F16;
        let scale = value(f16, self.s[(k / 128) * self.n + n]);
        value(f16, f16.encode(f64::from(self.q[k * self.n + n]) * scale))
    }

    /// Checks y against the f64 reference (within the f32-accumulation bound) and against an
    /// exact emulation of the kernel's arithmetic (bit for bit).
    fn check(&self, y: &[u32]) {
        let f16 = DType::F16;
        let w: Vec<f64> = (0..self.k * self.n).map(|i| self.weight(i / self.n, i % self.n)).collect();
        for i in 0..self.m {
            for j in 0..self.n {
                let (mut exact, mut magnitude, mut emulated) = (0.0f64, 0.0f64, 0.0f32);
                for l in 0..self.k {
                    let (a, b) = (value(f16, self.x[i * self.k + l]), w[l * self.n + j]);
                    exact += a * b;
                    magnitude += (a * b).abs();
                    emulated += a as f32 * b as f32;
                }
                let got = value(f16, y[i * self.n + j]);
                assert_eq!(y[i * self.n + j], f16.encode(f64::from(emulated)), "y[{i}, {j}] (emulation)");
                let ulp = value(f16, f16.encode(got.abs().max(exact.abs())) + 1)
                    - value(f16, f16.encode(got.abs().max(exact.abs())));
                let bound = self.k as f64 * 2f64.powi(-23) * magnitude + ulp / 2.0 + 1e-7;
                assert!((got - exact).abs() <= bound, "y[{i}, {j}] = {got}, reference {exact}, bound {bound}");
            }
        }
    }
}

#[test]
fn lowbit_matmul_matches_the_reference_at_small_sizes() {
    let kernel = lowbit_matmul_kernel();
    for (seed, (m, k, n)) in
        [(1usize, 256usize, 128usize), (5, 256, 128), (16, 256, 128), (33, 256, 128), (7, 200, 96), (3, 64, 64)]
            .into_iter()
            .enumerate()
    {
        let problem = Problem::new(m, k, n, 100 + seed as u64);
        let mut args = problem.args();
        let report = run(&kernel, &mut args);
        assert_eq!(report.blocks, (n.div_ceil(64) * m.div_ceil(16)) as u64);
        assert_eq!(report.multiply_adds, report.blocks * k.div_ceil(64) as u64 * 16 * 64 * 64);
        problem.check(&codes_of(&args[3]));
    }
}

#[test]
fn runs_are_deterministic() {
    let kernel = lowbit_matmul_kernel();
    let problem = Problem::new(33, 256, 128, 7);
    let mut first = problem.args();
    let mut second = problem.args();
    let r1 = run(&kernel, &mut first);
    let r2 = run(&kernel, &mut second);
    assert_eq!(r1, r2);
    assert_eq!(first[3].buffer().unwrap().bytes(), second[3].buffer().unwrap().bytes());
    let options = RunOptions { check_races: false, check_block_conflicts: false, ..RunOptions::default() };
    let mut third = problem.args();
    run_kernel(&kernel, &mut third, &options).unwrap();
    assert_eq!(first[3], third[3]);
}

#[test]
fn errors_render_with_their_location() {
    let e =
        run_err(&copy_1d_kernel(), &mut [zeros(DType::F16, 64), zeros(DType::F16, 32), Arg::Int(128), Arg::Int(70)]);
    let d = e.to_diagnostic();
    assert!(d.message.starts_with("block (0, 0, 0): element 70"), "{}", d.message);
    assert_eq!(d.span, None, "built kernels have no spans");
    let _ = SpecialValues::Ieee;
}

/// A global access selected as proven-aligned vector runs (`via vector(8)`) is checked on every
/// execution: aligned origins pass; an origin that splits the runs is an error, as is breaking
/// the kernel's stated assumption at launch.
#[test]
fn proven_vector_accesses_and_assumptions_are_checked() {
    let src = "
kernel copy(x: ptr f16[k] align 16, y: ptr f16[k] align 16, k: i32, o: i32) where k % 8 == 0 grid(1) warps(1) {
    %xv = global_view %x [%k] strides [1]
    %yv = global_view %y [%k] strides [1]
    %t = load_global %xv [%o] : f16[256] layout spatial(32).local(8) via vector(8)
    store_global %t, %yv [%o] via vector(8)
}";
    let kernel = anybit_ir::text::parse_module(src).expect("parse").kernels.remove(0);
    let k = 512;
    let input: Vec<u32> = (0..k as u32).map(|i| DType::F16.encode(f64::from(i % 97))).collect();
    let mut args = vec![buf(DType::F16, &input), zeros(DType::F16, k), Arg::Int(k as i64), Arg::Int(256)];
    run(&kernel, &mut args);
    assert_eq!(codes_of(&args[1])[256..], input[256..]);
    let mut args = vec![buf(DType::F16, &input), zeros(DType::F16, k), Arg::Int(k as i64), Arg::Int(4)];
    let e = run_err(&kernel, &mut args);
    assert_eq!(e.kind, ErrorKind::BrokenVectorPromise, "{e}");
    let mut args = vec![buf(DType::F16, &input), zeros(DType::F16, 500), Arg::Int(500), Arg::Int(0)];
    let e = run_err(&kernel, &mut args);
    assert_eq!(e.kind, ErrorKind::BadArgument, "{e}");
    assert!(e.to_string().contains("k % 8 == 0"), "{e}");
}

/// `load_global … inside [0]` promises the tile inside the view along dim 0: the interpreter
/// checks it on every run — an origin that keeps the tile inside reads as a plain load, one
/// that does not is an error — and the text form reads back.
#[test]
fn inside_promises_are_checked() {
    let src = "
kernel copy(x: ptr f32[k], y: ptr f32[k], k: i32, o: i32) grid(1) warps(1) {
    %xv = global_view %x [%k] strides [1]
    %yv = global_view %y [%k] strides [1]
    %t = load_global %xv [%o] : f32[32] layout spatial(32) inside [0]
    store_global %t, %yv [%o]
}";
    let module = anybit_ir::text::parse_module(src).expect("parse");
    let printed = anybit_ir::text::print_module(&module);
    assert!(printed.contains("inside [0]"), "{printed}");
    assert_eq!(anybit_ir::text::parse_module(&printed).expect("reparse"), module);
    let kernel = module.kernels[0].clone();
    let input: Vec<u32> = (0..64u32).map(|i| DType::F32.encode(f64::from(i))).collect();
    let mut args = vec![buf(DType::F32, &input), zeros(DType::F32, 64), Arg::Int(64), Arg::Int(32)];
    run(&kernel, &mut args);
    assert_eq!(codes_of(&args[1])[32..], input[32..]);
    for origin in [40, -1] {
        let mut args = vec![buf(DType::F32, &input), zeros(DType::F32, 64), Arg::Int(64), Arg::Int(origin)];
        let e = run_err(&kernel, &mut args);
        assert_eq!(e.kind, ErrorKind::BrokenInsidePromise, "{e}");
        assert!(e.to_string().contains("inside [0]"), "{e}");
    }
    // Typing: the promised dims are increasing dims of the view.
    let bad = src.replace("inside [0]", "inside [1]");
    assert!(anybit_ir::text::parse_module(&bad).is_err());
}

/// `fma` rounds once: on operands where `a · b + c` rounded twice differs, it gives the
/// correctly rounded result (`f32::mul_add`); it is typed on f32 only.
#[test]
fn fma_rounds_once_and_is_f32_only() {
    let src = "
kernel f(x: ptr f32[4], y: ptr f32[4]) grid(1) warps(1) {
    %xv = global_view %x [4] strides [1]
    %yv = global_view %y [4] strides [1]
    %t = load_global %xv [0] : f32[4] layout spatial(4).replicated(8)
    %d = fma %t, %t, -1.0
    store_global %d, %yv [0]
}";
    let module = anybit_ir::text::parse_module(src).expect("parse");
    let printed = anybit_ir::text::print_module(&module);
    assert_eq!(anybit_ir::text::parse_module(&printed).expect("reparse"), module);
    let kernel = module.kernels[0].clone();
    // (1 + 2^-12)² − 1 = 2^-11 + 2^-24: the product rounded to f32 loses the 2^-24.
    let a = 1.0f32 + f32::EPSILON * 2048.0;
    let values = [a, 3.0, f32::NAN, -0.5];
    let mut args = vec![buf(DType::F32, &values.map(f32::to_bits)), zeros(DType::F32, 4)];
    run(&kernel, &mut args);
    let got: Vec<f32> = codes_of(&args[1]).into_iter().map(f32::from_bits).collect();
    assert_eq!(got[0], a.mul_add(a, -1.0));
    assert_ne!(got[0], a * a - 1.0, "the operands must tell one rounding from two");
    assert_eq!(got[1], 8.0);
    assert!(got[2].is_nan());
    assert_eq!(got[3], -0.75);
    let f16 = src.replace("f32", "f16");
    let e = anybit_ir::text::parse_module(&f16).unwrap_err();
    assert!(e.to_string().contains("`fma` computes on f32"), "{e}");
}
