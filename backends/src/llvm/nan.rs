//! Where NaN bits must be fixed up.
//!
//! The interpreter keeps every element as its code: a NaN loaded from memory keeps its bits
//! through moves, loads and stores, while a NaN *computed* by an operation is the type's
//! canonical NaN. The GPU's `f32`/`f16`/`bf16` operations return their own NaN bits, and any
//! NaN behaves the same in later arithmetic, so the lowering canonicalizes lazily: only where
//! bits become observable (stores and `view`s) and where computed and loaded values merge
//! (`select`, branch and loop results). This analysis gives every value a [`NanState`]:
//!
//! - [`NanState::NoNan`]: cannot be a NaN (integers, non-NaN constants, integer → float casts);
//! - [`NanState::Exact`]: its bits are the interpreter's (loaded or moved values, parameters,
//!   code-carried types, whose encoders produce canonical NaNs);
//! - [`NanState::Dirty`]: may be a NaN with other bits than the canonical one (results of
//!   native float operations).
//!
//! States join as `NoNan ⊔ s = s`, `Exact ⊔ Dirty = Exact` (the dirty inputs of such a merge
//! are canonicalized there); loop-carried values are iterated to a fixpoint.

use anybit_ir::dtype::DType;
use anybit_ir::program::{Block, Kernel, Literal, Op, Operand, Type, ValueId};

use super::arith;

/// What a value's NaN bits are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum NanState {
    NoNan,
    Dirty,
    Exact,
}

impl NanState {
    /// The state of a merge of values in these states.
    pub(crate) fn join(self, other: NanState) -> NanState {
        self.max(other)
    }
}

/// Per value (by index), its state.
pub(crate) fn analyze(kernel: &Kernel) -> Vec<NanState> {
    let mut states = vec![NanState::Exact; kernel.values.len()];
    for p in &kernel.params {
        set(&mut states, p.value, NanState::Exact);
    }
    walk(kernel, &kernel.body, &mut states, 0);
    states
}

fn set(states: &mut [NanState], id: ValueId, s: NanState) {
    if let Some(slot) = states.get_mut(id.index()) {
        *slot = s;
    }
}

fn get(states: &[NanState], id: ValueId) -> NanState {
    states.get(id.index()).copied().unwrap_or(NanState::Exact)
}

fn operand(states: &[NanState], o: Operand) -> NanState {
    match o {
        Operand::Value(v) => get(states, v),
        Operand::Literal(Literal::Float(f)) if f.is_nan() => NanState::Exact,
        Operand::Literal(_) => NanState::NoNan,
    }
}

fn dtype_of(kernel: &Kernel, id: ValueId) -> Option<DType> {
    kernel.values.get(id).map(|v| match &v.ty {
        Type::Scalar(d) | Type::Pointer(d) => *d,
        Type::Global(g) => g.dtype,
        Type::Shared(s) => s.dtype,
        Type::Register(r) => r.dtype,
    })
}

fn walk(kernel: &Kernel, block: &Block, states: &mut Vec<NanState>, depth: usize) {
    if depth > 80 {
        return;
    }
    for &id in &block.insts {
        let Some(inst) = kernel.insts.get(id) else { continue };
        let result = inst.results.first().copied();
        let native = result.and_then(|r| dtype_of(kernel, r)).is_some_and(arith::native_nan_result);
        let computed = if native { NanState::Dirty } else { NanState::Exact };
        let state = match &inst.op {
            Op::Const { value, .. } => match value {
                Literal::Float(f) if f.is_nan() => NanState::Exact,
                _ => NanState::NoNan,
            },
            Op::BlockIndex { .. } | Op::Iota { .. } | Op::Compare { .. } => NanState::NoNan,
            Op::Unary { .. } | Op::Binary { .. } | Op::Fma { .. } | Op::Dot { .. } | Op::Reduce { .. } => computed,
            Op::Cast { x, .. } => {
                let from_int = match x {
                    Operand::Value(v) => dtype_of(kernel, *v).is_some_and(|d| d.is_integer()),
                    Operand::Literal(Literal::Int(_)) => true,
                    Operand::Literal(_) => false,
                };
                if from_int { NanState::NoNan } else { computed }
            }
            Op::Select { on_true, on_false, .. } => operand(states, *on_true).join(operand(states, *on_false)),
            Op::Fill { value, .. } => operand(states, *value),
            Op::Broadcast { x, .. } => get(states, *x),
            Op::View { .. } | Op::LoadGlobal { .. } | Op::LoadShared { .. } | Op::GlobalView { .. } => NanState::Exact,
            Op::AllocShared { .. } => NanState::Exact,
            Op::For { carried, inits, body, .. } => {
                let init: Vec<NanState> = inits.iter().map(|&o| operand(states, o)).collect();
                let mut assumed = init.clone();
                for _ in 0..4 {
                    for (&c, &s) in carried.iter().zip(&assumed) {
                        set(states, c, s);
                    }
                    walk(kernel, body, states, depth + 1);
                    let next: Vec<NanState> =
                        assumed.iter().zip(&body.yields).map(|(&a, &y)| a.join(operand(states, y))).collect();
                    if next == assumed {
                        break;
                    }
                    assumed = next;
                }
                for (&r, &s) in inst.results.iter().zip(&assumed) {
                    set(states, r, s);
                }
                continue;
            }
            Op::If { then_body, else_body, .. } => {
                walk(kernel, then_body, states, depth + 1);
                walk(kernel, else_body, states, depth + 1);
                for (k, &r) in inst.results.iter().enumerate() {
                    let a = then_body.yields.get(k).map_or(NanState::Exact, |&y| operand(states, y));
                    let b = else_body.yields.get(k).map_or(NanState::Exact, |&y| operand(states, y));
                    set(states, r, a.join(b));
                }
                continue;
            }
            _ => NanState::Exact,
        };
        for &r in &inst.results {
            set(states, r, state);
        }
    }
}
