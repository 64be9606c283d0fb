//! `anybit dtype`.

use anybit::ir::dtype::{DType, ExactValue, all_types_up_to};

use super::run::{failure, success};

#[test]
fn properties_of_named_types() {
    insta::assert_snapshot!("dtype_f4e2m1", success(&["dtype", "f4e2m1"]));
    insta::assert_snapshot!("dtype_f8e4m3", success(&["dtype", "f8e4m3"]));
    insta::assert_snapshot!("dtype_f8e5m2", success(&["dtype", "f8e5m2"]));
    insta::assert_snapshot!("dtype_i3", success(&["dtype", "i3"]));
    insta::assert_snapshot!("dtype_bf16", success(&["dtype", "bf16"]));
    insta::assert_snapshot!("dtype_f16e15m0", success(&["dtype", "f16e15m0"]));
}

#[test]
fn tables() {
    insta::assert_snapshot!("table_f4e2m1", success(&["dtype", "f4e2m1", "--table"]));
    insta::assert_snapshot!("table_i3", success(&["dtype", "i3", "--table"]));
    insta::assert_snapshot!("table_f5e2m2_ieee", success(&["dtype", "f5e2m2_ieee", "--table"]));
}

/// Every line of every table: N binary digits, a space, a decimal that reads back exactly as
/// the code's value.
#[test]
fn every_table_line_reads_back() {
    for t in all_types_up_to(8).into_iter().chain(["f12e5m6".parse::<DType>().unwrap()]) {
        let name = t.to_string();
        let out = success(&["dtype", &name, "--table"]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len() as u64, t.num_codes(), "{name}");
        for (code, line) in lines.iter().enumerate() {
            let (bits, text) = line.split_once(' ').unwrap_or_else(|| panic!("{name}: {line}"));
            assert_eq!(bits.len() as u32, t.bits(), "{name}: {line}");
            assert_eq!(u32::from_str_radix(bits, 2).ok(), Some(code as u32), "{name}: {line}");
            let value = ExactValue::parse_exact(text).unwrap_or_else(|e| panic!("{name}: {line}: {e}"));
            let expected = t.decode(code as u32).unwrap();
            assert!(value == expected || (value.is_nan() && expected.is_nan()), "{name}: {line}");
        }
    }
}

#[test]
fn bad_requests_fail_cleanly() {
    insta::assert_snapshot!("unknown_type", failure(&["dtype", "f8e4"]));
    insta::assert_snapshot!("invalid_type", failure(&["dtype", "f9e4m3"]));
    insta::assert_snapshot!("table_too_wide", failure(&["dtype", "f16", "--table"]));
    let run = super::run::anybit(&["dtype"]);
    assert!(!run.success && run.stderr.contains("NAME"), "{}", run.stderr);
}
