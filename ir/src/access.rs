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

use anybit_layouts::{LayoutError, RegisterLayout, SharedLayout, ThreadAxis};

use crate::dtype::DType;
use crate::program::{Literal, Operand};

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

/// The static facts [`AccessShape::promise_holds`] needs of a register layout: its slot
/// offsets and every thread's base. Computed once per instruction by the interpreter, which
/// checks the promise on every execution.
#[derive(Clone, Debug)]
pub struct AccessShape {
    rank: usize,
    slots: Vec<Vec<i64>>,
    bases: Option<Vec<Vec<i64>>>,
}

impl AccessShape {
    /// The shape of accesses by `layout`.
    pub fn of(layout: &RegisterLayout) -> AccessShape {
        AccessShape { rank: layout.rank(), slots: slot_offsets(layout), bases: thread_bases(layout) }
    }

    /// Whether the runs of width `width` of a tile access are all aligned and whole: for every
    /// thread, the element index of its base (`Σ (origin + base)·stride`) and its base
    /// coordinate along the last dim are multiples of `width`, and so are the view's last
    /// extent, and `offset·stride` for every slot offset along the outer dims. With a buffer
    /// address aligned to `width × bits` bits, every run is then one aligned memory
    /// instruction entirely inside or entirely outside the view. The last stride must be 1.
    pub fn promise_holds(&self, origin: &[i64], extent: &[i64], strides: &[i64], width: u32) -> bool {
        let w = i128::from(width.max(1));
        let rank = origin.len();
        if rank == 0 || extent.len() != rank || strides.len() != rank || self.rank != rank {
            return false;
        }
        let last = rank - 1;
        if strides[last] != 1 || i128::from(extent[last]).rem_euclid(w) != 0 {
            return false;
        }
        let offsets_ok = self
            .slots
            .iter()
            .all(|o| (0..last).all(|d| (i128::from(o[d]) * i128::from(strides[d])).rem_euclid(w) == 0));
        let Some(bases) = &self.bases else { return false };
        offsets_ok
            && bases.iter().all(|base| {
                let coord = |d: usize| i128::from(origin[d]) + i128::from(base[d]);
                let index: i128 = (0..rank).map(|d| coord(d) * i128::from(strides[d])).sum();
                index.rem_euclid(w) == 0 && coord(last).rem_euclid(w) == 0
            })
    }
}

/// [`AccessShape::promise_holds`] for a layout, computed afresh.
pub fn vector_promise_holds(
    layout: &RegisterLayout,
    origin: &[i64],
    extent: &[i64],
    strides: &[i64],
    width: u32,
) -> bool {
    AccessShape::of(layout).promise_holds(origin, extent, strides, width)
}

/// Per thread axis (most significant first): its size, and the product of the sizes of the
/// axes less significant than it.
pub fn thread_axes(layout: &RegisterLayout) -> Vec<(ThreadAxis, usize, usize)> {
    let sizes: Vec<usize> = layout
        .threads()
        .iter()
        .map(|a| match *a {
            ThreadAxis::Mode(m) => layout.mode_size(m).unwrap_or(1),
            ThreadAxis::Replicated(n) => n,
        })
        .collect();
    let mut out = Vec::with_capacity(sizes.len());
    for (k, axis) in layout.threads().iter().enumerate() {
        let stride: usize = sizes[k + 1..].iter().product();
        out.push((*axis, sizes[k], stride));
    }
    out
}

/// The value of a literal integer operand (what a shared access's alignment can rely on).
fn literal_index(o: Operand) -> Option<i64> {
    match o {
        Operand::Literal(Literal::Int(v)) => Some(v),
        _ => None,
    }
}

/// Whether a shared access at these offsets by this layout has its runs aligned at compile
/// time: literal offsets, and every dynamic term of the base (thread digits times mode
/// weights times the dim's stride) a multiple of the longest run. Only single-mode dims
/// (strided layouts) qualify.
pub fn shared_access_aligned(
    dtype: DType,
    shared: &SharedLayout,
    offsets: &[Operand],
    layout: &RegisterLayout,
) -> bool {
    let modes = shared.modes();
    if modes.iter().any(|d| d.len() != 1) || offsets.len() != modes.len() {
        return false;
    }
    let strides: Vec<usize> = modes.iter().map(|d| d[0].stride).collect();
    let rank = strides.len();
    if strides.last() != Some(&1) {
        return false;
    }
    let slot_offsets = slot_offsets(layout);
    let runs = plan_runs(&slot_offsets, dtype.bits(), u32::MAX);
    let Some(longest) = runs.iter().map(|r| r.slots.len()).max() else { return false };
    let bits = dtype.bits() as usize;
    let run_bytes = longest * bits / 8;
    if run_bytes == 0 || run_bytes > 16 {
        return false;
    }
    // Elements per run: the alignment every term must keep, in elements.
    let unit = longest;
    for (d, o) in offsets.iter().enumerate() {
        match literal_index(*o) {
            Some(v) if (v as usize * strides[d]).is_multiple_of(unit) => {}
            _ => return false,
        }
    }
    // Thread-digit terms of the base: weight × stride must be a multiple of the run length.
    for (axis, _, _) in thread_axes(layout) {
        if let ThreadAxis::Mode(m) = axis {
            let Some(dim) = layout.mode_dim(m) else { return false };
            let dim_modes = &layout.dims()[dim];
            let first = layout.dims()[..dim].iter().map(Vec::len).sum::<usize>();
            let weight: usize = dim_modes[m - first + 1..].iter().product();
            if dim >= rank || !(weight * strides[dim]).is_multiple_of(unit) {
                return false;
            }
        }
    }
    // Static slot offsets of run starts must be aligned too (the runs guarantee it for the
    // last dim; other dims need their stride to keep it).
    for run in &runs {
        let Some(&first) = run.slots.first() else { continue };
        let o = &slot_offsets[first];
        let elem: usize = o.iter().zip(&strides).map(|(&k, &s)| k as usize * s).sum();
        if !elem.is_multiple_of(run.slots.len()) {
            return false;
        }
    }
    // Swizzles move chunks of 2^base bytes: runs must not cross them.
    if let Some(s) = shared.swizzle()
        && s.bits() > 0
        && run_bytes > (1usize << s.base())
    {
        return false;
    }
    // The tile's byte offset is 16-aligned; elements of sub-byte types must form whole bytes.
    run_bytes * 8 == longest * bits
}

/// The vector runs of a shared access (when [`shared_access_aligned`] holds), of at most
/// `max_width` elements.
pub fn shared_vector_runs(dtype: DType, shared: &SharedLayout, offsets: &[Vec<i64>], max_width: u32) -> Vec<Run> {
    let modes = shared.modes();
    if modes.iter().any(|d| d.len() != 1) || modes.last().map(|d| d[0].stride) != Some(1) {
        return vec![];
    }
    let bits = dtype.bits();
    plan_runs(offsets, bits, max_width)
        .into_iter()
        .filter(|r| (r.slots.len() as u32 * bits).is_multiple_of(8))
        .collect()
}

/// The vector width of a shared access that [`shared_access_aligned`] proves aligned: the
/// longest of its [`shared_vector_runs`]; `None` when its elements go one by one (unaligned,
/// no runs, or a store by a replicated layout, whose replicas would race on a vector).
pub fn shared_vector_width(
    dtype: DType,
    shared: &SharedLayout,
    offsets: &[Operand],
    layout: &RegisterLayout,
    store: bool,
) -> Option<u32> {
    if !shared_access_aligned(dtype, shared, offsets, layout) || (store && layout.is_replicated()) {
        return None;
    }
    let runs = shared_vector_runs(dtype, shared, &slot_offsets(layout), u32::MAX);
    (!runs.is_empty()).then(|| longest_run(&runs) as u32)
}

/// Whether a `copy_async` of `shape` (elements of `dtype`) into a shared tile laid out as
/// `shared` at `dst_offsets`, spread over `threads` threads by [`copy_layout`], can be
/// `cp.async`: whole bytes, every thread's elements in runs of 4, 8 or 16 bytes along the last
/// dim, landing aligned in shared memory. `Some(width)` (the longest run) when it can; the
/// global side (a unit last stride, aligned runs) is for the caller to prove or test.
pub fn async_copy_width(
    dtype: DType,
    shared: &SharedLayout,
    dst_offsets: &[Operand],
    shape: &[usize],
    threads: usize,
) -> Option<u32> {
    let bits = dtype.bits();
    if !bits.is_multiple_of(8) {
        return None;
    }
    let layout = copy_layout(shape, threads, bits).ok()?;
    let offsets = slot_offsets(&layout);
    let runs = plan_runs(&offsets, bits, u32::MAX);
    let whole_runs = !runs.is_empty()
        && runs.iter().all(|r| matches!(r.slots.len() as u32 * bits / 8, 4 | 8 | 16))
        && runs.iter().map(|r| r.slots.len()).sum::<usize>() == offsets.len();
    let lands_aligned = shared_access_aligned(dtype, shared, dst_offsets, &layout)
        && !shared_vector_runs(dtype, shared, &offsets, u32::MAX).is_empty();
    (whole_runs && lands_aligned).then(|| longest_run(&runs) as u32)
}

/// A layout spreading a copy of `shape` over `threads` threads, each thread holding runs of
/// up to 16 bytes along the last dim.
pub fn copy_layout(shape: &[usize], threads: usize, bits: u32) -> Result<RegisterLayout, LayoutError> {
    let rank = shape.len();
    let Some(&last) = shape.last() else { return Err(LayoutError::ZeroSize { what: "the copy's rank".into() }) };
    let mut v = ((128 / bits.max(1)) as usize).max(1);
    while v > 1 && !last.is_multiple_of(v) {
        v /= 2;
    }
    let mut grid: Vec<usize> = shape.to_vec();
    grid[rank - 1] /= v;
    let mut spatial = vec![1usize; rank];
    let mut local = grid.clone();
    let mut t = threads;
    for d in (0..rank).rev() {
        let p = gcd(local[d], t);
        spatial[d] = p;
        local[d] /= p;
        t /= p;
    }
    let mut inner = vec![1usize; rank];
    inner[rank - 1] = v;
    let mut l = RegisterLayout::local(&local)?;
    l = l.compose(&RegisterLayout::spatial(&spatial)?)?;
    l = l.compose(&RegisterLayout::local(&inner)?)?;
    if t > 1 {
        l = RegisterLayout::replicated(t)?.compose(&l)?;
    }
    Ok(l)
}

/// The greatest common divisor (`gcd(0, b) = b`).
pub fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
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
