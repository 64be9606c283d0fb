//! Strategies and helpers shared by the test modules.

use std::collections::BTreeMap;

use anybit_layouts::{RegisterLayout, ThreadAxis};
use proptest::prelude::*;

/// Largest element count (times replication) of a random layout, to keep tables small.
pub const MAX_TOTAL: usize = 1024;

/// A raw layout built from per-dim mode sizes, replicated axis sizes, a kind per mode
/// (true = spatial) and a sort key per thread axis / slot mode (the order lists are the
/// entries sorted by key).
pub fn build_layout(dims: &[Vec<usize>], reps: &[usize], spatial: &[bool], keys: &[u32]) -> RegisterLayout {
    let num_modes: usize = dims.iter().map(Vec::len).sum();
    let mut threads: Vec<(u32, ThreadAxis)> = Vec::new();
    let mut slots: Vec<(u32, usize)> = Vec::new();
    for m in 0..num_modes {
        if spatial[m] {
            threads.push((keys[m], ThreadAxis::Mode(m)));
        } else {
            slots.push((keys[m], m));
        }
    }
    for (k, &n) in reps.iter().enumerate() {
        threads.push((keys[num_modes + k], ThreadAxis::Replicated(n)));
    }
    threads.sort_by_key(|e| e.0);
    slots.sort_by_key(|e| e.0);
    RegisterLayout::from_parts(
        dims.to_vec(),
        threads.into_iter().map(|e| e.1).collect(),
        slots.into_iter().map(|e| e.1).collect(),
    )
    .expect("generated parts are valid")
}

fn total(dims: &[Vec<usize>], reps: &[usize]) -> usize {
    dims.iter().flatten().chain(reps).product()
}

/// Random raw layouts of the given rank in general form: up to `max_modes` modes per dim
/// of sizes drawn from `sizes`, up to `max_reps` replicated axes, random kinds and orders.
pub fn arb_layout_with(
    rank: usize,
    sizes: Vec<usize>,
    max_modes: usize,
    max_reps: usize,
) -> impl Strategy<Value = RegisterLayout> {
    let size = proptest::sample::select(sizes);
    (
        proptest::collection::vec(proptest::collection::vec(size.clone(), 0..=max_modes), rank),
        proptest::collection::vec(size, 0..=max_reps),
    )
        .prop_filter("small enough", |(dims, reps)| total(dims, reps) <= MAX_TOTAL)
        .prop_flat_map(|(dims, reps)| {
            let n: usize = dims.iter().map(Vec::len).sum();
            (
                Just(dims),
                Just(reps.clone()),
                proptest::collection::vec(any::<bool>(), n),
                proptest::collection::vec(any::<u32>(), n + reps.len()),
            )
        })
        .prop_map(|(dims, reps, spatial, keys)| build_layout(&dims, &reps, &spatial, &keys))
}

/// Random raw layouts of the given rank with sizes 1..=4.
pub fn arb_layout(rank: usize) -> impl Strategy<Value = RegisterLayout> {
    arb_layout_with(rank, vec![1, 2, 3, 4], 2, 1)
}

/// Random raw layouts whose sizes are powers of two.
pub fn arb_pow2_layout(rank: usize) -> impl Strategy<Value = RegisterLayout> {
    arb_layout_with(rank, vec![1, 2, 4], 2, 1)
}

/// Random layouts of a random rank in 0..=3.
pub fn arb_any_layout() -> impl Strategy<Value = RegisterLayout> {
    (0usize..=3).prop_flat_map(arb_layout)
}

/// Random layouts without replicated axes.
pub fn arb_unreplicated(rank: usize) -> impl Strategy<Value = RegisterLayout> {
    arb_layout_with(rank, vec![1, 2, 3, 4], 2, 0)
}

/// A random primitive of the given rank (with `replicated` and the unit at rank 0), and
/// its source text.
pub fn arb_primitive(rank: usize) -> impl Strategy<Value = (String, RegisterLayout)> {
    let name = proptest::sample::select(vec!["local", "column_local", "spatial", "column_spatial"]);
    let shape = proptest::collection::vec(1usize..=4, rank);
    let rep = (1usize..=4).prop_map(|n| (format!("replicated({n})"), RegisterLayout::replicated(n).expect("n >= 1")));
    let prim = (name, shape).prop_map(|(name, shape)| {
        let text = format!("{name}({})", shape.iter().map(ToString::to_string).collect::<Vec<_>>().join(","));
        let layout = match name {
            "local" => RegisterLayout::local(&shape),
            "column_local" => RegisterLayout::column_local(&shape),
            "spatial" => RegisterLayout::spatial(&shape),
            _ => RegisterLayout::column_spatial(&shape),
        }
        .expect("sizes >= 1");
        (text, layout)
    });
    prop_oneof![3 => prim, 1 => rep]
}

/// A random product of 1..=4 primitives of one rank in 1..=2, its text and its value.
pub fn arb_product() -> impl Strategy<Value = (String, RegisterLayout)> {
    (1usize..=2)
        .prop_flat_map(|rank| proptest::collection::vec(arb_primitive(rank), 1..=4))
        .prop_filter("small enough", |factors| {
            factors.iter().map(|(_, l)| l.num_threads() * l.num_slots()).product::<usize>() <= MAX_TOTAL
        })
        .prop_map(|factors| {
            let text = factors.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>().join(".");
            let layout = factors
                .iter()
                .try_fold(RegisterLayout::unit(), |acc, (_, l)| acc.compose(l))
                .expect("same ranks compose");
            (text, layout)
        })
}

/// The full table of a layout's map: (thread, slot) -> coordinates.
pub fn table(layout: &RegisterLayout) -> Vec<Vec<usize>> {
    let mut rows = Vec::new();
    for t in 0..layout.num_threads() {
        for i in 0..layout.num_slots() {
            rows.push(layout.map(t, i).expect("in range"));
        }
    }
    rows
}

/// The table as a map from coordinates to holders, built from `map`.
pub fn inverse_table(layout: &RegisterLayout) -> BTreeMap<Vec<usize>, Vec<(usize, usize)>> {
    let mut inverse: BTreeMap<Vec<usize>, Vec<(usize, usize)>> = BTreeMap::new();
    for t in 0..layout.num_threads() {
        for i in 0..layout.num_slots() {
            inverse.entry(layout.map(t, i).expect("in range")).or_default().push((t, i));
        }
    }
    inverse
}

/// Every coordinate tuple of a shape, row-major.
pub fn all_coords(shape: &[usize]) -> Vec<Vec<usize>> {
    let count: usize = shape.iter().product();
    (0..count)
        .map(|mut index| {
            let mut coords = vec![0; shape.len()];
            for d in (0..shape.len()).rev() {
                coords[d] = index % shape[d];
                index /= shape[d];
            }
            coords
        })
        .collect()
}

/// Row-major linear index of `coords` in `shape`.
pub fn linear_index(coords: &[usize], shape: &[usize]) -> usize {
    coords.iter().zip(shape).fold(0, |acc, (&c, &s)| acc * s + c)
}

/// Parses a register layout expression that the test knows to be valid.
pub fn layout(text: &str) -> RegisterLayout {
    text.parse().unwrap_or_else(|e| panic!("{text} should parse: {e}"))
}
