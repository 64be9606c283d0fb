//! Global and shared memory: views, loads, stores, the shared-memory plan and copies.
//!
//! # Global memory
//!
//! A view is its pointer with shape and strides widened to `i64`. A tile access computes,
//! once per access, the element index of the thread's base element (`Σ (origin_d + base_d) ·
//! stride_d`) and per-dim bounds, then per slot adds the static offsets (`Σ off_d · stride_d`,
//! one multiplication per distinct offset) and tests `0 ≤ origin_d + base_d + off_d < shape_d`
//! — except along the dims a load promises inside the view (`load_global … inside [d]`, which
//! the interpreter checks), where nothing is tested.
//!
//! - Masked-out elements are not accessed: their loads read a 16-byte **zero page** (a module
//!   constant) and their stores write a 16-byte **sink**, chosen by a select on the address —
//!   no branches, no divergence.
//! - Byte-sized elements (8/16/32 bits) are single accesses. Other widths: the element's bits
//!   `[e·N, (e+1)·N)` are gathered from the bytes that hold them (1 to 5 byte loads, the extra
//!   ones re-reading the last needed byte, so nothing outside the element's bytes is read).
//!   Sub-byte stores are atomic `and`/`or` read-modify-writes of the aligned 32-bit word(s)
//!   holding the element, because other threads may write the neighbouring bits; they may
//!   touch (without changing) up to 3 bytes before or after the buffer within the same word,
//!   which allocations on the GPU always contain.
//! - **Vectorization.** Slots holding consecutive elements along the last dim (unit stride, a
//!   literal) are grouped into aligned runs of 16 to 128 bits. When the thread's whole tile is
//!   inside the view and the run addresses are aligned (tested at run time, once per access),
//!   each run is one vector access (`ld.global.v4.u32`, …; sub-byte runs included, stored
//!   without atomics since the thread then owns those bytes); otherwise the thread takes the
//!   per-element path. Loads through pointers that no `store_global` writes are marked
//!   `!invariant.load` (`ld.global.nc`).
//!
//! Pointer parameters must be aligned to their element size, and must not alias each other
//! (they are `noalias`).
//!
//! # Shared memory
//!
//! [`SharedPlan`] gives every `alloc_shared` a static byte offset: a first-fit simulation of
//! the kernel's allocations in program order (16-byte aligned, aligned to the swizzle's span
//! for swizzled tiles), where `free_shared` releases a range for later allocations, the two
//! branches of an `if` start from the same state (their tiles may overlap each other) and
//! tiles still allocated after it are those of either branch. The scratch area for
//! cross-thread exchanges follows the tiles. Element addresses mirror
//! `SharedLayout::address`: the element offset of the coordinates (mixed-radix digits over each
//! dim's strided modes), times the element bits, the byte swizzled, relative to the tile.
//!
//! # `copy_async`
//!
//! The copy is spread over the block's threads by a layout built for it (each thread copying
//! runs of up to 16 bytes along the last dim). For byte-sized elements, when a thread's runs
//! are aligned in both memories and each run is entirely inside or entirely outside the view,
//! each run is one `cp.async.ca`/`cg` of 4, 8 or 16 bytes with a source size of 0 for runs
//! outside the view (zero fill), and `commit_group`/`wait_group N` are the PTX ones. Otherwise
//! (sub-byte elements, unaligned or partially masked runs, the host) the thread copies its
//! elements synchronously — which completes earlier than asked, so every program that waits
//! and synchronizes as the language requires sees the same data.

use std::collections::HashMap;
use std::rc::Rc;

use anybit_ir::access::{Run, async_copy_width, copy_layout, plan_runs, shared_vector_runs, shared_vector_width};
use anybit_ir::program::{InstData, Kernel, Op, Operand, Type, ValueId, Via};
use anybit_layouts::{RegisterLayout, SharedLayout};
use anybit_passes::select::{ldmatrix_fragment, ldmatrix_plan};

use super::arith;
use super::emit::{LResult, LowerError, internal};
use super::emitter::{AtomicOp, Emit, ModuleBuffer, Space};
use super::layout;
use super::lower::{GlobalView, Lower, Origin, SharedTile, Tile, Val};

// ----- the shared-memory plan -----

/// Static offsets of the kernel's shared tiles.
#[derive(Clone, Debug, Default)]
pub(crate) struct SharedPlan {
    /// Per `alloc_shared` result value (by index): its byte offset.
    offsets: HashMap<usize, usize>,
    /// One past the last byte any tile uses.
    peak: usize,
}

/// The alignment of a shared tile: 16 bytes, or the span of its swizzle (at most 1024).
fn tile_alignment(layout: Option<&SharedLayout>) -> usize {
    match layout.and_then(|l| l.swizzle()) {
        Some(s) => (1usize << s.top_bit().min(10)).max(128),
        None => 16,
    }
}

impl SharedPlan {
    pub(crate) fn new(kernel: &Kernel) -> LResult<SharedPlan> {
        let mut plan = SharedPlan::default();
        let mut live: Vec<(usize, usize, usize)> = Vec::new();
        plan.walk(kernel, &kernel.body, &mut live, 0)?;
        Ok(plan)
    }

    fn walk(
        &mut self,
        kernel: &Kernel,
        block: &anybit_ir::program::Block,
        live: &mut Vec<(usize, usize, usize)>,
        depth: usize,
    ) -> LResult<()> {
        if depth > 80 {
            return internal("blocks nested too deep");
        }
        for &id in &block.insts {
            let Some(inst) = kernel.insts.get(id) else { return internal("instruction handle out of range") };
            match &inst.op {
                Op::AllocShared { ty } => {
                    let Some(&v) = inst.results.first() else { return internal("alloc_shared without result") };
                    let bytes = ty.size_in_bytes().max(1);
                    let align = tile_alignment(ty.layout.as_ref());
                    let mut sorted = live.clone();
                    sorted.sort_unstable();
                    let mut start = 0usize;
                    for &(s, e, _) in &sorted {
                        if start + bytes <= s {
                            break;
                        }
                        start = start.max(e.next_multiple_of(align));
                    }
                    let start = start.next_multiple_of(align);
                    live.push((start, start + bytes, v.index()));
                    self.offsets.insert(v.index(), start);
                    self.peak = self.peak.max(start + bytes);
                }
                Op::FreeShared { tensor } => live.retain(|&(_, _, v)| v != tensor.index()),
                Op::For { body, .. } => self.walk(kernel, body, live, depth + 1)?,
                Op::If { then_body, else_body, .. } => {
                    let mut then_live = live.clone();
                    self.walk(kernel, then_body, &mut then_live, depth + 1)?;
                    let mut else_live = live.clone();
                    self.walk(kernel, else_body, &mut else_live, depth + 1)?;
                    for t in else_live {
                        if !then_live.iter().any(|x| x.2 == t.2) {
                            then_live.push(t);
                        }
                    }
                    *live = then_live;
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub(crate) fn offset(&self, value: ValueId) -> LResult<usize> {
        match self.offsets.get(&value.index()) {
            Some(&o) => Ok(o),
            None => internal("shared tile without a planned offset"),
        }
    }

    /// The bytes the kernel's own tiles span.
    pub(crate) fn peak(&self) -> usize {
        self.peak
    }

    /// Where the scratch area starts.
    pub(crate) fn scratch_offset(&self) -> usize {
        self.peak.next_multiple_of(128)
    }
}

// ----- module-level helpers -----

/// The integer (or vector of i32) type of `bits` bits for a vector access.
fn access_type<E: Emit>(em: &E, bits: u32) -> E::T {
    match bits {
        64 => em.vector_type(em.i32(), 2),
        128 => em.vector_type(em.i32(), 4),
        b => em.int(b),
    }
}

/// The `i32` codes of `n` elements of `bits` bits packed LSB-first in an access value.
fn unpack<E: Emit>(em: &E, v: E::V, n: usize, bits: u32) -> LResult<Vec<E::V>> {
    let words = access_words(em, v, (n as u32 * bits).div_ceil(32) as usize)?;
    unpack_words(em, &words, n, bits)
}

/// The `i32` words of an access value: the elements of a vector of `words` `i32`s, or an
/// integer of at most 32 bits zero-extended.
fn access_words<E: Emit>(em: &E, v: E::V, words: usize) -> LResult<Vec<E::V>> {
    match em.int_width(em.type_of(v)) {
        Some(_) => Ok(vec![em.zext(v, em.i32())?]),
        None => (0..words as u32).map(|k| em.extract_element(v, k)).collect(),
    }
}

/// The access value of `total` bits (8 … 128) holding `i32` words: a vector of `i32`s for 64
/// and 128 bits, else the first word truncated.
fn access_value<E: Emit>(em: &E, words: &[E::V], total: u32) -> LResult<E::V> {
    match total {
        64 | 128 => {
            let mut v = em.undef(em.vector_type(em.i32(), words.len() as u32))?;
            for (k, &w) in words.iter().enumerate() {
                v = em.insert_element(v, w, k as u32)?;
            }
            Ok(v)
        }
        b => match words.first() {
            Some(&w) => em.trunc(w, em.int(b)),
            None => internal("an access of nothing"),
        },
    }
}

/// Packs `i32` codes of `bits` bits LSB-first into an access value of `total` bits.
fn pack<E: Emit>(em: &E, codes: &[E::V], bits: u32, total: u32) -> LResult<E::V> {
    access_value(em, &pack_words(em, codes, bits, total)?, total)
}

/// The codes of `n` elements of `bits` bits packed LSB-first in `i32` words.
fn unpack_words<E: Emit>(em: &E, words: &[E::V], n: usize, bits: u32) -> LResult<Vec<E::V>> {
    let mask = if bits >= 32 { -1i64 } else { (1i64 << bits) - 1 };
    (0..n)
        .map(|k| {
            let bit = k as u32 * bits;
            let Some(&w) = words.get((bit / 32) as usize) else { return internal("unpack out of range") };
            let shifted = if bit.is_multiple_of(32) { w } else { em.lshr(w, em.c32(i64::from(bit % 32))?)? };
            if bits >= 32 { Ok(shifted) } else { em.and(shifted, em.c32(mask)?) }
        })
        .collect()
}

/// Packs codes of `bits` bits LSB-first into `i32` words (`total` bits, at least one word).
fn pack_words<E: Emit>(em: &E, codes: &[E::V], bits: u32, total: u32) -> LResult<Vec<E::V>> {
    let nwords = total.div_ceil(32) as usize;
    let mut words: Vec<Option<E::V>> = vec![None; nwords];
    for (k, &c) in codes.iter().enumerate() {
        let bit = k as u32 * bits;
        let shifted = if bit.is_multiple_of(32) { c } else { em.shl(c, em.c32(i64::from(bit % 32))?)? };
        let Some(slot) = words.get_mut((bit / 32) as usize) else { return internal("pack out of range") };
        *slot = Some(match *slot {
            None => shifted,
            Some(w) => em.or(w, shifted)?,
        });
    }
    words.into_iter().map(|w| w.map_or_else(|| em.c32(0), Ok)).collect()
}

/// How a global tile access is carried out, from its selection (`via …`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Vectorize {
    /// Element by element (`via scalar`, or no selection).
    Elements,
    /// Runs of up to this many elements when a run-time test finds them aligned and whole,
    /// else element by element (`via vector(n, checked)`).
    Checked(u32),
    /// Runs of up to this many elements, proven aligned and whole (`via vector(n)`).
    Proven(u32),
}

impl Vectorize {
    /// The longest run allowed; `None` for element accesses.
    fn width(self) -> Option<u32> {
        match self {
            Vectorize::Elements => None,
            Vectorize::Checked(width) | Vectorize::Proven(width) => Some(width),
        }
    }

    pub(crate) fn of(via: Option<Via>) -> Vectorize {
        match via {
            Some(Via::Vector { width, checked: true }) => Vectorize::Checked(width),
            Some(Via::Vector { width, checked: false }) => Vectorize::Proven(width),
            _ => Vectorize::Elements,
        }
    }
}

/// A tile access to global memory by the running thread.
struct GlobalAccess<V> {
    view: Rc<GlobalView<V>>,
    bits: u32,
    /// Element index of the thread's base element.
    base_index: V,
    /// Per dim: the base coordinate in the view (`origin + base`), `i64`.
    base_coord: Vec<V>,
    stride_terms: HashMap<(usize, i64), V>,
    masks: HashMap<(usize, i64), V>,
    invariant: bool,
    /// Per dim: whether the kernel promises the tile inside the view along it
    /// (`load_global … inside [d]`): no bounds test there.
    inside: Vec<bool>,
}

impl<'k, E: Emit> Lower<'k, E> {
    // ----- global memory -----

    pub(crate) fn global_view(
        &mut self,
        inst: &InstData,
        ptr: ValueId,
        shape: &[Operand],
        strides: &[Operand],
    ) -> LResult<()> {
        let (dtype, p, param) = match self.val(ptr)? {
            Val::Pointer { dtype, ptr, param } => (*dtype, *ptr, *param),
            _ => return internal("`global_view` of a non-pointer"),
        };
        let shape = shape.iter().map(|&s| self.index64(s)).collect::<LResult<Vec<_>>>()?;
        let static_strides = strides.iter().map(|&s| Self::static_index(s)).collect();
        let strides = strides.iter().map(|&s| self.index64(s)).collect::<LResult<Vec<_>>>()?;
        let Some(&id) = inst.results.first() else { return internal("missing result") };
        let view = GlobalView { dtype, ptr: p, param, shape, strides, static_strides };
        self.bind(id, Val::Global(Rc::new(view)))
    }

    fn global(&self, id: ValueId) -> LResult<Rc<GlobalView<E::V>>> {
        match self.val(id)? {
            Val::Global(g) => Ok(g.clone()),
            _ => internal(format!("{} is not a global view", self.name(id))),
        }
    }

    fn begin_global(
        &mut self,
        view: Rc<GlobalView<E::V>>,
        origin: &[E::V],
        base: &[E::V],
    ) -> LResult<GlobalAccess<E::V>> {
        let em = &self.em;
        let rank = view.shape.len();
        if origin.len() != rank || base.len() != rank || view.strides.len() != rank {
            return internal("rank mismatch in a global access");
        }
        let mut base_coord = Vec::with_capacity(rank);
        let mut base_index = em.c64(0)?;
        for d in 0..rank {
            let c = em.add(origin[d], em.sext(base[d], em.i64())?)?;
            base_index = em.add(base_index, em.mul(c, view.strides[d])?)?;
            base_coord.push(c);
        }
        let invariant = !self.stored_params.get(view.param).copied().unwrap_or(true);
        Ok(GlobalAccess {
            bits: view.dtype.bits(),
            view,
            base_index,
            base_coord,
            stride_terms: HashMap::new(),
            masks: HashMap::new(),
            invariant,
            inside: vec![false; rank],
        })
    }

    /// The element index and in-view mask of the element at `off` from the thread's base.
    fn global_element(&self, acc: &mut GlobalAccess<E::V>, off: &[i64]) -> LResult<(E::V, E::V)> {
        let em = &self.em;
        let mut index = acc.base_index;
        let mut mask: Option<E::V> = None;
        for (d, &o) in off.iter().enumerate() {
            if o != 0 {
                let term = match acc.stride_terms.get(&(d, o)) {
                    Some(&t) => t,
                    None => {
                        let t = match acc.view.static_strides.get(d).copied().flatten() {
                            Some(s) => em.c64(s.wrapping_mul(o))?,
                            None => em.mul(acc.view.strides[d], em.c64(o)?)?,
                        };
                        acc.stride_terms.insert((d, o), t);
                        t
                    }
                };
                index = em.add(index, term)?;
            }
            if acc.inside.get(d).copied().unwrap_or(false) {
                continue;
            }
            let m = match acc.masks.get(&(d, o)) {
                Some(&m) => m,
                None => {
                    let c = em.add(acc.base_coord[d], em.c64(o)?)?;
                    let inside = em.and(em.sge(c, em.c64(0)?)?, em.slt(c, acc.view.shape[d])?)?;
                    acc.masks.insert((d, o), inside);
                    inside
                }
            };
            mask = Some(match mask {
                None => m,
                Some(prev) => em.and(prev, m)?,
            });
        }
        let mask = match mask {
            Some(m) => m,
            None => em.ctrue()?,
        };
        Ok((index, mask))
    }

    /// Loads `bits` (8, 16, 32, 64 or 128) from `addr` where `pred` holds, else zero, as
    /// `i32` words (one for 8, 16 and 32 bits, zero-extended). On the GPU a predicated
    /// `ld.global` (inline PTX: no select of addresses, no branch); on the host a load from
    /// the zero page when the predicate is false.
    fn load_pred(&self, addr: E::V, bits: u32, pred: E::V, invariant: bool) -> LResult<Vec<E::V>> {
        let em = &self.em;
        let words = bits.div_ceil(32) as usize;
        if !em.platform().is_nvptx() {
            let addr = em.select(pred, addr, em.module_buffer(ModuleBuffer::ZeroPage)?)?;
            let v = em.load_with(access_type(em, bits), addr, bits / 8, invariant)?;
            return access_words(em, v, words);
        }
        let nc = if invariant { ".nc" } else { "" };
        let (ty, dst) = match bits {
            8 => ("u8", "$0".to_string()),
            16 => ("u16", "$0".to_string()),
            32 => ("b32", "$0".to_string()),
            64 => ("v2.b32", "{$0, $1}".to_string()),
            _ => ("v4.b32", "{$0, $1, $2, $3}".to_string()),
        };
        let zeros: String = (0..words).map(|k| format!("mov.b32 ${k}, 0; ")).collect();
        let (a, p) = (words, words + 1);
        let asm = format!("{{ {zeros}@${p} ld.global{nc}.{ty} {dst}, [${a}]; }}");
        let constraints = format!("{}l,b", "=r,".repeat(words));
        let ret = if words == 1 { em.i32() } else { em.struct_type(&vec![em.i32(); words]) };
        let Some(v) = em.inline_asm(&asm, &constraints, Some(ret), &[addr, pred], !invariant)? else {
            return internal("asm load without value");
        };
        if words == 1 { Ok(vec![v]) } else { (0..words as u32).map(|k| em.extract_value(v, k)).collect() }
    }

    /// Stores `bits` (8 … 128, `i32` words) at `addr` where `pred` holds (a predicated
    /// `st.global`, or a store to the sink on the host).
    fn store_pred(&self, addr: E::V, bits: u32, words: &[E::V], pred: E::V) -> LResult<()> {
        let em = &self.em;
        if !em.platform().is_nvptx() {
            let addr = em.select(pred, addr, em.module_buffer(ModuleBuffer::Sink)?)?;
            return em.store(addr, access_value(em, words, bits)?, bits / 8);
        }
        let ty = match bits {
            8 => "u8",
            16 => "u16",
            32 => "b32",
            64 => "v2.b32",
            _ => "v4.b32",
        };
        let n = words.len();
        let src = if n == 1 {
            "$2".to_string()
        } else {
            format!("{{{}}}", (0..n).map(|k| format!("${}", k + 2)).collect::<Vec<_>>().join(", "))
        };
        let asm = format!("@$0 st.global.{ty} [$1], {src};");
        let constraints = format!("b,l{}", ",r".repeat(n));
        let mut args = vec![pred, addr];
        args.extend(words.iter().copied());
        em.inline_asm(&asm, &constraints, None, &args, true)?;
        Ok(())
    }

    /// Loads the code of one element (zero when masked out).
    fn load_global_element(&self, acc: &GlobalAccess<E::V>, index: E::V, mask: E::V) -> LResult<E::V> {
        let em = &self.em;
        let n = acc.bits;
        if matches!(n, 8 | 16 | 32) {
            let addr = em.byte_offset(acc.view.ptr, em.mul(index, em.c64(i64::from(n / 8))?)?)?;
            let w = self.load_pred(addr, n, mask, acc.invariant)?;
            return w.first().copied().ok_or(LowerError::Llvm("no word".into()));
        }
        // Other widths: gather the bytes holding bits [e·N, (e+1)·N); the extra loads re-read
        // the last needed byte, so nothing outside the element's bytes is read.
        let bit = em.mul(index, em.c64(i64::from(n))?)?;
        let byte = em.ashr(bit, em.c64(3)?)?;
        let shift = em.and(bit, em.c64(7)?)?;
        let g = gcd(n, 8);
        let count = (8 - g + n).div_ceil(8);
        let first = em.byte_offset(acc.view.ptr, byte)?;
        let mut word = em.c64(0)?;
        let last = if count > 1 { Some(em.lshr(em.add(shift, em.c64(i64::from(n) - 1)?)?, em.c64(3)?)?) } else { None };
        for k in 0..count {
            let offset = match last {
                Some(last) if k > 0 => em.smin(em.c64(i64::from(k))?, last)?,
                _ => em.c64(0)?,
            };
            let addr = if k == 0 { first } else { em.byte_offset(first, offset)? };
            let b = self.load_pred(addr, 8, mask, acc.invariant)?;
            let b = em.zext(b.first().copied().ok_or(LowerError::Llvm("no byte".into()))?, em.i64())?;
            let b = if k == 0 { b } else { em.shl(b, em.c64(8 * i64::from(k))?)? };
            word = em.or(word, b)?;
        }
        let v = em.lshr(word, shift)?;
        let v = em.and(v, em.c64((1i64 << n) - 1)?)?;
        em.trunc(v, em.i32())
    }

    /// Stores the code of one element (nothing when masked out).
    fn store_global_element(&self, acc: &GlobalAccess<E::V>, index: E::V, mask: E::V, code: E::V) -> LResult<()> {
        let em = &self.em;
        let n = acc.bits;
        if matches!(n, 8 | 16 | 32) {
            let addr = em.byte_offset(acc.view.ptr, em.mul(index, em.c64(i64::from(n / 8))?)?)?;
            return self.store_pred(addr, n, &[code], mask);
        }
        if n.is_multiple_of(8) {
            // Whole bytes, owned by this element: byte stores.
            let addr = em.byte_offset(acc.view.ptr, em.mul(index, em.c64(i64::from(n / 8))?)?)?;
            for k in 0..n / 8 {
                let a = em.byte_offset(addr, em.c64(i64::from(k))?)?;
                let b = em.lshr(code, em.c32(8 * i64::from(k))?)?;
                self.store_pred(a, 8, &[b], mask)?;
            }
            return Ok(());
        }
        let bit = em.mul(index, em.c64(i64::from(n))?)?;
        let byte = em.ashr(bit, em.c64(3)?)?;
        let shift = em.trunc(em.and(bit, em.c64(7)?)?, em.i32())?;
        let addr = em.byte_offset(acc.view.ptr, byte)?;
        let addr = em.select(mask, addr, em.module_buffer(ModuleBuffer::Sink)?)?;
        self.atomic_bits(addr, shift, n, code, Space::Global)
    }

    /// Writes `n` bits of `code` at bit `shift` (0..8) of the byte at `addr`, with atomic
    /// read-modify-writes of the aligned 32-bit word(s) holding them.
    fn atomic_bits(&self, addr: E::V, shift: E::V, n: u32, code: E::V, space: Space) -> LResult<()> {
        let em = &self.em;
        let int_addr = em.ptr_to_int(addr)?;
        let in_word = em.trunc(em.and(int_addr, em.c64(3)?)?, em.i32())?;
        let word = em.byte_offset(addr, em.sub(em.c64(0)?, em.zext(in_word, em.i64())?)?)?;
        let pos = em.add(em.shl(in_word, em.c32(3)?)?, shift)?;
        let mask = em.c32(if n >= 32 { -1 } else { (1i64 << n) - 1 })?;
        let code = em.and(code, mask)?;
        let clear = em.not(em.shl(mask, pos)?)?;
        let set = em.shl(code, pos)?;
        em.atomic_rmw(AtomicOp::And, word, clear)?;
        em.atomic_rmw(AtomicOp::Or, word, set)?;
        if 8 % n != 0 {
            // The element may continue in the next word.
            let spill = em.ugt(em.add(pos, em.c32(i64::from(n))?)?, em.c32(32)?)?;
            let back = em.sub(em.c32(32)?, pos)?;
            let back = em.select(spill, back, em.c32(0)?)?;
            let next = em.byte_offset(word, em.c64(4)?)?;
            // When the element does not spill, the second pair of atomics is neutral and aimed
            // at an address that is surely valid.
            let dummy = if em.platform().is_nvptx() && space == Space::Global {
                em.module_buffer(ModuleBuffer::Sink)?
            } else {
                word
            };
            let next = em.select(spill, next, dummy)?;
            let clear_hi = em.select(spill, em.not(em.lshr(mask, back)?)?, em.c32(-1)?)?;
            let set_hi = em.select(spill, em.lshr(code, back)?, em.c32(0)?)?;
            em.atomic_rmw(AtomicOp::And, next, clear_hi)?;
            em.atomic_rmw(AtomicOp::Or, next, set_hi)?;
        }
        Ok(())
    }

    /// Whether the thread's runs are aligned in memory (once per access): the base element's
    /// bit address is a multiple of the longest run, and so is every outer stride a slot
    /// offset uses.
    fn runs_aligned(&self, acc: &GlobalAccess<E::V>, offsets: &[Vec<i64>], runs: &[Run]) -> LResult<E::V> {
        let em = &self.em;
        let rank = acc.base_coord.len();
        let mut conds = Vec::new();
        let longest = runs.iter().map(|r| r.slots.len()).max().unwrap_or(1) as i64;
        let run_bits = longest * i64::from(acc.bits);
        let bit = em.add(
            em.mul(em.ptr_to_int(acc.view.ptr)?, em.c64(8)?)?,
            em.mul(acc.base_index, em.c64(i64::from(acc.bits))?)?,
        )?;
        conds.push(em.eq(em.and(bit, em.c64(run_bits - 1)?)?, em.c64(0)?)?);
        for d in 0..rank.saturating_sub(1) {
            if offsets.iter().any(|o| o[d] != 0) {
                match acc.view.static_strides.get(d).copied().flatten() {
                    Some(s) if s.rem_euclid(longest) == 0 => {}
                    Some(_) => conds.push(em.cfalse()?),
                    None => conds.push(em.eq(em.and(acc.view.strides[d], em.c64(longest - 1)?)?, em.c64(0)?)?),
                }
            }
        }
        em.and_all(&conds)
    }

    /// The runs a global access may vectorize, of at most `width` elements (none when the last
    /// stride is not a literal 1).
    fn global_runs(view: &GlobalView<E::V>, offsets: &[Vec<i64>], width: u32) -> Vec<Run> {
        let unit = view.static_strides.last().copied().flatten() == Some(1);
        if !unit {
            return vec![];
        }
        plan_runs(offsets, view.dtype.bits(), width)
    }

    /// Whether the thread's runs can be vector accesses (once per access): aligned in memory
    /// (see [`Lower::runs_aligned`]), and each run entirely inside or entirely outside the view
    /// (its start coordinate and the view's last extent multiples of the run length), so that
    /// one mask per run — its first element's — decides it. For a given launch this is the
    /// same in nearly every thread.
    fn runs_whole(&self, acc: &GlobalAccess<E::V>, offsets: &[Vec<i64>], runs: &[Run]) -> LResult<E::V> {
        let em = &self.em;
        let aligned = self.runs_aligned(acc, offsets, runs)?;
        let longest = runs.iter().map(|r| r.slots.len()).max().unwrap_or(1) as i64;
        let (Some(&base), Some(&extent)) = (acc.base_coord.last(), acc.view.shape.last()) else {
            return internal("rank 0 view");
        };
        let start_ok = em.eq(em.and(base, em.c64(longest - 1)?)?, em.c64(0)?)?;
        let extent_ok = em.eq(em.and(extent, em.c64(longest - 1)?)?, em.c64(0)?)?;
        em.and_all(&[aligned, start_ok, extent_ok])
    }

    /// For a checked access, the run-time test ([`Lower::runs_whole`]) branching to a vector
    /// block (where the builder is left) or an element block: `Some((element, merge))`. For a
    /// proven access, nothing: the vector accesses are all there is.
    fn vector_branch(
        &mut self,
        acc: &GlobalAccess<E::V>,
        offsets: &[Vec<i64>],
        runs: &[Run],
        vectorize: Vectorize,
        prefix: &str,
    ) -> LResult<Option<(E::B, E::B)>> {
        if matches!(vectorize, Vectorize::Proven(_)) {
            return Ok(None);
        }
        let whole = self.runs_whole(acc, offsets, runs)?;
        let (vector, element, merge) = (
            self.block_named(&format!("{prefix}.vec"))?,
            self.block_named(&format!("{prefix}.elem"))?,
            self.block_named(&format!("{prefix}.merge"))?,
        );
        self.em.cond_br(whole, vector, element)?;
        self.em.position_at_end(vector);
        Ok(Some((element, merge)))
    }

    /// Loads the codes of a tile at `origin` of a view, one per slot of `coords`.
    ///
    /// With runs of consecutive elements that are whole ([`Lower::runs_whole`]), each run is one
    /// vector load predicated on its first element's mask; otherwise every element is a
    /// predicated load. Slots outside runs are always predicated element loads.
    pub(crate) fn load_global_codes(
        &mut self,
        view: Rc<GlobalView<E::V>>,
        origin: &[E::V],
        coords: &layout::Coords<E::V>,
        vectorize: Vectorize,
        inside: &[usize],
    ) -> LResult<Vec<E::V>> {
        let runs = vectorize.width().map_or_else(Vec::new, |w| Self::global_runs(&view, &coords.offsets, w));
        let mut acc = self.begin_global(view, origin, &coords.base)?;
        for &d in inside {
            if let Some(flag) = acc.inside.get_mut(d) {
                *flag = true;
            }
        }
        let elements = |this: &Self, acc: &mut GlobalAccess<E::V>, skip: &[bool]| -> LResult<Vec<Option<E::V>>> {
            coords
                .offsets
                .iter()
                .enumerate()
                .map(|(i, off)| {
                    if skip.get(i).copied().unwrap_or(false) {
                        return Ok(None);
                    }
                    let (index, mask) = this.global_element(acc, off)?;
                    this.load_global_element(acc, index, mask).map(Some)
                })
                .collect()
        };
        if runs.is_empty() {
            return elements(self, &mut acc, &[])?
                .into_iter()
                .map(|c| c.ok_or(LowerError::Llvm("slot not loaded".into())))
                .collect();
        }
        let blocks = self.vector_branch(&acc, &coords.offsets, &runs, vectorize, "ld")?;
        // Vector accesses.
        let mut in_run = vec![false; coords.offsets.len()];
        let mut fast: Vec<Option<E::V>> = vec![None; coords.offsets.len()];
        for run in &runs {
            let Some(&first) = run.slots.first() else { continue };
            let (index, mask) = self.global_element(&mut acc, &coords.offsets[first])?;
            let total = run.slots.len() as u32 * acc.bits;
            let addr = self.em.byte_offset(acc.view.ptr, em_byte_of(&self.em, index, acc.bits)?)?;
            let words = self.load_pred(addr, total, mask, acc.invariant)?;
            for (&slot, &f) in run.slots.iter().zip(&unpack_words(&self.em, &words, run.slots.len(), acc.bits)?) {
                fast[slot] = Some(f);
                in_run[slot] = true;
            }
        }
        for (i, code) in elements(self, &mut acc, &in_run)?.into_iter().enumerate() {
            if code.is_some() {
                fast[i] = code;
            }
        }
        // Proven aligned and whole: no element path.
        let Some((scalar, merge)) = blocks else {
            return fast.into_iter().map(|c| c.ok_or(LowerError::Llvm("slot not loaded".into()))).collect();
        };
        // The merge block takes every slot's code as a parameter.
        let fast = fast
            .into_iter()
            .map(|c| c.ok_or(LowerError::Llvm("slot not loaded".into())))
            .collect::<LResult<Vec<_>>>()?;
        let params = fast.iter().map(|_| self.em.block_param(merge, self.em.i32())).collect::<LResult<Vec<_>>>()?;
        self.em.br(merge, &fast)?;
        // Element accesses.
        self.em.position_at_end(scalar);
        acc.stride_terms.clear();
        acc.masks.clear();
        let slow = elements(self, &mut acc, &[])?;
        let slow = slow
            .into_iter()
            .map(|c| c.ok_or(LowerError::Llvm("slot not loaded".into())))
            .collect::<LResult<Vec<_>>>()?;
        self.em.br(merge, &slow)?;
        self.em.position_at_end(merge);
        Ok(params)
    }

    /// Stores codes (one per slot of `coords`) at `origin` of a view; `enabled` (optional)
    /// masks the whole store for this thread. Whole runs are predicated vector stores, as in
    /// [`Lower::load_global_codes`].
    pub(crate) fn store_global_codes(
        &mut self,
        view: Rc<GlobalView<E::V>>,
        origin: &[E::V],
        coords: &layout::Coords<E::V>,
        codes: &[E::V],
        enabled: Option<E::V>,
        vectorize: Vectorize,
    ) -> LResult<()> {
        let runs = vectorize.width().map_or_else(Vec::new, |w| Self::global_runs(&view, &coords.offsets, w));
        let mut acc = self.begin_global(view, origin, &coords.base)?;
        let element_stores = |this: &Self, acc: &mut GlobalAccess<E::V>, skip: &[bool]| -> LResult<()> {
            for (i, (off, &code)) in coords.offsets.iter().zip(codes).enumerate() {
                if skip.get(i).copied().unwrap_or(false) {
                    continue;
                }
                let (index, mask) = this.global_element(acc, off)?;
                let mask = match enabled {
                    Some(e) => this.em.and(mask, e)?,
                    None => mask,
                };
                this.store_global_element(acc, index, mask, code)?;
            }
            Ok(())
        };
        if runs.is_empty() {
            return element_stores(self, &mut acc, &[]);
        }
        let blocks = self.vector_branch(&acc, &coords.offsets, &runs, vectorize, "st")?;
        let mut in_run = vec![false; codes.len()];
        for run in &runs {
            let Some(&first) = run.slots.first() else { continue };
            let (index, mask) = self.global_element(&mut acc, &coords.offsets[first])?;
            let mask = match enabled {
                Some(e) => self.em.and(mask, e)?,
                None => mask,
            };
            let total = run.slots.len() as u32 * acc.bits;
            let addr = self.em.byte_offset(acc.view.ptr, em_byte_of(&self.em, index, acc.bits)?)?;
            let run_codes: Vec<E::V> = run.slots.iter().map(|&s| codes[s]).collect();
            let words = pack_words(&self.em, &run_codes, acc.bits, total)?;
            self.store_pred(addr, total, &words, mask)?;
            for &slot in &run.slots {
                in_run[slot] = true;
            }
        }
        element_stores(self, &mut acc, &in_run)?;
        // Proven aligned and whole: no element path.
        let Some((scalar, merge)) = blocks else { return Ok(()) };
        self.em.br(merge, &[])?;
        self.em.position_at_end(scalar);
        acc.stride_terms.clear();
        acc.masks.clear();
        element_stores(self, &mut acc, &[])?;
        self.em.br(merge, &[])?;
        self.em.position_at_end(merge);
        Ok(())
    }

    pub(crate) fn block_named(&self, name: &str) -> LResult<E::B> {
        self.em.new_block(name)
    }

    pub(crate) fn load_global(
        &mut self,
        inst: &InstData,
        src: ValueId,
        offsets: &[Operand],
        inside: &[usize],
    ) -> LResult<()> {
        let view = self.global(src)?;
        self.global_access(Some(view.param), false)?;
        let origin = offsets.iter().map(|&o| self.index64(o)).collect::<LResult<Vec<_>>>()?;
        let Some(&id) = inst.results.first() else { return internal("missing result") };
        let (dtype, shape, layout) = self.register_type(id)?;
        let coords = layout::coords(&mut self.em, layout)?;
        let codes = self.load_global_codes(view, &origin, &coords, Vectorize::of(inst.via), inside)?;
        let slots = codes.into_iter().map(|c| arith::from_code(&self.em, dtype, c)).collect::<LResult<Vec<_>>>()?;
        let tile = Tile { dtype, shape: shape.to_vec(), layout: layout.clone(), slots, origin: None };
        self.bind(id, Val::Register(Rc::new(tile)))
    }

    pub(crate) fn store_global(
        &mut self,
        inst: &InstData,
        value: ValueId,
        dst: ValueId,
        offsets: &[Operand],
    ) -> LResult<()> {
        let tile = match self.canonical(value, self.val(value)?)? {
            Val::Register(t) => t,
            _ => return internal("store_global of a non-tile"),
        };
        let view = self.global(dst)?;
        self.global_access(Some(view.param), true)?;
        let origin = offsets.iter().map(|&o| self.index64(o)).collect::<LResult<Vec<_>>>()?;
        let coords = layout::coords(&mut self.em, &tile.layout)?;
        let codes = tile.slots.iter().map(|&v| arith::to_code(&self.em, tile.dtype, v)).collect::<LResult<Vec<_>>>()?;
        // Replicas hold the same values: only the first holder stores.
        let enabled =
            if tile.layout.is_replicated() { Some(layout::is_first_holder(&mut self.em, &tile.layout)?) } else { None };
        self.store_global_codes(view, &origin, &coords, &codes, enabled, Vectorize::of(inst.via))
    }

    // ----- shared memory -----

    pub(crate) fn alloc_shared(&mut self, inst: &InstData) -> LResult<()> {
        let Some(&id) = inst.results.first() else { return internal("missing result") };
        let Type::Shared(ty) = self.value_type(id)? else { return internal("alloc_shared of a non-shared type") };
        let Some(layout) = &ty.layout else {
            return Err(LowerError::Unsupported(format!("shared tile {} has no layout", self.name(id))));
        };
        let offset = self.plan.offset(id)?;
        self.epoch += 1;
        let tile = SharedTile { dtype: ty.dtype, layout: layout.clone(), offset };
        self.bind(id, Val::Shared(Rc::new(tile)))
    }

    pub(crate) fn shared_tile(&self, id: ValueId) -> LResult<Rc<SharedTile>> {
        match self.val(id)? {
            Val::Shared(t) => Ok(t.clone()),
            _ => internal(format!("{} is not a shared tile", self.name(id))),
        }
    }

    /// The shared buffer's start.
    pub(crate) fn shared_base(&self) -> LResult<E::V> {
        self.em.shared_base()
    }

    /// Byte address (`i32`, relative to the tile) and bit (0..8) of the element at `coords`.
    fn shared_address(&self, tile: &SharedTile, coords: &[E::V]) -> LResult<(E::V, E::V)> {
        let em = &self.em;
        let modes = tile.layout.modes();
        if modes.len() != coords.len() {
            return internal("rank mismatch in a shared access");
        }
        let mut offset = em.c32(0)?;
        for (dim, &c) in modes.iter().zip(coords) {
            let mut rest = c;
            for (j, mode) in dim.iter().enumerate().rev() {
                let digit = if j == 0 || mode.size == 1 {
                    if mode.size == 1 { em.c32(0)? } else { rest }
                } else {
                    em.urem(rest, em.c32(mode.size as i64)?)?
                };
                if j > 0 && mode.size > 1 {
                    rest = em.udiv(rest, em.c32(mode.size as i64)?)?;
                }
                if mode.stride != 0 {
                    offset = em.add(offset, em.mul(digit, em.c32(mode.stride as i64)?)?)?;
                }
            }
        }
        let n = i64::from(tile.dtype.bits());
        let bit = em.mul(offset, em.c32(n)?)?;
        let byte = em.lshr(bit, em.c32(3)?)?;
        let byte = match tile.layout.swizzle() {
            Some(s) if s.bits() > 0 => {
                let src = ((1i64 << s.bits()) - 1) << (s.base() + s.shift());
                em.xor(byte, em.lshr(em.and(byte, em.c32(src)?)?, em.c32(i64::from(s.shift()))?)?)?
            }
            _ => byte,
        };
        Ok((byte, em.and(bit, em.c32(7)?)?))
    }

    /// The coordinates (`i32`) in the shared tile of slot `off` of the thread's base.
    fn shared_coords(&self, origin: &[E::V], base: &[E::V], off: &[i64]) -> LResult<Vec<E::V>> {
        origin
            .iter()
            .zip(base)
            .zip(off)
            .map(|((&o, &b), &k)| self.em.add(self.em.add(o, b)?, self.em.c32(k)?))
            .collect()
    }

    /// Loads the code of an element of a shared tile at (tile-relative) byte `byte`, bit `bit`.
    pub(crate) fn load_shared_element(&self, tile_ptr: E::V, bits: u32, byte: E::V, bit: E::V) -> LResult<E::V> {
        let em = &self.em;
        let addr = em.byte_offset(tile_ptr, em.zext(byte, em.i64())?)?;
        if bits.is_multiple_of(8) {
            let v = em.load(em.int(bits), addr, natural_alignment(bits))?;
            return em.zext(v, em.i32());
        }
        let count = (8 - gcd(bits, 8) + bits).div_ceil(8);
        let mut word = em.c64(0)?;
        for k in 0..count {
            let a = if k == 0 { addr } else { em.byte_offset(addr, em.c64(i64::from(k))?)? };
            let b = em.zext(em.load(em.i8(), a, 1)?, em.i64())?;
            let b = if k == 0 { b } else { em.shl(b, em.c64(8 * i64::from(k))?)? };
            word = em.or(word, b)?;
        }
        let v = em.lshr(word, em.zext(bit, em.i64())?)?;
        em.trunc(em.and(v, em.c64((1i64 << bits) - 1)?)?, em.i32())
    }

    /// Stores the code of an element of a shared tile.
    pub(crate) fn store_shared_element(
        &self,
        tile_ptr: E::V,
        bits: u32,
        byte: E::V,
        bit: E::V,
        code: E::V,
    ) -> LResult<()> {
        let em = &self.em;
        let addr = em.byte_offset(tile_ptr, em.zext(byte, em.i64())?)?;
        if bits.is_multiple_of(8) {
            return em.store(addr, em.trunc(code, em.int(bits))?, natural_alignment(bits));
        }
        self.atomic_bits(addr, bit, bits, code, Space::Shared)
    }

    /// The tile's start pointer in the shared buffer.
    pub(crate) fn tile_ptr(&self, tile: &SharedTile) -> LResult<E::V> {
        self.em.byte_offset(self.shared_base()?, self.em.c64(tile.offset as i64)?)
    }

    /// Loads a tile of 16-bit elements with `ldmatrix` when its layout is made of the
    /// instruction's 8×8 fragments (`spatial(8,4).local(1,2)`, or with `.trans`
    /// `column_spatial(4,8).local(2,1)`: `mma` operands are) and every 8-element row of those
    /// blocks is 16 contiguous, aligned bytes of the shared tile (a strided layout with unit
    /// column stride, a row stride and a column origin that are multiples of 8, a swizzle
    /// that moves 16-byte chunks or none). Each lane gives the address of one row of one of up
    /// to 4 blocks; each register it gets back is one block's pair of slots.
    /// `ldmatrix` (`.trans` when `trans`) for a load [`ldmatrix_plan`] allowed.
    fn emit_ldmatrix(
        &mut self,
        tile: &SharedTile,
        origin: &[E::V],
        layout: &RegisterLayout,
        trans: bool,
    ) -> LResult<Vec<E::V>> {
        let err = |e: anybit_layouts::LayoutError| LowerError::Llvm(format!("ldmatrix fragment: {e}"));
        let fragment = ldmatrix_fragment(trans).map_err(err)?;
        let quotient = layout.divide_right(&fragment).map_err(err)?;
        let blocks = quotient.num_slots();
        let warp = layout::warp_coords(&mut self.em, layout)?;
        let ptr = self.tile_ptr(tile)?;
        let em = &self.em;
        let lane = em.and(em.tid()?, em.c32(31)?)?;
        let matrix = em.lshr(lane, em.c32(3)?)?;
        let row_in_block = em.and(lane, em.c32(7)?)?;
        let mut codes: Vec<Option<E::V>> = vec![None; layout.num_slots()];
        let mut q = 0;
        while q < blocks {
            let count = if blocks - q >= 4 {
                4
            } else if blocks - q >= 2 {
                2
            } else {
                1
            };
            // Matrix j of the instruction is block q + j: select its origin by lane / 8.
            let pick = |dim: usize| -> LResult<E::V> {
                let values: Vec<i64> = (0..count).map(|j| warp.offsets[2 * (q + j)][dim]).collect();
                let j = em.and(matrix, em.c32(count as i64 - 1)?)?;
                let mut v = em.c32(values[0])?;
                for (k, &x) in values.iter().enumerate().skip(1) {
                    let is = em.eq(j, em.c32(k as i64)?)?;
                    v = em.select(is, em.c32(x)?, v)?;
                }
                Ok(v)
            };
            let row = em.add(em.add(em.add(origin[0], warp.base[0])?, pick(0)?)?, row_in_block)?;
            let col = em.add(em.add(origin[1], warp.base[1])?, pick(1)?)?;
            let (byte, _) = self.shared_address(tile, &[row, col])?;
            let em = &self.em;
            let addr = em.byte_offset(ptr, em.zext(byte, em.i64())?)?;
            let regs = em.ldmatrix(addr, count as u32, trans)?;
            for (j, reg) in regs.into_iter().enumerate() {
                let b = q + j;
                codes[2 * b] = Some(em.and(reg, em.c32(0xffff)?)?);
                codes[2 * b + 1] = Some(em.lshr(reg, em.c32(16)?)?);
            }
            q += count;
        }
        codes.into_iter().map(|c| c.ok_or(LowerError::Llvm("ldmatrix slot not loaded".into()))).collect()
    }

    pub(crate) fn load_shared(&mut self, inst: &InstData, src: ValueId, offsets: &[Operand]) -> LResult<()> {
        let tile = self.shared_tile(src)?;
        let origin = offsets.iter().map(|&o| self.index32(o)).collect::<LResult<Vec<_>>>()?;
        let Some(&id) = inst.results.first() else { return internal("missing result") };
        let (dtype, shape, layout) = self.register_type(id)?;
        // What `select-instructions` decided: `ldmatrix`, or vector/element loads.
        let codes = match inst.via {
            Some(Via::Ldmatrix { trans }) => self.emit_ldmatrix(&tile, &origin, layout, trans)?,
            Some(Via::Vector { width, .. }) => self.load_shared_vectors(&tile, &origin, layout, Some(width))?,
            _ => self.load_shared_vectors(&tile, &origin, layout, None)?,
        };
        let slots = codes.into_iter().map(|c| arith::from_code(&self.em, dtype, c)).collect::<LResult<Vec<_>>>()?;
        let origin = Some(Origin { tile: src, offsets: offsets.to_vec(), epoch: self.epoch });
        let t = Tile { dtype, shape: shape.to_vec(), layout: layout.clone(), slots, origin };
        self.bind(id, Val::Register(Rc::new(t)))
    }

    /// Loads a register tile of `layout` from a shared tile at `origin` (`offsets` are the
    /// origin's operands, for the static alignment of vector accesses) for the backend's own
    /// layout conversions (not an instruction of the kernel): by `ldmatrix` when
    /// [`ldmatrix_plan`] allows it, as `select-instructions` would choose.
    pub(crate) fn load_shared_codes(
        &mut self,
        tile: &SharedTile,
        origin: &[E::V],
        offsets: &[Operand],
        layout: &RegisterLayout,
    ) -> LResult<Vec<E::V>> {
        match ldmatrix_plan(tile.dtype, &tile.layout, offsets, layout) {
            Some(trans) => self.emit_ldmatrix(tile, origin, layout, trans),
            None => {
                let width = shared_vector_width(tile.dtype, &tile.layout, offsets, layout, false);
                self.load_shared_vectors(tile, origin, layout, width)
            }
        }
    }

    /// Loads a register tile of `layout` from a shared tile at `origin`: by vector loads of up
    /// to `width` elements ([`shared_vector_width`]: proven aligned), else element by element.
    fn load_shared_vectors(
        &mut self,
        tile: &SharedTile,
        origin: &[E::V],
        layout: &RegisterLayout,
        width: Option<u32>,
    ) -> LResult<Vec<E::V>> {
        let coords = layout::coords(&mut self.em, layout)?;
        let ptr = self.tile_ptr(tile)?;
        let bits = tile.dtype.bits();
        let runs = width.map_or_else(Vec::new, |w| shared_vector_runs(tile.dtype, &tile.layout, &coords.offsets, w));
        let mut codes: Vec<Option<E::V>> = vec![None; coords.offsets.len()];
        for run in &runs {
            let Some(&first) = run.slots.first() else { continue };
            let c = self.shared_coords(origin, &coords.base, &coords.offsets[first])?;
            let (byte, _) = self.shared_address(tile, &c)?;
            let total = run.slots.len() as u32 * bits;
            let addr = self.em.byte_offset(ptr, self.em.zext(byte, self.em.i64())?)?;
            let v = self.em.load(access_type(&self.em, total), addr, total / 8)?;
            for (k, c) in unpack(&self.em, v, run.slots.len(), bits)?.into_iter().enumerate() {
                codes[run.slots[k]] = Some(c);
            }
        }
        for (i, off) in coords.offsets.iter().enumerate() {
            if codes[i].is_none() {
                let c = self.shared_coords(origin, &coords.base, off)?;
                let (byte, bit) = self.shared_address(tile, &c)?;
                codes[i] = Some(self.load_shared_element(ptr, bits, byte, bit)?);
            }
        }
        codes.into_iter().map(|c| c.ok_or(LowerError::Llvm("slot not loaded".into()))).collect()
    }

    /// Stores codes of a register tile of `layout` into a shared tile at `origin`, by vector
    /// stores of up to `width` elements ([`shared_vector_width`]: proven aligned, `None` for
    /// element stores); `None` for `width` is decided here for the backend's own copies.
    pub(crate) fn store_shared_codes(
        &mut self,
        tile: &SharedTile,
        origin: &[E::V],
        layout: &RegisterLayout,
        codes: &[E::V],
        width: Option<u32>,
    ) -> LResult<()> {
        let coords = layout::coords(&mut self.em, layout)?;
        let ptr = self.tile_ptr(tile)?;
        let bits = tile.dtype.bits();
        let replicated = layout.is_replicated();
        let runs = width.map_or_else(Vec::new, |w| shared_vector_runs(tile.dtype, &tile.layout, &coords.offsets, w));
        // Replicas write the same values; sub-byte replicas only once (atomics).
        let guard = if replicated && !bits.is_multiple_of(8) {
            Some(layout::is_first_holder(&mut self.em, layout)?)
        } else {
            None
        };
        let mut done = vec![false; codes.len()];
        for run in &runs {
            let Some(&first) = run.slots.first() else { continue };
            let c = self.shared_coords(origin, &coords.base, &coords.offsets[first])?;
            let (byte, _) = self.shared_address(tile, &c)?;
            let total = run.slots.len() as u32 * bits;
            let addr = self.em.byte_offset(ptr, self.em.zext(byte, self.em.i64())?)?;
            let run_codes: Vec<E::V> = run.slots.iter().map(|&s| codes[s]).collect();
            let v = pack(&self.em, &run_codes, bits, total)?;
            self.em.store(addr, v, total / 8)?;
            for &s in &run.slots {
                done[s] = true;
            }
        }
        let mut pending = Vec::new();
        for (i, off) in coords.offsets.iter().enumerate() {
            if !done[i] {
                pending.push((i, off.clone()));
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        let merge = match guard {
            Some(g) => {
                let body = self.block_named("sts.first")?;
                let merge = self.block_named("sts.merge")?;
                self.em.cond_br(g, body, merge)?;
                self.em.position_at_end(body);
                Some(merge)
            }
            None => None,
        };
        for (i, off) in pending {
            let c = self.shared_coords(origin, &coords.base, &off)?;
            let (byte, bit) = self.shared_address(tile, &c)?;
            self.store_shared_element(ptr, bits, byte, bit, codes[i])?;
        }
        if let Some(merge) = merge {
            self.em.br(merge, &[])?;
            self.em.position_at_end(merge);
        }
        Ok(())
    }

    pub(crate) fn store_shared(
        &mut self,
        inst: &InstData,
        value: ValueId,
        dst: ValueId,
        offsets: &[Operand],
    ) -> LResult<()> {
        let tile = self.shared_tile(dst)?;
        let t = match self.canonical(value, self.val(value)?)? {
            Val::Register(t) => t,
            _ => return internal("store_shared of a non-tile"),
        };
        let origin = offsets.iter().map(|&o| self.index32(o)).collect::<LResult<Vec<_>>>()?;
        let codes = t.slots.iter().map(|&v| arith::to_code(&self.em, t.dtype, v)).collect::<LResult<Vec<_>>>()?;
        self.epoch += 1;
        // What `vectorize` decided.
        let width = match inst.via {
            Some(Via::Vector { width, .. }) => Some(width),
            _ => None,
        };
        self.store_shared_codes(&tile, &origin, &t.layout, &codes, width)
    }

    /// An integer scalar operand as `i32` (shared-memory coordinates).
    pub(crate) fn index32(&self, operand: Operand) -> LResult<E::V> {
        let v = self.index64(operand)?;
        self.em.trunc(v, self.em.i32())
    }

    // ----- copy_async -----

    pub(crate) fn copy_async(
        &mut self,
        inst: &InstData,
        src: ValueId,
        src_offsets: &[Operand],
        dst: ValueId,
        dst_offsets: &[Operand],
        shape: &[usize],
    ) -> LResult<()> {
        let view = self.global(src)?;
        self.global_access(Some(view.param), false)?;
        let tile = self.shared_tile(dst)?;
        self.epoch += 1;
        let bits = view.dtype.bits();
        let layout = copy_layout(shape, self.kernel.num_threads(), bits)
            .map_err(|e| LowerError::Llvm(format!("copy layout: {e}")))?;
        let src_origin = src_offsets.iter().map(|&o| self.index64(o)).collect::<LResult<Vec<_>>>()?;
        let dst_origin = dst_offsets.iter().map(|&o| self.index32(o)).collect::<LResult<Vec<_>>>()?;
        let coords = layout::coords(&mut self.em, &layout)?;
        let runs = Self::global_runs(&view, &coords.offsets, u32::MAX);
        // What `vectorize` decided: `cp.async` (proven aligned, or tested at run time), or a
        // synchronous copy. The host platform has no `cp.async` and always copies synchronously.
        let checked = match inst.via {
            Some(Via::Async { checked }) if self.em.platform().is_nvptx() => checked,
            _ => {
                let codes = self.load_global_codes(view, &src_origin, &coords, Vectorize::Checked(u32::MAX), &[])?;
                let width = shared_vector_width(tile.dtype, &tile.layout, dst_offsets, &layout, true);
                return self.store_shared_codes(&tile, &dst_origin, &layout, &codes, width);
            }
        };
        if runs.is_empty()
            || async_copy_width(tile.dtype, &tile.layout, dst_offsets, shape, layout.num_threads()).is_none()
        {
            return internal("`copy_async` was selected for cp.async, but its runs do not allow it");
        }
        // cp.async per run when aligned and no run is partially masked; else synchronous.
        let mut acc = self.begin_global(view.clone(), &src_origin, &coords.base)?;
        let mut conds = Vec::new();
        let mut run_full = Vec::new();
        for run in &runs {
            let (first, last) = match (run.slots.first(), run.slots.last()) {
                (Some(&f), Some(&l)) => (f, l),
                _ => return internal("empty run"),
            };
            let (_, m_first) = self.global_element(&mut acc, &coords.offsets[first])?;
            let (_, m_last) = self.global_element(&mut acc, &coords.offsets[last])?;
            conds.push(self.em.eq(m_first, m_last)?);
            run_full.push(m_first);
        }
        // Alignment of the runs in global memory (the whole-tile bounds part is not needed:
        // masked runs are zero-filled).
        let longest = runs.iter().map(|r| r.slots.len()).max().unwrap_or(1) as i64;
        let run_bits = longest * i64::from(bits);
        let bit = self.em.add(
            self.em.mul(self.em.ptr_to_int(view.ptr)?, self.em.c64(8)?)?,
            self.em.mul(acc.base_index, self.em.c64(i64::from(bits))?)?,
        )?;
        conds.push(self.em.eq(self.em.and(bit, self.em.c64(run_bits - 1)?)?, self.em.c64(0)?)?);
        for d in 0..shape.len().saturating_sub(1) {
            if coords.offsets.iter().any(|o| o[d] != 0) {
                match view.static_strides.get(d).copied().flatten() {
                    Some(s) if s.rem_euclid(longest) == 0 => {}
                    Some(_) => conds.push(self.em.cfalse()?),
                    None => conds
                        .push(self.em.eq(self.em.and(view.strides[d], self.em.c64(longest - 1)?)?, self.em.c64(0)?)?),
                }
            }
        }
        // Proven aligned and whole: no test, no synchronous path.
        let blocks = if checked {
            let fast = self.em.and_all(&conds)?;
            let (async_block, sync_block, merge) =
                (self.block_named("cp.async")?, self.block_named("cp.sync")?, self.block_named("cp.merge")?);
            self.em.cond_br(fast, async_block, sync_block)?;
            self.em.position_at_end(async_block);
            Some((sync_block, merge))
        } else {
            None
        };
        let tile_ptr = self.tile_ptr(&tile)?;
        let zero = self.em.module_buffer(ModuleBuffer::ZeroPage)?;
        for (run, &full) in runs.iter().zip(&run_full) {
            let first = run.slots[0];
            let (index, _) = self.global_element(&mut acc, &coords.offsets[first])?;
            let bytes = run.slots.len() as u32 * bits / 8;
            let gaddr = self.em.byte_offset(view.ptr, em_byte_of(&self.em, index, bits)?)?;
            let gaddr = self.em.select(full, gaddr, zero)?;
            let c = self.shared_coords(&dst_origin, &coords.base, &coords.offsets[first])?;
            let (byte, _) = self.shared_address(&tile, &c)?;
            let saddr = self.em.byte_offset(tile_ptr, self.em.zext(byte, self.em.i64())?)?;
            let size = self.em.select(full, self.em.c32(i64::from(bytes))?, self.em.c32(0)?)?;
            let kind = if bytes == 16 { "cg" } else { "ca" };
            let name = format!("llvm.nvvm.cp.async.{kind}.shared.global.{bytes}.s");
            self.em.intrinsic(&name, None, &[saddr, gaddr, size])?;
        }
        let Some((sync_block, merge)) = blocks else { return Ok(()) };
        self.em.br(merge, &[])?;
        self.em.position_at_end(sync_block);
        let codes = self.load_global_codes(view, &src_origin, &coords, Vectorize::Checked(u32::MAX), &[])?;
        let width = shared_vector_width(tile.dtype, &tile.layout, dst_offsets, &layout, true);
        self.store_shared_codes(&tile, &dst_origin, &layout, &codes, width)?;
        self.em.br(merge, &[])?;
        self.em.position_at_end(merge);
        Ok(())
    }

    pub(crate) fn commit_group(&mut self) -> LResult<()> {
        if self.async_copies && self.em.platform().is_nvptx() {
            self.em.intrinsic("llvm.nvvm.cp.async.commit.group", None, &[])?;
        }
        Ok(())
    }

    pub(crate) fn wait_group(&mut self, pending: u32) -> LResult<()> {
        self.epoch += 1;
        if self.async_copies && self.em.platform().is_nvptx() {
            self.em.intrinsic("llvm.nvvm.cp.async.wait.group", None, &[self.em.c32(i64::from(pending))?])?;
        }
        Ok(())
    }
}

/// The byte offset of element `index` of `bits`-bit elements (its first bit's byte).
fn em_byte_of<E: Emit>(em: &E, index: E::V, bits: u32) -> LResult<E::V> {
    if bits.is_multiple_of(8) {
        em.mul(index, em.c64(i64::from(bits / 8))?)
    } else {
        em.ashr(em.mul(index, em.c64(i64::from(bits))?)?, em.c64(3)?)
    }
}

/// The alignment of a byte-multiple element of `bits` bits: its size when a power of two,
/// else the largest power of two dividing it (24-bit elements are byte-aligned).
fn natural_alignment(bits: u32) -> u32 {
    let bytes = (bits / 8).max(1);
    1 << bytes.trailing_zeros()
}

pub(crate) fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}
