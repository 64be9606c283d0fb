//! Every code of every data type of at most 12 bits: round trips, ordering, sign symmetry,
//! exact decimal text, documented properties, and rounding against a brute-force oracle.

use std::cmp::Ordering;

use anybit_ir::DType;
use anybit_ir::dtype::{Conversion, Dyadic, ExactValue, Overflow, Rounding, all_types_up_to};

use super::common::{Rng, dtype};

const NON_SATURATING: Conversion = Conversion { rounding: Rounding::NearestEven, overflow: Overflow::NonSaturating };

fn values(t: DType) -> Vec<ExactValue> {
    (0..t.num_codes() as u32).map(|c| t.decode(c).unwrap()).collect()
}

#[test]
fn the_type_list_is_complete() {
    let types = all_types_up_to(12);
    // 12 unsigned, 11 signed; floats: every (E, M) with E ≥ 1 under each valid policy.
    assert_eq!(types.iter().filter(|t| matches!(t, DType::Uint(_))).count(), 12);
    assert_eq!(types.iter().filter(|t| matches!(t, DType::Int(_))).count(), 11);
    for name in ["f3e1m1", "f4e2m1", "f5e2m2", "f6e3m2", "f6e2m3", "f7e3m3", "f8e4m3", "f8e5m2", "f12e11m0", "f2e1m0"] {
        assert!(types.contains(&dtype(name)), "{name}");
    }
}

#[test]
fn every_code_round_trips() {
    for t in all_types_up_to(12) {
        for (code, value) in values(t).into_iter().enumerate() {
            let code = code as u32;
            match value {
                ExactValue::Finite(_) => {
                    assert_eq!(t.encode_exact(value, Conversion::SATURATING), code, "{t} {code:#x} = {value}");
                    if let Some(x) = value.to_f64() {
                        assert_eq!(t.encode(x), code, "{t} {code:#x} = {value} via f64");
                    }
                }
                ExactValue::Infinite { negative } => {
                    let x = if negative { f64::NEG_INFINITY } else { f64::INFINITY };
                    assert_eq!(t.encode_with(x, NON_SATURATING), code, "{t} {code:#x} = {value}");
                }
                ExactValue::Nan => {
                    let back = t.decode(t.encode(f64::NAN)).unwrap();
                    assert!(back.is_nan(), "{t}: NaN encodes to a non-NaN code");
                }
            }
        }
    }
}

#[test]
fn codes_are_ordered() {
    for t in all_types_up_to(12) {
        let all = values(t);
        // Codes in increasing numeric order: unsigned by code, signed from the most negative.
        let order: Vec<usize> = match t {
            DType::Uint(_) => (0..all.len()).collect(),
            DType::Int(_) => (all.len() / 2..all.len()).chain(0..all.len() / 2).collect(),
            // Floats: positive magnitudes increase with the code.
            DType::Float(_) => (0..all.len() / 2).collect(),
        };
        let ordered: Vec<ExactValue> = order.iter().map(|&c| all[c]).filter(|v| !v.is_nan()).collect();
        for pair in ordered.windows(2) {
            let increasing = match (pair[0], pair[1]) {
                (ExactValue::Finite(a), ExactValue::Finite(b)) => a.cmp_value(b) == Ordering::Less,
                (ExactValue::Finite(_), ExactValue::Infinite { negative: false }) => true,
                _ => false,
            };
            assert!(increasing, "{t}: {} then {}", pair[0], pair[1]);
        }
        assert_eq!(
            ordered.last().and_then(|v| v.finite()).map(|m| m == t.max()),
            if t.special_values() == Some(anybit_ir::SpecialValues::Ieee) { None } else { Some(true) },
            "{t}: last value"
        );
    }
}

#[test]
fn negation_is_symmetric() {
    for t in all_types_up_to(12) {
        let all = values(t);
        let n = all.len() as u32;
        for code in 0..n {
            let (value, mirror) = match t {
                DType::Float(f) => (all[code as usize], all[(code ^ f.sign_mask()) as usize]),
                // Two's complement: -code mod 2^N, except the most negative value.
                DType::Int(_) if code != n / 2 => {
                    let (value, mirror) =
                        (all[code as usize].finite().unwrap(), all[((n - code) % n) as usize].finite().unwrap());
                    assert_eq!(mirror.cmp_value(value.negate()), Ordering::Equal, "{t} {code:#x}");
                    continue;
                }
                _ => continue,
            };
            match value {
                ExactValue::Nan => assert!(mirror.is_nan(), "{t} {code:#x}"),
                _ => assert_eq!(mirror, value.negate(), "{t} {code:#x}"),
            }
        }
    }
}

#[test]
fn decimal_text_reads_back_exactly() {
    for t in all_types_up_to(12) {
        for (code, value) in values(t).into_iter().enumerate() {
            let text = value.to_string();
            let back = ExactValue::parse_exact(&text).unwrap_or_else(|e| panic!("{t} {code:#x}: {e}"));
            assert!(back == value || (back.is_nan() && value.is_nan()), "{t} {code:#x}: {text} reads back as {back}");
            // Rust's own (correctly rounded) parser gets the same f64 from the text.
            if let Some(x) = value.to_f64() {
                let parsed: f64 = text.parse().unwrap();
                assert!(parsed.to_bits() == x.to_bits() || (x.is_nan() && parsed.is_nan()), "{t} {code:#x}: {text}");
            }
        }
    }
}

fn exact(text: &str) -> Dyadic {
    Dyadic::parse_exact(text).unwrap()
}

#[test]
fn documented_properties_hold() {
    // (name, bits, bias, max, min normal, min subnormal)
    type Row = (&'static str, u32, i32, &'static str, &'static str, Option<&'static str>);
    let table: &[Row] = &[
        ("f4e2m1", 4, 1, "6", "1", Some("0.5")),
        ("f6e2m3", 6, 1, "7.5", "1", Some("0.125")),
        ("f6e3m2", 6, 3, "28", "0.25", Some("0.0625")),
        ("f8e4m3", 8, 7, "448", "0.015625", Some("0.001953125")),
        ("f8e5m2", 8, 15, "57344", "0.00006103515625", Some("0.0000152587890625")),
        ("f8e4m3_finite", 8, 7, "480", "0.015625", Some("0.001953125")),
        ("f8e4m3_ieee", 8, 7, "240", "0.015625", Some("0.001953125")),
        ("f3e1m1", 3, 0, "3", "2", Some("1")),
        ("f16", 16, 15, "65504", "0.00006103515625", Some("5.9604644775390625e-8")),
        (
            "bf16",
            16,
            127,
            "338953138925153547590470800371487866880",
            "1.1754943508222875079687365372222456778186655567720875215087517062784172594547271728515625e-38",
            None,
        ),
        (
            "f32",
            32,
            127,
            "340282346638528859811704183484516925440",
            "1.1754943508222875079687365372222456778186655567720875215087517062784172594547271728515625e-38",
            None,
        ),
        ("f5e4m0", 5, 7, "256", "0.015625", None),
        ("u4", 4, 0, "15", "0", None),
        ("i4", 4, 0, "7", "0", None),
        ("u32", 32, 0, "4294967295", "0", None),
    ];
    for &(name, bits, bias, max, min_normal, min_subnormal) in table {
        let t = dtype(name);
        assert_eq!(t.bits(), bits, "{name}");
        assert_eq!(t.max(), exact(max), "{name} max");
        if t.is_float() {
            assert_eq!(t.bias(), Some(bias), "{name}");
            assert_eq!(t.min(), exact(max).negate(), "{name} min");
            assert_eq!(t.min_normal(), Some(exact(min_normal)), "{name} min normal");
            if name != "bf16" && name != "f32" {
                assert_eq!(t.min_subnormal(), min_subnormal.map(exact), "{name} min subnormal");
            }
            assert!(t.is_signed());
        }
    }
    assert_eq!(dtype("bf16").min_subnormal(), Dyadic::new(false, 1, -133));
    assert_eq!(dtype("f32").min_subnormal(), Dyadic::new(false, 1, -149));
    assert_eq!(dtype("i4").min(), exact("-8"));
    assert_eq!(dtype("u4").min(), exact("0"));
    // Properties agree with the codes.
    for t in all_types_up_to(12) {
        if let DType::Float(f) = t {
            assert_eq!(t.decode(f.max_code()).unwrap(), ExactValue::Finite(t.max()), "{t}");
            assert_eq!(t.min_normal().map(ExactValue::Finite), t.decode(1 << f.mantissa_bits()).ok(), "{t}");
            if f.mantissa_bits() > 0 {
                assert_eq!(t.min_subnormal().map(ExactValue::Finite), t.decode(1).ok(), "{t}");
            }
            assert_eq!(f.infinity_code().is_some(), f.has_infinity());
            if let Some(nan) = f.nan_code() {
                assert!(t.decode(nan).unwrap().is_nan(), "{t}");
            }
        }
        assert_eq!(t.fits_f64(), values(t).iter().all(|v| v.to_f64().is_some()), "{t}");
    }
}

/// Nearest-code rounding found by search over all codes, with the overflow rules written out.
fn oracle(t: DType, x: f64, conversion: Conversion) -> u32 {
    let f = t.float_format().unwrap();
    let sign = if x.is_sign_negative() { f.sign_mask() } else { 0 };
    let max = t.max().to_f64().unwrap();
    let overflow = |infinite: bool| match conversion.overflow {
        Overflow::NonSaturating if infinite || conversion.rounding == Rounding::NearestEven => {
            f.infinity_code().or(f.nan_code()).unwrap_or(f.max_code())
        }
        _ => f.max_code(),
    };
    if x.is_nan() {
        return f.nan_code().map_or(0, |nan| sign | nan);
    }
    if x.is_infinite() {
        return sign | overflow(true);
    }
    let magnitude = x.abs();
    // (value, code) of every finite nonnegative code, and the value one step past max.
    let mut candidates: Vec<(f64, u32)> =
        (0..f.sign_mask()).filter_map(|c| t.decode_f64(c).ok().filter(|v| v.is_finite()).map(|v| (v, c))).collect();
    let step = 2f64.powi(t.max().leading_exponent().unwrap() as i32 - f.mantissa_bits() as i32);
    candidates.push((max + step, f.max_code() + 1));
    let below = candidates.iter().filter(|(v, _)| *v <= magnitude).max_by(|a, b| a.0.total_cmp(&b.0)).copied().unwrap();
    let above = candidates.iter().filter(|(v, _)| *v >= magnitude).min_by(|a, b| a.0.total_cmp(&b.0)).copied();
    let chosen = match (conversion.rounding, above) {
        (Rounding::TowardZero, _) | (_, None) => below,
        (Rounding::NearestEven, Some(above)) => {
            let (down, up) = (magnitude - below.0, above.0 - magnitude);
            if down < up || (down == up && below.1 % 2 == 0) { below } else { above }
        }
    };
    if chosen.1 > f.max_code() || (above.is_none() && magnitude > max) {
        sign | overflow(false)
    } else {
        sign | chosen.1
    }
}

#[test]
fn rounding_matches_a_brute_force_oracle() {
    let mut rng = Rng::new(7);
    let conversions = [
        Conversion::SATURATING,
        NON_SATURATING,
        Conversion { rounding: Rounding::TowardZero, overflow: Overflow::Saturate },
        Conversion { rounding: Rounding::TowardZero, overflow: Overflow::NonSaturating },
    ];
    for t in all_types_up_to(9).into_iter().filter(|t| t.is_float() && t.fits_f64()) {
        let max = t.max().to_f64().unwrap();
        let finite: Vec<f64> =
            (0..t.num_codes() as u32).filter_map(|c| t.decode_f64(c).ok()).filter(|v| v.is_finite()).collect();
        for _ in 0..400 {
            // Near a code (ties and their neighbours included), or anywhere in a wide range.
            let x = match rng.below(4) {
                0 => {
                    let a = finite[rng.below(finite.len() as u64) as usize];
                    let b = finite[rng.below(finite.len() as u64) as usize];
                    let mid = (a + b) / 2.0;
                    [mid, mid.next_up(), mid.next_down()][rng.below(3) as usize]
                }
                1 => (rng.unit() - 0.5) * 4.0 * max,
                2 => f64::from_bits(rng.next_u64()),
                _ => [f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 0.0, -0.0, max * 1.0001, -max * 3.0]
                    [rng.below(7) as usize],
            };
            for conversion in conversions {
                let (ours, expected) = (t.encode_with(x, conversion), oracle(t, x, conversion));
                assert_eq!(ours, expected, "{t} {x:e} {conversion:?}: ours {ours:#x}, oracle {expected:#x}");
            }
        }
    }
}

#[test]
fn wide_types_round_like_the_host() {
    // f32: Rust's `as f32` rounds to nearest even and overflows to infinity.
    let mut rng = Rng::new(11);
    for _ in 0..20_000 {
        let x = f64::from_bits(rng.next_u64());
        let expected = x as f32;
        let ours = DType::F32.encode(x);
        assert!(ours == expected.to_bits() || (x.is_nan() && f32::from_bits(ours).is_nan()), "{x:e}");
        let code = rng.next_u64() as u32;
        let decoded = DType::F32.decode_f32(code).unwrap();
        let host = f32::from_bits(code);
        assert!(decoded.to_bits() == host.to_bits() || (host.is_nan() && decoded.is_nan()), "{code:#x}");
    }
    // Integers: round half to even, saturate.
    for (name, x, code) in [
        ("u8", 255.5, 255),
        ("u8", 254.5, 254),
        ("u8", -3.0, 0),
        ("i8", -128.5, 0x80),
        ("i8", 126.5, 126),
        ("i16", 1e9, 0x7fff),
        ("u1", 0.5, 0),
        ("u1", 0.51, 1),
    ] {
        assert_eq!(dtype(name).encode(x), code, "{name} {x}");
    }
}
