//! The fragment layouts of the PTX warp-level instructions anybit uses, built with the
//! algebra from primitives.
//!
//! Each is a [`RegisterLayout`] over the 32 lanes of a warp; the slot index is the element
//! index of the thread's fragment (`a0, a1, ...` in the PTX ISA's tables). Coordinates are
//! (row, column) of the operand matrix: A is M×K, B is K×N, the accumulators C/D are M×N.
//! For `ldmatrix` the tile is the loaded matrices as stored in memory, matrix `j` of an
//! `.xN` load occupying rows `[8j, 8j + 8)`.

use crate::register::RegisterLayout;

/// An `mma.sync.aligned` shape and input type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MmaInstruction {
    /// `mma.m16n8k16` with `.f16` inputs.
    M16N8K16F16,
    /// `mma.m16n8k16` with `.bf16` inputs.
    M16N8K16Bf16,
    /// `mma.m16n8k32` with `.s8` inputs (`.s32` accumulators).
    M16N8K32S8,
    /// `mma.m16n8k32` with `.u8` inputs (`.s32` accumulators).
    M16N8K32U8,
}

/// An operand of an `mma` instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MmaOperand {
    /// The A operand (M×K, row-major).
    A,
    /// The B operand (K×N, column-major in PTX terms; coordinates here are (k, n)).
    B,
    /// The accumulators C and D (M×N); f32, f16 and s32 accumulators share this layout.
    Accumulator,
}

impl MmaInstruction {
    /// Every instruction, in declaration order.
    pub const ALL: [MmaInstruction; 4] = [
        MmaInstruction::M16N8K16F16,
        MmaInstruction::M16N8K16Bf16,
        MmaInstruction::M16N8K32S8,
        MmaInstruction::M16N8K32U8,
    ];

    /// A short name, e.g. `mma.m16n8k16.f16`.
    pub fn name(self) -> &'static str {
        match self {
            MmaInstruction::M16N8K16F16 => "mma.m16n8k16.f16",
            MmaInstruction::M16N8K16Bf16 => "mma.m16n8k16.bf16",
            MmaInstruction::M16N8K32S8 => "mma.m16n8k32.s8",
            MmaInstruction::M16N8K32U8 => "mma.m16n8k32.u8",
        }
    }

    /// The (M, N, K) shape.
    pub fn mnk(self) -> (usize, usize, usize) {
        match self {
            MmaInstruction::M16N8K16F16 | MmaInstruction::M16N8K16Bf16 => (16, 8, 16),
            MmaInstruction::M16N8K32S8 | MmaInstruction::M16N8K32U8 => (16, 8, 32),
        }
    }

    /// Number of input elements packed in one 32-bit register (2 for 16-bit, 4 for 8-bit).
    pub fn elements_per_register(self) -> usize {
        match self {
            MmaInstruction::M16N8K16F16 | MmaInstruction::M16N8K16Bf16 => 2,
            MmaInstruction::M16N8K32S8 | MmaInstruction::M16N8K32U8 => 4,
        }
    }

    /// The fragment layout of `operand`.
    ///
    /// With `p` = [`elements_per_register`](Self::elements_per_register):
    /// A = `column_local(2,2).spatial(8,4).local(1,p)`,
    /// B = `local(2,1).column_spatial(4,8).local(p,1)`,
    /// accumulators = `local(2,1).spatial(8,4).local(1,2)`.
    pub fn fragment(self, operand: MmaOperand) -> RegisterLayout {
        let p = self.elements_per_register();
        match operand {
            MmaOperand::A => product(&[
                primitive(RegisterLayout::column_local, &[2, 2]),
                primitive(RegisterLayout::spatial, &[8, 4]),
                primitive(RegisterLayout::local, &[1, p]),
            ]),
            MmaOperand::B => product(&[
                primitive(RegisterLayout::local, &[2, 1]),
                primitive(RegisterLayout::column_spatial, &[4, 8]),
                primitive(RegisterLayout::local, &[p, 1]),
            ]),
            MmaOperand::Accumulator => product(&[
                primitive(RegisterLayout::local, &[2, 1]),
                primitive(RegisterLayout::spatial, &[8, 4]),
                primitive(RegisterLayout::local, &[1, 2]),
            ]),
        }
    }
}

/// How many 8×8 matrices an `ldmatrix.sync.aligned.m8n8` loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LdmatrixCount {
    /// `.x1`: one matrix, one register per thread.
    X1,
    /// `.x2`: two matrices, two registers per thread.
    X2,
    /// `.x4`: four matrices, four registers per thread.
    X4,
}

impl LdmatrixCount {
    /// Every count, in declaration order.
    pub const ALL: [LdmatrixCount; 3] = [LdmatrixCount::X1, LdmatrixCount::X2, LdmatrixCount::X4];

    /// Number of matrices (1, 2 or 4).
    pub fn num_matrices(self) -> usize {
        match self {
            LdmatrixCount::X1 => 1,
            LdmatrixCount::X2 => 2,
            LdmatrixCount::X4 => 4,
        }
    }
}

/// The fragment layout of `ldmatrix.sync.aligned.m8n8.{count}.b16`, with `.trans` when
/// `transposed`, over the `(8·N)×8` tile of the N matrices as stored in memory.
///
/// One matrix: `spatial(8,4).local(1,2)` (lane `l` holds row `l/4`, columns
/// `2(l%4), 2(l%4)+1`), or with `.trans` `column_spatial(4,8).local(2,1)` (rows
/// `2(l%4), 2(l%4)+1` of column `l/4`). N matrices: `local(N,1)` composed with it, so
/// register `j` holds matrix `j`.
pub fn ldmatrix_fragment(count: LdmatrixCount, transposed: bool) -> RegisterLayout {
    let single = if transposed {
        product(&[primitive(RegisterLayout::column_spatial, &[4, 8]), primitive(RegisterLayout::local, &[2, 1])])
    } else {
        product(&[primitive(RegisterLayout::spatial, &[8, 4]), primitive(RegisterLayout::local, &[1, 2])])
    };
    product(&[primitive(RegisterLayout::local, &[count.num_matrices(), 1]), single])
}

/// A fragment layout with its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedFragment {
    /// E.g. `mma.m16n8k16.f16.A` or `ldmatrix.m8n8.x4.trans.b16`.
    pub name: String,
    /// The layout.
    pub layout: RegisterLayout,
}

/// Every fragment layout of this module, named.
pub fn all_fragments() -> Vec<NamedFragment> {
    let mut all = Vec::new();
    for instruction in MmaInstruction::ALL {
        for (operand, suffix) in [(MmaOperand::A, "A"), (MmaOperand::B, "B"), (MmaOperand::Accumulator, "C")] {
            all.push(NamedFragment {
                name: format!("{}.{suffix}", instruction.name()),
                layout: instruction.fragment(operand),
            });
        }
    }
    for count in LdmatrixCount::ALL {
        for transposed in [false, true] {
            all.push(NamedFragment {
                name: format!("ldmatrix.m8n8.x{}{}.b16", count.num_matrices(), if transposed { ".trans" } else { "" }),
                layout: ldmatrix_fragment(count, transposed),
            });
        }
    }
    all
}

type Primitive = fn(&[usize]) -> crate::Result<RegisterLayout>;

/// A primitive of a constant, valid shape (sizes 1..=32): construction cannot fail.
fn primitive(constructor: Primitive, shape: &[usize]) -> RegisterLayout {
    constructor(shape).expect("constant fragment shapes are non-zero and small")
}

/// The composition of constant rank-2 factors: cannot fail.
fn product(factors: &[RegisterLayout]) -> RegisterLayout {
    factors.iter().fold(RegisterLayout::unit(), |acc, f| {
        acc.compose(f).expect("constant fragment factors have rank 2 and small sizes")
    })
}
