//! Algebraic laws of register layouts, checked on random layouts.

use std::collections::BTreeSet;

use anybit_layouts::{LayoutError, RegisterLayout};
use proptest::prelude::*;

use crate::common::{all_coords, arb_any_layout, arb_layout, arb_unreplicated, inverse_table, layout, table};

/// Two or three layouts of one random rank (rank-0 ones mixed in sometimes).
fn arb_pair() -> impl Strategy<Value = (RegisterLayout, RegisterLayout)> {
    (0usize..=3).prop_flat_map(|rank| {
        let one = prop_oneof![4 => arb_layout(rank), 1 => arb_layout(0)];
        (one.clone(), one)
    })
}

fn arb_triple() -> impl Strategy<Value = (RegisterLayout, RegisterLayout, RegisterLayout)> {
    (0usize..=2).prop_flat_map(|rank| {
        let one = prop_oneof![4 => crate::common::arb_layout_with(rank, vec![1, 2, 3], 2, 1), 1 => arb_layout(0)];
        (one.clone(), one.clone(), one)
    })
}

/// Checks `h(t, i) = f(t / T_g, i / m_g) * shape_g + g(t % T_g, i % m_g)` on every input.
fn check_compose_formula(f: &RegisterLayout, g: &RegisterLayout, h: &RegisterLayout) {
    let rank = h.rank();
    let lift = |l: &RegisterLayout, c: Vec<usize>| if l.rank() == 0 { vec![0; rank] } else { c };
    let shape_g = if g.rank() == 0 { vec![1; rank] } else { g.shape() };
    assert_eq!(h.num_threads(), f.num_threads() * g.num_threads());
    assert_eq!(h.num_slots(), f.num_slots() * g.num_slots());
    for t in 0..h.num_threads() {
        for i in 0..h.num_slots() {
            let outer = lift(f, f.map(t / g.num_threads(), i / g.num_slots()).unwrap());
            let inner = lift(g, g.map(t % g.num_threads(), i % g.num_slots()).unwrap());
            let expected: Vec<usize> = (0..rank).map(|d| outer[d] * shape_g[d] + inner[d]).collect();
            assert_eq!(h.map(t, i).unwrap(), expected, "t={t} i={i}");
        }
    }
}

/// `f` with rank-0 lifted to `rank` (size-1 dims).
fn lifted(f: &RegisterLayout, rank: usize) -> RegisterLayout {
    f.compose(&RegisterLayout::local(&vec![1; rank]).unwrap()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn compose_matches_the_kronecker_formula((f, g) in arb_pair()) {
        let h = f.compose(&g).unwrap();
        prop_assert!(h.is_canonical());
        check_compose_formula(&f, &g, &h);
    }

    #[test]
    fn compose_is_associative((a, b, c) in arb_triple()) {
        let left = a.compose(&b).unwrap().compose(&c).unwrap();
        let right = a.compose(&b.compose(&c).unwrap()).unwrap();
        prop_assert_eq!(&left, &right);
        prop_assert_eq!(table(&left), table(&right));
    }

    #[test]
    fn unit_is_a_two_sided_identity(f in arb_any_layout()) {
        let unit = RegisterLayout::unit();
        prop_assert_eq!(unit.compose(&f).unwrap(), f.clone());
        prop_assert_eq!(f.compose(&unit).unwrap(), f.clone());
        prop_assert_eq!(table(&f.compose(&unit).unwrap()), table(&f));
    }

    #[test]
    fn divide_right_undoes_compose((a, b) in arb_pair()) {
        let h = a.compose(&b).unwrap();
        let q = h.divide_right(&b).unwrap();
        prop_assert!(q.is_canonical());
        // A rank-0 `a` composed with a higher-rank `b` comes back lifted to that rank.
        prop_assert_eq!(&q, &lifted(&a, h.rank()));
        prop_assert_eq!(q.compose(&b).unwrap(), h);
    }

    #[test]
    fn divide_left_undoes_compose((a, b) in arb_pair()) {
        let h = a.compose(&b).unwrap();
        let q = h.divide_left(&a).unwrap();
        prop_assert!(q.is_canonical());
        prop_assert_eq!(&q, &lifted(&b, h.rank()));
        prop_assert_eq!(a.compose(&q).unwrap(), h);
    }

    #[test]
    fn a_failed_division_means_no_quotient_of_that_shape((f, g) in arb_pair()) {
        // Whenever a division succeeds, the quotient really is one.
        if let Ok(r) = f.divide_right(&g) {
            prop_assert_eq!(r.compose(&g).unwrap(), f.clone());
        }
        if let Ok(r) = f.divide_left(&g) {
            prop_assert_eq!(g.compose(&r).unwrap(), f.clone());
        }
    }

    #[test]
    fn unreplicated_layouts_are_bijections(f in (0usize..=3).prop_flat_map(arb_unreplicated)) {
        prop_assert!(!f.is_replicated());
        prop_assert_eq!(f.num_threads() * f.num_slots(), f.num_elements());
        let seen: BTreeSet<Vec<usize>> = table(&f).into_iter().collect();
        prop_assert_eq!(seen.len(), f.num_elements());
        for c in &seen {
            for (d, (&x, &s)) in c.iter().zip(&f.shape()).enumerate() {
                prop_assert!(x < s, "dim {} coordinate {} out of {}", d, x, s);
            }
        }
    }

    #[test]
    fn canonicalize_is_idempotent_and_preserves_the_map(f in arb_any_layout()) {
        let c = f.canonicalize();
        prop_assert!(c.is_canonical());
        prop_assert!(c.canonicalize().raw_eq(&c));
        prop_assert_eq!(table(&f), table(&c));
        prop_assert_eq!(f.shape(), c.shape());
        prop_assert_eq!(&f, &c);
        for dim in c.dims() {
            prop_assert!(dim.iter().all(|&s| s >= 2));
        }
    }

    #[test]
    fn holders_inverts_map(f in arb_any_layout()) {
        let inverse = inverse_table(&f);
        for coords in all_coords(&f.shape()) {
            let holders = f.holders(&coords).unwrap();
            let expected = inverse.get(&coords).cloned().unwrap_or_default();
            prop_assert_eq!(&holders, &expected);
            let replication: usize = f.num_threads() * f.num_slots() / f.num_elements();
            prop_assert_eq!(holders.len(), replication);
        }
    }

    #[test]
    fn equal_layouts_hash_equally(f in arb_any_layout()) {
        use std::hash::{BuildHasher, RandomState};
        let state = RandomState::new();
        prop_assert_eq!(state.hash_one(&f), state.hash_one(f.canonicalize()));
    }
}

#[test]
fn compose_is_not_commutative() {
    let a = layout("spatial(2)");
    let b = layout("local(2)");
    assert_ne!(a.compose(&b).unwrap(), b.compose(&a).unwrap());
    assert_eq!(a.compose(&b).unwrap().map(1, 0).unwrap(), vec![2]);
    assert_eq!(b.compose(&a).unwrap().map(1, 0).unwrap(), vec![1]);
}

#[test]
fn compose_of_mismatched_ranks_is_an_error() {
    let a = layout("local(2,3)");
    let b = layout("spatial(4)");
    assert_eq!(a.compose(&b), Err(LayoutError::RankMismatch { left: 2, right: 1 }));
}

#[test]
fn rank_zero_operands_are_lifted() {
    let f = layout("replicated(4).spatial(8,4)");
    assert_eq!(f.rank(), 2);
    assert_eq!(f.num_threads(), 128);
    assert_eq!(f.map(32, 0).unwrap(), vec![0, 0]);
    assert_eq!(f.map(33, 0).unwrap(), vec![0, 1]);
    assert!(f.is_replicated());
}

#[test]
fn raw_and_canonical_forms() {
    use anybit_layouts::ThreadAxis::Mode;
    let raw = RegisterLayout::from_parts(vec![vec![2, 4, 1]], vec![Mode(0), Mode(1)], vec![2]).unwrap();
    assert!(!raw.is_canonical());
    let canonical = raw.canonicalize();
    assert_eq!(canonical.dims(), &[vec![8]]);
    assert_eq!(raw, canonical);
    assert!(!raw.raw_eq(&canonical));
    assert_eq!(canonical, layout("spatial(8)"));
}

#[test]
fn from_parts_rejects_invalid_parts() {
    use anybit_layouts::ThreadAxis::{Mode, Replicated};
    let err = |dims: Vec<Vec<usize>>, threads, slots| RegisterLayout::from_parts(dims, threads, slots).unwrap_err();
    assert!(matches!(
        err(vec![vec![2, 2]], vec![Mode(0)], vec![0]),
        LayoutError::InvalidParts { reason } if reason.contains("mode 0 appears more than once")
    ));
    assert!(matches!(
        err(vec![vec![2, 2]], vec![Mode(0)], vec![]),
        LayoutError::InvalidParts { reason } if reason.contains("mode 1 appears in neither")
    ));
    assert!(matches!(
        err(vec![vec![2]], vec![Mode(0)], vec![3]),
        LayoutError::InvalidParts { reason } if reason.contains("names mode 3")
    ));
    assert!(matches!(err(vec![vec![0]], vec![Mode(0)], vec![]), LayoutError::ZeroSize { .. }));
    assert!(matches!(err(vec![], vec![Replicated(0)], vec![]), LayoutError::ZeroSize { .. }));
    assert!(matches!(err(vec![vec![usize::MAX, 2]], vec![Mode(0)], vec![1]), LayoutError::Overflow { .. }));
}

#[test]
fn primitives_reject_zero_sizes() {
    assert!(matches!(RegisterLayout::local(&[2, 0]), Err(LayoutError::ZeroSize { .. })));
    assert!(matches!(RegisterLayout::spatial(&[0]), Err(LayoutError::ZeroSize { .. })));
    assert!(matches!(RegisterLayout::replicated(0), Err(LayoutError::ZeroSize { .. })));
    assert!(matches!(RegisterLayout::local(&[usize::MAX, 2]), Err(LayoutError::Overflow { .. })));
}

#[test]
fn map_and_holders_reject_out_of_range_inputs() {
    let f = layout("spatial(8,4).local(1,2)");
    assert_eq!(f.map(32, 0), Err(LayoutError::ThreadOutOfRange { thread: 32, num_threads: 32 }));
    assert_eq!(f.map(0, 2), Err(LayoutError::SlotOutOfRange { slot: 2, num_slots: 2 }));
    assert_eq!(f.holders(&[8, 0]), Err(LayoutError::CoordinateOutOfRange { dim: 0, coord: 8, size: 8 }));
    assert_eq!(f.holders(&[0]), Err(LayoutError::RankMismatch { left: 2, right: 1 }));
}

#[test]
fn primitives_order_threads_and_slots() {
    let row = layout("spatial(2,3)");
    let col = layout("column_spatial(2,3)");
    // Row-major: t = i0 * 3 + i1. Column-major: t = i1 * 2 + i0.
    assert_eq!(row.map(4, 0).unwrap(), vec![1, 1]);
    assert_eq!(row.map(2, 0).unwrap(), vec![0, 2]);
    assert_eq!(col.map(2, 0).unwrap(), vec![0, 1]);
    assert_eq!(col.map(1, 0).unwrap(), vec![1, 0]);
    let local = layout("local(2,3)");
    let column_local = layout("column_local(2,3)");
    assert_eq!(local.map(0, 4).unwrap(), vec![1, 1]);
    assert_eq!(column_local.map(0, 1).unwrap(), vec![1, 0]);
    assert_eq!(local.num_threads(), 1);
    assert_eq!(col.num_slots(), 1);
    let rep = RegisterLayout::replicated(4).unwrap();
    assert_eq!((rep.rank(), rep.num_threads(), rep.num_slots()), (0, 4, 1));
    assert_eq!(rep.holders(&[]).unwrap(), vec![(0, 0), (1, 0), (2, 0), (3, 0)]);
    let unit = RegisterLayout::unit();
    assert_eq!((unit.rank(), unit.num_threads(), unit.num_slots()), (0, 1, 1));
    assert_eq!(unit.map(0, 0).unwrap(), Vec::<usize>::new());
}

#[test]
fn table_lists_every_thread_and_slot() {
    let f = layout("spatial(2,1).local(1,2)");
    let rows: Vec<_> = f.table().collect();
    assert_eq!(rows, vec![(0, 0, vec![0, 0]), (0, 1, vec![0, 1]), (1, 0, vec![1, 0]), (1, 1, vec![1, 1]),]);
}

#[test]
fn division_errors_say_why() {
    let f = layout("spatial(8,4)");
    assert_eq!(
        f.divide_right(&layout("local(1,3)")),
        Err(LayoutError::NotDivisible { what: "the shape of dim 1".to_string(), dividend: 4, divisor: 3 })
    );
    assert!(matches!(
        f.divide_right(&layout("local(1,2)")),
        Err(LayoutError::NotDivisible { what, .. }) if what == "the number of slots"
    ));
    assert!(matches!(
        f.divide_right(&layout("spatial(3,1)")),
        Err(LayoutError::NotDivisible { what, .. }) if what == "the shape of dim 0"
    ));
    // Sizes divide, but the inner part of spatial(8,4) is not column_spatial(2,2).
    assert!(matches!(f.divide_right(&layout("column_spatial(2,2)")), Err(LayoutError::NoQuotient { .. })));
    // spatial(8,4) has no inner factor spatial(2,1): the inner threads are dim 1's.
    let err = f.divide_right(&layout("spatial(2,1)")).unwrap_err();
    assert!(matches!(err, LayoutError::NoQuotient { .. }), "{err}");
    assert!(err.to_string().contains("no quotient"), "{err}");
    assert_eq!(f.divide_right(&layout("local(2)")), Err(LayoutError::RankMismatch { left: 2, right: 1 }));
    // Cuts that do not divide a mode.
    let g = layout("spatial(6)");
    assert!(matches!(g.divide_right(&layout("local(2)")), Err(LayoutError::NotDivisible { .. })));
    let err = layout("local(2).spatial(3).local(2)").divide_right(&layout("local(4)")).unwrap_err();
    assert!(matches!(&err, LayoutError::NoQuotient { reason } if reason.contains("dim 0 cannot be cut")), "{err}");
    // spatial(2).spatial(3) is spatial(6), which is also spatial(3).spatial(2).
    assert_eq!(layout("spatial(2).spatial(3)").divide_right(&layout("spatial(2)")).unwrap(), layout("spatial(3)"));
}

#[test]
fn division_examples() {
    let c = layout("local(2,1).spatial(8,4).local(1,2)");
    assert_eq!(c.divide_right(&layout("local(1,2)")).unwrap(), layout("local(2,1).spatial(8,4)"));
    assert_eq!(c.divide_left(&layout("local(2,1)")).unwrap(), layout("spatial(8,4).local(1,2)"));
    // Division splits merged modes: spatial(8) = spatial(2).spatial(4).
    assert_eq!(layout("spatial(8)").divide_right(&layout("spatial(4)")).unwrap(), layout("spatial(2)"));
    assert_eq!(layout("spatial(8)").divide_left(&layout("spatial(4)")).unwrap(), layout("spatial(2)"));
    // Replication divides out.
    assert_eq!(
        layout("replicated(4).spatial(8,4)").divide_left(&layout("replicated(2)")).unwrap(),
        layout("replicated(2).spatial(8,4)")
    );
}
