//! The e-graph language of index arithmetic, its exact semantics, and the constant-and-range
//! analysis.
//!
//! Every node carries its integer type ([`IntTy`]): the same operation on `u8` and on `i32`
//! are different nodes, and a rule instantiated for one type never matches the other. Values
//! are kept as `i64`s holding the *decoded* value of the type (`-128..=127` for `i8`,
//! `0..=255` for `u8`), which is also how constants are written back as literals (a literal
//! must fit its type).

use std::collections::HashMap;
use std::fmt;

use anybit_ir::DType;
use anybit_ir::program::BinaryOp;
use egg::{DidMerge, EGraph, Id, Language};

/// An integer type: width (1 to 32 bits) and signedness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IntTy {
    bits: u8,
    signed: bool,
}

impl IntTy {
    /// `uN` (1 ≤ N ≤ 32) or `iN` (2 ≤ N ≤ 32), as `anybit` has them.
    pub fn new(bits: u32, signed: bool) -> Option<IntTy> {
        let ok = if signed { (2..=32).contains(&bits) } else { (1..=32).contains(&bits) };
        ok.then_some(IntTy { bits: bits as u8, signed })
    }

    /// The type of an integer `DType`.
    pub fn from_dtype(dtype: DType) -> Option<IntTy> {
        match dtype {
            DType::Int(_) => IntTy::new(dtype.bits(), true),
            DType::Uint(_) => IntTy::new(dtype.bits(), false),
            DType::Float(_) => None,
        }
    }

    /// The `DType` (always `Some`: every `IntTy` is one `DType` accepts).
    pub fn dtype(self) -> Option<DType> {
        if self.signed { DType::int(u32::from(self.bits)).ok() } else { DType::uint(u32::from(self.bits)).ok() }
    }

    /// Width in bits.
    pub fn bits(self) -> u32 {
        u32::from(self.bits)
    }

    /// Whether the type is signed.
    pub fn signed(self) -> bool {
        self.signed
    }

    /// The smallest value.
    pub fn min(self) -> i64 {
        if self.signed { -(1i64 << (self.bits - 1)) } else { 0 }
    }

    /// The largest value.
    pub fn max(self) -> i64 {
        if self.signed { (1i64 << (self.bits - 1)) - 1 } else { (1i64 << self.bits) - 1 }
    }

    /// The whole range of the type.
    pub fn full(self) -> Range {
        Range { lo: self.min(), hi: self.max() }
    }

    /// The value of `v` modulo 2^N, as the type reads it.
    pub fn wrap(self, v: i128) -> i64 {
        let mask = (1i128 << self.bits) - 1;
        let code = v & mask;
        let value = if self.signed && code >= (1i128 << (self.bits - 1)) { code - (1i128 << self.bits) } else { code };
        value as i64
    }

    /// The bits of a value (its code), as an unsigned number.
    pub fn code(self, v: i64) -> u64 {
        (v as u64) & ((1u64 << self.bits) - 1)
    }

    /// Whether `v` is a value of the type.
    pub fn contains(self, v: i64) -> bool {
        (self.min()..=self.max()).contains(&v)
    }

    /// The value with every bit set: −1 for signed types, 2^N − 1 for unsigned ones.
    pub fn all_ones(self) -> i64 {
        self.wrap(-1)
    }
}

impl fmt::Display for IntTy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", if self.signed { "i" } else { "u" }, self.bits)
    }
}

/// The scalar integer operations the e-graph knows (the binary operations of the IR).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IndexOp {
    /// `add`, wrapping.
    Add,
    /// `sub`, wrapping.
    Sub,
    /// `mul`, wrapping.
    Mul,
    /// `div`, rounding toward −∞.
    Div,
    /// `rem`, with the divisor's sign.
    Rem,
    /// `cdiv`, rounding toward +∞.
    CeilDiv,
    /// `min`.
    Min,
    /// `max`.
    Max,
    /// `and`.
    And,
    /// `or`.
    Or,
    /// `xor`.
    Xor,
    /// `shl` (0 for amounts of N bits or more).
    Shl,
    /// `shr`: logical for unsigned, arithmetic for signed types.
    Shr,
}

impl IndexOp {
    /// Every operation.
    pub const ALL: [IndexOp; 13] = [
        IndexOp::Add,
        IndexOp::Sub,
        IndexOp::Mul,
        IndexOp::Div,
        IndexOp::Rem,
        IndexOp::CeilDiv,
        IndexOp::Min,
        IndexOp::Max,
        IndexOp::And,
        IndexOp::Or,
        IndexOp::Xor,
        IndexOp::Shl,
        IndexOp::Shr,
    ];

    /// The operation of an IR binary operation.
    pub fn from_binary(op: BinaryOp) -> Option<IndexOp> {
        IndexOp::ALL.into_iter().find(|o| o.binary() == op)
    }

    /// The IR binary operation.
    pub fn binary(self) -> BinaryOp {
        match self {
            IndexOp::Add => BinaryOp::Add,
            IndexOp::Sub => BinaryOp::Sub,
            IndexOp::Mul => BinaryOp::Mul,
            IndexOp::Div => BinaryOp::Div,
            IndexOp::Rem => BinaryOp::Rem,
            IndexOp::CeilDiv => BinaryOp::CeilDiv,
            IndexOp::Min => BinaryOp::Min,
            IndexOp::Max => BinaryOp::Max,
            IndexOp::And => BinaryOp::And,
            IndexOp::Or => BinaryOp::Or,
            IndexOp::Xor => BinaryOp::Xor,
            IndexOp::Shl => BinaryOp::Shl,
            IndexOp::Shr => BinaryOp::Shr,
        }
    }

    /// The name in the kernel language (`add`, …, `cdiv`).
    pub fn name(self) -> &'static str {
        self.binary().name()
    }

    /// The operation called `name` in the kernel language.
    pub fn from_name(name: &str) -> Option<IndexOp> {
        BinaryOp::from_name(name).and_then(IndexOp::from_binary)
    }

    /// Whether the operation divides by its right operand (and so fails when it is 0).
    pub fn divides(self) -> bool {
        matches!(self, IndexOp::Div | IndexOp::Rem | IndexOp::CeilDiv)
    }
}

/// ⌊a / b⌋ for b ≠ 0.
fn floor_div(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b != 0 && ((a < 0) != (b < 0)) { q - 1 } else { q }
}

/// `op(a, b)` in type `ty`, exactly as the interpreter computes it (`a` and `b` are values of
/// the type); `None` for a division by zero.
pub fn eval(ty: IntTy, op: IndexOp, a: i64, b: i64) -> Option<i64> {
    let (x, y) = (i128::from(a), i128::from(b));
    let bits = ty.bits();
    Some(match op {
        IndexOp::Add => ty.wrap(x + y),
        IndexOp::Sub => ty.wrap(x - y),
        IndexOp::Mul => ty.wrap(x * y),
        IndexOp::Div | IndexOp::Rem | IndexOp::CeilDiv => {
            if y == 0 {
                return None;
            }
            ty.wrap(match op {
                IndexOp::Div => floor_div(x, y),
                IndexOp::Rem => x - y * floor_div(x, y),
                _ => -floor_div(-x, y),
            })
        }
        IndexOp::Min => a.min(b),
        IndexOp::Max => a.max(b),
        IndexOp::And => ty.wrap(i128::from(ty.code(a) & ty.code(b))),
        IndexOp::Or => ty.wrap(i128::from(ty.code(a) | ty.code(b))),
        IndexOp::Xor => ty.wrap(i128::from(ty.code(a) ^ ty.code(b))),
        // The amount is the code read as unsigned.
        IndexOp::Shl => {
            let amount = ty.code(b);
            if amount >= u64::from(bits) { 0 } else { ty.wrap(x << amount) }
        }
        IndexOp::Shr => ty.wrap(x >> ty.code(b).min(63)),
    })
}

/// An interval of values `lo..=hi` (never empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Range {
    /// The smallest possible value.
    pub lo: i64,
    /// The largest possible value.
    pub hi: i64,
}

impl Range {
    /// `lo..=hi`.
    pub fn new(lo: i64, hi: i64) -> Range {
        Range { lo, hi }
    }

    /// The single value `v`.
    pub fn point(v: i64) -> Range {
        Range { lo: v, hi: v }
    }

    /// The value, if the interval holds one.
    pub fn constant(self) -> Option<i64> {
        (self.lo == self.hi).then_some(self.lo)
    }

    /// Whether `v` lies in the interval.
    pub fn contains(self, v: i64) -> bool {
        self.lo <= v && v <= self.hi
    }

    /// Whether every value is ≥ 0.
    pub fn nonnegative(self) -> bool {
        self.lo >= 0
    }
}

/// The interval `lo..=hi` when it lies inside the type (no wraparound happened), else the
/// whole type.
fn fit(ty: IntTy, lo: i128, hi: i128) -> Range {
    if lo >= i128::from(ty.min()) && hi <= i128::from(ty.max()) && lo <= hi {
        Range::new(lo as i64, hi as i64)
    } else {
        ty.full()
    }
}

fn corners(ty: IntTy, a: Range, b: Range, f: impl Fn(i128, i128) -> i128) -> Range {
    let values = [
        f(a.lo.into(), b.lo.into()),
        f(a.lo.into(), b.hi.into()),
        f(a.hi.into(), b.lo.into()),
        f(a.hi.into(), b.hi.into()),
    ];
    fit(ty, values.iter().copied().min().unwrap_or(0), values.iter().copied().max().unwrap_or(0))
}

/// The smallest `2^k − 1` that is ≥ `v` (for `v ≥ 0`).
fn ones_above(v: i64) -> i64 {
    let v = v.max(0) as u64;
    let bits = 64 - v.leading_zeros();
    if bits >= 63 { i64::MAX } else { (1i64 << bits) - 1 }
}

/// The interval of `op(x, y)` for `x` in `a` and `y` in `b` (a sound over-approximation; the
/// whole type when in doubt). For the divisions, a divisor interval holding 0 gives the whole
/// type.
pub fn transfer(ty: IntTy, op: IndexOp, a: Range, b: Range) -> Range {
    if let (Some(x), Some(y)) = (a.constant(), b.constant())
        && let Some(v) = eval(ty, op, x, y)
    {
        return Range::point(v);
    }
    let full = ty.full();
    match op {
        IndexOp::Add => fit(ty, i128::from(a.lo) + i128::from(b.lo), i128::from(a.hi) + i128::from(b.hi)),
        IndexOp::Sub => fit(ty, i128::from(a.lo) - i128::from(b.hi), i128::from(a.hi) - i128::from(b.lo)),
        IndexOp::Mul => corners(ty, a, b, |x, y| x * y),
        IndexOp::Div | IndexOp::CeilDiv if b.contains(0) => full,
        // For a divisor of one sign, ⌊x/y⌋ and ⌈x/y⌉ are monotone in x and in y on each side
        // of x = 0, so the extremes are at the corners.
        IndexOp::Div => corners(ty, a, b, floor_div),
        IndexOp::CeilDiv => corners(ty, a, b, |x, y| -floor_div(-x, y)),
        IndexOp::Rem if b.contains(0) => full,
        IndexOp::Rem if b.lo > 0 => {
            if a.lo >= 0 && a.hi < b.lo {
                a
            } else if a.lo >= 0 {
                Range::new(0, a.hi.min(b.hi - 1))
            } else {
                Range::new(0, b.hi - 1)
            }
        }
        IndexOp::Rem => {
            if a.hi <= 0 && a.lo > b.hi {
                a
            } else if a.hi <= 0 {
                Range::new(a.lo.max(b.lo + 1), 0)
            } else {
                Range::new(b.lo + 1, 0)
            }
        }
        IndexOp::Min => Range::new(a.lo.min(b.lo), a.hi.min(b.hi)),
        IndexOp::Max => Range::new(a.lo.max(b.lo), a.hi.max(b.hi)),
        IndexOp::And => match (a.nonnegative(), b.nonnegative()) {
            (true, true) => Range::new(0, a.hi.min(b.hi)),
            (true, false) => Range::new(0, a.hi),
            (false, true) => Range::new(0, b.hi),
            (false, false) => full,
        },
        IndexOp::Or if a.nonnegative() && b.nonnegative() => Range::new(a.lo.max(b.lo), ones_above(a.hi.max(b.hi))),
        IndexOp::Xor if a.nonnegative() && b.nonnegative() => Range::new(0, ones_above(a.hi.max(b.hi))),
        IndexOp::Or | IndexOp::Xor => full,
        IndexOp::Shl => match b.constant().map(|k| ty.code(k)) {
            Some(k) if k >= u64::from(ty.bits()) => Range::point(0),
            Some(k) => fit(ty, i128::from(a.lo) << k, i128::from(a.hi) << k),
            None => full,
        },
        IndexOp::Shr => {
            // Amounts as the interpreter reads them: nonnegative values are their own codes,
            // negative ones are codes of 2^(N−1) or more, at least N: a shift by 63.
            let mut amounts = Vec::with_capacity(3);
            if b.hi >= 0 {
                amounts.push(b.lo.clamp(0, 63) as u32);
                amounts.push(b.hi.min(63) as u32);
            }
            if b.lo < 0 {
                amounts.push(63);
            }
            let values: Vec<i64> = amounts.iter().flat_map(|&s| [a.lo >> s, a.hi >> s]).collect();
            Range::new(values.iter().copied().min().unwrap_or(a.lo), values.iter().copied().max().unwrap_or(a.hi))
        }
    }
}

/// A node of the index e-graph.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IndexNode {
    /// A constant of a type (its decoded value).
    Const(IntTy, i64),
    /// A value the pass does not look into (a parameter, a loop index, the result of another
    /// instruction), by the index of its `ValueId`.
    Leaf(IntTy, u32),
    /// `block_index` along axis 0, 1 or 2 (an `i32`).
    BlockIndex(u8),
    /// A binary operation on two operands of its type.
    Bin(IndexOp, IntTy, [Id; 2]),
}

impl IndexNode {
    /// The type of the node's value.
    pub fn ty(&self) -> IntTy {
        match self {
            IndexNode::Const(ty, _) | IndexNode::Leaf(ty, _) | IndexNode::Bin(_, ty, _) => *ty,
            IndexNode::BlockIndex(_) => IntTy { bits: 32, signed: true },
        }
    }
}

/// What decides whether two nodes match, children aside.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// A constant.
    Const(IntTy, i64),
    /// A leaf.
    Leaf(IntTy, u32),
    /// A block index.
    BlockIndex(u8),
    /// An operation.
    Bin(IndexOp, IntTy),
}

impl Language for IndexNode {
    type Discriminant = NodeKind;

    fn discriminant(&self) -> NodeKind {
        match self {
            IndexNode::Const(ty, v) => NodeKind::Const(*ty, *v),
            IndexNode::Leaf(ty, v) => NodeKind::Leaf(*ty, *v),
            IndexNode::BlockIndex(a) => NodeKind::BlockIndex(*a),
            IndexNode::Bin(op, ty, _) => NodeKind::Bin(*op, *ty),
        }
    }

    fn matches(&self, other: &IndexNode) -> bool {
        self.discriminant() == other.discriminant()
    }

    fn children(&self) -> &[Id] {
        match self {
            IndexNode::Bin(_, _, args) => args,
            _ => &[],
        }
    }

    fn children_mut(&mut self) -> &mut [Id] {
        match self {
            IndexNode::Bin(_, _, args) => args,
            _ => &mut [],
        }
    }
}

impl fmt::Display for IndexNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexNode::Const(ty, v) => write!(f, "{v}:{ty}"),
            IndexNode::Leaf(ty, v) => write!(f, "leaf{v}:{ty}"),
            IndexNode::BlockIndex(a) => write!(f, "block_index{a}"),
            IndexNode::Bin(op, ty, _) => write!(f, "{}.{ty}", op.name()),
        }
    }
}

/// What the analysis knows of an e-class: its type and an interval holding its value (a
/// constant when the interval is one value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    /// The type of every node of the class.
    pub ty: IntTy,
    /// The interval.
    pub range: Range,
}

impl Facts {
    /// The constant value, if known.
    pub fn constant(&self) -> Option<i64> {
        self.range.constant()
    }
}

/// The e-class analysis: constants (folded with the exact semantics of the type) and value
/// intervals. Leaves and block indices get the intervals the pass proved for them.
#[derive(Clone, Debug, Default)]
pub struct IndexAnalysis {
    /// Intervals of leaves, by value index (a leaf not listed has its type's range).
    pub leaf_ranges: HashMap<u32, Range>,
    /// Intervals of `block_index` x, y, z.
    pub block_ranges: [Option<Range>; 3],
}

/// The e-graph of the pass.
pub type IndexEGraph = EGraph<IndexNode, IndexAnalysis>;

impl egg::Analysis<IndexNode> for IndexAnalysis {
    type Data = Facts;

    fn make(egraph: &mut IndexEGraph, enode: &IndexNode, _id: Id) -> Facts {
        let ty = enode.ty();
        let range = match enode {
            IndexNode::Const(_, v) => Range::point(*v),
            IndexNode::Leaf(_, v) => egraph.analysis.leaf_ranges.get(v).copied().unwrap_or(ty.full()),
            IndexNode::BlockIndex(a) => {
                egraph.analysis.block_ranges.get(usize::from(*a)).copied().flatten().unwrap_or(ty.full())
            }
            IndexNode::Bin(op, _, [a, b]) => transfer(ty, *op, egraph[*a].data.range, egraph[*b].data.range),
        };
        Facts { ty, range }
    }

    fn merge(&mut self, a: &mut Facts, b: Facts) -> DidMerge {
        let lo = a.range.lo.max(b.range.lo);
        let hi = a.range.hi.min(b.range.hi);
        if a.ty != b.ty || lo > hi {
            // Cannot happen with sound rules (both intervals hold every value the class takes);
            // keep what is there rather than claim an empty set.
            return DidMerge(false, true);
        }
        let merged = Range::new(lo, hi);
        let changed_a = merged != a.range;
        let changed_b = merged != b.range;
        a.range = merged;
        DidMerge(changed_a, changed_b)
    }

    fn modify(egraph: &mut IndexEGraph, id: Id) {
        let facts = egraph[id].data;
        if let Some(v) = facts.constant() {
            let c = egraph.add(IndexNode::Const(facts.ty, v));
            egraph.union(id, c);
        }
    }
}
