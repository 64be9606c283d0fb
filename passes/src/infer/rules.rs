//! The layouts the inference rules propose, as plain functions of shapes, bit widths and
//! layouts (no kernel involved): row-major spreads and vector-friendly load layouts, the MMA
//! arrangements of `dot`, the memory-order reinterpretation of `view`, what a `broadcast`
//! operand or a `reduce` operand needs, and the swizzle of a shared tile.
//!
//! Every function returns `None` (or an empty list) instead of panicking when its inputs do
//! not fit: the caller then falls back to a lower-priority rule.

use anybit_ir::DType;
use anybit_ir::access::gcd;
use anybit_ir::program::RegisterTensorType;
use anybit_layouts::{MmaInstruction, MmaOperand, RegisterLayout, SharedLayout, Swizzle, ThreadAxis};

/// Bits of the widest vector access a thread makes (`ld.global.v4.u32`): 16 bytes.
pub const VECTOR_BITS: u64 = 128;

fn divisors(n: usize) -> Vec<usize> {
    (1..=n).filter(|d| n.is_multiple_of(*d)).collect()
}

/// A register layout taken apart into its modes: sizes by id, per dim the ids outer to inner,
/// the thread axes (most significant first) and the slot modes (most significant first). Ids
/// of a freshly taken-apart layout are its mode numbers; new modes get new ids, and
/// [`Parts::build`] renumbers them in flattened order.
#[derive(Clone, Debug)]
struct Parts {
    sizes: Vec<usize>,
    dims: Vec<Vec<usize>>,
    threads: Vec<ThreadAxis>,
    slots: Vec<usize>,
}

impl Parts {
    /// The canonical form of `layout`, taken apart.
    fn of(layout: &RegisterLayout) -> Parts {
        let canonical = layout.canonicalize();
        let mut sizes = Vec::new();
        let mut dims = Vec::with_capacity(canonical.rank());
        for dim in canonical.dims() {
            let mut ids = Vec::with_capacity(dim.len());
            for &size in dim {
                ids.push(sizes.len());
                sizes.push(size);
            }
            dims.push(ids);
        }
        Parts { sizes, dims, threads: canonical.threads().to_vec(), slots: canonical.slots().to_vec() }
    }

    /// A new mode of `size` (placed in no list yet).
    fn add_mode(&mut self, size: usize) -> usize {
        self.sizes.push(size);
        self.sizes.len() - 1
    }

    /// The layout, canonical; `None` when the parts are inconsistent.
    fn build(&self) -> Option<RegisterLayout> {
        let mut renumber = vec![usize::MAX; self.sizes.len()];
        let mut dims = Vec::with_capacity(self.dims.len());
        let mut next = 0;
        for dim in &self.dims {
            let mut sizes = Vec::with_capacity(dim.len());
            for &id in dim {
                *renumber.get_mut(id)? = next;
                next += 1;
                sizes.push(*self.sizes.get(id)?);
            }
            dims.push(sizes);
        }
        let new = |id: usize| renumber.get(id).copied().filter(|&n| n != usize::MAX);
        let threads = self
            .threads
            .iter()
            .map(|axis| match *axis {
                ThreadAxis::Mode(id) => new(id).map(ThreadAxis::Mode),
                replicated => Some(replicated),
            })
            .collect::<Option<Vec<_>>>()?;
        let slots = self.slots.iter().map(|&id| new(id)).collect::<Option<Vec<_>>>()?;
        RegisterLayout::from_parts(dims, threads, slots).ok().map(|l| l.canonicalize())
    }
}

/// The row-major spread of a tile of `shape` over `threads` threads, each thread holding runs
/// of `run` consecutive elements along the last dim: the tile is cut into runs, and threads
/// take consecutive runs in row-major order from the innermost dim outwards (per dim the
/// largest common divisor of what is left of the threads and the runs along it), the rest of
/// each dim repeats in slots (outer), and threads left over replicate the tile (outermost
/// thread axis). Returns the layout and the replication factor; `None` when `run` does not
/// divide the last dim or `threads` is 0.
pub fn spread(shape: &[usize], run: usize, threads: usize) -> Option<(RegisterLayout, usize)> {
    if threads == 0 || shape.contains(&0) {
        return None;
    }
    let Some((&last, outer)) = shape.split_last() else {
        return Some((RegisterLayout::replicated(threads).ok()?, threads));
    };
    if run == 0 || !last.is_multiple_of(run) {
        return None;
    }
    let mut grid = outer.to_vec();
    grid.push(last / run);
    let mut remaining = threads;
    let mut spatial = vec![1; grid.len()];
    for d in (0..grid.len()).rev() {
        spatial[d] = gcd(grid[d], remaining);
        remaining /= spatial[d];
    }
    let mut dims = Vec::with_capacity(grid.len());
    let (mut thread_axes, mut slots) = (vec![ThreadAxis::Replicated(remaining)], Vec::new());
    let mut next = 0;
    for (d, (&g, &t)) in grid.iter().zip(&spatial).enumerate() {
        let mut modes = vec![g / t, t];
        slots.push(next);
        thread_axes.push(ThreadAxis::Mode(next + 1));
        next += 2;
        if d + 1 == grid.len() {
            modes.push(run);
        }
        dims.push(modes);
    }
    slots.push(next);
    let layout = RegisterLayout::from_parts(dims, thread_axes, slots).ok()?.canonicalize();
    Some((layout, remaining))
}

/// Vector-friendly layouts of a tile of `shape` with `bits`-bit elements over `threads`
/// threads, best first: [`spread`]s whose runs along the last dim are at most 16 bytes
/// ([`VECTOR_BITS`]). When the tile has at least as many elements as threads, layouts that
/// replicate less come first, then longer runs; for smaller tiles (which must replicate),
/// longer runs come first. A rank-0 tile has one layout, replicated over every thread.
pub fn vector_candidates(shape: &[usize], bits: u32, threads: usize) -> Vec<RegisterLayout> {
    let Some(&last) = shape.last() else { return spread(shape, 1, threads).map(|(l, _)| vec![l]).unwrap_or_default() };
    let elements: usize = shape.iter().product();
    let mut scored: Vec<((u64, u64), RegisterLayout)> = divisors(last)
        .into_iter()
        .filter(|&v| v == 1 || v as u64 * u64::from(bits) <= VECTOR_BITS)
        .filter_map(|v| {
            let (layout, replication) = spread(shape, v, threads)?;
            let (run_bits, replication) = (v as u64 * u64::from(bits), replication as u64);
            // Sort keys, smaller first.
            let key = if elements >= threads {
                (replication, u64::MAX - run_bits)
            } else {
                (u64::MAX - run_bits, replication)
            };
            Some((key, layout))
        })
        .collect();
    scored.sort_by_key(|(key, _)| *key);
    let mut out: Vec<RegisterLayout> = Vec::with_capacity(scored.len());
    for (_, layout) in scored {
        if !out.contains(&layout) {
            out.push(layout);
        }
    }
    out
}

/// Elements a thread holds contiguously along the last dim in consecutive slots: the size of
/// the last dim's innermost mode when it is local and the innermost slot mode, else 1.
pub fn contiguous_run(layout: &RegisterLayout) -> usize {
    let parts = Parts::of(layout);
    match parts.dims.last().and_then(|d| d.last()) {
        Some(&id) if parts.slots.last() == Some(&id) => parts.sizes.get(id).copied().unwrap_or(1),
        _ => 1,
    }
}

/// How many threads hold each element: the product of the replicated thread axes.
pub fn replication(layout: &RegisterLayout) -> usize {
    layout
        .threads()
        .iter()
        .map(|axis| match axis {
            ThreadAxis::Replicated(n) => *n,
            ThreadAxis::Mode(_) => 1,
        })
        .product()
}

/// Whether a global load in `layout` of `bits`-bit elements is reasonable: each thread reads
/// runs of at least 32 bits along the last dim (or whole rows of the tile when they are
/// shorter), so the backend's accesses are words or wider vectors.
pub fn reasonable_global_load(layout: &RegisterLayout, bits: u32) -> bool {
    let last = layout.shape().last().copied().unwrap_or(1) as u64;
    let run = contiguous_run(layout) as u64;
    run * u64::from(bits) >= (last * u64::from(bits)).min(32)
}

/// The `mma` instruction whose fragments a `dot` with `input` elements uses: m16n8k16 for
/// f16 and bf16, m16n8k32 for i8 and u8; `None` for other types (no tensor-core path).
pub fn mma_instruction(input: DType) -> Option<MmaInstruction> {
    if input == DType::F16 {
        Some(MmaInstruction::M16N8K16F16)
    } else if input == DType::BF16 {
        Some(MmaInstruction::M16N8K16Bf16)
    } else if DType::int(8).is_ok_and(|t| t == input) {
        Some(MmaInstruction::M16N8K32S8)
    } else if DType::uint(8).is_ok_and(|t| t == input) {
        Some(MmaInstruction::M16N8K32U8)
    } else {
        None
    }
}

/// How the warps of a block share an `m_tiles × n_tiles` grid of MMA tiles: `(wm, wn,
/// replication)` with `wm` warps along M, `wn` along N (`wm` divides `m_tiles`, `wn` divides
/// `n_tiles`) and the warps left over replicating the split. As many warps as possible work on
/// distinct tiles; among those splits, the one whose per-warp tile has the smallest
/// half-perimeter (the fewest a and b fragments per warp) wins, then the one with more warps
/// along N.
pub fn warp_split(m_tiles: usize, n_tiles: usize, warps: usize, tile_m: usize, tile_n: usize) -> (usize, usize, usize) {
    let mut best = (1, 1);
    let mut best_key = (usize::MAX, usize::MAX, usize::MAX);
    for wm in divisors(m_tiles) {
        for wn in divisors(n_tiles) {
            if warps == 0 || !warps.is_multiple_of(wm * wn) {
                continue;
            }
            let key = (warps / (wm * wn), tile_m * m_tiles / wm + tile_n * n_tiles / wn, usize::MAX - wn);
            if key < best_key {
                best_key = key;
                best = (wm, wn);
            }
        }
    }
    (best.0, best.1, warps / (best.0 * best.1).max(1))
}

/// The layouts a `dot` with a `[m, k]`, b `[k, n]`, c `[m, n]` uses with `instruction`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MmaLayouts {
    /// The accumulator's quotient by the C fragment: which (m-tile, n-tile) each warp holds in
    /// each group of 4 slots.
    pub quotient: RegisterLayout,
    /// c (and the result).
    pub c: RegisterLayout,
    /// a.
    pub a: RegisterLayout,
    /// b.
    pub b: RegisterLayout,
}

/// The MMA arrangement of a `dot` over `threads` threads: c is the C fragment repeated over
/// the tile with the warps split by [`warp_split`], `replicated(r).local(M/16/wm, N/8/wn)
/// .spatial(wm, wn) ∘ C`; a and b are [`mma_operands`] of that quotient. `None` when the shapes
/// do not tile (M a multiple of 16, N of 8, K of the instruction's k) or the threads are not
/// whole warps.
pub fn mma_layouts(m: usize, n: usize, k: usize, threads: usize, instruction: MmaInstruction) -> Option<MmaLayouts> {
    let (tm, tn, tk) = instruction.mnk();
    if m == 0 || n == 0 || k == 0 || !m.is_multiple_of(tm) || !n.is_multiple_of(tn) || !k.is_multiple_of(tk) {
        return None;
    }
    if threads == 0 || !threads.is_multiple_of(32) {
        return None;
    }
    let (m_tiles, n_tiles) = (m / tm, n / tn);
    let (wm, wn, replication) = warp_split(m_tiles, n_tiles, threads / 32, tm, tn);
    let quotient = RegisterLayout::replicated(replication)
        .ok()?
        .compose(&RegisterLayout::local(&[m_tiles / wm, n_tiles / wn]).ok()?)
        .ok()?
        .compose(&RegisterLayout::spatial(&[wm, wn]).ok()?)
        .ok()?;
    let (a, b) = mma_operands(&quotient, k, instruction)?;
    let c = quotient.compose(&instruction.fragment(MmaOperand::Accumulator)).ok()?;
    Some(MmaLayouts { quotient, c, a, b })
}

/// An accumulator layout for `c[m, n] + a[m, k]·b[k, n]` under which the operands' layouts
/// `a` and `b` are, as they stand, the fragments `select-instructions` plans for
/// ([`crate::select::plan_mma`]): no conversion of either operand. Tried, in order: the
/// straight arrangement, then the swapped one (`cᵀ = bᵀ·aᵀ`, the operands' roles exchanged),
/// each over every split of the warps and both nestings of the warps' tiles. `None` when no
/// candidate takes both operands as they are.
pub fn conversion_free_accumulator(
    operands: (&RegisterTensorType, &RegisterTensorType),
    c_dtype: DType,
    threads: usize,
    instruction: MmaInstruction,
) -> Option<RegisterLayout> {
    let (a, b) = operands;
    let (Some(&m), Some(&n)) = (a.shape.first(), b.shape.get(1)) else { return None };
    let transposed = |l: &RegisterLayout| l.transpose().ok();
    for swapped in [false, true] {
        // The problem the instructions see: (rows, cols) of their accumulators.
        let (rows, cols) = if swapped { (n, m) } else { (m, n) };
        for quotient in accumulator_quotients(rows, cols, threads, instruction) {
            let Ok(c) = quotient.compose(&instruction.fragment(MmaOperand::Accumulator)) else { continue };
            let c = if swapped { transposed(&c)? } else { c };
            let c_type = RegisterTensorType::new(c_dtype, vec![m, n], Some(c.clone()));
            let Some(plan) = crate::select::plan_mma(a, b, &c_type) else { continue };
            let (want_a, want_b) = match swapped {
                false => (a.layout.clone(), b.layout.clone()),
                true => (b.layout.as_ref().and_then(transposed), a.layout.as_ref().and_then(transposed)),
            };
            if plan.swapped == swapped
                && want_a.as_ref() == Some(&plan.a_layout)
                && want_b.as_ref() == Some(&plan.b_layout)
            {
                return Some(c);
            }
        }
    }
    None
}

/// The quotients `Q` of accumulators `Q ∘ C` over a `rows × cols` tile: every split of the
/// warps (`replicated(r)`, `wm × wn` warps), with each warp's tiles inside (`local ∘ spatial`)
/// or around (`spatial ∘ local`) the warps' grid.
fn accumulator_quotients(rows: usize, cols: usize, threads: usize, instruction: MmaInstruction) -> Vec<RegisterLayout> {
    let (tm, tn, _) = instruction.mnk();
    if rows == 0 || cols == 0 || !rows.is_multiple_of(tm) || !cols.is_multiple_of(tn) || !threads.is_multiple_of(32) {
        return Vec::new();
    }
    let (m_tiles, n_tiles, warps) = (rows / tm, cols / tn, threads / 32);
    let mut out = Vec::new();
    for wm in divisors(m_tiles) {
        for wn in divisors(n_tiles) {
            if warps == 0 || !warps.is_multiple_of(wm * wn) {
                continue;
            }
            let parts = (
                RegisterLayout::replicated(warps / (wm * wn)),
                RegisterLayout::local(&[m_tiles / wm, n_tiles / wn]),
                RegisterLayout::spatial(&[wm, wn]),
            );
            let (Ok(rep), Ok(local), Ok(spatial)) = parts else { continue };
            for (outer, inner) in [(&local, &spatial), (&spatial, &local)] {
                if let Ok(q) = rep.compose(outer).and_then(|q| q.compose(inner)) {
                    out.push(q);
                }
            }
        }
    }
    out
}

/// The a and b layouts that fit an accumulator of quotient `quotient` (c = quotient ∘ C
/// fragment) for a reduction of length `k`: every warp holds, for each k-tile, the fragments
/// its c tiles need — a = `local(1, k/kk) ∘ quotient.reduce([1]) ∘ A`, replicated across the
/// warps that share rows, and b = `local(k/kk, 1) ∘ quotient.reduce([0]) ∘ B`, replicated
/// across the warps that share columns (what the LLVM backend's `mma.sync` path expects).
pub fn mma_operands(
    quotient: &RegisterLayout,
    k: usize,
    instruction: MmaInstruction,
) -> Option<(RegisterLayout, RegisterLayout)> {
    let (_, _, tk) = instruction.mnk();
    if k == 0 || !k.is_multiple_of(tk) {
        return None;
    }
    let k_tiles = k / tk;
    let a = RegisterLayout::local(&[1, k_tiles])
        .ok()?
        .compose(&quotient.reduce(&[1], true).ok()?)
        .ok()?
        .compose(&instruction.fragment(MmaOperand::A))
        .ok()?;
    let b = RegisterLayout::local(&[k_tiles, 1])
        .ok()?
        .compose(&quotient.reduce(&[0], true).ok()?)
        .ok()?
        .compose(&instruction.fragment(MmaOperand::B))
        .ok()?;
    Some((a, b))
}

/// The memory-order reinterpretation of a register tile for `view`: `layout` holds `from_bits`
/// elements; the result holds `to_bits` elements of `to_shape` such that every thread keeps
/// its bits and the view reads the tile's packed bits, row-major, as the new type.
///
/// The tile is flattened (row-major); its innermost mode, when it is local and the innermost
/// slot mode (the thread's consecutive slots are consecutive elements), is scaled by
/// `from_bits / to_bits`; otherwise, when `to_bits` divides `from_bits`, a new innermost local
/// mode of that ratio splits each element. The result is reshaped to `to_shape`. So u8
/// `spatial(16,8).local(4,4)` on [64, 32] ↔ u4 `spatial(16,8).local(4,8)` on [64, 64]. `None`
/// when the element counts and widths do not match or no such layout exists (the run of
/// consecutive bits a thread holds does not split into whole new elements, or the reshape
/// cannot cut the modes).
pub fn reinterpret(
    layout: &RegisterLayout,
    from_bits: u32,
    to_bits: u32,
    to_shape: &[usize],
) -> Option<RegisterLayout> {
    let (from_bits, to_bits) = (u64::from(from_bits), u64::from(to_bits));
    if from_bits == 0 || to_bits == 0 || to_shape.contains(&0) {
        return None;
    }
    let from_elements = layout.num_elements();
    let to_elements = to_shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))?;
    if (from_elements as u128) * u128::from(from_bits) != (to_elements as u128) * u128::from(to_bits) {
        return None;
    }
    let flat = layout.reshape(&[from_elements]).ok()?;
    let mut parts = Parts::of(&flat);
    let innermost = parts.dims.first().and_then(|d| d.last()).copied();
    match innermost {
        Some(id) if parts.slots.last() == Some(&id) => {
            let bits = *parts.sizes.get(id)? as u64 * from_bits;
            if !bits.is_multiple_of(to_bits) {
                return None;
            }
            *parts.sizes.get_mut(id)? = usize::try_from(bits / to_bits).ok()?;
        }
        _ => {
            if !from_bits.is_multiple_of(to_bits) {
                return None;
            }
            let ratio = usize::try_from(from_bits / to_bits).ok()?;
            if ratio > 1 {
                let id = parts.add_mode(ratio);
                parts.dims.first_mut()?.push(id);
                parts.slots.push(id);
            }
        }
    }
    parts.build()?.reshape(to_shape).ok()
}

/// Whether every thread holds, in `held`, every element it holds in `needed` (same shape):
/// then moving from one to the other is register copies, no exchange between threads.
pub fn covers(held: &RegisterLayout, needed: &RegisterLayout) -> bool {
    if held.shape() != needed.shape() || held.num_threads() != needed.num_threads() {
        return false;
    }
    (0..needed.num_threads()).all(|t| {
        (0..needed.num_slots()).all(|i| {
            needed.map(t, i).ok().and_then(|c| held.holders(&c).ok()).is_some_and(|h| h.iter().any(|&(u, _)| u == t))
        })
    })
}

/// What a `broadcast` operand of `src_shape` needs when its result has layout `result`: the
/// result's layout with each dim cut into the operand's coordinate (outer) and the repeat
/// (inner), and the repeats reduced — spatial modes of the repeats become replicated axes,
/// local ones disappear. Every thread then holds, in the operand, every element its result
/// slots read (the backend copies registers, no exchange). `None` when the dims do not
/// divide or the result's modes cannot be cut there.
pub fn broadcast_source(result: &RegisterLayout, src_shape: &[usize]) -> Option<RegisterLayout> {
    let shape = result.shape();
    if shape.len() != src_shape.len() {
        return None;
    }
    if shape.is_empty() {
        return Some(result.clone());
    }
    let mut split = Vec::with_capacity(2 * shape.len());
    for (&r, &s) in shape.iter().zip(src_shape) {
        if s == 0 || !r.is_multiple_of(s) {
            return None;
        }
        split.extend([s, r / s]);
    }
    let repeats: Vec<usize> = (0..shape.len()).map(|d| 2 * d + 1).collect();
    result.reshape(&split).ok()?.reduce(&repeats, false).ok()
}

/// A layout of the operand of a `reduce` over `dims` (of `src_shape`, keeping them or not)
/// whose reduction is `result`: each reduced dim takes replicated thread axes of `result`
/// (innermost first) as spatial modes, and the rest of its size as an innermost local mode.
/// `None` when no such layout is found.
pub fn reduce_preimage(
    result: &RegisterLayout,
    src_shape: &[usize],
    dims: &[usize],
    keep_dims: bool,
) -> Option<RegisterLayout> {
    if dims.iter().any(|&d| d >= src_shape.len()) {
        return None;
    }
    let kept: Vec<usize> = src_shape.iter().enumerate().map(|(d, &s)| if dims.contains(&d) { 1 } else { s }).collect();
    let lifted = if keep_dims { result.clone() } else { result.reshape(&kept).ok()? };
    if lifted.shape() != kept {
        return None;
    }
    let mut parts = Parts::of(&lifted);
    for &d in dims {
        let mut rest = *src_shape.get(d)?;
        let mut spatial = Vec::new();
        let mut position = parts.threads.len();
        while position > 0 && rest > 1 {
            position -= 1;
            let ThreadAxis::Replicated(n) = parts.threads[position] else { continue };
            let g = gcd(n, rest);
            if g <= 1 {
                continue;
            }
            let id = parts.add_mode(g);
            if n / g > 1 {
                parts.threads[position] = ThreadAxis::Replicated(n / g);
                parts.threads.insert(position + 1, ThreadAxis::Mode(id));
            } else {
                parts.threads[position] = ThreadAxis::Mode(id);
            }
            spatial.push(id);
            rest /= g;
        }
        spatial.reverse();
        if rest > 1 {
            let id = parts.add_mode(rest);
            spatial.push(id);
            parts.slots.push(id);
        }
        *parts.dims.get_mut(d)? = spatial;
    }
    let layout = parts.build()?;
    (layout.reduce(dims, keep_dims).ok()? == *result).then_some(layout)
}

/// The XOR swizzle of a row-major shared tile of `shape` with `bits`-bit elements, from the
/// size of a row in bytes `R`: 16-byte chunks (base 4, the rows of `ldmatrix` and the widest
/// vector accesses) are permuted within each 128-byte line (the 32 banks) by the row bits
/// just above the line, so that 8 consecutive rows at the same column land in 8 different
/// chunks of the banks — `bits = min(3, log2(R/16))`, `shift = max(3, log2(R) − 4)`: f16 rows
/// of 64 elements (128 bytes) give `Swizzle(3, 4, 3)`, 32 elements `Swizzle(2, 4, 3)`.
/// `None` (plain row-major) for rank-1 tiles, rows that are not a power-of-two number of
/// bytes or shorter than 32 bytes (8 rows of 16 bytes are then already conflict-free), element
/// widths that a 16-byte chunk would split, and tiles too small for the swizzle to act (its
/// source bits are reduced to those inside the tile).
pub fn shared_swizzle(shape: &[usize], bits: u32) -> Option<Swizzle> {
    if shape.len() < 2 || bits == 0 || !(8 % bits == 0 || 128 % bits == 0) {
        return None;
    }
    let row_bits = (*shape.last()? as u64).checked_mul(u64::from(bits))?;
    if !row_bits.is_multiple_of(8) {
        return None;
    }
    let row_bytes = row_bits / 8;
    if !row_bytes.is_power_of_two() || row_bytes < 32 {
        return None;
    }
    let log_row = row_bytes.trailing_zeros();
    let mut swizzle_bits = (log_row - 4).min(3);
    let shift = (log_row - 4).max(3);
    let tile_bytes = shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64))?.checked_mul(u64::from(bits))? / 8;
    let log_tile = tile_bytes.checked_ilog2()?;
    if log_tile < 4 + shift + swizzle_bits {
        swizzle_bits = log_tile.checked_sub(4 + shift)?;
    }
    if swizzle_bits == 0 {
        return None;
    }
    Swizzle::new(swizzle_bits, 4, shift).ok()
}

/// The layout of a shared tile without one: row-major, with [`shared_swizzle`] when it
/// applies. `None` only for an empty shape or one whose size overflows.
pub fn shared_layout(shape: &[usize], bits: u32) -> Option<SharedLayout> {
    let layout = SharedLayout::row_major(shape).ok()?;
    Some(match shared_swizzle(shape, bits) {
        Some(swizzle) => layout.with_swizzle(swizzle),
        None => layout,
    })
}
