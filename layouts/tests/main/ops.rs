//! reduce, permute, reshape, concat and slice.

use anybit_layouts::{LayoutError, RegisterLayout};
use proptest::prelude::*;

use crate::common::{arb_any_layout, arb_layout, layout, linear_index, table};

/// A layout of rank 1..=3 and a permutation of its dims.
fn arb_with_perm() -> impl Strategy<Value = (RegisterLayout, Vec<usize>)> {
    (1usize..=3).prop_flat_map(|rank| (arb_layout(rank), Just((0..rank).collect::<Vec<_>>()).prop_shuffle()))
}

fn inverse(perm: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; perm.len()];
    for (k, &p) in perm.iter().enumerate() {
        inv[p] = k;
    }
    inv
}

/// Divisors of n.
fn divisors(n: usize) -> Vec<usize> {
    (1..=n).filter(|&d| n.is_multiple_of(d)).collect()
}

/// A random shape of `count` elements with up to 3 dims, drawn with an index per dim.
fn shape_of(count: usize, picks: &[prop::sample::Index]) -> Vec<usize> {
    let mut rest = count;
    let mut shape = Vec::new();
    for pick in picks {
        let ds = divisors(rest);
        let d = ds[pick.index(ds.len())];
        shape.push(d);
        rest /= d;
    }
    shape.push(rest);
    shape
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn permute_moves_coordinates_and_inverts((f, perm) in arb_with_perm()) {
        let p = f.permute(&perm).unwrap();
        prop_assert_eq!(p.num_threads(), f.num_threads());
        prop_assert_eq!(p.num_slots(), f.num_slots());
        for (t, i, c) in f.table() {
            let expected: Vec<usize> = perm.iter().map(|&k| c[k]).collect();
            prop_assert_eq!(p.map(t, i).unwrap(), expected);
        }
        prop_assert_eq!(p.permute(&inverse(&perm)).unwrap(), f);
    }

    #[test]
    fn reshape_keeps_the_row_major_index(
        f in arb_any_layout(),
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..3),
    ) {
        // Reshaping to the same shape is the identity.
        prop_assert_eq!(f.reshape(&f.shape()).unwrap(), f.clone());
        let shape = shape_of(f.num_elements(), &picks);
        match f.reshape(&shape) {
            Ok(r) => {
                prop_assert_eq!(r.shape(), shape.clone());
                for (t, i, c) in f.table() {
                    let new = r.map(t, i).unwrap();
                    prop_assert_eq!(linear_index(&new, &shape), linear_index(&c, &f.shape()));
                }
                // Reshaping back is legal and the identity.
                prop_assert_eq!(r.reshape(&f.shape()).unwrap(), f.clone());
            }
            Err(e) => prop_assert!(matches!(e, LayoutError::ReshapeImpossible { .. }), "{}", e),
        }
        // Flattening always works, and undoes.
        let flat = f.reshape(&[f.num_elements()]).unwrap();
        prop_assert_eq!(flat.reshape(&f.shape()).unwrap(), f);
    }

    #[test]
    fn reduce_replicates_threads_and_drops_slots(
        f in (1usize..=3).prop_flat_map(arb_layout),
        mask in any::<u8>(),
        keep in any::<bool>(),
    ) {
        let dims: Vec<usize> = (0..f.rank()).filter(|d| mask >> d & 1 == 1).collect();
        let r = f.reduce(&dims, keep).unwrap();
        prop_assert_eq!(r.num_threads(), f.num_threads());
        prop_assert_eq!(r.rank(), if keep { f.rank() } else { f.rank() - dims.len() });
        let local_reduced: usize = dims
            .iter()
            .map(|&d| {
                let first: usize = f.dims()[..d].iter().map(Vec::len).sum();
                (0..f.dims()[d].len())
                    .filter(|&j| f.slots().contains(&(first + j)))
                    .map(|j| f.dims()[d][j])
                    .product::<usize>()
            })
            .product();
        prop_assert_eq!(r.num_slots() * local_reduced, f.num_slots());
        let project = |c: &[usize]| -> Vec<usize> {
            (0..c.len())
                .filter_map(|d| match (dims.contains(&d), keep) {
                    (false, _) => Some(c[d]),
                    (true, true) => Some(0),
                    (true, false) => None,
                })
                .collect()
        };
        // Every element a thread held, projected, is still held by that thread.
        for (t, _, c) in f.table() {
            let holders = r.holders(&project(&c)).unwrap();
            prop_assert!(holders.iter().any(|&(h, _)| h == t));
        }
        // And a thread holds nothing else.
        for (t, _, c) in r.table() {
            prop_assert!(f.table().any(|(t2, _, c2)| t2 == t && project(&c2) == c));
        }
    }

    #[test]
    fn concat_pairs_coordinates(f in arb_layout(1), g in (0usize..=2).prop_flat_map(arb_layout)) {
        prop_assume!(f.num_threads() * f.num_slots() * g.num_threads() * g.num_slots() <= 4096);
        let h = f.concat(&g).unwrap();
        prop_assert_eq!(h.shape(), [f.shape(), g.shape()].concat());
        for t in 0..h.num_threads() {
            for i in 0..h.num_slots() {
                let mut expected = f.map(t / g.num_threads(), i / g.num_slots()).unwrap();
                expected.extend(g.map(t % g.num_threads(), i % g.num_slots()).unwrap());
                prop_assert_eq!(h.map(t, i).unwrap(), expected);
            }
        }
    }

    #[test]
    fn slice_keeps_a_subset_of_each_threads_slots(
        f in (1usize..=2).prop_flat_map(arb_layout),
        dim_pick in any::<prop::sample::Index>(),
        len_pick in any::<prop::sample::Index>(),
        start_pick in any::<prop::sample::Index>(),
    ) {
        let dim = dim_pick.index(f.rank());
        let size = f.shape()[dim];
        let ds = divisors(size);
        let len = ds[len_pick.index(ds.len())];
        let start = len * start_pick.index(size / len);
        match f.slice(dim, start, len) {
            Ok(s) => {
                let mut shape = f.shape();
                shape[dim] = len;
                prop_assert_eq!(s.shape(), shape);
                prop_assert_eq!(s.num_threads(), f.num_threads());
                prop_assert_eq!(s.num_slots() * (size / len), f.num_slots());
                for (t, _, mut c) in s.table() {
                    c[dim] += start;
                    let holders = f.holders(&c).unwrap();
                    prop_assert!(holders.iter().any(|&(h, _)| h == t));
                }
                // The slice of a whole dim is the identity.
                prop_assert_eq!(f.slice(dim, 0, size).unwrap(), f.clone());
            }
            Err(e) => prop_assert!(matches!(e, LayoutError::InvalidSlice { .. }), "{}", e),
        }
    }
}

#[test]
fn permute_examples_and_errors() {
    let f = layout("spatial(8,4).local(1,2)");
    let p = f.permute(&[1, 0]).unwrap();
    assert_eq!(p.shape(), vec![8, 8]);
    assert_eq!(p.to_string(), "column_spatial(4,8).local(2,1)");
    assert_eq!(f.permute(&[0, 0]), Err(LayoutError::NotAPermutation { perm: vec![0, 0], rank: 2 }));
    assert!(matches!(f.permute(&[0]), Err(LayoutError::NotAPermutation { .. })));
    assert!(matches!(f.permute(&[0, 2]), Err(LayoutError::NotAPermutation { .. })));
    // The 2-D transpose is that permutation, and only for 2-D layouts.
    assert_eq!(f.transpose().unwrap(), p);
    assert!(layout("spatial(32)").transpose().is_err());
}

#[test]
fn reshape_examples_and_errors() {
    let f = layout("spatial(8,4).local(1,2)");
    assert_eq!(f.reshape(&[64]).unwrap(), layout("spatial(32).local(2)"));
    assert_eq!(f.reshape(&[4, 2, 8]).unwrap(), layout("spatial(4,2,4).local(1,1,2)"));
    assert_eq!(f.reshape(&[63]), Err(LayoutError::ElementCountMismatch { from: 64, to: 63 }));
    assert!(matches!(f.reshape(&[0, 64]), Err(LayoutError::ZeroSize { .. })));
    let g = layout("spatial(3).local(2)");
    let err = g.reshape(&[2, 3]).unwrap_err();
    assert!(matches!(err, LayoutError::ReshapeImpossible { .. }), "{err}");
}

#[test]
fn reduce_examples_and_errors() {
    let c = layout("local(2,1).spatial(8,4).local(1,2)");
    let rows = c.reduce(&[1], false).unwrap();
    assert_eq!(rows.to_string(), "local(2).spatial(8).replicated(4)");
    assert_eq!(rows.holders(&[9]).unwrap(), vec![(4, 1), (5, 1), (6, 1), (7, 1)]);
    let kept = c.reduce(&[1], true).unwrap();
    assert_eq!(kept.shape(), vec![16, 1]);
    let all = c.reduce(&[0, 1], false).unwrap();
    assert_eq!(all, RegisterLayout::replicated(32).unwrap());
    assert_eq!(c.reduce(&[2], true), Err(LayoutError::DimOutOfRange { dim: 2, rank: 2 }));
    assert_eq!(c.reduce(&[1, 1], true), Err(LayoutError::DuplicateDim { dim: 1 }));
    assert_eq!(c.reduce(&[], true).unwrap(), c);
}

#[test]
fn concat_example() {
    let h = layout("spatial(4)").concat(&layout("local(2)")).unwrap();
    assert_eq!(h, layout("spatial(4,1).local(1,2)"));
    let u = RegisterLayout::unit().concat(&layout("spatial(2)")).unwrap();
    assert_eq!(u, layout("spatial(2)"));
}

#[test]
fn slice_examples_and_errors() {
    let c = layout("local(2,1).spatial(8,4).local(1,2)");
    // The lower 8 rows: the outer local mode of dim 0 is fixed at 1.
    let lower = c.slice(0, 8, 8).unwrap();
    assert_eq!(lower, layout("spatial(8,4).local(1,2)"));
    assert_eq!(lower.map(5, 1).unwrap(), vec![1, 3]);
    assert_eq!(c.map(5, 3).unwrap(), vec![9, 3]);
    // Within a local mode that must be split: local(4) sliced by 2.
    let l = layout("local(4).spatial(2)");
    assert_eq!(l.slice(0, 4, 2).unwrap(), layout("spatial(2)"));
    assert_eq!(l.slice(0, 4, 4).unwrap(), layout("local(2).spatial(2)"));
    assert_eq!(l.slice(0, 4, 4).unwrap().map(1, 1).unwrap(), vec![3]);
    // Errors.
    let spatial_outer = c.slice(0, 0, 4).unwrap_err();
    assert!(
        matches!(&spatial_outer, LayoutError::InvalidSlice { reason } if reason.contains("spatial mode")),
        "{spatial_outer}"
    );
    assert!(matches!(c.slice(0, 4, 8), Err(LayoutError::InvalidSlice { .. })));
    assert!(matches!(c.slice(0, 16, 8), Err(LayoutError::InvalidSlice { .. })));
    assert!(matches!(c.slice(0, 0, 3), Err(LayoutError::InvalidSlice { .. })));
    assert!(matches!(c.slice(0, 0, 0), Err(LayoutError::ZeroSize { .. })));
    assert_eq!(c.slice(2, 0, 1), Err(LayoutError::DimOutOfRange { dim: 2, rank: 2 }));
    assert!(matches!(c.slice(0, usize::MAX - 7, 8), Err(LayoutError::InvalidSlice { .. })));
    assert_eq!(table(&c.slice(1, 0, 8).unwrap()), table(&c));
}
