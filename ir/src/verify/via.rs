//! Invariant 22: selections (`via …`) fit their instructions.

use super::Checker;
use crate::dtype::DType;
use crate::program::{InstData, InstId, MmaShape, Op, Operand, Type, Via};

impl<'k> Checker<'k> {
    /// The element type and shape of a register operand, when it is one.
    fn register_of(&self, operand: Operand) -> Option<(DType, Vec<usize>)> {
        match &self.kernel.values.get(operand.value()?)?.ty {
            Type::Register(t) => Some((t.dtype, t.shape.clone())),
            _ => None,
        }
    }

    pub(super) fn check_via(&mut self, id: InstId, inst: &InstData) {
        let Some(via) = inst.via else { return };
        let problem = match (&inst.op, via) {
            (op, via) if !via.applies_to(op) => Some(format!("`via {via}` does not apply to this instruction")),
            (Op::LoadShared { .. } | Op::StoreShared { .. }, Via::Vector { checked: true, .. }) => {
                Some("shared accesses are vectorized only when proven aligned (no `checked`)".to_string())
            }
            (Op::LoadGlobal { ty, .. } | Op::LoadShared { ty, .. }, Via::Vector { width, .. }) => {
                vector_problem(ty.dtype, width)
            }
            (Op::StoreShared { value, .. }, Via::Vector { width, .. }) => {
                self.register_of(Operand::Value(*value)).and_then(|(dtype, _)| vector_problem(dtype, width))
            }
            (Op::StoreGlobal { value, .. }, Via::Vector { width, .. }) => {
                match self.register_of(Operand::Value(*value)) {
                    Some((dtype, _)) => vector_problem(dtype, width),
                    None => None,
                }
            }
            (Op::Dot { a, b, c }, Via::Mma { shape, swapped }) => match [*a, *b, *c]
                .map(|v| self.register_of(Operand::Value(v)))
            {
                [Some((ta, sa)), Some((tb, _)), Some((tc, sc))] => mma_problem(shape, swapped, ta, tb, tc, &sa, &sc),
                _ => None,
            },
            (Op::Cast { x, to }, Via::Dequant) => match self.register_of(*x) {
                Some((from, _)) if (*to == DType::F16 || *to == DType::BF16) && from.bits() <= 8 => None,
                Some((from, _)) => Some(format!(
                    "`via dequant` casts a tensor of at most 8-bit elements to f16 or bf16, not {from} to {to}"
                )),
                None => Some("`via dequant` casts a register tensor".to_string()),
            },
            (Op::LoadShared { ty, .. }, Via::Ldmatrix { .. }) if ty.dtype.bits() != 16 => {
                Some(format!("`ldmatrix` loads 16-bit elements, not {}", ty.dtype))
            }
            _ => None,
        };
        if let Some(problem) = problem {
            self.error(self.inst_span(id), format!("{}: {problem}", self.inst_ref(id)), vec![]);
        }
    }
}

fn vector_problem(dtype: DType, width: u32) -> Option<String> {
    let bits = dtype.bits();
    let total = u64::from(width) * u64::from(bits);
    if !width.is_power_of_two() || width < 2 {
        Some(format!("a vector width is a power of two of at least 2, not {width}"))
    } else if !bits.is_power_of_two() || bits > 32 {
        Some(format!("{dtype} elements ({bits} bits) do not pack into vector accesses"))
    } else if !(16..=128).contains(&total) {
        Some(format!("a vector access moves 16 to 128 bits, not {width} × {bits}"))
    } else {
        None
    }
}

fn mma_problem(
    shape: MmaShape,
    swapped: bool,
    a: DType,
    b: DType,
    c: DType,
    sa: &[usize],
    sc: &[usize],
) -> Option<String> {
    let types_ok = match shape {
        MmaShape::M16N8K16 => (a == DType::F16 || a == DType::BF16) && b == a && c == DType::F32,
        MmaShape::M16N8K32 => {
            let int = |bits, signed| if signed { DType::int(bits).ok() } else { DType::uint(bits).ok() };
            (Some(a) == int(8, true) || Some(a) == int(8, false))
                && b == a
                && (Some(c) == int(32, true) || Some(c) == int(32, false))
        }
    };
    if !types_ok {
        return Some(format!("`mma({})` does not take {a} × {b} → {c}", shape.name()));
    }
    let (m, n, k) = shape.mnk();
    // Swapped, the instruction's m side runs along c's N and its n side along c's M.
    let (m, n) = if swapped { (n, m) } else { (m, n) };
    match (sc, sa.get(1)) {
        ([mm, nn], Some(&kk)) if mm % m == 0 && nn % n == 0 && kk % k == 0 => None,
        _ => Some(format!(
            "`mma({}{})` needs M, N, K multiples of {m}, {n}, {k}",
            shape.name(),
            if swapped { ", swapped" } else { "" }
        )),
    }
}
