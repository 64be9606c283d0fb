//! The GF(2) view of register layouts and swizzles.

use anybit_layouts::{LayoutError, LinearLayout, RegisterLayout, Swizzle};
use proptest::prelude::*;

use crate::common::{arb_layout, arb_pow2_layout, layout};

fn arb_pow2_pair() -> impl Strategy<Value = (RegisterLayout, RegisterLayout)> {
    (0usize..=3).prop_flat_map(|rank| {
        let one = prop_oneof![4 => arb_pow2_layout(rank), 1 => arb_pow2_layout(0)];
        (one.clone(), one)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn linear_apply_agrees_with_map(f in (0usize..=3).prop_flat_map(arb_pow2_layout)) {
        let linear = LinearLayout::from_register(&f).unwrap();
        prop_assert_eq!(linear.in_dims().len(), 2);
        prop_assert_eq!(1usize << linear.in_dims()[0], f.num_threads());
        prop_assert_eq!(1usize << linear.in_dims()[1], f.num_slots());
        for (t, i, c) in f.table() {
            prop_assert_eq!(linear.apply(t, i).unwrap(), c);
        }
        // Mode-like by construction, so it converts back.
        prop_assert_eq!(linear.to_register().unwrap(), f);
    }

    #[test]
    fn linear_compose_agrees_with_register_compose((f, g) in arb_pow2_pair()) {
        let h = f.compose(&g).unwrap();
        let lf = LinearLayout::from_register(&f).unwrap();
        let lg = LinearLayout::from_register(&g).unwrap();
        let lh = lf.compose(&lg).unwrap();
        prop_assert_eq!(&lh, &LinearLayout::from_register(&h).unwrap());
        for (t, i, c) in h.table() {
            prop_assert_eq!(lh.apply(t, i).unwrap(), c);
        }
    }

    #[test]
    fn swizzles_are_bijections(bits in 0u32..4, base in 0u32..4, extra in 0u32..3) {
        let shift = bits + extra;
        let swizzle = Swizzle::new(bits, base, shift).unwrap();
        let range = 1u64 << (base + shift + bits + 1);
        let mut seen = vec![false; range as usize];
        for x in 0..range {
            let y = swizzle.apply(x);
            prop_assert!(y < range);
            prop_assert!(!seen[y as usize], "{} hit twice", y);
            seen[y as usize] = true;
            prop_assert_eq!(swizzle.inverse(y), x);
        }
        // The linear view agrees with apply.
        let linear = swizzle.as_linear(base + shift + bits + 1).unwrap();
        for x in 0..range {
            prop_assert_eq!(linear.apply_dims(&[x]).unwrap(), vec![swizzle.apply(x)]);
        }
    }

    #[test]
    fn non_power_of_two_layouts_have_no_linear_view(f in arb_layout(2)) {
        let pow2 = f.canonicalize().dims().iter().flatten().all(|s| s.is_power_of_two())
            && f.num_threads().is_power_of_two();
        match LinearLayout::from_register(&f) {
            Ok(_) => prop_assert!(pow2),
            Err(e) => {
                prop_assert!(!pow2);
                let is_pow2_error = matches!(e, LayoutError::NotPowerOfTwo { .. });
                prop_assert!(is_pow2_error);
            }
        }
    }
}

#[test]
fn linear_view_of_the_mma_accumulator() {
    let c = layout("local(2,1).spatial(8,4).local(1,2)");
    let l = LinearLayout::from_register(&c).unwrap();
    assert_eq!(l.in_dims(), &[5, 2]);
    assert_eq!(l.out_dims(), &[4, 3]);
    // Output packing: row bits 0..4, column bits 4..7. Thread bits: lane bit 0 -> column
    // bit 1, lane bit 1 -> column bit 2, lane bits 2..5 -> row bits 0..3. Slot bit 0 ->
    // column bit 0, slot bit 1 -> row bit 3.
    assert_eq!(l.columns(), &[1 << 5, 1 << 6, 1 << 0, 1 << 1, 1 << 2, 1 << 4, 1 << 3]);
}

#[test]
fn replicated_axes_give_zero_columns() {
    let f = layout("replicated(2).spatial(2)");
    let l = LinearLayout::from_register(&f).unwrap();
    assert_eq!(l.columns(), &[1, 0]);
    assert_eq!(l.to_register().unwrap(), f);
}

#[test]
fn non_mode_like_matrices_do_not_convert() {
    // Thread bit 0 feeds both coordinate bits.
    let l = LinearLayout::new(vec![2, 0], vec![2], vec![0b11, 0b10]).unwrap();
    assert_eq!(l.apply(1, 0).unwrap(), vec![3]);
    assert_eq!(l.apply(3, 0).unwrap(), vec![1]);
    assert!(matches!(l.to_register(), Err(LayoutError::NotModeLike { .. })));
    // An output bit nobody hits.
    let l = LinearLayout::new(vec![1, 0], vec![2], vec![0b01]).unwrap();
    assert!(matches!(l.to_register(), Err(LayoutError::NotModeLike { .. })));
    // A slot bit that maps to nothing.
    let l = LinearLayout::new(vec![1, 1], vec![1], vec![0b1, 0]).unwrap();
    assert!(matches!(l.to_register(), Err(LayoutError::NotModeLike { .. })));
    // Not (thread, slot).
    let s = Swizzle::new(1, 0, 1).unwrap().as_linear(2).unwrap();
    assert!(matches!(s.to_register(), Err(LayoutError::NotModeLike { .. })));
}

#[test]
fn linear_layouts_reject_bad_parts() {
    assert!(matches!(LinearLayout::new(vec![2], vec![1], vec![1]), Err(LayoutError::InvalidLinear { .. })));
    assert!(matches!(LinearLayout::new(vec![1], vec![1], vec![0b10]), Err(LayoutError::InvalidLinear { .. })));
    assert!(matches!(LinearLayout::new(vec![0], vec![40, 40], vec![]), Err(LayoutError::InvalidLinear { .. })));
    let l = LinearLayout::new(vec![1, 1], vec![2], vec![1, 2]).unwrap();
    assert!(matches!(l.apply(2, 0), Err(LayoutError::InvalidLinear { .. })));
    assert!(matches!(l.apply_dims(&[0]), Err(LayoutError::RankMismatch { .. })));
    let other = LinearLayout::new(vec![1], vec![1], vec![1]).unwrap();
    assert!(matches!(l.compose(&other), Err(LayoutError::InvalidLinear { .. })));
    let rank2 = LinearLayout::new(vec![0, 0], vec![0, 0], vec![]).unwrap();
    let rank1 = LinearLayout::new(vec![0, 0], vec![0], vec![]).unwrap();
    assert!(matches!(rank2.compose(&rank1), Err(LayoutError::RankMismatch { .. })));
    assert!(matches!(
        LinearLayout::from_register(&layout("spatial(3)")),
        Err(LayoutError::NotPowerOfTwo { size: 3, .. })
    ));
    assert!(matches!(
        LinearLayout::from_register(&layout("replicated(3).local(2)")),
        Err(LayoutError::NotPowerOfTwo { size: 3, .. })
    ));
}

#[test]
fn swizzle_parameters_are_checked() {
    assert!(matches!(Swizzle::new(3, 4, 2), Err(LayoutError::InvalidSwizzle { .. })));
    assert!(matches!(Swizzle::new(3, 60, 3), Err(LayoutError::InvalidSwizzle { .. })));
    assert!(matches!(Swizzle::new(3, u32::MAX, 3), Err(LayoutError::InvalidSwizzle { .. })));
    let s = Swizzle::new(3, 4, 3).unwrap();
    assert_eq!(s.top_bit(), 10);
    // Byte 0b_101_0000000 (row 5 of 128-byte rows) -> chunk bits 4..7 XOR 5.
    assert_eq!(s.apply(5 << 7), (5 << 7) | (5 << 4));
    assert_eq!(s.apply(5 << 7 | 0b1111), (5 << 7) | (5 << 4) | 0b1111);
    assert!(matches!(s.as_linear(9), Err(LayoutError::InvalidLinear { .. })));
    assert!(matches!(s.as_linear(65), Err(LayoutError::InvalidLinear { .. })));
    // Extremes do not overflow.
    let wide = Swizzle::new(32, 0, 32).unwrap();
    assert_eq!(wide.apply(u64::MAX), !0xffff_ffff);
    let empty = Swizzle::new(0, 0, 64).unwrap();
    assert_eq!(empty.apply(12345), 12345);
}
