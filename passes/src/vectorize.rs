//! `vectorize`: the widest legal access for every memory instruction, recorded as its
//! selection: global loads and stores `via vector(8)`, `via vector(8, checked)` or
//! `via scalar`; shared loads and stores `via vector(8)` (their offsets are static, so always
//! proven) or `via scalar`; `copy_async` `via async` or `via async(checked)` when `cp.async`
//! applies, else no selection (a synchronous copy).
//!
//! A register tile's slots that hold consecutive elements along the last dim form *runs*
//! ([`anybit_ir::access::plan_runs`]): up to 128 bits each, one memory instruction when the
//! memory is aligned and the run lies entirely inside or outside the view. Whether that holds
//! depends on values known only at run time — the tile's origin, the view's extent and
//! strides, the buffer's address — so the pass asks a **divisibility analysis** what it can
//! prove:
//!
//! - every integer scalar gets a number of known trailing zero bits (it is a multiple of
//!   `2^tz`): literals and constants by their value, parameters by the kernel's assumptions
//!   (`where k % 128 == 0`), block indices none; `add`/`sub`/`min`/`max`/`rem`/`select` keep the
//!   smaller, `mul` adds, `shl` by a literal adds it, exact `div`/`cdiv`/`shr` by a power of
//!   two subtract it, a loop index has its start's and step's. Powers of two only, because
//!   they survive wrap-around: a product that overflows an `i32` is still a multiple of
//!   `2^tz` (tz ≤ 32), while a multiple of 3 need not stay one;
//! - a thread's base coordinate along a dim is a multiple of the smallest power of two that
//!   divides it in every thread (the layout tells, statically).
//!
//! A run of `w` elements of `b` bits is **proven** when the buffer is aligned to `w·b` bits
//! (its declared `align`, else its element size), the last stride is the literal 1, the last
//! extent and the origin's and thread bases' last coordinates are multiples of `w`, and every
//! outer dim's stride times its origin, base and slot offsets is too — exactly
//! [`anybit_ir::access::vector_promise_holds`], which the interpreter checks on every run of
//! a proven access. Otherwise the runs stay, **checked** at run time by the backend with an
//! element-wise fallback; tiles without runs are accessed element by element.

use std::collections::HashMap;

use anybit_ir::access::{
    async_copy_width, copy_layout, longest_run, plan_runs, shared_vector_width, slot_offsets, thread_bases,
};
use anybit_ir::program::{
    BinaryOp, Block, InstId, Kernel, Literal, Module, Op, Operand, ParamType, RegisterTensorType, Type, ValueDef,
    ValueId, Via,
};
use anybit_layouts::RegisterLayout;

/// Records the widest legal access of every global load and store.
#[derive(Clone, Copy, Debug, Default)]
pub struct Vectorize;

impl crate::manager::Pass for Vectorize {
    fn name(&self) -> &'static str {
        "vectorize"
    }

    fn description(&self) -> &'static str {
        "picks the widest aligned access of every memory instruction: global and shared vectors, cp.async (proven, or checked at run time)"
    }

    fn run(&self, module: &mut Module) -> Result<(), String> {
        for kernel in &mut module.kernels {
            let facts = Divisibility::of(kernel);
            let decisions: Vec<(InstId, Via)> =
                kernel.insts.iter().filter_map(|(id, _)| Some((id, access_via(kernel, &facts, id)?))).collect();
            for (id, via) in decisions {
                if let Some(inst) = kernel.insts.get_mut(id) {
                    inst.via = Some(via);
                }
            }
        }
        Ok(())
    }
}

/// Known trailing zero bits of integer scalars: each value is a multiple of `2^tz`. 64 stands
/// for "zero" (a multiple of everything).
#[derive(Clone, Debug, Default)]
pub struct Divisibility {
    tz: HashMap<ValueId, u32>,
}

const ZERO: u32 = 64;

fn tz_of(v: i64) -> u32 {
    if v == 0 { ZERO } else { v.trailing_zeros() }
}

impl Divisibility {
    /// The analysis of a kernel (its assumptions included).
    pub fn of(kernel: &Kernel) -> Divisibility {
        let mut facts = Divisibility::default();
        for a in &kernel.assumptions {
            if let Some(p) = kernel.params.get(a.param) {
                let tz = if a.divisor == 0 { 0 } else { a.divisor.trailing_zeros() };
                let e = facts.tz.entry(p.value).or_insert(0);
                *e = (*e).max(tz);
            }
        }
        facts.block(kernel, &kernel.body);
        facts
    }

    /// The known trailing zero bits of an operand (0 when nothing is known).
    pub fn operand(&self, o: Operand) -> u32 {
        match o {
            Operand::Literal(Literal::Int(v)) => tz_of(v),
            Operand::Literal(Literal::Float(_)) => 0,
            Operand::Value(v) => self.tz.get(&v).copied().unwrap_or(0),
        }
    }

    /// Whether an operand is known to be a multiple of `2^log`.
    pub fn multiple_of_pow2(&self, o: Operand, log: u32) -> bool {
        self.operand(o) >= log
    }

    fn block(&mut self, kernel: &Kernel, block: &Block) {
        for &id in &block.insts {
            let Some(inst) = kernel.insts.get(id) else { continue };
            if let Op::For { start, step, index, body, .. } = &inst.op {
                let tz = self.operand(*start).min(self.operand(*step));
                self.tz.insert(*index, tz);
                self.block(kernel, body);
                continue;
            }
            for nested in inst.op.blocks() {
                self.block(kernel, nested);
            }
            let Some(&result) = inst.results.first() else { continue };
            let is_int_scalar =
                matches!(kernel.values.get(result).map(|v| &v.ty), Some(Type::Scalar(d)) if d.is_integer());
            if !is_int_scalar {
                continue;
            }
            let literal = |o: Operand| match o {
                Operand::Literal(Literal::Int(v)) => Some(v),
                _ => None,
            };
            let tz = match &inst.op {
                Op::Const { value: Literal::Int(v), .. } => tz_of(*v),
                Op::Cast { x, .. } => self.operand(*x),
                Op::Select { on_true, on_false, .. } => self.operand(*on_true).min(self.operand(*on_false)),
                Op::Binary { op, lhs, rhs } => {
                    let (a, b) = (self.operand(*lhs), self.operand(*rhs));
                    match op {
                        BinaryOp::Add
                        | BinaryOp::Sub
                        | BinaryOp::Min
                        | BinaryOp::Max
                        | BinaryOp::Rem
                        | BinaryOp::Or
                        | BinaryOp::Xor => a.min(b),
                        BinaryOp::And => a.max(b),
                        BinaryOp::Mul => (a + b).min(ZERO),
                        BinaryOp::Shl => match literal(*rhs) {
                            Some(s) if (0..32).contains(&s) => (a + s as u32).min(ZERO),
                            _ => a,
                        },
                        BinaryOp::Div | BinaryOp::CeilDiv | BinaryOp::Shr => {
                            // Exact division by 2^s of a multiple of 2^a (a ≥ s): 2^(a−s).
                            let s = match (op, literal(*rhs)) {
                                (BinaryOp::Shr, Some(s)) if (0..32).contains(&s) => Some(s as u32),
                                (BinaryOp::Shr, _) => None,
                                (_, Some(d)) if d > 0 && (d as u64).is_power_of_two() => Some(d.trailing_zeros()),
                                _ => None,
                            };
                            match s {
                                Some(s) if a >= s => {
                                    if a == ZERO {
                                        ZERO
                                    } else {
                                        a - s
                                    }
                                }
                                _ => 0,
                            }
                        }
                    }
                }
                _ => 0,
            };
            self.tz.insert(result, tz);
        }
    }
}

/// The smallest trailing-zero count, over every thread, of its base coordinate along `dim`.
fn base_tz(layout: &RegisterLayout, dim: usize) -> u32 {
    thread_bases(layout).map_or(0, |bases| bases.iter().map(|b| b.get(dim).map_or(0, |&c| tz_of(c))).min().unwrap_or(0))
}

/// The selection of a global load or store; `None` for other instructions and for tiles
/// without a layout.
fn access_via(kernel: &Kernel, facts: &Divisibility, id: InstId) -> Option<Via> {
    let inst = kernel.insts.get(id)?;
    let (view, offsets, ty): (ValueId, &[Operand], RegisterTensorType) = match &inst.op {
        Op::LoadGlobal { src, offsets, ty, .. } => (*src, offsets, ty.clone()),
        Op::StoreGlobal { value, dst, offsets } => match &kernel.values.get(*value)?.ty {
            Type::Register(t) => (*dst, offsets, t.clone()),
            _ => return None,
        },
        Op::LoadShared { src, offsets, ty } => return shared_via(kernel, *src, offsets, ty, false),
        Op::StoreShared { value, dst, offsets } => match &kernel.values.get(*value)?.ty {
            Type::Register(t) => return shared_via(kernel, *dst, offsets, t, true),
            _ => return None,
        },
        Op::CopyAsync { src, src_offsets, dst, dst_offsets, shape } => {
            return async_via(kernel, facts, *src, src_offsets, *dst, dst_offsets, shape);
        }
        _ => return None,
    };
    let layout = ty.layout.as_ref()?;
    let bits = ty.dtype.bits();
    let slots = slot_offsets(layout);
    let runs = plan_runs(&slots, bits, u32::MAX);
    // The backend vectorizes only along a last stride of literal 1.
    let view_op = match kernel.values.get(view)?.def {
        ValueDef::Result(def, 0) => kernel.insts.get(def).map(|i| &i.op),
        _ => None,
    };
    let unit_stride = match view_op {
        Some(Op::GlobalView { strides, .. }) => strides.last() == Some(&Operand::Literal(Literal::Int(1))),
        _ => false,
    };
    if runs.is_empty() || !unit_stride {
        return Some(Via::Scalar);
    }
    let width = longest_run(&runs) as u32;
    let proven = match view_op {
        Some(Op::GlobalView { ptr, shape, strides }) => {
            proves_whole(kernel, facts, *ptr, shape, strides, offsets, layout, &slots, bits, width)
        }
        _ => false,
    };
    Some(Via::Vector { width, checked: !proven })
}

/// A shared access: vector runs when [`shared_vector_width`] proves them aligned (shared
/// offsets are static), else element by element.
fn shared_via(
    kernel: &Kernel,
    tile: ValueId,
    offsets: &[Operand],
    ty: &RegisterTensorType,
    store: bool,
) -> Option<Via> {
    let Type::Shared(shared) = &kernel.values.get(tile)?.ty else { return None };
    let width = shared_vector_width(ty.dtype, shared.layout.as_ref()?, offsets, ty.layout.as_ref()?, store);
    Some(width.map_or(Via::Scalar, |width| Via::Vector { width, checked: false }))
}

/// A `copy_async`: `cp.async` when its runs allow it ([`async_copy_width`]) and the global
/// side has a unit last stride — proven aligned and whole like a global load by the copy's
/// layout, or tested at run time; else no selection (a synchronous copy).
fn async_via(
    kernel: &Kernel,
    facts: &Divisibility,
    src: ValueId,
    src_offsets: &[Operand],
    dst: ValueId,
    dst_offsets: &[Operand],
    shape: &[usize],
) -> Option<Via> {
    let Type::Shared(shared) = &kernel.values.get(dst)?.ty else { return None };
    let threads = kernel.num_threads();
    let width = async_copy_width(shared.dtype, shared.layout.as_ref()?, dst_offsets, shape, threads)?;
    let view_op = match kernel.values.get(src)?.def {
        ValueDef::Result(def, 0) => kernel.insts.get(def).map(|i| &i.op),
        _ => None,
    };
    let Some(Op::GlobalView { ptr, shape: extent, strides }) = view_op else { return None };
    if strides.last() != Some(&Operand::Literal(Literal::Int(1))) {
        return None;
    }
    let layout = copy_layout(shape, threads, shared.dtype.bits()).ok()?;
    let slots = slot_offsets(&layout);
    let bits = shared.dtype.bits();
    let proven = proves_whole(kernel, facts, *ptr, extent, strides, src_offsets, &layout, &slots, bits, width);
    Some(Via::Async { checked: !proven })
}

/// Whether runs of `width` elements are aligned and whole for every thread and every launch
/// that keeps the kernel's assumptions (see the module doc).
#[allow(clippy::too_many_arguments)]
fn proves_whole(
    kernel: &Kernel,
    facts: &Divisibility,
    ptr: ValueId,
    shape: &[Operand],
    strides: &[Operand],
    origin: &[Operand],
    layout: &RegisterLayout,
    slots: &[Vec<i64>],
    bits: u32,
    width: u32,
) -> bool {
    let rank = shape.len();
    if rank == 0 || strides.len() != rank || origin.len() != rank || layout.rank() != rank {
        return false;
    }
    let log = width.trailing_zeros();
    // The buffer's address: its declared alignment, else its element's.
    let align_bytes = match kernel.values.get(ptr).map(|v| v.def) {
        Some(ValueDef::Param(p)) => match kernel.params.get(p) {
            Some(param) => {
                let natural = match param.ty {
                    ParamType::Pointer(d) if d.bits() >= 8 && d.bits().is_power_of_two() => d.bits() / 8,
                    _ => 1,
                };
                param.align.unwrap_or(1).max(natural)
            }
            None => return false,
        },
        _ => return false,
    };
    if u64::from(align_bytes) * 8 < u64::from(width) * u64::from(bits) {
        return false;
    }
    let last = rank - 1;
    if !facts.multiple_of_pow2(shape[last], log) {
        return false;
    }
    if facts.operand(origin[last]).min(base_tz(layout, last)) < log {
        return false;
    }
    (0..last).all(|d| {
        let stride = facts.operand(strides[d]);
        let coord = facts.operand(origin[d]).min(base_tz(layout, d));
        let slot = slots.iter().map(|o| tz_of(o[d])).min().unwrap_or(ZERO);
        stride.saturating_add(coord) >= log && stride.saturating_add(slot) >= log
    })
}

#[cfg(test)]
mod tests {
    use anybit_ir::text::parse_module;

    use super::*;
    use crate::manager::Pass;

    fn vias(src: &str) -> Vec<String> {
        let mut module = parse_module(src).unwrap();
        Vectorize.run(&mut module).unwrap();
        let k = &module.kernels[0];
        k.insts.iter().filter_map(|(_, i)| i.via.map(|v| format!("{} {v}", i.op.mnemonic()))).collect()
    }

    const COPY: &str = "
kernel copy(x: ptr f16[m, k]ALIGN, y: ptr f16[m, k]ALIGN, m: i32, k: i32)WHERE grid(cdiv(m, 16)) warps(4) {
    %b = block_index x
    %m0 = mul %b, 16
    %xv = global_view %x [%m, %k] strides [%k, 1]
    %yv = global_view %y [%m, %k] strides [%k, 1]
    for %k0 = 0 to %k step 64 {
        %t = load_global %xv [%m0, %k0] : f16[16, 64] layout spatial(16,8).local(1,8)
        store_global %t, %yv [%m0, %k0]
    }
}";

    fn copy(align: &str, where_: &str) -> Vec<String> {
        vias(&COPY.replace("ALIGN", align).replace("WHERE", where_))
    }

    #[test]
    fn proven_with_assumptions_and_alignment() {
        assert_eq!(copy(" align 16", " where k % 64 == 0"), ["load_global vector(8)", "store_global vector(8)"]);
    }

    #[test]
    fn checked_without_them() {
        // No assumption on k: the row stride and extent may be odd.
        assert_eq!(copy(" align 16", ""), ["load_global vector(8, checked)", "store_global vector(8, checked)"]);
        // k % 4 is not enough for runs of 8.
        assert_eq!(
            copy(" align 16", " where k % 4 == 0"),
            ["load_global vector(8, checked)", "store_global vector(8, checked)"]
        );
        // Without the buffer's alignment the address may be off.
        assert_eq!(
            copy("", " where k % 64 == 0"),
            ["load_global vector(8, checked)", "store_global vector(8, checked)"]
        );
    }

    #[test]
    fn divisibility_rules() {
        let src = "
kernel d(k: i32, n: i32) where k % 128 == 0 grid(1) warps(1) {
    %a = mul %k, 3
    %b = div %k, 32
    %c = add %a, 8
    %e = shl %n, 4
    %f = add %k, %n
}";
        let module = parse_module(src).unwrap();
        let k = &module.kernels[0];
        let facts = Divisibility::of(k);
        let tz = |name: &str| {
            let (id, _) = k.values.iter().find(|(_, v)| v.name == name).unwrap();
            facts.operand(Operand::Value(id))
        };
        assert_eq!([tz("k"), tz("a"), tz("b"), tz("c"), tz("e"), tz("f"), tz("n")], [7, 7, 2, 3, 4, 0, 0]);
    }

    #[test]
    fn shared_accesses_and_async_copies() {
        let src = "
kernel t(a: ptr f16[m, k]ALIGN, m: i32, k: i32)WHERE grid(1) warps(4) {
    %ga = global_view %a [%m, %k] strides [%k, 1]
    %sa = alloc_shared : f16[64, 32] layout row_major(64, 32)
    for %k0 = 0 to %k step 32 {
        copy_async %ga [0, %k0], %sa [0, 0] : [64, 32]
        commit_group
        wait_group 0
        sync
        %t = load_shared %sa [0, 0] : f16[64, 32] layout spatial(16, 8).local(4, 4)
        %u = load_shared %sa [0, 1] : f16[64, 16] layout spatial(16, 8).local(4, 2)
        sync
    }
}";
        let run = |align: &str, where_: &str| vias(&src.replace("ALIGN", align).replace("WHERE", where_));
        // Shared runs are proven from literal offsets; an odd column offset splits them.
        let proven = run(" align 16", " where k % 32 == 0");
        assert_eq!(proven, ["copy_async async", "load_shared vector(4)", "load_shared scalar"]);
        let checked = run("", "");
        assert_eq!(checked, ["copy_async async(checked)", "load_shared vector(4)", "load_shared scalar"]);
    }
}
