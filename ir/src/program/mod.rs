//! The program model of the tile IR: modules, kernels, values, instructions, blocks.
//!
//! A [`Module`] holds named layout definitions and [`Kernel`]s. A kernel has typed parameters
//! (uniform scalars, and pointers to packed global memory of any element type), a grid given as
//! [`GridExpr`]s of its scalar parameters, a number of warps per block, and a body: a [`Block`]
//! of instructions. The body is a *thread-block-level* program: each instruction acts on the
//! whole block at once — scalars are uniform, register tensors are tiles spread over all
//! threads by a register layout, shared tensors live in the block's shared memory.
//!
//! Values are SSA: each is defined once (as a parameter, an instruction result, a loop index or
//! a loop-carried value) and never changes; register tensors are updated by defining new ones,
//! and loops carry them from one iteration to the next. Values and instructions live in the
//! kernel's [`Arena`]s and are referred to by typed handles ([`ValueId`], [`InstId`]); a
//! [`Block`] lists its instructions in order. Control flow is structured: counted `for` loops
//! and `if`/`else`, whose blocks `yield` values to their results.
//!
//! Equality of modules is structural and ignores source spans, so a module parsed from its
//! own printed text equals the original.

pub mod infer;
mod ops;
mod types;
mod via;

pub use ops::{Axis, BinaryOp, CompareOp, Literal, Op, Operand, ReduceOp, UnaryOp};
pub use types::{GlobalTensorType, RegisterTensorType, SharedTensorType, Type};
pub use via::{MmaShape, Via};

use std::fmt;

use anybit_layouts::{RegisterLayout, SharedLayout};

use crate::arena::{Arena, Handle};
use crate::diag::Span;
use crate::dtype::DType;

/// A handle to a value of a kernel.
pub type ValueId = Handle<ValueData>;
/// A handle to an instruction of a kernel.
pub type InstId = Handle<InstData>;

/// A compilation unit: named layouts and kernels.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Module {
    /// Layouts defined by name (`layout @c = local(2,1).spatial(8,4).local(1,2)`), printed by
    /// name wherever a tensor's layout equals one of them.
    pub layouts: Vec<NamedLayout>,
    /// The kernels, in order.
    pub kernels: Vec<Kernel>,
}

/// A named layout definition.
#[derive(Clone, Debug)]
pub struct NamedLayout {
    /// Its name, without the `@`.
    pub name: String,
    /// The layout.
    pub layout: LayoutDef,
    /// Where it was defined.
    pub span: Option<Span>,
}

impl PartialEq for NamedLayout {
    fn eq(&self, other: &NamedLayout) -> bool {
        self.name == other.name && self.layout == other.layout
    }
}

/// A layout that can be named: register or shared.
#[derive(Clone, Debug, PartialEq)]
pub enum LayoutDef {
    /// A register layout.
    Register(RegisterLayout),
    /// A shared layout.
    Shared(SharedLayout),
}

/// A kernel: parameters, grid, block size, body.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// Its name.
    pub name: String,
    /// Parameters, in order; each is also a value of the kernel.
    pub params: Vec<Param>,
    /// Grid size per axis (1 to 3 axes), from scalar parameters.
    pub grid: Vec<GridExpr>,
    /// Warps per block (32 threads each).
    pub warps: u32,
    /// Every value of the kernel.
    pub values: Arena<ValueData>,
    /// Every instruction of the kernel (those of nested blocks included).
    pub insts: Arena<InstData>,
    /// The top-level block. It yields nothing.
    pub body: Block,
    /// What the kernel assumes of its scalar arguments (`where k % 128 == 0`).
    pub assumptions: Vec<Assumption>,
    /// Where the kernel was defined.
    pub span: Option<Span>,
}

impl PartialEq for Kernel {
    fn eq(&self, other: &Kernel) -> bool {
        self.name == other.name
            && self.params == other.params
            && self.grid == other.grid
            && self.warps == other.warps
            && self.values == other.values
            && self.insts == other.insts
            && self.body == other.body
            && self.assumptions == other.assumptions
    }
}

/// A fact a kernel assumes of a scalar argument, stated in its header after the parameters:
/// `where k % 128 == 0`. Hosts refuse a launch that breaks it — the interpreter, and the
/// runtime through the manifest's constraints — so passes may rely on it (the vectorizer
/// proves accesses aligned with it).
#[derive(Clone, Debug)]
pub struct Assumption {
    /// The position of the integer scalar parameter.
    pub param: usize,
    /// What it is a multiple of (at least 1).
    pub divisor: u64,
    /// Where it was written.
    pub span: Option<Span>,
}

impl PartialEq for Assumption {
    fn eq(&self, other: &Assumption) -> bool {
        self.param == other.param && self.divisor == other.divisor
    }
}

/// A kernel parameter.
#[derive(Clone, Debug)]
pub struct Param {
    /// Its name (also the name of its value).
    pub name: String,
    /// Its type.
    pub ty: ParamType,
    /// For a pointer: the shape of the buffer it points to (elements, row-major), as
    /// expressions of the scalar parameters — `x: ptr f16[m, k]`. Empty when not declared.
    /// Hosts (the interpreter, the runtime) check buffers against it and size new ones by it.
    pub shape: Vec<GridExpr>,
    /// For a pointer: the alignment of the buffer's address in bytes, when the kernel
    /// requires more than its element's (`x: ptr f16[m, k] align 16`): a power of two, checked
    /// by hosts before launching, relied on by the vectorizer.
    pub align: Option<u32>,
    /// The value that stands for it in the body.
    pub value: ValueId,
    /// Where it was declared.
    pub span: Option<Span>,
}

impl PartialEq for Param {
    fn eq(&self, other: &Param) -> bool {
        self.name == other.name
            && self.ty == other.ty
            && self.shape == other.shape
            && self.align == other.align
            && self.value == other.value
    }
}

impl Param {
    /// The number of elements of the buffer a pointer parameter declares, given the scalar
    /// parameters' values by position; `None` when no shape is declared.
    pub fn buffer_len(&self, params: &[Option<i64>]) -> Option<Result<u64, GridError>> {
        if self.shape.is_empty() {
            return None;
        }
        Some(self.shape.iter().try_fold(1u64, |n, d| {
            let d = d.eval_any(params)?;
            n.checked_mul(d).ok_or(GridError::OutOfRange(i128::from(n) * i128::from(d)))
        }))
    }
}

/// The type of a parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamType {
    /// A uniform scalar: `n: i32`.
    Scalar(DType),
    /// A pointer to packed global memory: `w: ptr u4`.
    Pointer(DType),
}

impl ParamType {
    /// The type of the parameter's value in the body.
    pub fn value_type(self) -> Type {
        match self {
            ParamType::Scalar(d) => Type::Scalar(d),
            ParamType::Pointer(d) => Type::Pointer(d),
        }
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamType::Scalar(d) => write!(f, "{d}"),
            ParamType::Pointer(d) => write!(f, "ptr {d}"),
        }
    }
}

/// A value: its name, type, and what defines it.
#[derive(Clone, Debug)]
pub struct ValueData {
    /// Its name, unique in the kernel, without the `%`.
    pub name: String,
    /// Its type.
    pub ty: Type,
    /// What defines it.
    pub def: ValueDef,
    /// Where it was defined.
    pub span: Option<Span>,
}

impl PartialEq for ValueData {
    fn eq(&self, other: &ValueData) -> bool {
        self.name == other.name && self.ty == other.ty && self.def == other.def
    }
}

/// What defines a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueDef {
    /// The parameter with this position.
    Param(usize),
    /// Result `index` of an instruction.
    Result(InstId, usize),
    /// The index of a `for` loop.
    LoopIndex(InstId),
    /// Carried value `index` of a `for` loop, inside its body.
    LoopCarried(InstId, usize),
}

/// An instruction: what it does, and the values it defines.
#[derive(Clone, Debug)]
pub struct InstData {
    /// The operation.
    pub op: Op,
    /// The values it defines, in order.
    pub results: Vec<ValueId>,
    /// How the backend implements it, when a selection pass decided (`via vector(8)`); no
    /// effect on its meaning.
    pub via: Option<Via>,
    /// Where it was written.
    pub span: Option<Span>,
}

impl InstData {
    /// An instruction with no results yet and no selection.
    pub fn new(op: Op, span: Option<Span>) -> InstData {
        InstData { op, results: Vec::new(), via: None, span }
    }
}

impl PartialEq for InstData {
    fn eq(&self, other: &InstData) -> bool {
        self.op == other.op && self.results == other.results && self.via == other.via
    }
}

/// A sequence of instructions, and the values it yields to its parent (a loop's next carried
/// values, a branch's results; the kernel body yields nothing).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Block {
    /// The instructions, in order.
    pub insts: Vec<InstId>,
    /// The yielded operands.
    pub yields: Vec<Operand>,
}

/// A grid size: an integer expression of the kernel's scalar parameters, evaluated on the
/// host before launch (`cdiv(n, 128)`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum GridExpr {
    /// A constant.
    Const(u64),
    /// The scalar parameter at this position.
    Param(usize),
    /// A binary operation.
    Binary(GridOp, Box<GridExpr>, Box<GridExpr>),
}

/// The operations of grid expressions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GridOp {
    /// +
    Add,
    /// −
    Sub,
    /// ×
    Mul,
    /// floor division
    Div,
    /// ceiling division
    CeilDiv,
    /// minimum
    Min,
    /// maximum
    Max,
}

impl GridOp {
    /// The function name in the kernel language (`add`, …, `cdiv`).
    pub fn name(self) -> &'static str {
        match self {
            GridOp::Add => "add",
            GridOp::Sub => "sub",
            GridOp::Mul => "mul",
            GridOp::Div => "div",
            GridOp::CeilDiv => "cdiv",
            GridOp::Min => "min",
            GridOp::Max => "max",
        }
    }

    /// The operation of a function name.
    pub fn from_name(name: &str) -> Option<GridOp> {
        [GridOp::Add, GridOp::Sub, GridOp::Mul, GridOp::Div, GridOp::CeilDiv, GridOp::Min, GridOp::Max]
            .into_iter()
            .find(|op| op.name() == name)
    }
}

/// Why a grid expression could not be evaluated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GridError {
    /// A parameter is missing, or not an integer scalar.
    #[error("grid expression uses parameter {0}, which has no integer value")]
    MissingParam(usize),
    /// A division by zero.
    #[error("grid expression divides by zero")]
    DivisionByZero,
    /// The result is negative or too large (2^31 and up for grid sizes, 2^64 for sizes).
    #[error("expression evaluates to {0}, which is out of range")]
    OutOfRange(i128),
}

impl GridExpr {
    /// ⌈a / b⌉.
    pub fn cdiv(a: GridExpr, b: GridExpr) -> GridExpr {
        GridExpr::Binary(GridOp::CeilDiv, Box::new(a), Box::new(b))
    }

    /// `op(a, b)`.
    pub fn binary(op: GridOp, a: GridExpr, b: GridExpr) -> GridExpr {
        GridExpr::Binary(op, Box::new(a), Box::new(b))
    }

    /// The value as a grid size (below 2^31), given the integer values of the scalar
    /// parameters by position.
    pub fn eval(&self, params: &[Option<i64>]) -> Result<u64, GridError> {
        let value = self.eval_wide(params)?;
        u64::try_from(value).ok().filter(|&v| v < (1 << 31)).ok_or(GridError::OutOfRange(value))
    }

    /// The value as any nonnegative 64-bit size (buffer dimensions).
    pub fn eval_any(&self, params: &[Option<i64>]) -> Result<u64, GridError> {
        let value = self.eval_wide(params)?;
        u64::try_from(value).map_err(|_| GridError::OutOfRange(value))
    }

    fn eval_wide(&self, params: &[Option<i64>]) -> Result<i128, GridError> {
        Ok(match self {
            GridExpr::Const(c) => i128::from(*c),
            GridExpr::Param(p) => i128::from(params.get(*p).copied().flatten().ok_or(GridError::MissingParam(*p))?),
            GridExpr::Binary(op, a, b) => {
                let (a, b) = (a.eval_wide(params)?, b.eval_wide(params)?);
                let nonzero = |b: i128| if b == 0 { Err(GridError::DivisionByZero) } else { Ok(b) };
                match op {
                    GridOp::Add => a + b,
                    GridOp::Sub => a - b,
                    GridOp::Mul => a.checked_mul(b).ok_or(GridError::OutOfRange(i128::MAX))?,
                    GridOp::Div => a.div_euclid(nonzero(b)?),
                    GridOp::CeilDiv => -((-a).div_euclid(nonzero(b)?)),
                    GridOp::Min => a.min(b),
                    GridOp::Max => a.max(b),
                }
            }
        })
    }
}

impl Kernel {
    /// The data of a value (panics on a foreign handle; verified kernels have none).
    pub fn value(&self, id: ValueId) -> &ValueData {
        &self.values[id]
    }

    /// The type of a value.
    pub fn value_type(&self, id: ValueId) -> &Type {
        &self.values[id].ty
    }

    /// The data of an instruction.
    pub fn inst(&self, id: InstId) -> &InstData {
        &self.insts[id]
    }

    /// Threads per block, 32 × warps.
    pub fn num_threads(&self) -> usize {
        32 * self.warps as usize
    }

    /// The parameter called `name`.
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Calls `f` on every instruction in program order, nested blocks included (a loop before
    /// its body). Each instruction is visited at most once and out-of-range handles are
    /// skipped, so a malformed kernel (an instruction listed twice, or inside itself) cannot
    /// make it loop; the walk uses an explicit stack, so no nesting depth overflows it.
    pub fn walk(&self, mut f: impl FnMut(InstId, &InstData)) {
        let mut visited = vec![false; self.insts.len()];
        // Pending instruction lists, innermost last; each entry is a block and a position in it.
        let mut stack: Vec<(&Block, usize)> = vec![(&self.body, 0)];
        while let Some((block, position)) = stack.pop() {
            let Some(&id) = block.insts.get(position) else { continue };
            stack.push((block, position + 1));
            let Some(inst) = self.insts.get(id) else { continue };
            if std::mem::replace(&mut visited[id.index()], true) {
                continue;
            }
            f(id, inst);
            // Nested blocks run next, the first one on top.
            for nested in inst.op.blocks().into_iter().rev() {
                stack.push((nested, 0));
            }
        }
    }
}

impl Module {
    /// The kernel called `name`.
    pub fn kernel(&self, name: &str) -> Option<&Kernel> {
        self.kernels.iter().find(|k| k.name == name)
    }

    /// The register layout defined as `@name`.
    pub fn register_layout(&self, name: &str) -> Option<&RegisterLayout> {
        self.layouts.iter().find(|l| l.name == name).and_then(|l| match &l.layout {
            LayoutDef::Register(r) => Some(r),
            LayoutDef::Shared(_) => None,
        })
    }
}
