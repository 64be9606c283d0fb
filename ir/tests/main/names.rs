//! Type names: every type prints and parses back; bad names give errors that say why.

use anybit_ir::dtype::{DType, DTypeError, FloatFormat, SpecialValues, all_types_up_to};

#[test]
fn every_type_name_round_trips() {
    for t in all_types_up_to(16).into_iter().chain([DType::F32, DType::uint(32).unwrap(), DType::int(32).unwrap()]) {
        let name = t.to_string();
        assert_eq!(name.parse::<DType>(), Ok(t), "{name}");
    }
}

#[test]
fn names_denote_the_documented_formats() {
    let cases: &[(&str, u32, u32, SpecialValues)] = &[
        ("f4e2m1", 2, 1, SpecialValues::FiniteOnly),
        ("f6e3m2", 3, 2, SpecialValues::FiniteOnly),
        ("f6e2m3", 2, 3, SpecialValues::FiniteOnly),
        ("f8e4m3", 4, 3, SpecialValues::NanOnly),
        ("f8e5m2", 5, 2, SpecialValues::Ieee),
        ("f8e4m3_ieee", 4, 3, SpecialValues::Ieee),
        ("f8e5m2_finite", 5, 2, SpecialValues::FiniteOnly),
        ("f16", 5, 10, SpecialValues::Ieee),
        ("bf16", 8, 7, SpecialValues::Ieee),
        ("f32", 8, 23, SpecialValues::Ieee),
        ("f16e5m10", 5, 10, SpecialValues::FiniteOnly),
    ];
    for &(name, e, m, special) in cases {
        let DType::Float(f) = name.parse::<DType>().unwrap() else { panic!("{name} is not a float") };
        assert_eq!((f.exponent_bits(), f.mantissa_bits(), f.special()), (e, m, special), "{name}");
    }
    assert_eq!("f16e5m10_ieee".parse::<DType>(), Ok(DType::F16));
    assert_eq!("f16e8m7_ieee".parse::<DType>(), Ok(DType::BF16));
    assert_eq!(DType::Float(FloatFormat::new(4, 3, SpecialValues::NanOnly).unwrap()).to_string(), "f8e4m3");
    assert_eq!(DType::Float(FloatFormat::new(4, 3, SpecialValues::FiniteOnly).unwrap()).to_string(), "f8e4m3_finite");
}

#[test]
fn bad_names_say_what_is_wrong() {
    let invalid = |name: &str, reason_part: &str| match name.parse::<DType>() {
        Err(DTypeError::Invalid { name: got, reason }) => {
            assert_eq!(got, name);
            assert!(reason.contains(reason_part), "{name}: {reason}");
        }
        other => panic!("{name}: expected Invalid, got {other:?}"),
    };
    invalid("u0", "1 to 32");
    invalid("u33", "1 to 32");
    invalid("i1", "2 to 32");
    invalid("f9e4m3", "9 bits ≠");
    invalid("f17e8m8", "at most 16 bits");
    invalid("f8e0m7", "at least 1 exponent bit");
    invalid("f3e1m1_ieee", "2 exponent bits");
    invalid("f5e4m0_ieee", "1 mantissa bit");
    invalid("f2e1m0_nan", "only nonzero");
    invalid("f8e4m3_fnuz", "_finite, _nan or _ieee");
    for name in [
        "",
        "x4",
        "u",
        "u-1",
        "u04",
        "f8",
        "f8e4",
        "f8e4m",
        "fe4m3",
        "float8",
        "F16",
        "u4 ",
        "u99999999999",
        "i4x",
        "f8e4m3fn",
    ] {
        assert!(matches!(name.parse::<DType>(), Err(DTypeError::UnknownName { .. })), "{name:?}");
    }
    let message = "f8e4m".parse::<DType>().unwrap_err().to_string();
    assert!(message.contains("unknown data type `f8e4m`") && message.contains("fNeEmM"), "{message}");
}
