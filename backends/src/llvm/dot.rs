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

use anybit_ir::dtype::DType;
use anybit_ir::program::{InstData, RegisterTensorType, ValueId, Via};
use anybit_layouts::{MmaInstruction, RegisterLayout};
use anybit_passes::select::{MmaPlan, plan_mma};
use inkwell::types::BasicType;
use inkwell::values::{BasicValueEnum, FloatValue, IntValue};

use super::arith::{self, Domain, Repr};
use super::codec;
use super::emit::{LResult, LowerError, Platform, host_fn, internal};
use super::layout;
use super::lower::{Lower, Tile, Val};
use super::tensor::{CoordMap, round_to_odd};

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

impl<'k, 'ctx> Lower<'k, 'ctx> {
    pub(crate) fn dot(&mut self, inst: &InstData, a: ValueId, b: ValueId, c: ValueId) -> LResult<()> {
        let (ta, tb, tc) = (self.tile(a)?, self.tile(b)?, self.tile(c)?);
        let Some(&id) = inst.results.first() else { return internal("missing result") };
        // What `select-instructions` decided; without a selection, per thread.
        let slots = match inst.via {
            Some(Via::Mma(_)) => match self.try_mma(&ta, &tb, &tc)? {
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

    fn dot_generic(&mut self, ta: &Tile<'ctx>, tb: &Tile<'ctx>, tc: &Tile<'ctx>) -> LResult<Vec<BasicValueEnum<'ctx>>> {
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
            .map(|&r| em.mul(em.add(coords.base[0], em.c32(r))?, em.c32(kk as i64 * ca)))
            .collect::<LResult<Vec<_>>>()?;
        let col_bytes = cols
            .iter()
            .map(|&c| em.mul(em.add(coords.base[1], em.c32(c))?, em.c32(cb)))
            .collect::<LResult<Vec<_>>>()?;
        // The loop over k.
        let entry = match em.b.get_insert_block() {
            Some(b) => b,
            None => return internal("no block"),
        };
        let header = self.block_named("dot.k")?;
        let body = self.block_named("dot.body")?;
        let exit = self.block_named("dot.exit")?;
        let em = &self.em;
        em.b.build_unconditional_branch(header)?;
        em.b.position_at_end(header);
        let k_phi = em.b.build_phi(em.i32(), "")?;
        k_phi.add_incoming(&[(&em.c32(0), entry)]);
        let acc_phis = tc.slots.iter().map(|v| Ok(em.b.build_phi(v.get_type(), "")?)).collect::<LResult<Vec<_>>>()?;
        for (p, v) in acc_phis.iter().zip(&tc.slots) {
            p.add_incoming(&[(v, entry)]);
        }
        let k = k_phi.as_basic_value().into_int_value();
        let go = em.slt(k, em.c32(kk as i64))?;
        em.b.build_conditional_branch(go, body, exit)?;
        em.b.position_at_end(body);
        let load = |ptr, byte: IntValue<'ctx>, bits: u32, dtype: DType| -> LResult<BasicValueEnum<'ctx>> {
            let code = self.load_shared_element(ptr, bits, byte, em.c32(0))?;
            arith::from_code(em, dtype, code)
        };
        let operand = |v: BasicValueEnum<'ctx>, dtype: DType| -> LResult<BasicValueEnum<'ctx>> {
            match mode {
                Accumulate::Int => Ok(v),
                Accumulate::F32 => Ok(arith::to_domain(em, dtype, v, Domain::F32)?.into()),
                Accumulate::Exact => Ok(arith::to_domain(em, dtype, v, Domain::F64)?.into()),
            }
        };
        let a_vals = row_bytes
            .iter()
            .map(|&rb| {
                let byte = em.add(rb, em.mul(k, em.c32(ca))?)?;
                operand(load(pa, byte, sa.dtype.bits(), ta.dtype)?, ta.dtype)
            })
            .collect::<LResult<Vec<_>>>()?;
        let b_vals = col_bytes
            .iter()
            .map(|&cbyte| {
                let byte = em.add(cbyte, em.mul(k, em.c32(nn as i64 * cb))?)?;
                operand(load(pb, byte, sb.dtype.bits(), tb.dtype)?, tb.dtype)
            })
            .collect::<LResult<Vec<_>>>()?;
        let mut next = Vec::with_capacity(tc.slots.len());
        for (s, off) in coords.offsets.iter().enumerate() {
            let (Ok(r), Ok(c)) = (rows.binary_search(&off[0]), cols.binary_search(&off[1])) else {
                return internal("dot row/column lookup");
            };
            let acc = acc_phis[s].as_basic_value();
            let (x, y) = (a_vals[r], b_vals[c]);
            let v: BasicValueEnum<'ctx> = match mode {
                Accumulate::Int => {
                    em.add(acc.into_int_value(), em.mul(x.into_int_value(), y.into_int_value())?)?.into()
                }
                Accumulate::F32 => em.fma(x.into_float_value(), y.into_float_value(), acc.into_float_value())?.into(),
                Accumulate::Exact => {
                    let acc64 = arith::to_domain(em, tc.dtype, acc, Domain::F64)?;
                    let p = em.fmul(x.into_float_value(), y.into_float_value())?;
                    let s = em.fadd(acc64, p)?;
                    let bb = em.fsub(s, acc64)?;
                    let e = em.fadd(em.fsub(acc64, em.fsub(s, bb)?)?, em.fsub(p, bb)?)?;
                    let r: FloatValue<'ctx> = round_to_odd(em, s, e)?;
                    arith::from_domain(em, tc.dtype, r)?
                }
            };
            next.push(v);
        }
        let k_next = em.add(k, em.c32(1))?;
        let end = match em.b.get_insert_block() {
            Some(b) => b,
            None => return internal("no block"),
        };
        k_phi.add_incoming(&[(&k_next, end)]);
        for (p, v) in acc_phis.iter().zip(&next) {
            p.add_incoming(&[(v, end)]);
        }
        em.b.build_unconditional_branch(header)?;
        em.b.position_at_end(exit);
        acc_phis
            .iter()
            .map(|p| {
                let v = p.as_basic_value();
                match arith::repr(tc.dtype) {
                    Repr::Int { bits, signed } => Ok(arith::normalize(em, bits, signed, v.into_int_value())?.into()),
                    _ => Ok(v),
                }
            })
            .collect()
    }

    // ----- mma -----

    /// The tensor-core path, by the plan `select-instructions` made ([`plan_mma`]): operands
    /// converted to the plan's layouts where they differ, then one `mma` per fragment.
    fn try_mma(
        &mut self,
        ta: &Tile<'ctx>,
        tb: &Tile<'ctx>,
        tc: &Tile<'ctx>,
    ) -> LResult<Option<Vec<BasicValueEnum<'ctx>>>> {
        let ty = |t: &Tile<'ctx>| RegisterTensorType::new(t.dtype, t.shape.clone(), Some(t.layout.clone()));
        let Some(plan) = plan_mma(&ty(ta), &ty(tb), &ty(tc)) else { return Ok(None) };
        let operand = |this: &mut Self, t: &Tile<'ctx>, l: &RegisterLayout| -> LResult<Tile<'ctx>> {
            if *l == t.layout {
                return Ok(t.clone());
            }
            let slots = this.convert_slots(t, l, &t.shape, &CoordMap::Identity)?;
            Ok(Tile { dtype: t.dtype, shape: t.shape.clone(), layout: l.clone(), slots, origin: None })
        };
        let a = operand(self, ta, &plan.a_layout)?;
        let b = operand(self, tb, &plan.b_layout)?;
        self.emit_mma(&plan, &a, &b, tc).map(Some)
    }

    /// Packs `per` codes of `bits` bits (LSB first) into an `i32`.
    fn pack_register(&self, codes: &[IntValue<'ctx>], bits: u32) -> LResult<IntValue<'ctx>> {
        let em = &self.em;
        let mut acc = em.c32(0);
        for (k, &c) in codes.iter().enumerate() {
            let shifted = if k == 0 { c } else { em.shl(c, em.c32(i64::from(bits) * k as i64))? };
            acc = if k == 0 { shifted } else { em.or(acc, shifted)? };
        }
        Ok(acc)
    }

    fn emit_mma(
        &mut self,
        plan: &MmaPlan,
        ta: &Tile<'ctx>,
        tb: &Tile<'ctx>,
        tc: &Tile<'ctx>,
    ) -> LResult<Vec<BasicValueEnum<'ctx>>> {
        let per = plan.instruction.elements_per_register();
        let b_regs = 2;
        let bits = ta.dtype.bits();
        let a_frag_slots = 4 * per;
        let b_frag_slots = 2 * per;
        let codes = |t: &Tile<'ctx>| -> LResult<Vec<IntValue<'ctx>>> {
            t.slots.iter().map(|&v| arith::to_code(&self.em, t.dtype, v)).collect()
        };
        let (ca, cb) = (codes(ta)?, codes(tb)?);
        let reg = |all: &[IntValue<'ctx>], start: usize| -> LResult<IntValue<'ctx>> {
            match all.get(start..start + per) {
                Some(s) => self.pack_register(s, bits),
                None => internal("mma operand slot out of range"),
            }
        };
        let mut out = tc.slots.clone();
        for (q, (a_ks, b_ks)) in plan.a_slot.iter().zip(&plan.b_slot).enumerate() {
            let mut acc: Vec<BasicValueEnum<'ctx>> = match tc.slots.get(4 * q..4 * q + 4) {
                Some(s) => s.to_vec(),
                None => return internal("mma accumulator slot out of range"),
            };
            for kt in 0..plan.k_tiles {
                let (qa, qb) = (a_ks[kt], b_ks[kt]);
                let a: Vec<IntValue<'ctx>> =
                    (0..4).map(|r| reg(&ca, qa * a_frag_slots + r * per)).collect::<LResult<_>>()?;
                let b: Vec<IntValue<'ctx>> =
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
    fn mma_call(
        &self,
        instruction: MmaInstruction,
        a: &[IntValue<'ctx>],
        b: &[IntValue<'ctx>],
        c: &[BasicValueEnum<'ctx>],
    ) -> LResult<Vec<BasicValueEnum<'ctx>>> {
        let em = &self.em;
        let float = matches!(instruction, MmaInstruction::M16N8K16F16 | MmaInstruction::M16N8K16Bf16);
        match em.platform {
            Platform::Nvptx(_) => {
                let (name, a_args, b_args): (&str, Vec<BasicValueEnum<'ctx>>, Vec<BasicValueEnum<'ctx>>) =
                    match instruction {
                        MmaInstruction::M16N8K16F16 => {
                            let v2 = em.f16().vec_type(2);
                            let cast = |x: &IntValue<'ctx>| -> LResult<BasicValueEnum<'ctx>> {
                                Ok(em.b.build_bit_cast(*x, v2, "")?)
                            };
                            (
                                "llvm.nvvm.mma.m16n8k16.row.col.f32.f32",
                                a.iter().map(cast).collect::<LResult<_>>()?,
                                b.iter().map(cast).collect::<LResult<_>>()?,
                            )
                        }
                        MmaInstruction::M16N8K16Bf16 => (
                            "llvm.nvvm.mma.m16n8k16.row.col.bf16",
                            a.iter().map(|&x| x.into()).collect(),
                            b.iter().map(|&x| x.into()).collect(),
                        ),
                        MmaInstruction::M16N8K32S8 => (
                            "llvm.nvvm.mma.m16n8k32.row.col.s8",
                            a.iter().map(|&x| x.into()).collect(),
                            b.iter().map(|&x| x.into()).collect(),
                        ),
                        MmaInstruction::M16N8K32U8 => (
                            "llvm.nvvm.mma.m16n8k32.row.col.u8",
                            a.iter().map(|&x| x.into()).collect(),
                            b.iter().map(|&x| x.into()).collect(),
                        ),
                    };
                let elem = if float { em.f32().as_basic_type_enum() } else { em.i32().as_basic_type_enum() };
                let ret = em.ctx.struct_type(&[elem, elem, elem, elem], false);
                let args: Vec<BasicValueEnum<'ctx>> =
                    a_args.into_iter().chain(b_args).chain(c.iter().copied()).collect();
                let r = em.intrinsic_value(name, ret.into(), &args)?.into_struct_value();
                (0..4).map(|i| Ok(em.b.build_extract_value(r, i, "")?)).collect()
            }
            Platform::Host => {
                let kind = match instruction {
                    MmaInstruction::M16N8K16F16 => 0,
                    MmaInstruction::M16N8K16Bf16 => 1,
                    MmaInstruction::M16N8K32S8 => 2,
                    MmaInstruction::M16N8K32U8 => 3,
                };
                let c_bits = c
                    .iter()
                    .map(|&v| match v {
                        BasicValueEnum::FloatValue(f) => em.fbits(f),
                        BasicValueEnum::IntValue(i) => Ok(i),
                        _ => internal("mma accumulator"),
                    })
                    .collect::<LResult<Vec<_>>>()?;
                let mut out = Vec::with_capacity(4);
                for which in 0..4 {
                    let mut args: Vec<BasicValueEnum<'ctx>> = vec![em.c32(kind).into()];
                    args.extend(a.iter().map(|&x| BasicValueEnum::from(x)));
                    args.extend(b.iter().map(|&x| BasicValueEnum::from(x)));
                    args.extend(c_bits.iter().map(|&x| BasicValueEnum::from(x)));
                    args.push(em.c32(which).into());
                    let r = em.intrinsic_value(host_fn::MMA, em.i32().into(), &args)?.into_int_value();
                    out.push(if float { em.from_bits(r, em.f32())?.into() } else { r.into() });
                }
                Ok(out)
            }
        }
    }
}
