//! Register-tile operations that move data between slots or threads: `iota`, `view`,
//! `broadcast`, `reduce`, and layout conversions through the scratch area.
//!
//! **Scratch exchanges.** When a thread needs elements other threads hold, the tile goes
//! through the scratch area of shared memory: barrier (earlier readers of the scratch area are
//! done); every holder writes its slots' codes at the element's row-major index (1, 2 or 4
//! bytes per element by width — sub-byte codes get a byte each, so no atomics); barrier; every
//! thread reads what its result slots need. The next exchange's leading barrier protects
//! these reads, so no trailing barrier is needed. Control flow is uniform, so the barriers are
//! reached by every thread.
//!
//! **`reduce`.** Each thread first combines its own slots per result slot; the threads that
//! share a result element (those differing only in the digits of the reduced dims' spatial
//! modes) then combine their partial results: by butterfly shuffles (`shfl.sync.bfly`) for
//! digits that are power-of-two groups of lane bits, and through the scratch area for the
//! others, every thread combining the partials of the other groups in a fixed order. Integer
//! sums wrap (exact modulo 2^N in any order); `max`/`min` are order-independent. Float sums are
//! carried as unevaluated `f64` pairs (`hi + lo`, each addition an error-free TwoSum, the
//! errors summed in `f64`) and rounded once at the end (round-to-odd to `f64`, then to the
//! type): the interpreter's exact sum rounded once, except when the exact sum lies within
//! about n·2^-106·Σ|x| of a rounding boundary of the type, which needs massive cancellation.

use std::rc::Rc;

use anybit_ir::dtype::DType;
use anybit_ir::program::{BinaryOp, InstData, ReduceOp, ValueId};
use anybit_layouts::{RegisterLayout, SharedLayout, ThreadAxis};

use super::arith::{self, Domain, Repr};
use super::emit::{LResult, LowerError, internal};
use super::emitter::{Emit, FloatPredicate};
use super::layout::{self, row_major_strides};
use super::lower::{Lower, SharedTile, Tile, Val};

/// How result coordinates map to the source coordinates of an exchange.
#[derive(Clone, Debug)]
pub(crate) enum CoordMap {
    /// The same coordinates.
    Identity,
    /// `src = dst / factor` per dim (broadcast).
    Divide(Vec<usize>),
}

impl CoordMap {
    fn apply(&self, c: &[usize]) -> Vec<usize> {
        match self {
            CoordMap::Identity => c.to_vec(),
            CoordMap::Divide(f) => c.iter().zip(f).map(|(&x, &k)| x / k.max(1)).collect(),
        }
    }
}

/// The unsigned integer type whose width holds a code of `bits` bits in scratch.
fn container(bits: u32) -> LResult<DType> {
    let width = if bits <= 8 {
        8
    } else if bits <= 16 {
        16
    } else {
        32
    };
    DType::uint(width).map_err(|e| LowerError::Llvm(e.to_string()))
}

/// TwoSum: `(s, e)` with `s = fl(a + b)` and `s + e = a + b` exactly.
fn two_sum<E: Emit>(em: &E, a: E::V, b: E::V) -> LResult<(E::V, E::V)> {
    let s = em.fadd(a, b)?;
    let bb = em.fsub(s, a)?;
    let e = em.fadd(em.fsub(a, em.fsub(s, bb)?)?, em.fsub(b, bb)?)?;
    Ok((s, e))
}

/// `hi + lo` (|lo| ≤ ulp(hi)/2 not required) rounded to odd at `f64` precision: exact when
/// `lo` is 0, else `hi` nudged towards `lo` when its last bit is even. Rounding the result to
/// any precision of at most 51 bits gives `hi + lo` correctly rounded.
pub(crate) fn round_to_odd<E: Emit>(em: &E, hi: E::V, lo: E::V) -> LResult<E::V> {
    let zero = em.cf64(0.0)?;
    let lo_zero = em.fcmp(FloatPredicate::OEQ, lo, zero)?;
    let not_finite = em.fcmp(FloatPredicate::UEQ, em.float_intrinsic1("fabs", hi)?, em.cf64(f64::INFINITY)?)?;
    let keep = em.or(lo_zero, not_finite)?;
    // Renormalize so that |lo'| ≤ ulp(hi')/2.
    let (h, l) = two_sum(em, hi, lo)?;
    let bits = em.fbits(h)?;
    let even = em.eq(em.and(bits, em.c64(1)?)?, em.c64(0)?)?;
    let l_nonzero = em.fcmp(FloatPredicate::ONE, l, zero)?;
    let same_sign = em.eq(em.lshr(bits, em.c64(63)?)?, em.lshr(em.fbits(l)?, em.c64(63)?)?)?;
    let step = em.select(same_sign, em.c64(1)?, em.c64(-1)?)?;
    let nudge = em.and(even, l_nonzero)?;
    let nudged = em.from_bits(em.add(bits, em.select(nudge, step, em.c64(0)?)?)?, em.f64())?;
    em.select(keep, hi, nudged)
}

/// A partial reduction in one thread.
#[derive(Clone, Copy)]
enum Partial<V> {
    /// A carrier (integer sums, min, max).
    Value(V),
    /// An unevaluated sum `hi + lo` of `f64`s.
    Pair(V, V),
}

impl<'k, E: Emit> Lower<'k, E> {
    pub(crate) fn iota(&mut self, inst: &InstData, dim: usize) -> LResult<()> {
        let Some(&id) = inst.results.first() else { return internal("missing result") };
        let (dtype, shape, layout) = self.register_type(id)?;
        let coords = layout::coords(&mut self.em, layout)?;
        let Some(&base) = coords.base.get(dim) else { return internal("iota dim out of range") };
        let (bits, signed) = match arith::repr(dtype) {
            Repr::Int { bits, signed } => (bits, signed),
            _ => return Err(LowerError::Unsupported(format!("`iota` of {dtype}"))),
        };
        let slots = coords
            .offsets
            .iter()
            .map(|off| {
                let v = self.em.add(base, self.em.c32(off[dim])?)?;
                arith::normalize(&self.em, bits, signed, v)
            })
            .collect::<LResult<Vec<_>>>()?;
        let tile = Tile { dtype, shape: shape.to_vec(), layout: layout.clone(), slots, origin: None };
        self.bind(id, Val::Register(Rc::new(tile)))
    }

    pub(crate) fn view(&mut self, inst: &InstData, x: ValueId) -> LResult<()> {
        let src = match self.canonical(x, self.val(x)?)? {
            Val::Register(t) => t,
            _ => return internal("view of a non-tile"),
        };
        let Some(&id) = inst.results.first() else { return internal("missing result") };
        let (dtype, shape, layout) = self.register_type(id)?;
        let (ns, nd) = (src.dtype.bits() as usize, dtype.bits() as usize);
        let total = src.slots.len() * ns;
        if total != layout.num_slots() * nd {
            return Err(LowerError::Unsupported("`view` must keep every thread's bits".into()));
        }
        let codes = src.slots.iter().map(|&v| arith::to_code(&self.em, src.dtype, v)).collect::<LResult<Vec<_>>>()?;
        let em = &self.em;
        let mut slots = Vec::with_capacity(layout.num_slots());
        for j in 0..layout.num_slots() {
            let (lo, hi) = (j * nd, (j + 1) * nd);
            let mut acc: Option<E::V> = None;
            for k in lo / ns..hi.div_ceil(ns) {
                let start = k * ns;
                let Some(&code) = codes.get(k) else { return internal("view out of range") };
                let piece = if start >= lo {
                    let shift = (start - lo) as i64;
                    if shift == 0 { code } else { em.shl(code, em.c32(shift)?)? }
                } else {
                    em.lshr(code, em.c32((lo - start) as i64)?)?
                };
                acc = Some(match acc {
                    None => piece,
                    Some(a) => em.or(a, piece)?,
                });
            }
            let Some(v) = acc else { return internal("empty view slot") };
            let v = if nd >= 32 { v } else { em.and(v, em.c32((1i64 << nd) - 1)?)? };
            slots.push(arith::from_code(em, dtype, v)?);
        }
        let tile = Tile { dtype, shape: shape.to_vec(), layout: layout.clone(), slots, origin: None };
        self.bind(id, Val::Register(Rc::new(tile)))
    }

    pub(crate) fn broadcast(&mut self, inst: &InstData, x: ValueId) -> LResult<()> {
        let src = self.tile(x)?;
        let Some(&id) = inst.results.first() else { return internal("missing result") };
        let (dtype, shape, layout) = self.register_type(id)?;
        let factors: Vec<usize> = shape.iter().zip(&src.shape).map(|(&r, &s)| r / s.max(1)).collect();
        let map = CoordMap::Divide(factors);
        let slots = self.convert_slots(&src, layout, shape, &map)?;
        let tile = Tile { dtype, shape: shape.to_vec(), layout: layout.clone(), slots, origin: None };
        self.bind(id, Val::Register(Rc::new(tile)))
    }

    /// The slots of a tile of `layout` and `shape` whose element at `c` is the source's at
    /// `map(c)`: register copies when each thread holds what it needs, else a scratch exchange.
    pub(crate) fn convert_slots(
        &mut self,
        src: &Tile<E::V>,
        layout: &RegisterLayout,
        shape: &[usize],
        map: &CoordMap,
    ) -> LResult<Vec<E::V>> {
        if let Some(local) = layout::thread_local_map(&src.layout, layout, &|c| map.apply(c)) {
            return local
                .iter()
                .map(|&s| match src.slots.get(s) {
                    Some(&v) => Ok(v),
                    None => internal("slot out of range"),
                })
                .collect();
        }
        // Reload from shared memory when the tile came from there and is unchanged.
        if let (CoordMap::Identity, Some(origin)) = (map, &src.origin)
            && origin.epoch == self.epoch
            && let Ok(tile) = self.shared_tile(origin.tile)
        {
            let offsets = origin.offsets.clone();
            let o = offsets.iter().map(|&o| self.index32(o)).collect::<LResult<Vec<_>>>()?;
            let codes = self.load_shared_codes(&tile, &o, &offsets, layout)?;
            return codes.into_iter().map(|c| arith::from_code(&self.em, src.dtype, c)).collect();
        }
        self.exchange(src, layout, shape, map)
    }

    /// Reserves `bytes` of scratch from byte `at` of the scratch area; returns their offset in
    /// the shared buffer.
    pub(crate) fn scratch(&mut self, at: usize, bytes: usize) -> usize {
        self.scratch_bytes = self.scratch_bytes.max((at + bytes).next_multiple_of(16));
        self.plan.scratch_offset() + at
    }

    /// The scratch bytes a tile takes (one container per element, 16-byte multiple).
    pub(crate) fn scratch_size(src: &Tile<E::V>) -> LResult<usize> {
        let cdtype = container(src.dtype.bits())?;
        let n: usize = src.shape.iter().product();
        Ok((n * (cdtype.bits() as usize / 8)).next_multiple_of(16))
    }

    /// Writes a tile's codes to scratch at `at` (row-major, one container per element); the
    /// caller places the barriers. Returns the scratch tile.
    pub(crate) fn write_scratch(&mut self, src: &Tile<E::V>, at: usize) -> LResult<SharedTile> {
        let cdtype = container(src.dtype.bits())?;
        let offset = self.scratch(at, Self::scratch_size(src)?);
        let layout = SharedLayout::row_major(&src.shape).map_err(|e| LowerError::Llvm(e.to_string()))?;
        let tile = SharedTile { dtype: cdtype, layout, offset };
        let codes = src.slots.iter().map(|&v| arith::to_code(&self.em, src.dtype, v)).collect::<LResult<Vec<_>>>()?;
        let zeros = vec![anybit_ir::program::Operand::Literal(anybit_ir::program::Literal::Int(0)); src.shape.len()];
        let origin = vec![self.em.c32(0)?; src.shape.len()];
        let width = anybit_ir::access::shared_vector_width(tile.dtype, &tile.layout, &zeros, &src.layout, true);
        self.store_shared_codes(&tile, &origin, &src.layout, &codes, width)?;
        Ok(tile)
    }

    /// Writes a tile's codes to scratch after a barrier, then a barrier: the scratch tile.
    pub(crate) fn through_scratch(&mut self, src: &Tile<E::V>) -> LResult<SharedTile> {
        self.barrier()?;
        let tile = self.write_scratch(src, 0)?;
        self.barrier()?;
        Ok(tile)
    }

    fn exchange(
        &mut self,
        src: &Tile<E::V>,
        layout: &RegisterLayout,
        shape: &[usize],
        map: &CoordMap,
    ) -> LResult<Vec<E::V>> {
        let scratch = self.through_scratch(src)?;
        let codes = match map {
            CoordMap::Identity => {
                let zeros =
                    vec![anybit_ir::program::Operand::Literal(anybit_ir::program::Literal::Int(0)); shape.len()];
                let origin = vec![self.em.c32(0)?; shape.len()];
                self.load_shared_codes(&scratch, &origin, &zeros, layout)?
            }
            CoordMap::Divide(factors) => {
                let coords = layout::coords(&mut self.em, layout)?;
                let ptr = self.tile_ptr(&scratch)?;
                let strides = row_major_strides(&src.shape);
                let cbits = scratch.dtype.bits();
                let mut codes = Vec::with_capacity(coords.offsets.len());
                for off in &coords.offsets {
                    let mut index = self.em.c32(0)?;
                    for d in 0..shape.len() {
                        let c = self.em.add(coords.base[d], self.em.c32(off[d])?)?;
                        let f = factors[d].max(1) as i64;
                        let c = if f == 1 { c } else { self.em.udiv(c, self.em.c32(f)?)? };
                        index = self.em.add(index, self.em.mul(c, self.em.c32(strides[d] as i64)?)?)?;
                    }
                    let byte = self.em.mul(index, self.em.c32(i64::from(cbits / 8))?)?;
                    codes.push(self.load_shared_element(ptr, cbits, byte, self.em.c32(0)?)?);
                }
                codes
            }
        };
        codes.into_iter().map(|c| arith::from_code(&self.em, src.dtype, c)).collect()
    }

    // ----- reduce -----

    pub(crate) fn reduce(
        &mut self,
        inst: &InstData,
        op: ReduceOp,
        x: ValueId,
        dims: &[usize],
        keep: bool,
    ) -> LResult<()> {
        let src = self.tile(x)?;
        let Some(&id) = inst.results.first() else { return internal("missing result") };
        let (dtype, shape, rlayout) = self.register_type(id)?;
        let rank = src.shape.len();
        let kept = |c: &[usize]| -> Vec<usize> {
            (0..rank)
                .filter_map(|d| match (dims.contains(&d), keep) {
                    (true, true) => Some(0),
                    (true, false) => None,
                    (false, _) => c.get(d).copied(),
                })
                .collect()
        };
        // Which result slot each source slot feeds (the same in every thread).
        let threads = src.layout.num_threads();
        let mut feeds: Vec<Option<usize>> = vec![None; src.slots.len()];
        for t in 0..threads {
            for (i, feed) in feeds.iter_mut().enumerate() {
                let c = src.layout.map(t, i).map_err(|e| LowerError::Llvm(e.to_string()))?;
                let holders = rlayout.holders(&kept(&c)).map_err(|e| LowerError::Llvm(e.to_string()))?;
                let mine: Vec<usize> = holders.iter().filter(|h| h.0 == t).map(|h| h.1).collect();
                match (*feed, mine.first()) {
                    (_, None) => return internal("a reduced element's thread does not hold its result"),
                    (None, Some(&j)) => *feed = Some(j),
                    (Some(j), _) if mine.contains(&j) => {}
                    _ => return internal("reduce: inconsistent slot mapping"),
                }
            }
        }
        // Combine each thread's own slots.
        let mut partials: Vec<Option<Partial<E::V>>> = vec![None; rlayout.num_slots()];
        for (i, feed) in feeds.iter().enumerate() {
            let Some(j) = *feed else { continue };
            let Some(&v) = src.slots.get(i) else { return internal("slot out of range") };
            let element = self.partial_of(op, dtype, v)?;
            partials[j] = Some(match partials[j] {
                None => element,
                Some(p) => self.combine(op, dtype, p, element)?,
            });
        }
        let mut partials: Vec<Partial<E::V>> = partials
            .into_iter()
            .map(|p| p.ok_or(LowerError::Llvm("a result slot gets no element".into())))
            .collect::<LResult<_>>()?;
        // The thread axes of the reduced dims' spatial modes.
        let axes = layout::thread_axes(&src.layout);
        let mut lane_masks = Vec::new();
        let mut cross = Vec::new();
        for (k, &(axis, size, stride)) in axes.iter().enumerate() {
            let ThreadAxis::Mode(m) = axis else { continue };
            let Some(d) = src.layout.mode_dim(m) else { return internal("mode without dim") };
            if !dims.contains(&d) || size == 1 {
                continue;
            }
            if size.is_power_of_two() && stride.is_power_of_two() && size * stride <= 32 {
                let mut bit = stride;
                while bit < stride * size {
                    lane_masks.push(bit as u32);
                    bit *= 2;
                }
            } else {
                cross.push((k, size));
            }
        }
        for &mask in &lane_masks {
            for p in partials.iter_mut() {
                let other = self.shuffle_partial(*p, mask)?;
                *p = self.combine(op, dtype, *p, other)?;
            }
        }
        if !cross.is_empty() {
            partials = self.cross_warp(&src.layout, rlayout, shape, op, dtype, &cross, &partials)?;
        }
        let slots = partials.into_iter().map(|p| self.finish_partial(op, dtype, p)).collect::<LResult<Vec<_>>>()?;
        let tile = Tile { dtype, shape: shape.to_vec(), layout: rlayout.clone(), slots, origin: None };
        self.bind(id, Val::Register(Rc::new(tile)))
    }

    fn float_sum(op: ReduceOp, dtype: DType) -> bool {
        op == ReduceOp::Sum && dtype.is_float()
    }

    fn partial_of(&self, op: ReduceOp, dtype: DType, v: E::V) -> LResult<Partial<E::V>> {
        if Self::float_sum(op, dtype) {
            if let Repr::Code(f) = arith::repr(dtype) {
                arith::code_domain(dtype, f)?;
            }
            let x = arith::to_domain(&self.em, dtype, v, Domain::F64)?;
            return Ok(Partial::Pair(x, self.em.cf64(0.0)?));
        }
        Ok(Partial::Value(v))
    }

    fn combine(&self, op: ReduceOp, dtype: DType, a: Partial<E::V>, b: Partial<E::V>) -> LResult<Partial<E::V>> {
        match (a, b) {
            (Partial::Pair(s1, e1), Partial::Pair(s2, e2)) => {
                let (s, t) = two_sum(&self.em, s1, s2)?;
                let e = self.em.fadd(self.em.fadd(e1, e2)?, t)?;
                Ok(Partial::Pair(s, e))
            }
            (Partial::Value(x), Partial::Value(y)) => {
                let bop = match op {
                    ReduceOp::Sum => BinaryOp::Add,
                    ReduceOp::Max => BinaryOp::Max,
                    ReduceOp::Min => BinaryOp::Min,
                };
                Ok(Partial::Value(arith::binary(&self.em, bop, dtype, x, y)?))
            }
            _ => internal("mixed partials"),
        }
    }

    fn shuffle_partial(&self, p: Partial<E::V>, mask: u32) -> LResult<Partial<E::V>> {
        Ok(match p {
            Partial::Value(v) => Partial::Value(self.em.shfl_bfly_any(v, mask)?),
            Partial::Pair(s, e) => Partial::Pair(self.em.shfl_bfly_any(s, mask)?, self.em.shfl_bfly_any(e, mask)?),
        })
    }

    fn finish_partial(&self, _op: ReduceOp, dtype: DType, p: Partial<E::V>) -> LResult<E::V> {
        match p {
            Partial::Value(v) => Ok(v),
            Partial::Pair(s, e) => {
                let r = round_to_odd(&self.em, s, e)?;
                arith::from_domain(&self.em, dtype, r)
            }
        }
    }

    /// Combines partials across the thread axes `cross` (index, size) through scratch.
    #[allow(clippy::too_many_arguments)]
    fn cross_warp(
        &mut self,
        src_layout: &RegisterLayout,
        rlayout: &RegisterLayout,
        rshape: &[usize],
        op: ReduceOp,
        dtype: DType,
        cross: &[(usize, usize)],
        partials: &[Partial<E::V>],
    ) -> LResult<Vec<Partial<E::V>>> {
        let groups: usize = cross.iter().map(|c| c.1).product();
        let elements: usize = rshape.iter().product();
        let pair = Self::float_sum(op, dtype);
        let width: usize = if pair { 16 } else { 4 };
        let offset = self.scratch(0, elements * groups * width);
        let base = self.em.byte_offset(self.shared_base()?, self.em.c64(offset as i64)?)?;
        // This thread's group: the mixed-radix number of its cross digits.
        let mut g = self.em.c32(0)?;
        for &(k, size) in cross {
            let digit = layout::thread_digit(&mut self.em, src_layout, k)?;
            g = self.em.add(self.em.mul(g, self.em.c32(size as i64)?)?, digit)?;
        }
        let coords = layout::coords(&mut self.em, rlayout)?;
        let strides = row_major_strides(rshape);
        let mut element_index = Vec::with_capacity(partials.len());
        for off in &coords.offsets {
            let mut index = self.em.c32(0)?;
            for d in 0..rshape.len() {
                let c = self.em.add(coords.base[d], self.em.c32(off[d])?)?;
                index = self.em.add(index, self.em.mul(c, self.em.c32(strides[d] as i64)?)?)?;
            }
            element_index.push(index);
        }
        let slot_addr = |this: &Self, element: E::V, group: E::V| -> LResult<_> {
            let cell = this.em.add(this.em.mul(element, this.em.c32(groups as i64)?)?, group)?;
            let byte = this.em.mul(cell, this.em.c32(width as i64)?)?;
            this.em.byte_offset(base, this.em.zext(byte, this.em.i64())?)
        };
        self.barrier()?;
        for (p, &e) in partials.iter().zip(&element_index) {
            let addr = slot_addr(self, e, g)?;
            match *p {
                Partial::Pair(s, lo) => {
                    self.em.store(addr, s, 8)?;
                    let addr2 = self.em.byte_offset(addr, self.em.c64(8)?)?;
                    self.em.store(addr2, lo, 8)?;
                }
                Partial::Value(v) => {
                    let code = arith::to_code(&self.em, dtype, v)?;
                    self.em.store(addr, code, 4)?;
                }
            }
        }
        self.barrier()?;
        let mut out = Vec::with_capacity(partials.len());
        for &e in &element_index {
            let mut acc: Option<Partial<E::V>> = None;
            for k in 0..groups {
                let addr = slot_addr(self, e, self.em.c32(k as i64)?)?;
                let p = if pair {
                    let s = self.em.load(self.em.f64(), addr, 8)?;
                    let addr2 = self.em.byte_offset(addr, self.em.c64(8)?)?;
                    let lo = self.em.load(self.em.f64(), addr2, 8)?;
                    Partial::Pair(s, lo)
                } else {
                    let code = self.em.load(self.em.i32(), addr, 4)?;
                    Partial::Value(arith::from_code(&self.em, dtype, code)?)
                };
                acc = Some(match acc {
                    None => p,
                    Some(a) => self.combine(op, dtype, a, p)?,
                });
            }
            out.push(acc.ok_or(LowerError::Llvm("no groups".into()))?);
        }
        Ok(out)
    }
}
