//! `select-instructions`: which machine instructions carry out each `dot`, recorded as its
//! selection (`via mma(m16n8k16)` or `via fma`).
//!
//! A `dot` runs on the tensor cores when its element types have an `mma.sync` shape
//! ([`mma_instruction`]: f16/bf16 into f32 on m16n8k16, s8/u8 into 32-bit integers on
//! m16n8k32) and its layouts can be made fragments: c's layout is `Q_c ∘ F_c` for the
//! accumulator fragment `F_c`, and a and b are (or are converted, through scratch, to)
//! `Q_a ∘ F_a` and `Q_b ∘ F_b` such that every warp holds, at the same quotient slots in
//! every warp, the (m-tile, k-tile) and (k-tile, n-tile) fragments its c tiles need
//! ([`plan_mma`]). Otherwise each thread computes its own slots over k (`via fma`).
//!
//! A `load_shared` of 16-bit elements whose register layout is made of `ldmatrix` fragments,
//! from rows that are contiguous and 16-byte aligned, gets `via ldmatrix` (or
//! `ldmatrix(trans)`, [`ldmatrix_plan`]); other shared loads are vector or element loads.
//!
//! A `cast` of a viewed packed tensor to f16/bf16 gets `via dequant`: the backend runs the
//! program the dequantization search selected for the target ([`crate::dequant`]); other casts
//! convert element by element.
//!
//! The plan is computed from the types alone, so the backend, which emits what was selected,
//! asks [`plan_mma`] for the same plan: the pass decides, the backend carries out.

use anybit_ir::access::gcd;
use anybit_ir::dtype::DType;
use anybit_ir::program::{InstId, Kernel, MmaShape, Module, Op, RegisterTensorType, Type, ValueDef, ValueId, Via};
use anybit_layouts::{LayoutError, MmaInstruction, MmaOperand, RegisterLayout};

/// Records how every `dot` is carried out.
#[derive(Clone, Copy, Debug, Default)]
pub struct SelectInstructions;

impl crate::manager::Pass for SelectInstructions {
    fn name(&self) -> &'static str {
        "select-instructions"
    }

    fn description(&self) -> &'static str {
        "selects mma.sync or per-thread fma for `dot`, ldmatrix for shared loads, and dequantization programs for casts of packed weights"
    }

    fn run(&self, module: &mut Module) -> Result<(), String> {
        for kernel in &mut module.kernels {
            let decisions: Vec<(InstId, Via)> = kernel
                .insts
                .iter()
                .filter_map(|(id, _)| {
                    Some((
                        id,
                        dot_via(kernel, id).or_else(|| cast_via(kernel, id)).or_else(|| load_shared_via(kernel, id))?,
                    ))
                })
                .collect();
            for (id, via) in decisions {
                if let Some(inst) = kernel.insts.get_mut(id) {
                    inst.via = Some(via);
                }
            }
        }
        Ok(())
    }
}

fn register(kernel: &Kernel, v: ValueId) -> Option<&RegisterTensorType> {
    match &kernel.values.get(v)?.ty {
        Type::Register(t) => Some(t),
        _ => None,
    }
}

fn dot_via(kernel: &Kernel, id: InstId) -> Option<Via> {
    let Op::Dot { a, b, c } = &kernel.insts.get(id)?.op else { return None };
    let (ta, tb, tc) = (register(kernel, *a)?, register(kernel, *b)?, register(kernel, *c)?);
    Some(match plan_mma(ta, tb, tc) {
        Some(plan) => Via::Mma { shape: shape_of(plan.instruction), swapped: plan.swapped },
        None => Via::Fma,
    })
}

/// `cast(view(packed → w)) : f16/bf16` of a weight type of 1–8 bits, where each thread's
/// packed bits are whole groups of the dequantization program's input words
/// (`lcm(bits, 32)` bits, [`crate::dequant::select`]): `via dequant`.
fn cast_via(kernel: &Kernel, id: InstId) -> Option<Via> {
    let Op::Cast { x, to } = &kernel.insts.get(id)?.op else { return None };
    if *to != DType::F16 && *to != DType::BF16 {
        return None;
    }
    let viewed = x.value()?;
    let from = register(kernel, viewed)?.dtype;
    if !(1..=8).contains(&from.bits()) {
        return None;
    }
    let source = match kernel.values.get(viewed)?.def {
        ValueDef::Result(def, 0) => match &kernel.insts.get(def)?.op {
            Op::View { x: source, .. } => register(kernel, *source)?,
            _ => return None,
        },
        _ => return None,
    };
    let thread_bits = source.layout.as_ref()?.num_slots() * source.dtype.bits() as usize;
    let bits = from.bits() as usize;
    let group = bits * 32 / gcd(bits, 32);
    thread_bits.is_multiple_of(group).then_some(Via::Dequant)
}

/// `load_shared` by `ldmatrix` when [`ldmatrix_plan`] allows it.
fn load_shared_via(kernel: &Kernel, id: InstId) -> Option<Via> {
    let Op::LoadShared { src, offsets, ty } = &kernel.insts.get(id)?.op else { return None };
    let Type::Shared(tile) = &kernel.values.get(*src)?.ty else { return None };
    let trans = ldmatrix_plan(tile.dtype, tile.layout.as_ref()?, offsets, ty.layout.as_ref()?)?;
    Some(Via::Ldmatrix { trans })
}

/// The register layout of one `ldmatrix` matrix per warp (8×8 16-bit elements; each thread
/// holds a pair of neighbours along a row, or along a column when transposed).
pub fn ldmatrix_fragment(trans: bool) -> Result<RegisterLayout, LayoutError> {
    if trans {
        RegisterLayout::column_spatial(&[4, 8])?.compose(&RegisterLayout::local(&[2, 1])?)
    } else {
        RegisterLayout::spatial(&[8, 4])?.compose(&RegisterLayout::local(&[1, 2])?)
    }
}

/// Whether a `load_shared` of `layout` from a shared tile of `dtype` laid out as `shared`, at
/// `offsets`, can be `ldmatrix`: 16-bit elements, a 2-D tile whose rows are contiguous and
/// 16-byte aligned (row stride a multiple of 8 elements, a literal column offset that is a
/// multiple of 8, no swizzle finer than 16-byte chunks), and a register layout made of the
/// instruction's fragments ([`ldmatrix_fragment`]). `Some(trans)` when it can.
pub fn ldmatrix_plan(
    dtype: DType,
    shared: &anybit_layouts::SharedLayout,
    offsets: &[anybit_ir::program::Operand],
    layout: &RegisterLayout,
) -> Option<bool> {
    use anybit_ir::program::{Literal, Operand};
    let modes = shared.modes();
    if dtype.bits() != 16 || modes.len() != 2 || layout.rank() != 2 || offsets.len() != 2 {
        return None;
    }
    if modes.iter().any(|d| d.len() != 1) || modes[1][0].stride != 1 || !modes[0][0].stride.is_multiple_of(8) {
        return None;
    }
    if let Some(sw) = shared.swizzle()
        && sw.bits() > 0
        && sw.base() < 4
    {
        return None;
    }
    match offsets[1] {
        Operand::Literal(Literal::Int(v)) if v.rem_euclid(8) == 0 => {}
        _ => return None,
    }
    if !layout.num_threads().is_multiple_of(32) {
        return None;
    }
    [false, true].into_iter().find(|&trans| ldmatrix_fragment(trans).is_ok_and(|f| layout.divide_right(&f).is_ok()))
}

/// The IR's name for an instruction's shape.
pub fn shape_of(instruction: MmaInstruction) -> MmaShape {
    match instruction {
        MmaInstruction::M16N8K16F16 | MmaInstruction::M16N8K16Bf16 => MmaShape::M16N8K16,
        MmaInstruction::M16N8K32S8 | MmaInstruction::M16N8K32U8 => MmaShape::M16N8K32,
    }
}

/// The `mma` instruction for these element types (a and b of type `a`, accumulators `c`).
pub fn mma_instruction(a: DType, c: DType) -> Option<MmaInstruction> {
    let i32t = DType::int(32).ok()?;
    let u32t = DType::uint(32).ok()?;
    match (a, c) {
        (DType::F16, DType::F32) => Some(MmaInstruction::M16N8K16F16),
        (DType::BF16, DType::F32) => Some(MmaInstruction::M16N8K16Bf16),
        (a, c) if (c == i32t || c == u32t) && a == DType::int(8).ok()? => Some(MmaInstruction::M16N8K32S8),
        (a, c) if (c == i32t || c == u32t) && a == DType::uint(8).ok()? => Some(MmaInstruction::M16N8K32U8),
        _ => None,
    }
}

/// Per c quotient slot and k-tile, a quotient slot (of a, or of b).
pub type SlotTable = Vec<Vec<usize>>;

/// How a `dot` maps onto `mma.sync`.
///
/// A swapped plan computes `cᵀ = bᵀ·aᵀ`: everything below then describes that product — its
/// "a" is the tensor b transposed (the instruction's A operands), its "b" the tensor a
/// transposed, and c's quotient slots are those of cᵀ, which are c's own (transposing a
/// layout keeps its slot order).
#[derive(Clone, Debug, PartialEq)]
pub struct MmaPlan {
    /// The instruction.
    pub instruction: MmaInstruction,
    /// Whether the plan is for the transposed product.
    pub swapped: bool,
    /// Per c quotient slot and k-tile: a's quotient slot.
    pub a_slot: SlotTable,
    /// Per c quotient slot and k-tile: b's quotient slot.
    pub b_slot: SlotTable,
    /// K / k of the instruction.
    pub k_tiles: usize,
    /// The layout a must have (its own, or a conversion target).
    pub a_layout: RegisterLayout,
    /// The layout b must have.
    pub b_layout: RegisterLayout,
}

/// Per c quotient slot and k-tile, the quotient slots of a and b in every warp, if the same
/// in every warp.
fn mma_slots(
    qa: &RegisterLayout,
    qb: &RegisterLayout,
    qc: &RegisterLayout,
    k_tiles: usize,
) -> Option<(SlotTable, SlotTable)> {
    let warps = qc.num_threads();
    if qa.num_threads() != warps || qb.num_threads() != warps {
        return None;
    }
    let mut a_slot = vec![vec![usize::MAX; k_tiles]; qc.num_slots()];
    let mut b_slot = vec![vec![usize::MAX; k_tiles]; qc.num_slots()];
    for w in 0..warps {
        for q in 0..qc.num_slots() {
            let mn = qc.map(w, q).ok()?;
            let (mt, nt) = (*mn.first()?, *mn.get(1)?);
            for kt in 0..k_tiles {
                let ha = qa.holders(&[mt, kt]).ok()?;
                let sa: Vec<usize> = ha.iter().filter(|h| h.0 == w).map(|h| h.1).collect();
                let hb = qb.holders(&[kt, nt]).ok()?;
                let sb: Vec<usize> = hb.iter().filter(|h| h.0 == w).map(|h| h.1).collect();
                for (table, mine) in [(&mut a_slot, sa), (&mut b_slot, sb)] {
                    let cell = &mut table[q][kt];
                    match mine.first() {
                        None => return None,
                        Some(&s) if *cell == usize::MAX => *cell = s,
                        Some(_) if mine.contains(cell) => {}
                        Some(_) => return None,
                    }
                }
            }
        }
    }
    Some((a_slot, b_slot))
}

/// The `mma` plan of `c + a·b` for these types, if the tensor cores can compute it: as is
/// when c's layout is made of accumulator fragments, else swapped (`cᵀ + bᵀ·aᵀ`) when the
/// transpose of c's layout is.
pub fn plan_mma(a: &RegisterTensorType, b: &RegisterTensorType, c: &RegisterTensorType) -> Option<MmaPlan> {
    if let Some(plan) = plan_mma_checked(a, b, c).ok().flatten() {
        return Some(plan);
    }
    let (at, bt, ct) = (a.transposed()?, b.transposed()?, c.transposed()?);
    let plan = plan_mma_checked(&bt, &at, &ct).ok().flatten()?;
    Some(MmaPlan { swapped: true, ..plan })
}

fn plan_mma_checked(
    a: &RegisterTensorType,
    b: &RegisterTensorType,
    c: &RegisterTensorType,
) -> Result<Option<MmaPlan>, LayoutError> {
    let (Some(la), Some(lb), Some(lc)) = (&a.layout, &b.layout, &c.layout) else { return Ok(None) };
    let Some(instruction) = mma_instruction(a.dtype, c.dtype) else { return Ok(None) };
    if b.dtype != a.dtype {
        return Ok(None);
    }
    let (fa, fb, fc) = (
        instruction.fragment(MmaOperand::A),
        instruction.fragment(MmaOperand::B),
        instruction.fragment(MmaOperand::Accumulator),
    );
    let Ok(qc) = lc.divide_right(&fc) else { return Ok(None) };
    let (_, _, kk) = instruction.mnk();
    let Some(&k) = a.shape.get(1) else { return Ok(None) };
    if !k.is_multiple_of(kk) {
        return Ok(None);
    }
    let k_tiles = k / kk;
    // Targets that fit c: a replicated across c's n-warps, b across its m-warps.
    let qa_target = RegisterLayout::local(&[1, k_tiles])?.compose(&qc.reduce(&[1], true)?)?;
    let qb_target = RegisterLayout::local(&[k_tiles, 1])?.compose(&qc.reduce(&[0], true)?)?;
    let a_choices: Vec<RegisterLayout> = la.divide_right(&fa).ok().into_iter().chain([qa_target]).collect();
    let b_choices: Vec<RegisterLayout> = lb.divide_right(&fb).ok().into_iter().chain([qb_target]).collect();
    for qa in &a_choices {
        for qb in &b_choices {
            let Some((a_slot, b_slot)) = mma_slots(qa, qb, &qc, k_tiles) else { continue };
            let (a_layout, b_layout) = (qa.compose(&fa)?, qb.compose(&fb)?);
            // A converted operand must keep its tensor's shape.
            if a_layout.shape() != a.shape || b_layout.shape() != b.shape {
                return Ok(None);
            }
            return Ok(Some(MmaPlan { instruction, swapped: false, a_slot, b_slot, k_tiles, a_layout, b_layout }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use anybit_ir::text::parse_module;

    use super::*;
    use crate::manager::Pass;

    fn selected(src: &str) -> Vec<String> {
        let mut module = parse_module(src).unwrap();
        SelectInstructions.run(&mut module).unwrap();
        let k = &module.kernels[0];
        k.insts.iter().filter_map(|(_, i)| i.via.map(|v| v.to_string())).collect()
    }

    #[test]
    fn fragments_go_to_the_tensor_cores() {
        let src = "
layout @c = column_local(2,2).column_spatial(8,4).spatial(1,4).local(1,2)
kernel d(m: i32) grid(1) warps(4) {
    %a = fill 1.0 : f16[16, 64] layout column_local(2,8).replicated(4).spatial(8,4).local(1,2)
    %b = fill 1.0 : f16[64, 64] layout spatial(16,8).local(4,8)
    %c = fill 0.0 : f32[16, 64] layout @c
    %d = dot %a, %b, %c
    %e = fill 0.0 : f16[16, 64] layout @c
    %f = dot %a, %b, %e
}";
        // f16 accumulators have no mma shape here: per-thread fma.
        assert_eq!(selected(src), ["mma(m16n8k16)", "fma"]);
    }

    #[test]
    fn transposed_fragments_run_swapped() {
        // x with 8 rows as the B operands of xᵀ, W as the A operands of Wᵀ, c as transposed
        // accumulators: the tensor cores compute cᵀ = Wᵀ·xᵀ. The same operands with a
        // straight accumulator take the straight instruction (converting both operands).
        let src = "
kernel d(m: i32) grid(1) warps(1) {
    %x = fill 1.0 : f16[8, 16] layout local(1,2).spatial(8,4).local(1,2)
    %w = fill 1.0 : f16[16, 16] layout local(2,2).column_spatial(4,8).local(2,1)
    %c = fill 0.0 : f32[8, 16] layout local(1,2).column_spatial(4,8).local(2,1)
    %d = dot %x, %w, %c
    %e = fill 0.0 : f32[16, 16] layout column_local(2,2).spatial(8,4).local(1,2)
    %w2 = fill 1.0 : f16[16, 16] layout local(2,2).column_spatial(4,8).local(2,1)
    %f = dot %w2, %w, %e
}";
        assert_eq!(selected(src), ["mma(m16n8k16, swapped)", "mma(m16n8k16)"]);
        // The selection prints and parses back, and the verifier takes it.
        let mut module = parse_module(src).unwrap();
        SelectInstructions.run(&mut module).unwrap();
        let printed = anybit_ir::text::print_module(&module);
        assert!(printed.contains("via mma(m16n8k16, swapped)"), "{printed}");
        let reparsed = parse_module(&printed).unwrap();
        assert_eq!(anybit_ir::text::print_module(&reparsed), printed);
        anybit_ir::verify::verify_module(&reparsed, &anybit_ir::verify::VerifyOptions::default()).unwrap();
    }

    #[test]
    fn fragment_layouts_load_by_ldmatrix() {
        let src = "
kernel l(m: i32) grid(1) warps(4) {
    %s = alloc_shared : f16[64, 128] layout row_major(64,128)
    %a = load_shared %s [0, 0] : f16[16, 64] layout column_local(2,8).replicated(4).spatial(8,4).local(1,2)
    %b = load_shared %s [0, 8] : f16[16, 64] layout local(2,2).spatial(1,4).column_spatial(4,8).local(2,1)
    %c = load_shared %s [0, 4] : f16[16, 64] layout column_local(2,8).replicated(4).spatial(8,4).local(1,2)
    %d = load_shared %s [0, 0] : f16[64, 64] layout spatial(16,8).local(4,8)
}";
        // %c's column offset is not 16-byte aligned; %d's layout is not made of fragments.
        assert_eq!(selected(src), ["ldmatrix", "ldmatrix(trans)"]);
    }
}
