//! The low-bit matmul generator: every supported format builds, bad formats and shapes are
//! rejected with a clear error, packing and the reference are consistent.

use anybit_frontend::lowbit::{FormatError, QuantizedWeights, WeightFormat, build_kernel, eval_grid, grid};
use anybit_ir::DType;

pub const WEIGHT_TYPES: &[&str] = &[
    "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "i2", "i3", "i4", "i5", "i6", "i7", "i8", "f3e1m1", "f4e2m1",
    "f5e2m2", "f6e3m2", "f6e2m3", "f7e3m3", "f8e4m3", "f8e5m2",
];

pub fn format(weight: &str, group_size: usize, zero_point: bool, activation: DType) -> WeightFormat {
    WeightFormat { weight: weight.parse().unwrap(), group_size, scale: DType::F16, zero_point, activation }
}

#[test]
fn every_weight_type_builds() {
    for &weight in WEIGHT_TYPES {
        let t: DType = weight.parse().unwrap();
        for activation in [DType::F16, DType::BF16] {
            for group in [32, 64, 128] {
                let f = format(weight, group, t.is_integer(), activation);
                let kernel = build_kernel(&f).unwrap_or_else(|e| panic!("{weight} g{group}: {e}"));
                assert_eq!(eval_grid(&kernel, 33, 130, 256), Some(grid(33, 130).iter().map(|&g| g as u64).collect()));
            }
        }
    }
}

#[test]
fn unsupported_formats_are_rejected() {
    let mut f = format("u4", 128, false, DType::F16);
    f.weight = "u9".parse().unwrap();
    assert_eq!(build_kernel(&f).unwrap_err(), FormatError::WeightType(f.weight));
    let f = format("f4e2m1", 128, true, DType::F16);
    assert!(matches!(build_kernel(&f), Err(FormatError::ZeroPointForFloat(_))));
    let f = format("u4", 48, false, DType::F16);
    assert_eq!(build_kernel(&f).unwrap_err(), FormatError::GroupSize(48));
    let mut f = format("u4", 128, false, DType::F16);
    f.activation = DType::F32;
    assert!(matches!(build_kernel(&f), Err(FormatError::HalfType { what: "activation", .. })));
    let f = format("u4", 128, false, DType::F16);
    assert_eq!(f.validate_shape(16, 64, 200).unwrap_err().to_string(), "K = 200 is not a multiple of the group size 128");
}

#[test]
fn packing_pads_rows_to_whole_bytes() {
    let f = format("u3", 32, false, DType::F16);
    let (k, n) = (32, 5);
    let codes: Vec<u32> = (0..k * n).map(|i| (i % 8) as u32).collect();
    let weights = QuantizedWeights::new(f, k, n, codes.clone(), vec![0x3c00; n], vec![]).unwrap();
    assert_eq!(weights.row_bytes(), 2);
    let bytes = weights.pack_weights().unwrap();
    assert_eq!(bytes.len(), k * 2);
    for row in 0..k {
        let unpacked = anybit_ir::packing::unpack(3, &bytes[row * 2..row * 2 + 2], n).unwrap();
        assert_eq!(unpacked, codes[row * n..(row + 1) * n]);
    }
    assert!(QuantizedWeights::new(f, k, n, vec![8; k * n], vec![0; n], vec![]).is_err());
}
