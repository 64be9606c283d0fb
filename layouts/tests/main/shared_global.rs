//! Shared-memory and global-memory layouts.

use anybit_layouts::{BitAddress, GlobalLayout, LayoutError, SharedLayout, StridedMode, Swizzle};
use proptest::prelude::*;

use crate::common::all_coords;

#[test]
fn shared_offsets() {
    let r = SharedLayout::row_major(&[4, 8]).unwrap();
    assert_eq!(r.offset(&[2, 3]).unwrap(), 19);
    assert_eq!((r.size_in_elements(), r.cosize()), (32, 32));
    let c = SharedLayout::column_major(&[4, 8]).unwrap();
    assert_eq!(c.offset(&[2, 3]).unwrap(), 14);
    let padded = SharedLayout::strided(&[4, 8], &[9, 1]).unwrap();
    assert_eq!(padded.cosize(), 35);
    assert!(padded.is_injective().unwrap());
    let broadcast = SharedLayout::strided(&[4, 8], &[0, 1]).unwrap();
    assert!(!broadcast.is_injective().unwrap());
    // Two modes in dim 0: rows split into 2 x 2 with strides 8 and 16.
    let m = SharedLayout::from_modes(vec![
        vec![StridedMode { size: 2, stride: 8 }, StridedMode { size: 2, stride: 16 }],
        vec![StridedMode { size: 8, stride: 1 }],
    ])
    .unwrap();
    assert_eq!(m.shape(), vec![4, 8]);
    assert_eq!(m.offset(&[1, 0]).unwrap(), 16);
    assert_eq!(m.offset(&[2, 5]).unwrap(), 13);
    assert_eq!(m.rank(), 2);
    assert!(m.swizzle().is_none());
}

#[test]
fn shared_errors() {
    let r = SharedLayout::row_major(&[4, 8]).unwrap();
    assert_eq!(r.offset(&[4, 0]), Err(LayoutError::CoordinateOutOfRange { dim: 0, coord: 4, size: 4 }));
    assert_eq!(r.offset(&[0]), Err(LayoutError::RankMismatch { left: 2, right: 1 }));
    assert!(matches!(SharedLayout::row_major(&[0, 8]), Err(LayoutError::ZeroSize { .. })));
    assert!(matches!(SharedLayout::strided(&[4], &[1, 1]), Err(LayoutError::RankMismatch { .. })));
    assert!(matches!(SharedLayout::strided(&[4, 4], &[usize::MAX, 1]), Err(LayoutError::Overflow { .. })));
    assert!(matches!(SharedLayout::row_major(&[usize::MAX, 2]), Err(LayoutError::Overflow { .. })));
    assert_eq!(r.address(&[0, 0], 0), Err(LayoutError::InvalidElementBits { bits: 0 }));
    assert_eq!(r.address(&[0, 0], 65), Err(LayoutError::InvalidElementBits { bits: 65 }));
}

#[test]
fn byte_addresses_of_sub_byte_and_odd_widths() {
    let r = SharedLayout::row_major(&[4, 8]).unwrap();
    // 4-bit elements: two per byte.
    assert_eq!(r.address(&[0, 3], 4).unwrap(), BitAddress { byte: 1, bit: 4 });
    // 3-bit elements straddle bytes; without a swizzle that is fine.
    assert_eq!(r.address(&[0, 3], 3).unwrap(), BitAddress { byte: 1, bit: 1 });
    // 16-bit elements.
    assert_eq!(r.address(&[1, 0], 16).unwrap(), BitAddress { byte: 16, bit: 0 });
}

#[test]
fn swizzled_addresses() {
    // 64x64 f16 tile, 128-byte rows, Swizzle<3,4,3>: 16-byte chunk c of row r goes to c ^ (r % 8).
    let s = SharedLayout::row_major(&[64, 64]).unwrap().with_swizzle(Swizzle::new(3, 4, 3).unwrap());
    for row in 0..64 {
        for col in 0..64 {
            let a = s.address(&[row, col], 16).unwrap();
            let chunk = (col / 8) ^ (row % 8);
            let expected = (row * 128 + chunk * 16 + (col % 8) * 2) as u64;
            assert_eq!(a, BitAddress { byte: expected, bit: 0 }, "({row},{col})");
        }
    }
    // 3-bit elements: a 16-byte chunk (128 bits) is not a multiple of 3 bits.
    assert_eq!(s.address(&[0, 0], 3), Err(LayoutError::SwizzleSplitsElement { elem_bits: 3, base: 4 }));
    // 24-bit elements: 128 bits is not a multiple of 24 either.
    assert!(matches!(s.address(&[0, 0], 24), Err(LayoutError::SwizzleSplitsElement { .. })));
    // 4-bit elements divide 8: always fine. 32-bit elements divide the chunk.
    assert!(s.address(&[0, 0], 4).is_ok());
    assert!(s.address(&[0, 0], 32).is_ok());
    // With 1-byte chunks (base 0), a 16-bit element spans two chunks; 2-bit ones do not.
    let one_byte = SharedLayout::row_major(&[8]).unwrap().with_swizzle(Swizzle::new(1, 0, 1).unwrap());
    assert!(matches!(one_byte.address(&[0], 16), Err(LayoutError::SwizzleSplitsElement { .. })));
    assert!(one_byte.address(&[0], 2).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn swizzled_addresses_stay_distinct(
        rows in 1usize..16, cols in 1usize..16,
        bits in 0u32..3, base in 0u32..3, extra in 0u32..2,
        width in prop::sample::select(vec![1u32, 2, 4, 8, 16, 32]),
    ) {
        let l = SharedLayout::row_major(&[rows, cols]).unwrap()
            .with_swizzle(Swizzle::new(bits, base, bits + extra).unwrap());
        let mut seen = std::collections::HashSet::new();
        for c in all_coords(&[rows, cols]) {
            match l.address(&c, width) {
                Ok(a) => prop_assert!(seen.insert((a.byte, a.bit))),
                Err(e) => {
                    let splits = matches!(e, LayoutError::SwizzleSplitsElement { .. });
                    prop_assert!(splits);
                }
            }
        }
    }
}

#[test]
fn global_offsets() {
    let g = GlobalLayout::row_major(&[4, 8]).unwrap();
    assert_eq!(g.offset(&[2, 3]).unwrap(), 19);
    assert!(g.is_contiguous_row_major());
    assert!(!g.is_contiguous_column_major());
    assert_eq!(g.offset_range(), (0, 31));
    let c = GlobalLayout::column_major(&[4, 8]).unwrap();
    assert!(c.is_contiguous_column_major());
    assert_eq!(c.offset(&[2, 3]).unwrap(), 14);
    // Size-1 dims may have any stride.
    let one = GlobalLayout::new(&[1, 8], &[1000, 1], 0).unwrap();
    assert!(one.is_contiguous_row_major());
    // Negative and zero strides.
    let flipped = GlobalLayout::new(&[4, 8], &[8, -1], 7).unwrap();
    assert_eq!(flipped.offset(&[0, 7]).unwrap(), 0);
    assert_eq!(flipped.offset_range(), (0, 31));
    assert!(!flipped.is_contiguous_row_major());
    let broadcast = GlobalLayout::new(&[4, 8], &[0, 1], 0).unwrap();
    assert_eq!(broadcast.offset(&[3, 2]).unwrap(), 2);
    assert_eq!(broadcast.num_elements(), 32);
    let shifted = g.with_base_offset(-10).unwrap();
    assert_eq!(shifted.offset(&[0, 0]).unwrap(), -10);
    assert_eq!(shifted.base_offset(), -10);
}

#[test]
fn global_errors() {
    let g = GlobalLayout::row_major(&[4, 8]).unwrap();
    assert_eq!(g.offset(&[0, 8]), Err(LayoutError::CoordinateOutOfRange { dim: 1, coord: 8, size: 8 }));
    assert_eq!(g.offset(&[0, 0, 0]), Err(LayoutError::RankMismatch { left: 2, right: 3 }));
    assert!(matches!(GlobalLayout::new(&[4], &[1, 2], 0), Err(LayoutError::RankMismatch { .. })));
    assert!(matches!(GlobalLayout::new(&[0], &[1], 0), Err(LayoutError::ZeroSize { .. })));
    assert!(matches!(GlobalLayout::new(&[4], &[i64::MAX / 2], 0), Err(LayoutError::Overflow { .. })));
    assert!(matches!(g.with_base_offset(i64::MAX - 5), Err(LayoutError::Overflow { .. })));
    assert!(matches!(GlobalLayout::row_major(&[usize::MAX / 2, 4]), Err(LayoutError::Overflow { .. })));
}
