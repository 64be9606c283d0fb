//! The instructions of the tile IR.
//!
//! Every instruction is one [`Op`] stored in the kernel's instruction arena, with the values it
//! defines. Operands are [`Operand`]s: a value, or a literal whose type comes from the other
//! operands. The names in the kernel language are those of [`Op::mnemonic`] and of the
//! operation enums' `name` methods.

use std::fmt;

use anybit_layouts::RegisterLayout;

use super::types::{RegisterTensorType, SharedTensorType};
use super::{Block, ValueId};
use crate::dtype::DType;

/// A literal operand: an integer or a float, typed by the instruction that uses it.
#[derive(Clone, Copy, Debug)]
pub enum Literal {
    /// An integer.
    Int(i64),
    /// A float (kept exactly as written: the printer writes the shortest text that reads back).
    Float(f64),
}

impl PartialEq for Literal {
    /// Float literals compare by bits (`-0.0 ≠ 0.0`), except that all NaNs are one literal
    /// (`nan` in the text: a NaN's payload and sign are not values).
    fn eq(&self, other: &Literal) -> bool {
        match (self, other) {
            (Literal::Int(a), Literal::Int(b)) => a == b,
            (Literal::Float(a), Literal::Float(b)) => a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            _ => false,
        }
    }
}

impl Eq for Literal {}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Int(v) => write!(f, "{v}"),
            Literal::Float(v) if v.is_nan() => f.write_str("nan"),
            Literal::Float(v) if v.is_infinite() => f.write_str(if *v > 0.0 { "inf" } else { "-inf" }),
            // `{:?}` is the shortest text that reads back to the same f64 and always has a '.'
            // or an exponent, so it never reads back as an integer.
            Literal::Float(v) => write!(f, "{v:?}"),
        }
    }
}

impl From<i64> for Literal {
    fn from(v: i64) -> Literal {
        Literal::Int(v)
    }
}

impl From<f64> for Literal {
    fn from(v: f64) -> Literal {
        Literal::Float(v)
    }
}

/// An instruction operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    /// A value defined earlier.
    Value(ValueId),
    /// A literal, converted to the element type the instruction needs.
    Literal(Literal),
}

impl From<ValueId> for Operand {
    fn from(v: ValueId) -> Operand {
        Operand::Value(v)
    }
}

impl From<Literal> for Operand {
    fn from(l: Literal) -> Operand {
        Operand::Literal(l)
    }
}

impl From<i64> for Operand {
    fn from(v: i64) -> Operand {
        Operand::Literal(Literal::Int(v))
    }
}

impl From<f64> for Operand {
    fn from(v: f64) -> Operand {
        Operand::Literal(Literal::Float(v))
    }
}

impl Operand {
    /// The value, if the operand is one.
    pub fn value(self) -> Option<ValueId> {
        match self {
            Operand::Value(v) => Some(v),
            Operand::Literal(_) => None,
        }
    }
}

macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every variant.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name in the kernel language.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The variant of a name in the kernel language.
            pub fn from_name(name: &str) -> Option<$name> {
                match name {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

named_enum! {
    /// Elementwise operations of one operand.
    UnaryOp {
        /// −x.
        Neg => "neg",
        /// |x|.
        Abs => "abs",
        /// Bitwise complement (integers).
        Not => "not",
        /// e^x (floats).
        Exp => "exp",
        /// 2^x (floats).
        Exp2 => "exp2",
        /// Natural logarithm (floats).
        Log => "log",
        /// Base-2 logarithm (floats).
        Log2 => "log2",
        /// Square root (floats).
        Sqrt => "sqrt",
        /// 1/√x (floats).
        Rsqrt => "rsqrt",
        /// 1/x (floats).
        Recip => "recip",
        /// tanh x (floats).
        Tanh => "tanh",
    }
}

named_enum! {
    /// Elementwise operations of two operands of the same element type.
    BinaryOp {
        /// x + y (integers wrap around).
        Add => "add",
        /// x − y.
        Sub => "sub",
        /// x · y.
        Mul => "mul",
        /// x / y: floats divide; integers divide rounding toward −∞ (floor), by 0 is an error.
        Div => "div",
        /// Integer remainder with the divisor's sign (x − y·floor(x/y)).
        Rem => "rem",
        /// ⌈x / y⌉ for integers.
        CeilDiv => "cdiv",
        /// The smaller.
        Min => "min",
        /// The larger.
        Max => "max",
        /// Bitwise and (integers).
        And => "and",
        /// Bitwise or.
        Or => "or",
        /// Bitwise exclusive or.
        Xor => "xor",
        /// x shifted left by y bits (0 when y ≥ width).
        Shl => "shl",
        /// x shifted right by y bits: logical for unsigned, arithmetic for signed types.
        Shr => "shr",
    }
}

named_enum! {
    /// Comparisons; the result is `u1` (1 for true).
    CompareOp {
        /// Equal.
        Eq => "eq",
        /// Not equal.
        Ne => "ne",
        /// Less than.
        Lt => "lt",
        /// Less or equal.
        Le => "le",
        /// Greater than.
        Gt => "gt",
        /// Greater or equal.
        Ge => "ge",
    }
}

named_enum! {
    /// How `reduce` combines the elements along the reduced dimensions.
    ReduceOp {
        /// Sum.
        Sum => "sum",
        /// Maximum.
        Max => "max",
        /// Minimum.
        Min => "min",
    }
}

named_enum! {
    /// A grid axis.
    Axis {
        /// The first grid dimension.
        X => "x",
        /// The second.
        Y => "y",
        /// The third.
        Z => "z",
    }
}

impl Axis {
    /// 0, 1 or 2.
    pub fn index(self) -> usize {
        match self {
            Axis::X => 0,
            Axis::Y => 1,
            Axis::Z => 2,
        }
    }
}

/// What an instruction does. See the kernel language reference (`docs/language.md`) for the
/// exact semantics of each; the CPU interpreter is their executable definition.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    // ----- uniform scalars -----
    /// A scalar constant: `%c = const 128 : i32`.
    Const {
        /// The value.
        value: Literal,
        /// Its type.
        dtype: DType,
    },
    /// The block's index along a grid axis (an `i32`): `%b = block_index x`.
    BlockIndex {
        /// Which axis.
        axis: Axis,
    },

    // ----- elementwise (scalars, or register tensors with scalars broadcast) -----
    /// `%y = exp %x`.
    Unary {
        /// The operation.
        op: UnaryOp,
        /// The operand.
        x: Operand,
    },
    /// `%z = add %x, %y`.
    Binary {
        /// The operation.
        op: BinaryOp,
        /// Left operand.
        lhs: Operand,
        /// Right operand.
        rhs: Operand,
    },
    /// `%d = fma %a, %b, %c`: `a · b + c` rounded once (a fused multiply-add), elementwise
    /// like the binary operations, on `f32` only.
    Fma {
        /// Multiplicand.
        a: Operand,
        /// Multiplier.
        b: Operand,
        /// Addend.
        c: Operand,
    },
    /// `%m = lt %x, %y` (result `u1`).
    Compare {
        /// The comparison.
        op: CompareOp,
        /// Left operand.
        lhs: Operand,
        /// Right operand.
        rhs: Operand,
    },
    /// `%z = select %m, %x, %y`: `x` where `m` is 1, else `y`.
    Select {
        /// The `u1` condition.
        cond: Operand,
        /// Chosen where the condition holds.
        on_true: Operand,
        /// Chosen elsewhere.
        on_false: Operand,
    },
    /// `%y = cast %x : f16`: value conversion, rounding to nearest even and saturating (IEEE
    /// types overflow to ±inf), as [`DType::encode`].
    Cast {
        /// The operand.
        x: Operand,
        /// The target element type.
        to: DType,
    },
    /// Decode codes through a table: `%w = lookup %q [-127, -104, …, 113] : f16`. The operand
    /// (a scalar or register tensor) has an unsigned integer element type `uN`, N ≤ 8, and the
    /// table exactly 2^N entries; each element of the result is the table entry its code
    /// selects, the entry converted to `to` as `const` converts a literal. This is the decode
    /// of lookup-table weight types (IQ4_NL, NF4): the storage is `uN`, the values the table's.
    Lookup {
        /// The codes.
        x: ValueId,
        /// Entry `c` is the value of code `c`.
        table: Vec<Literal>,
        /// The result's element type.
        to: DType,
    },

    // ----- register tensors -----
    /// A register tensor with every element set to a scalar (allocate registers):
    /// `%acc = fill 0.0 : f32[16, 8] layout @c`.
    Fill {
        /// The value of every element (converted to the element type).
        value: Operand,
        /// The tensor's type.
        ty: RegisterTensorType,
    },
    /// A register tensor whose elements are their own coordinate along `dim`:
    /// `%i = iota 1 : i32[16, 8]`.
    Iota {
        /// The dimension whose coordinate each element holds.
        dim: usize,
        /// The tensor's type (an integer element type).
        ty: RegisterTensorType,
    },
    /// Reinterpret the bits each thread holds as another element type and layout:
    /// `%w4 = view %w8 : u4[16, 32] layout @b`. Every thread must hold the same number of
    /// bits before and after; the bits of a thread's slots are concatenated in slot order,
    /// least significant first.
    View {
        /// The tensor reinterpreted.
        x: ValueId,
        /// The new type.
        ty: RegisterTensorType,
    },
    /// Repeat each element into a block of the result: `result[i] = x[i / (result_d / x_d)]`
    /// per dimension (so size-1 dims broadcast): `%s = broadcast %g : f16[128, 64]`.
    Broadcast {
        /// The tensor repeated; each of its dims divides the result's.
        x: ValueId,
        /// The result type.
        ty: RegisterTensorType,
    },
    /// Combine elements along dimensions: `%r = reduce sum %x dims [1] keep`.
    Reduce {
        /// How elements combine.
        op: ReduceOp,
        /// The tensor reduced.
        x: ValueId,
        /// Dimensions reduced, increasing.
        dims: Vec<usize>,
        /// Whether reduced dims stay (with size 1) or are removed.
        keep_dims: bool,
        /// The result's layout, when known.
        layout: Option<RegisterLayout>,
    },
    /// Tile matrix multiply-accumulate `c + a · b`: a [M, K], b [K, N], c [M, N].
    /// Products are exact and accumulate in c's type in increasing k, each addition rounded.
    Dot {
        /// [M, K].
        a: ValueId,
        /// [K, N].
        b: ValueId,
        /// [M, N] accumulator; the result has its type.
        c: ValueId,
    },

    // ----- global memory -----
    /// A view of a pointer parameter: `%g = global_view %w [%k, %n] strides [%n, 1]`
    /// (row-major strides when omitted). Shapes and strides are scalar integers, in elements.
    GlobalView {
        /// The pointer parameter.
        ptr: ValueId,
        /// Dynamic shape.
        shape: Vec<Operand>,
        /// Dynamic strides, in elements.
        strides: Vec<Operand>,
    },
    /// Load the tile at `offsets` (coordinates of its first element) of a global view:
    /// `%x = load_global %g [%m0, %k0] : f16[16, 64]`. Elements outside the view's shape are
    /// not read and come back as 0 (the bounds mask). Written `… inside [1]`, the kernel
    /// promises that along dim 1 the tile lies inside the view (`0 ≤ origin` and
    /// `origin + size ≤ extent`): the backend tests no bound along it, and the interpreter
    /// reports a run where the promise fails.
    LoadGlobal {
        /// The global view.
        src: ValueId,
        /// Tile origin in the view's coordinates.
        offsets: Vec<Operand>,
        /// The loaded tile's type (its element type is the view's).
        ty: RegisterTensorType,
        /// The dims along which the tile is promised inside the view, increasing.
        inside: Vec<usize>,
    },
    /// Store a register tile at `offsets` of a global view; elements outside the view's shape
    /// are not written: `store_global %y, %g [%m0, %n0]`.
    StoreGlobal {
        /// The register tile stored.
        value: ValueId,
        /// The global view.
        dst: ValueId,
        /// Tile origin in the view's coordinates.
        offsets: Vec<Operand>,
    },

    // ----- shared memory -----
    /// Allocate a shared tile: `%s = alloc_shared : f16[64, 64] layout row_major(64,64)`.
    AllocShared {
        /// Its type.
        ty: SharedTensorType,
    },
    /// Release a shared tile (its bytes may be reused by later allocations):
    /// `free_shared %s`. Tiles not freed are released at the end of the kernel.
    FreeShared {
        /// The tile.
        tensor: ValueId,
    },
    /// Load the sub-tile at `offsets` of a shared tile: `%a = load_shared %s [0, %k] : f16[16, 16]`.
    LoadShared {
        /// The shared tile.
        src: ValueId,
        /// Sub-tile origin.
        offsets: Vec<Operand>,
        /// The loaded tile's type.
        ty: RegisterTensorType,
    },
    /// Store a register tile into a shared tile at `offsets`: `store_shared %x, %s [0, 0]`.
    StoreShared {
        /// The register tile stored.
        value: ValueId,
        /// The shared tile.
        dst: ValueId,
        /// Sub-tile origin.
        offsets: Vec<Operand>,
    },
    /// Start copying a tile of `shape` from a global view to a shared tile, asynchronously
    /// (`cp.async`); elements outside the view are zero-filled. The copy completes at a
    /// `wait_group` that covers its group; other threads see it after a following `sync`:
    /// `copy_async %g [%k0, %n0], %s [0, 0] : [64, 64]`.
    CopyAsync {
        /// The global view.
        src: ValueId,
        /// Origin in the view.
        src_offsets: Vec<Operand>,
        /// The shared tile.
        dst: ValueId,
        /// Origin in the shared tile.
        dst_offsets: Vec<Operand>,
        /// The copied tile's shape.
        shape: Vec<usize>,
    },
    /// Close the group of asynchronous copies issued since the last commit: `commit_group`.
    CommitGroup,
    /// Wait until at most `pending` committed groups are still in flight: `wait_group 0`.
    WaitGroup {
        /// Groups allowed to stay in flight.
        pending: u32,
    },
    /// Barrier of all threads of the block; shared memory written before it is visible to
    /// every thread after it: `sync`.
    Sync,

    // ----- structured control flow -----
    /// A counted loop with loop-carried values:
    /// `%acc = for %k = 0 to %kt step 64 unroll 2 iter (%a = %acc0) { … yield %a2 }`.
    /// The results are the carried values after the last iteration (the initial values when
    /// the loop runs zero times).
    For {
        /// First index value.
        start: Operand,
        /// The loop runs while index < end.
        end: Operand,
        /// Index increment (positive).
        step: Operand,
        /// Unroll hint for code generation (no effect on meaning).
        unroll: Option<u32>,
        /// The index value, defined inside the body.
        index: ValueId,
        /// The carried values as seen inside the body, one per result.
        carried: Vec<ValueId>,
        /// Their initial values.
        inits: Vec<Operand>,
        /// The body; it yields the next carried values.
        body: Block,
    },
    /// A two-way branch on a uniform scalar: `%r = if %c { … yield %x } else { … yield %y }`.
    If {
        /// The condition (`u1`, or any integer: nonzero is true).
        cond: Operand,
        /// Runs when the condition holds; yields the results.
        then_body: Block,
        /// Runs otherwise; yields the results.
        else_body: Block,
    },
}

impl Op {
    /// The instruction's name in the kernel language.
    pub fn mnemonic(&self) -> &'static str {
        match self {
            Op::Const { .. } => "const",
            Op::BlockIndex { .. } => "block_index",
            Op::Unary { op, .. } => op.name(),
            Op::Binary { op, .. } => op.name(),
            Op::Compare { op, .. } => op.name(),
            Op::Select { .. } => "select",
            Op::Fma { .. } => "fma",
            Op::Cast { .. } => "cast",
            Op::Lookup { .. } => "lookup",
            Op::Fill { .. } => "fill",
            Op::Iota { .. } => "iota",
            Op::View { .. } => "view",
            Op::Broadcast { .. } => "broadcast",
            Op::Reduce { .. } => "reduce",
            Op::Dot { .. } => "dot",
            Op::GlobalView { .. } => "global_view",
            Op::LoadGlobal { .. } => "load_global",
            Op::StoreGlobal { .. } => "store_global",
            Op::AllocShared { .. } => "alloc_shared",
            Op::FreeShared { .. } => "free_shared",
            Op::LoadShared { .. } => "load_shared",
            Op::StoreShared { .. } => "store_shared",
            Op::CopyAsync { .. } => "copy_async",
            Op::CommitGroup => "commit_group",
            Op::WaitGroup { .. } => "wait_group",
            Op::Sync => "sync",
            Op::For { .. } => "for",
            Op::If { .. } => "if",
        }
    }

    /// Every operand that is not inside a nested block, in order.
    pub fn operands(&self) -> Vec<Operand> {
        let values = |vs: &[ValueId]| vs.iter().map(|&v| Operand::Value(v)).collect::<Vec<_>>();
        match self {
            Op::Const { .. } | Op::BlockIndex { .. } | Op::Iota { .. } | Op::AllocShared { .. } => vec![],
            Op::CommitGroup | Op::WaitGroup { .. } | Op::Sync => vec![],
            Op::Unary { x, .. } | Op::Cast { x, .. } => vec![*x],
            Op::Binary { lhs, rhs, .. } | Op::Compare { lhs, rhs, .. } => vec![*lhs, *rhs],
            Op::Select { cond, on_true, on_false } => vec![*cond, *on_true, *on_false],
            Op::Fma { a, b, c } => vec![*a, *b, *c],
            Op::Fill { value, .. } => vec![*value],
            Op::View { x, .. } | Op::Broadcast { x, .. } | Op::Reduce { x, .. } | Op::Lookup { x, .. } => values(&[*x]),
            Op::Dot { a, b, c } => values(&[*a, *b, *c]),
            Op::GlobalView { ptr, shape, strides } => {
                values(&[*ptr]).into_iter().chain(shape.iter().copied()).chain(strides.iter().copied()).collect()
            }
            Op::LoadGlobal { src, offsets, .. } | Op::LoadShared { src, offsets, .. } => {
                values(&[*src]).into_iter().chain(offsets.iter().copied()).collect()
            }
            Op::StoreGlobal { value, dst, offsets } | Op::StoreShared { value, dst, offsets } => {
                values(&[*value, *dst]).into_iter().chain(offsets.iter().copied()).collect()
            }
            Op::FreeShared { tensor } => values(&[*tensor]),
            Op::CopyAsync { src, src_offsets, dst, dst_offsets, .. } => values(&[*src])
                .into_iter()
                .chain(src_offsets.iter().copied())
                .chain(values(&[*dst]))
                .chain(dst_offsets.iter().copied())
                .collect(),
            Op::For { start, end, step, inits, .. } => {
                [*start, *end, *step].into_iter().chain(inits.iter().copied()).collect()
            }
            Op::If { cond, .. } => vec![*cond],
        }
    }

    /// The nested blocks (loop body, branches).
    pub fn blocks(&self) -> Vec<&Block> {
        match self {
            Op::For { body, .. } => vec![body],
            Op::If { then_body, else_body, .. } => vec![then_body, else_body],
            _ => vec![],
        }
    }

    /// Whether the instruction touches memory or synchronization (and so must not be removed
    /// or reordered freely).
    pub fn has_side_effects(&self) -> bool {
        matches!(
            self,
            Op::StoreGlobal { .. }
                | Op::StoreShared { .. }
                | Op::AllocShared { .. }
                | Op::FreeShared { .. }
                | Op::CopyAsync { .. }
                | Op::CommitGroup
                | Op::WaitGroup { .. }
                | Op::Sync
                | Op::For { .. }
                | Op::If { .. }
        )
    }
}
