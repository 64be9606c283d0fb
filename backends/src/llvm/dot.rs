//! `dot`: `c + a·b`.
//!
//! # The generic path (any layouts, any types)
//!
//! a and b go to the scratch area (row-major codes) between barriers; each thread then runs a
//! loop over k (an LLVM loop, not unrolled into K copies) that reads, per k, `a[m, k]` for the
//! rows and `b[k, n]` for the columns its c slots need, and updates every slot in the
//! interpreter's order (increasing k, rounding after each addition):
//!
//! - integer accumulators: wrapping `i32` multiply-adds, normalized to c's type at the end
//!   (exact modulo 2^N whatever the order of wrapping);
//! - `f32` accumulators (with a/b values that are exact in `f32`): `fma(a, b, acc)` — the
//!   exact product added with a single rounding, which is exactly the interpreter's step;
//! - other float accumulators: in `f64`, the exact product added with an error-free TwoSum and
//!   rounded once to c's type (round-to-odd, then the type's rounding).
//!
//! # The `mma.sync` path
//!
//! When c's layout is `Q_c ∘ F_c` for the accumulator fragment `F_c` of `mma.m16n8k16`
//! (f16/bf16 inputs, f32 accumulators) or `mma.m16n8k32` (s8/u8 inputs, i32 accumulators), the
//! quotient `Q_c` says which (m-tile, n-tile) each warp holds in which group of 4 slots. a and
//! b must then be `Q_a ∘ F_a` and `Q_b ∘ F_b` with every warp holding, at the same quotient
//! slots in every warp, the (m-tile, k-tile) and (k-tile, n-tile) fragments its c tiles need;
//! when they are not, they are converted (through scratch, or reloaded from shared memory) to
//! `local(1, K/k) ∘ Q_c.reduce([1]) ∘ F_a` and `local(K/k, 1) ∘ Q_c.reduce([0]) ∘ F_b`, which
//! are. Each c tile then takes one `mma` per k-tile, in increasing k. The tensor cores add
//! the products of one instruction in their own order and precision, not the interpreter's
//! sequential f32 order: the result agrees within 2·K·2^-24·Σ|a·b| (the frontend's
//! tolerance), not bit for bit. Integer `mma` is exact (wrapping), like the interpreter.

use std::rc::Rc;

use super::arith::{self, Domain, Repr};
use super::codec;
use super::emit::{LResult, LowerError, Platform, host_fn, internal};
use super::emitter::Emit;
use super::layout;
use super::lower::{Lower, Tile, Val};
use super::tensor::{CoordMap, round_to_odd};
use anybit_ir::dtype::DType;
use anybit_ir::program::{InstData, RegisterTensorType, ValueId, Via};
use anybit_layouts::{MmaInstruction, RegisterLayout};
use anybit_passes::select::{MmaPlan, plan_mma};

/// How a dot accumulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Accumulate {
    /// Wrapping `i32`.
    Int,
    /// `fma` in `f32`.
    F32,
    /// Exactly in `f64`, rounded to c's type each step.
    Exact,
}

impl<'k, E: Emit> Lower<'k, E> {
    pub(crate) fn dot(&mut self, inst: &InstData, a: ValueId, b: ValueId, c: ValueId) -> LResult<()> {
        let (ta, tb, tc) = (self.tile(a)?, self.tile(b)?, self.tile(c)?);
        let Some(&id) = inst.results.first() else { return internal("missing result") };
        // What `select-instructions` decided; without a selection, per thread.
        let slots = match inst.via {
            Some(Via::Mma { .. }) => match self.try_mma(&ta, &tb, &tc)? {
                Some(slots) => slots,
                None => return internal("`dot` was selected for mma, but its types have no mma plan"),
            },
            _ => self.dot_generic(&ta, &tb, &tc)?,
        };
        let tile = Tile { dtype: tc.dtype, shape: tc.shape.clone(), layout: tc.layout.clone(), slots, origin: None };
        self.bind(id, Val::Register(Rc::new(tile)))
    }

    fn accumulate_mode(a: DType, c: DType) -> LResult<Accumulate> {
        match (a.is_integer(), c.is_integer()) {
            (true, true) => Ok(Accumulate::Int),
            (false, false) => {
                let a_fits = match arith::repr(a) {
                    Repr::Code(f) => codec::fits_f32(f),
                    _ => true,
                };
                if c == DType::F32 && a_fits {
                    Ok(Accumulate::F32)
                } else {
                    for t in [a, c] {
                        if let Repr::Code(f) = arith::repr(t)
                            && !codec::fits_f64(f)
                        {
                            return Err(LowerError::Unsupported(format!(
                                "`dot` on {t}: its values do not all fit f64"
                            )));
                        }
                    }
                    Ok(Accumulate::Exact)
                }
            }
            _ => internal("`dot` mixes integers and floats"),
        }
    }

    fn dot_generic(&mut self, ta: &Tile<E::V>, tb: &Tile<E::V>, tc: &Tile<E::V>) -> LResult<Vec<E::V>> {
        let mode = Self::accumulate_mode(ta.dtype, tc.dtype)?;
        let (Some(&kk), Some(&nn)) = (ta.shape.get(1), tb.shape.get(1)) else { return internal("dot shapes") };
        self.barrier()?;
        let sa = self.write_scratch(ta, 0)?;
        let size_a = Self::scratch_size(ta)?;
        let sb = self.write_scratch(tb, size_a)?;
        self.barrier()?;
        let (pa, pb) = (self.tile_ptr(&sa)?, self.tile_ptr(&sb)?);
        let (ca, cb) = (i64::from(sa.dtype.bits() / 8), i64::from(sb.dtype.bits() / 8));
        let coords = layout::coords(&mut self.em, &tc.layout)?;
        let mut rows: Vec<i64> = coords.offsets.iter().map(|o| o[0]).collect();
        rows.sort_unstable();
        rows.dedup();
        let mut cols: Vec<i64> = coords.offsets.iter().map(|o| o[1]).collect();
        cols.sort_unstable();
        cols.dedup();
        let em = &self.em;
        // Byte offsets of row starts of a and column starts of b.
        let row_bytes = rows
            .iter()
            .map(|&r| em.mul(em.add(coords.base[0], em.c32(r)?)?, em.c32(kk as i64 * ca)?))
            .collect::<LResult<Vec<_>>>()?;
        let col_bytes = cols
            .iter()
            .map(|&c| em.mul(em.add(coords.base[1], em.c32(c)?)?, em.c32(cb)?))
            .collect::<LResult<Vec<_>>>()?;
        // The loop over k: the index and the accumulators are the header's parameters.
        let header = self.block_named("dot.k")?;
        let body = self.block_named("dot.body")?;
        let exit = self.block_named("dot.exit")?;
        let em = &self.em;
        let k = em.block_param(header, em.i32())?;
        let acc_params =
            tc.slots.iter().map(|&v| em.block_param(header, em.type_of(v))).collect::<LResult<Vec<_>>>()?;
        let mut args = vec![em.c32(0)?];
        args.extend(tc.slots.iter().copied());
        em.br(header, &args)?;
        em.position_at_end(header);
        let go = em.slt(k, em.c32(kk as i64)?)?;
        em.cond_br(go, body, exit)?;
        em.position_at_end(body);
        let load = |ptr, byte: E::V, bits: u32, dtype: DType| -> LResult<E::V> {
            let code = self.load_shared_element(ptr, bits, byte, em.c32(0)?)?;
            arith::from_code(em, dtype, code)
        };
        let operand = |v: E::V, dtype: DType| -> LResult<E::V> {
            match mode {
                Accumulate::Int => Ok(v),
                Accumulate::F32 => arith::to_domain(em, dtype, v, Domain::F32),
                Accumulate::Exact => arith::to_domain(em, dtype, v, Domain::F64),
            }
        };
        let a_vals = row_bytes
            .iter()
            .map(|&rb| {
                let byte = em.add(rb, em.mul(k, em.c32(ca)?)?)?;
                operand(load(pa, byte, sa.dtype.bits(), ta.dtype)?, ta.dtype)
            })
            .collect::<LResult<Vec<_>>>()?;
        let b_vals = col_bytes
            .iter()
            .map(|&cbyte| {
                let byte = em.add(cbyte, em.mul(k, em.c32(nn as i64 * cb)?)?)?;
                operand(load(pb, byte, sb.dtype.bits(), tb.dtype)?, tb.dtype)
            })
            .collect::<LResult<Vec<_>>>()?;
        let mut next = Vec::with_capacity(tc.slots.len());
        for (s, off) in coords.offsets.iter().enumerate() {
            let (Ok(r), Ok(c)) = (rows.binary_search(&off[0]), cols.binary_search(&off[1])) else {
                return internal("dot row/column lookup");
            };
            let acc = acc_params[s];
            let (x, y) = (a_vals[r], b_vals[c]);
            let v: E::V = match mode {
                Accumulate::Int => em.add(acc, em.mul(x, y)?)?,
                Accumulate::F32 => em.fma(x, y, acc)?,
                Accumulate::Exact => {
                    let acc64 = arith::to_domain(em, tc.dtype, acc, Domain::F64)?;
                    let p = em.fmul(x, y)?;
                    let s = em.fadd(acc64, p)?;
                    let bb = em.fsub(s, acc64)?;
                    let e = em.fadd(em.fsub(acc64, em.fsub(s, bb)?)?, em.fsub(p, bb)?)?;
                    let r: E::V = round_to_odd(em, s, e)?;
                    arith::from_domain(em, tc.dtype, r)?
                }
            };
            next.push(v);
        }
        let mut args = vec![em.add(k, em.c32(1)?)?];
        args.extend(next);
        em.br(header, &args)?;
        em.position_at_end(exit);
        acc_params
            .iter()
            .map(|&v| match arith::repr(tc.dtype) {
                Repr::Int { bits, signed } => arith::normalize(em, bits, signed, v),
                _ => Ok(v),
            })
            .collect()
    }

    // ----- mma -----

    /// The tensor-core path, by the plan `select-instructions` made ([`plan_mma`]): operands
    /// converted to the plan's layouts where they differ, then one `mma` per fragment.
    fn try_mma(&mut self, ta: &Tile<E::V>, tb: &Tile<E::V>, tc: &Tile<E::V>) -> LResult<Option<Vec<E::V>>> {
        let ty = |t: &Tile<E::V>| RegisterTensorType::new(t.dtype, t.shape.clone(), Some(t.layout.clone()));
        let Some(plan) = plan_mma(&ty(ta), &ty(tb), &ty(tc)) else { return Ok(None) };
        if plan.swapped {
            // cᵀ = bᵀ·aᵀ on the same registers: transposing a tile relabels its dims only.
            let (at, bt, ct) = (transposed(ta)?, transposed(tb)?, transposed(tc)?);
            return self.mma_by_plan(&plan, &bt, &at, &ct).map(Some);
        }
        self.mma_by_plan(&plan, ta, tb, tc).map(Some)
    }

    /// [`Self::try_mma`] for a plan of `c + a·b` as the tiles stand.
    fn mma_by_plan(&mut self, plan: &MmaPlan, ta: &Tile<E::V>, tb: &Tile<E::V>, tc: &Tile<E::V>) -> LResult<Vec<E::V>> {
        let operand = |this: &mut Self, t: &Tile<E::V>, l: &RegisterLayout| -> LResult<Tile<E::V>> {
            if *l == t.layout {
                return Ok(t.clone());
            }
            let slots = this.convert_slots(t, l, &t.shape, &CoordMap::Identity)?;
            Ok(Tile { dtype: t.dtype, shape: t.shape.clone(), layout: l.clone(), slots, origin: None })
        };
        let a = operand(self, ta, &plan.a_layout)?;
        let b = operand(self, tb, &plan.b_layout)?;
        self.emit_mma(plan, &a, &b, tc)
    }

    /// Packs `per` codes of `bits` bits (LSB first) into an `i32`.
    fn pack_register(&self, codes: &[E::V], bits: u32) -> LResult<E::V> {
        let em = &self.em;
        let mut acc = em.c32(0)?;
        for (k, &c) in codes.iter().enumerate() {
            let shifted = if k == 0 { c } else { em.shl(c, em.c32(i64::from(bits) * k as i64)?)? };
            acc = if k == 0 { shifted } else { em.or(acc, shifted)? };
        }
        Ok(acc)
    }

    fn emit_mma(&mut self, plan: &MmaPlan, ta: &Tile<E::V>, tb: &Tile<E::V>, tc: &Tile<E::V>) -> LResult<Vec<E::V>> {
        let per = plan.instruction.elements_per_register();
        let b_regs = 2;
        let bits = ta.dtype.bits();
        let a_frag_slots = 4 * per;
        let b_frag_slots = 2 * per;
        let codes = |t: &Tile<E::V>| -> LResult<Vec<E::V>> {
            t.slots.iter().map(|&v| arith::to_code(&self.em, t.dtype, v)).collect()
        };
        let (ca, cb) = (codes(ta)?, codes(tb)?);
        let reg = |all: &[E::V], start: usize| -> LResult<E::V> {
            match all.get(start..start + per) {
                Some(s) => self.pack_register(s, bits),
                None => internal("mma operand slot out of range"),
            }
        };
        let mut out = tc.slots.clone();
        for (q, (a_ks, b_ks)) in plan.a_slot.iter().zip(&plan.b_slot).enumerate() {
            let mut acc: Vec<E::V> = match tc.slots.get(4 * q..4 * q + 4) {
                Some(s) => s.to_vec(),
                None => return internal("mma accumulator slot out of range"),
            };
            for kt in 0..plan.k_tiles {
                let (qa, qb) = (a_ks[kt], b_ks[kt]);
                let a: Vec<E::V> = (0..4).map(|r| reg(&ca, qa * a_frag_slots + r * per)).collect::<LResult<_>>()?;
                let b: Vec<E::V> =
                    (0..b_regs).map(|r| reg(&cb, qb * b_frag_slots + r * per)).collect::<LResult<_>>()?;
                acc = self.mma_call(plan.instruction, &a, &b, &acc)?;
            }
            for (i, v) in acc.into_iter().enumerate() {
                out[4 * q + i] = v;
            }
        }
        Ok(out)
    }

    /// One `mma.sync` on packed registers.
    fn mma_call(&self, instruction: MmaInstruction, a: &[E::V], b: &[E::V], c: &[E::V]) -> LResult<Vec<E::V>> {
        let em = &self.em;
        let float = matches!(instruction, MmaInstruction::M16N8K16F16 | MmaInstruction::M16N8K16Bf16);
        match em.platform() {
            Platform::Nvptx(_) => {
                let (name, a_args, b_args): (&str, Vec<E::V>, Vec<E::V>) = match instruction {
                    MmaInstruction::M16N8K16F16 => {
                        let v2 = em.vector_type(em.f16(), 2);
                        let cast = |x: &E::V| em.bitcast(*x, v2);
                        (
                            "llvm.nvvm.mma.m16n8k16.row.col.f32.f32",
                            a.iter().map(cast).collect::<LResult<_>>()?,
                            b.iter().map(cast).collect::<LResult<_>>()?,
                        )
                    }
                    MmaInstruction::M16N8K16Bf16 => ("llvm.nvvm.mma.m16n8k16.row.col.bf16", a.to_vec(), b.to_vec()),
                    MmaInstruction::M16N8K32S8 => ("llvm.nvvm.mma.m16n8k32.row.col.s8", a.to_vec(), b.to_vec()),
                    MmaInstruction::M16N8K32U8 => ("llvm.nvvm.mma.m16n8k32.row.col.u8", a.to_vec(), b.to_vec()),
                };
                let elem = if float { em.f32() } else { em.i32() };
                let ret = em.struct_type(&[elem, elem, elem, elem]);
                let args: Vec<E::V> = a_args.into_iter().chain(b_args).chain(c.iter().copied()).collect();
                let r = em.intrinsic_value(name, ret, &args)?;
                (0..4).map(|i| em.extract_value(r, i)).collect()
            }
            Platform::Host => {
                let kind = match instruction {
                    MmaInstruction::M16N8K16F16 => 0,
                    MmaInstruction::M16N8K16Bf16 => 1,
                    MmaInstruction::M16N8K32S8 => 2,
                    MmaInstruction::M16N8K32U8 => 3,
                };
                let c_bits = c.iter().map(|&v| if float { em.fbits(v) } else { Ok(v) }).collect::<LResult<Vec<_>>>()?;
                let mut out = Vec::with_capacity(4);
                for which in 0..4 {
                    let mut args: Vec<E::V> = vec![em.c32(kind)?];
                    args.extend(a.iter().chain(b).chain(&c_bits).copied());
                    args.push(em.c32(which)?);
                    let r = em.intrinsic_value(host_fn::MMA, em.i32(), &args)?;
                    out.push(if float { em.from_bits(r, em.f32())? } else { r });
                }
                Ok(out)
            }
        }
    }
}

/// A 2-D tile with its dims exchanged: the same slots, the layout's dims permuted (which
/// keeps its slot order). The origin is dropped: it names an untransposed sub-tile.
fn transposed<V: Clone>(t: &Tile<V>) -> LResult<Tile<V>> {
    let [rows, cols] = t.shape[..] else { return internal("a swapped mma operand is not 2-D") };
    let layout = match t.layout.transpose() {
        Ok(l) => l,
        Err(e) => return internal(format!("transposing an mma operand's layout: {e}")),
    };
    Ok(Tile { dtype: t.dtype, shape: vec![cols, rows], layout, slots: t.slots.clone(), origin: None })
}
