//! Selections: how the backend implements an instruction, as the selection passes decided.
//!
//! The passes `vectorize` and `select-instructions` (in `anybit-passes`) record their
//! decisions on the instructions themselves, so that `--print-after-all` shows them, the
//! verifier checks them and the backend only carries them out. A selection never changes what
//! an instruction means — the interpreter ignores it — except that a vector access that was
//! *proven* aligned (`via vector(8)`, not `checked`) is a promise the interpreter checks.
//! In the kernel language a selection follows the instruction: `… layout @x via vector(8)`.

use std::fmt;

use super::ops::Op;

/// The `mma.sync` shapes the backends emit (the element types come from the operands).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MmaShape {
    /// m16n8k16: f16 or bf16 operands, f32 accumulators.
    M16N8K16,
    /// m16n8k32: s8 or u8 operands, i32 accumulators.
    M16N8K32,
}

impl MmaShape {
    /// Every shape.
    pub const ALL: &'static [MmaShape] = &[MmaShape::M16N8K16, MmaShape::M16N8K32];

    /// The name in the kernel language (`m16n8k16`).
    pub fn name(self) -> &'static str {
        match self {
            MmaShape::M16N8K16 => "m16n8k16",
            MmaShape::M16N8K32 => "m16n8k32",
        }
    }

    /// The shape of a name.
    pub fn from_name(name: &str) -> Option<MmaShape> {
        MmaShape::ALL.iter().copied().find(|s| s.name() == name)
    }

    /// (m, n, k) of one instruction.
    pub fn mnk(self) -> (usize, usize, usize) {
        match self {
            MmaShape::M16N8K16 => (16, 8, 16),
            MmaShape::M16N8K32 => (16, 8, 32),
        }
    }
}

/// How the backend implements one instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Via {
    /// A global or shared access (`load_global`, `store_global`, `load_shared`,
    /// `store_shared`) element by element.
    Scalar,
    /// A global or shared access in runs of up to `width` consecutive elements per memory
    /// instruction (at most 128 bits); shared accesses are always proven (never `checked`). Without `checked` the vectorizer proved every run aligned and
    /// entirely inside or outside the view, from the kernel's assumptions; with it, the
    /// backend tests that at run time and falls back to element accesses.
    Vector {
        /// Elements per run: a power of two, at least 2.
        width: u32,
        /// Whether alignment is tested at run time.
        checked: bool,
    },
    /// `dot` on the tensor cores, one `mma.sync` of this shape per fragment. With `swapped`
    /// the instructions compute the transposed product `cᵀ + bᵀ·aᵀ`: b's fragments are the
    /// instruction's A operands, a's its B operands, and c holds transposed accumulator
    /// fragments. That suits a skinny a (few rows, as x at decode sizes): its rows fill the
    /// instruction's 8-wide n side instead of half-empty 16-row m tiles, and its registers are
    /// B operands of two registers, which a 16-byte load fills in place.
    Mma {
        /// The instruction's shape.
        shape: MmaShape,
        /// Whether operands and accumulators are transposed (b as A, a as B).
        swapped: bool,
    },
    /// `dot` by each thread over k, on its own slots.
    Fma,
    /// `cast` of a viewed packed tensor to `f16`/`bf16` by the machine program the
    /// dequantization search selected.
    Dequant,
    /// `copy_async` by `cp.async`, runs of 4 to 16 bytes per thread. Without `checked` the
    /// vectorizer proved the global runs aligned and whole; with it the backend tests that at
    /// run time and copies synchronously otherwise. Without this selection the copy is
    /// synchronous (loads, then shared stores).
    Async {
        /// Whether alignment is tested at run time.
        checked: bool,
    },
    /// `load_shared` of 16-bit elements by `ldmatrix` (`.trans` when `trans`): each 8×8 block
    /// of the register layout's fragments is one matrix of the instruction.
    Ldmatrix {
        /// Whether the matrices are transposed on the way.
        trans: bool,
    },
}

impl Via {
    /// Whether this selection can describe `op` (the verifier checks more).
    pub fn applies_to(&self, op: &Op) -> bool {
        match self {
            Via::Scalar | Via::Vector { .. } => matches!(
                op,
                Op::LoadGlobal { .. } | Op::StoreGlobal { .. } | Op::LoadShared { .. } | Op::StoreShared { .. }
            ),
            Via::Async { .. } => matches!(op, Op::CopyAsync { .. }),
            Via::Mma { .. } | Via::Fma => matches!(op, Op::Dot { .. }),
            Via::Dequant => matches!(op, Op::Cast { .. }),
            Via::Ldmatrix { .. } => matches!(op, Op::LoadShared { .. }),
        }
    }

    /// The vector width of a global access (1 for element accesses and other selections).
    pub fn width(self) -> u32 {
        match self {
            Via::Vector { width, .. } => width,
            _ => 1,
        }
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Via::Scalar => f.write_str("scalar"),
            Via::Vector { width, checked: false } => write!(f, "vector({width})"),
            Via::Vector { width, checked: true } => write!(f, "vector({width}, checked)"),
            Via::Mma { shape, swapped: false } => write!(f, "mma({})", shape.name()),
            Via::Mma { shape, swapped: true } => write!(f, "mma({}, swapped)", shape.name()),
            Via::Fma => f.write_str("fma"),
            Via::Dequant => f.write_str("dequant"),
            Via::Async { checked: false } => f.write_str("async"),
            Via::Async { checked: true } => f.write_str("async(checked)"),
            Via::Ldmatrix { trans: false } => f.write_str("ldmatrix"),
            Via::Ldmatrix { trans: true } => f.write_str("ldmatrix(trans)"),
        }
    }
}
