//! How a register tile's threads touch memory: the static facts shared by the vectorizer
//! (which decides), the backends (which emit) and the interpreter (which checks).
//!
//! For a register layout in mode form, the coordinate along dim `d` of the element in slot
//! `i` of thread `t` is a **thread base** (the coordinate of the thread's slot 0, a function
//! of `t` alone) plus a **static slot offset** (a function of `i` alone). A thread's slots
//! whose elements are consecutive along the last dim form *runs*; a run of `n` elements whose
//! start offset is a multiple of `n` can be one memory instruction of `n × bits` bits when
//! the memory is aligned ([`plan_runs`]). Whether it is aligned at run time depends on the
//! tile's origin, the view's strides and extent, and the buffer's address: the vectorizer
//! proves it from the kernel's assumptions, or leaves it to a run-time test
//! ([`crate::program::Via::Vector`]); [`vector_promise_holds`] is the exact condition, which
//! the interpreter checks where it was proven.

use std::collections::HashMap;

use anybit_layouts::RegisterLayout;

/// One mode of a layout in mode form: its dim, size, and weight (the product of the sizes of
/// the modes inside it in its dim).
#[derive(Clone, Copy, Debug)]
pub struct Mode {
    /// The tensor dim it belongs to.
    pub dim: usize,
    /// Its size.
    pub size: usize,
    /// What one step of its digit adds to the coordinate along `dim`.
    pub weight: usize,
}

/// The modes of a layout, in order (dim by dim, outermost first).
pub fn modes(layout: &RegisterLayout) -> Vec<Mode> {
    let mut out = Vec::with_capacity(layout.num_modes());
    for (d, dim) in layout.dims().iter().enumerate() {
        for (j, &size) in dim.iter().enumerate() {
            let weight = dim[j + 1..].iter().product();
            out.push(Mode { dim: d, size, weight });
        }
    }
    out
}

/// Per slot, per dim, what the slot adds to the thread's base coordinate.
pub fn slot_offsets(layout: &RegisterLayout) -> Vec<Vec<i64>> {
    let modes = modes(layout);
    let rank = layout.rank();
    let slot_modes = layout.slots();
    let slot_sizes: Vec<usize> = slot_modes.iter().map(|&m| modes.get(m).map_or(1, |x| x.size)).collect();
    (0..layout.num_slots())
        .map(|i| {
            let mut offsets = vec![0i64; rank];
            let mut rest = i;
            for (k, &m) in slot_modes.iter().enumerate().rev() {
                let size = slot_sizes[k];
                let digit = rest % size;
                rest /= size;
                if let Some(mode) = modes.get(m) {
                    offsets[mode.dim] += (digit * mode.weight) as i64;
                }
            }
            offsets
        })
        .collect()
}

/// A run of a thread's slots holding consecutive elements along the last dim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// The slots, in element order.
    pub slots: Vec<usize>,
}

/// Groups slots into power-of-two runs of consecutive elements along the last dim
/// (`offsets[slot][dim]`), each starting at an offset that is a multiple of its length, of 16
/// to 128 bits and at most `max_width` elements; other slots are left out. Runs are taken
/// greedily in slot-offset order, longest first.
pub fn plan_runs(offsets: &[Vec<i64>], bits: u32, max_width: u32) -> Vec<Run> {
    let Some(rank) = offsets.first().map(Vec::len) else { return vec![] };
    if rank == 0 || !(bits.is_power_of_two() && bits <= 32) {
        return vec![];
    }
    let mut index: HashMap<&[i64], usize> = HashMap::new();
    for (i, o) in offsets.iter().enumerate() {
        index.insert(o.as_slice(), i);
    }
    let mut order: Vec<usize> = (0..offsets.len()).collect();
    order.sort_by(|&a, &b| offsets[a].cmp(&offsets[b]));
    let mut taken = vec![false; offsets.len()];
    let mut runs = Vec::new();
    let max_n = i64::from((128 / bits).min(max_width));
    let min_n = i64::from((16 / bits).max(2));
    for &i in &order {
        if taken[i] {
            continue;
        }
        let start = offsets[i][rank - 1];
        let mut n = max_n;
        while n >= min_n {
            if start.rem_euclid(n) == 0 {
                let mut slots = Vec::with_capacity(n as usize);
                let mut key = offsets[i].clone();
                for k in 0..n {
                    key[rank - 1] = start + k;
                    match index.get(key.as_slice()) {
                        Some(&s) if !taken[s] => slots.push(s),
                        _ => break,
                    }
                }
                if slots.len() == n as usize {
                    for &s in &slots {
                        taken[s] = true;
                    }
                    runs.push(Run { slots });
                    break;
                }
            }
            n /= 2;
        }
    }
    runs
}

/// The longest run of a plan (1 when there is none).
pub fn longest_run(runs: &[Run]) -> usize {
    runs.iter().map(|r| r.slots.len()).max().unwrap_or(1)
}

/// Per thread, the coordinates of its slot 0 (its base); `None` if the layout cannot say.
pub fn thread_bases(layout: &RegisterLayout) -> Option<Vec<Vec<i64>>> {
    (0..layout.num_threads())
        .map(|t| layout.map(t, 0).ok().map(|c| c.into_iter().map(|x| x as i64).collect()))
        .collect()
}

/// Whether the runs of width `width` of a tile access are all aligned and whole: for every
/// thread, the element index of its base (`Σ (origin + base)·stride`) and its base coordinate
/// along the last dim are multiples of `width`, and so are the view's last extent, and
/// `offset·stride` for every slot offset along the outer dims. With a buffer address aligned
/// to `width × bits` bits, every run is then one aligned memory instruction entirely inside
/// or entirely outside the view. The last stride must be 1.
pub fn vector_promise_holds(
    layout: &RegisterLayout,
    origin: &[i64],
    extent: &[i64],
    strides: &[i64],
    width: u32,
) -> bool {
    let w = i128::from(width.max(1));
    let rank = origin.len();
    if rank == 0 || extent.len() != rank || strides.len() != rank || layout.rank() != rank {
        return false;
    }
    let last = rank - 1;
    if strides[last] != 1 || i128::from(extent[last]).rem_euclid(w) != 0 {
        return false;
    }
    let offsets_ok = slot_offsets(layout)
        .iter()
        .all(|o| (0..last).all(|d| (i128::from(o[d]) * i128::from(strides[d])).rem_euclid(w) == 0));
    if !offsets_ok {
        return false;
    }
    let Some(bases) = thread_bases(layout) else { return false };
    bases.iter().all(|base| {
        let coord = |d: usize| i128::from(origin[d]) + i128::from(base[d]);
        let index: i128 = (0..rank).map(|d| coord(d) * i128::from(strides[d])).sum();
        index.rem_euclid(w) == 0 && coord(last).rem_euclid(w) == 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(text: &str) -> RegisterLayout {
        text.parse().unwrap()
    }

    #[test]
    fn runs_of_a_row_layout() {
        // Each thread holds 8 consecutive f16 along the last dim: one 128-bit run.
        let l = layout("spatial(16,8).local(1,8)");
        let runs = plan_runs(&slot_offsets(&l), 16, 128);
        assert_eq!(runs, vec![Run { slots: (0..8).collect() }]);
        // Capped at 4 elements: two runs.
        assert_eq!(plan_runs(&slot_offsets(&l), 16, 4).len(), 2);
        // Sub-byte and odd widths never form runs.
        assert!(plan_runs(&slot_offsets(&l), 3, 128).is_empty());
    }

    #[test]
    fn the_promise_needs_aligned_origins_extents_and_strides() {
        let l = layout("spatial(16,8).local(1,8)");
        assert!(vector_promise_holds(&l, &[0, 64], &[100, 128], &[128, 1], 8));
        // Origin, extent and the row stride each break it.
        assert!(!vector_promise_holds(&l, &[0, 4], &[100, 128], &[128, 1], 8));
        assert!(!vector_promise_holds(&l, &[0, 64], &[100, 124], &[124, 1], 8));
        assert!(!vector_promise_holds(&l, &[1, 64], &[100, 128], &[132, 1], 8));
        // A column stride other than 1 never vectorizes.
        assert!(!vector_promise_holds(&l, &[0, 0], &[128, 128], &[1, 128], 8));
    }
}
