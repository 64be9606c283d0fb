//! Building kernels from Rust.
//!
//! [`KernelBuilder`] appends instructions to the block being built and computes every result
//! type with the IR's typing rules ([`crate::program::infer`]), so a type error surfaces at the
//! call that makes it, not later. Loops and branches take closures that build their bodies:
//!
//! ```
//! use anybit_ir::builder::KernelBuilder;
//! use anybit_ir::program::{Axis, GridExpr, RegisterTensorType};
//! use anybit_ir::DType;
//!
//! # fn main() -> Result<(), anybit_ir::builder::BuildError> {
//! let f32 = DType::F32;
//! let i32 = DType::int(32).unwrap();
//! let mut k = KernelBuilder::new("scale", 1);
//! let x = k.pointer_param("x", f32)?;
//! let n = k.scalar_param("n", i32)?;
//! k.set_grid(vec![GridExpr::cdiv(k.grid_param(n)?, GridExpr::Const(32))]);
//! let view = k.global_view(x, &[n.into()], None)?;
//! let block = k.block_index(Axis::X)?;
//! let start = k.mul(block, 32)?;
//! let tile = RegisterTensorType::new(f32, vec![32], Some("spatial(32)".parse().unwrap()));
//! let v = k.load_global(view, &[start.into()], tile)?;
//! let doubled = k.mul(v, 2.0)?;
//! k.store_global(doubled, view, &[start.into()])?;
//! let kernel = k.finish();
//! assert_eq!(kernel.params.len(), 2);
//! # Ok(()) }
//! ```
//!
//! Values get names `v0`, `v1`, … unless named with [`KernelBuilder::name`]; names stay unique.
//! After a method returns an error the builder may hold a half-built loop or branch: drop it.

use std::collections::HashSet;

use anybit_layouts::RegisterLayout;

use crate::dtype::DType;
use crate::program::infer::{self, TypeError};
use crate::program::{
    Axis, BinaryOp, Block, CompareOp, GridExpr, InstData, InstId, Kernel, Literal, Op, Operand, Param, ParamType,
    ReduceOp, RegisterTensorType, SharedTensorType, Type, UnaryOp, ValueData, ValueDef, ValueId,
};

/// Why building failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The operands do not fit the instruction.
    #[error("{0}")]
    Type(#[from] TypeError),
    /// A name is already taken in this kernel.
    #[error("the name `{0}` is already used in this kernel")]
    DuplicateName(String),
    /// A name is not a valid identifier.
    #[error("`{0}` is not a valid name (letters, digits and `_`, not starting with a digit)")]
    InvalidName(String),
    /// Something else about the request is wrong.
    #[error("{0}")]
    Invalid(String),
}

/// Whether `name` can name a value, parameter, kernel or layout.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Builds one [`Kernel`].
#[derive(Debug)]
pub struct KernelBuilder {
    kernel: Kernel,
    /// Nested blocks being built, innermost last (the kernel body is `kernel.body`).
    blocks: Vec<Block>,
    names: HashSet<String>,
    next_name: usize,
}

impl KernelBuilder {
    /// A kernel called `name` with `warps` warps per block, a 1-D grid of one block until
    /// [`set_grid`](Self::set_grid) says otherwise.
    pub fn new(name: impl Into<String>, warps: u32) -> KernelBuilder {
        KernelBuilder {
            kernel: Kernel {
                name: name.into(),
                params: Vec::new(),
                grid: vec![GridExpr::Const(1)],
                warps,
                values: Default::default(),
                insts: Default::default(),
                body: Block::default(),
                assumptions: Vec::new(),
                span: None,
            },
            blocks: Vec::new(),
            names: HashSet::new(),
            next_name: 0,
        }
    }

    /// The kernel as built so far (instructions of an unfinished loop or branch are not in any
    /// block yet).
    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// The type of a value.
    pub fn type_of(&self, value: ValueId) -> Result<&Type, BuildError> {
        Ok(infer::value_type(&self.kernel, value)?)
    }

    fn fresh_name(&mut self) -> String {
        loop {
            let name = format!("v{}", self.next_name);
            self.next_name += 1;
            if !self.names.contains(&name) {
                return name;
            }
        }
    }

    fn claim(&mut self, name: &str) -> Result<(), BuildError> {
        if !is_valid_name(name) {
            return Err(BuildError::InvalidName(name.to_owned()));
        }
        if !self.names.insert(name.to_owned()) {
            return Err(BuildError::DuplicateName(name.to_owned()));
        }
        Ok(())
    }

    fn new_value(&mut self, ty: Type, def: ValueDef) -> ValueId {
        let name = self.fresh_name();
        self.names.insert(name.clone());
        self.kernel.values.append(ValueData { name, ty, def, span: None })
    }

    /// Renames a value; returns it for chaining.
    pub fn name(&mut self, value: ValueId, name: &str) -> Result<ValueId, BuildError> {
        let old = self
            .kernel
            .values
            .get(value)
            .map(|v| v.name.clone())
            .ok_or_else(|| BuildError::Invalid(format!("value {value:?} does not exist")))?;
        if old == name {
            return Ok(value);
        }
        self.claim(name)?;
        self.names.remove(&old);
        self.kernel.values[value].name = name.to_owned();
        Ok(value)
    }

    /// Declares a parameter.
    pub fn param(&mut self, name: &str, ty: ParamType) -> Result<ValueId, BuildError> {
        self.param_with_shape(name, ty, Vec::new())
    }

    /// Declares a pointer parameter whose buffer has a shape given by expressions of scalar
    /// parameters declared before it (`x: ptr f16[m, k]`).
    pub fn shaped_pointer_param(
        &mut self,
        name: &str,
        dtype: DType,
        shape: Vec<GridExpr>,
    ) -> Result<ValueId, BuildError> {
        self.param_with_shape(name, ParamType::Pointer(dtype), shape)
    }

    fn param_with_shape(&mut self, name: &str, ty: ParamType, shape: Vec<GridExpr>) -> Result<ValueId, BuildError> {
        if !shape.is_empty() && matches!(ty, ParamType::Scalar(_)) {
            return Err(BuildError::Invalid(format!("scalar parameter `{name}` cannot have a shape")));
        }
        self.claim(name)?;
        let position = self.kernel.params.len();
        let value = self.kernel.values.append(ValueData {
            name: name.to_owned(),
            ty: ty.value_type(),
            def: ValueDef::Param(position),
            span: None,
        });
        self.kernel.params.push(Param { name: name.to_owned(), ty, shape, align: None, value, span: None });
        Ok(value)
    }

    /// Declares a uniform scalar parameter.
    pub fn scalar_param(&mut self, name: &str, dtype: DType) -> Result<ValueId, BuildError> {
        self.param(name, ParamType::Scalar(dtype))
    }

    /// Declares a pointer parameter to packed global memory of `dtype`.
    pub fn pointer_param(&mut self, name: &str, dtype: DType) -> Result<ValueId, BuildError> {
        self.param(name, ParamType::Pointer(dtype))
    }

    /// States that the integer scalar parameter `param` is a multiple of `divisor`
    /// (`where k % 128 == 0`): hosts refuse launches that break it, passes rely on it.
    pub fn assume_multiple(&mut self, param: ValueId, divisor: u64) -> Result<(), BuildError> {
        let position = match self.kernel.values.get(param).map(|v| (&v.def, &v.ty)) {
            Some((ValueDef::Param(p), Type::Scalar(d))) if d.is_integer() => *p,
            _ => return Err(BuildError::Invalid("assumptions name integer scalar parameters".into())),
        };
        if divisor == 0 {
            return Err(BuildError::Invalid("an assumption's divisor is at least 1".into()));
        }
        self.kernel.assumptions.push(crate::program::Assumption { param: position, divisor, span: None });
        Ok(())
    }

    /// Requires the buffer of pointer parameter `param` to be aligned to `bytes` (a power of
    /// two): `x: ptr f16[m, k] align 16`.
    pub fn align_param(&mut self, param: ValueId, bytes: u32) -> Result<(), BuildError> {
        let position = match self.kernel.values.get(param).map(|v| (&v.def, &v.ty)) {
            Some((ValueDef::Param(p), Type::Pointer(_))) => *p,
            _ => return Err(BuildError::Invalid("alignments are of pointer parameters".into())),
        };
        if !bytes.is_power_of_two() || bytes > 4096 {
            return Err(BuildError::Invalid(format!("alignment {bytes} is not a power of two of at most 4096")));
        }
        if let Some(p) = self.kernel.params.get_mut(position) {
            p.align = Some(bytes);
        }
        Ok(())
    }

    /// The grid expression standing for an integer scalar parameter.
    pub fn grid_param(&self, value: ValueId) -> Result<GridExpr, BuildError> {
        match self.kernel.values.get(value).map(|v| (&v.def, &v.ty)) {
            Some((ValueDef::Param(p), Type::Scalar(d))) if d.is_integer() => Ok(GridExpr::Param(*p)),
            _ => Err(BuildError::Invalid("grid expressions use integer scalar parameters only".into())),
        }
    }

    /// Sets the grid (1 to 3 axes).
    pub fn set_grid(&mut self, grid: Vec<GridExpr>) {
        self.kernel.grid = grid;
    }

    /// Appends an instruction to the current block and returns its results.
    pub fn push(&mut self, op: Op) -> Result<Vec<ValueId>, BuildError> {
        let types = infer::result_types(&self.kernel, &op)?;
        let id = self.kernel.insts.append(InstData { op, results: Vec::new(), via: None, span: None });
        let results: Vec<ValueId> =
            types.into_iter().enumerate().map(|(i, ty)| self.new_value(ty, ValueDef::Result(id, i))).collect();
        self.kernel.insts[id].results = results.clone();
        self.current().insts.push(id);
        Ok(results)
    }

    fn push1(&mut self, op: Op) -> Result<ValueId, BuildError> {
        let mnemonic = op.mnemonic();
        self.push(op)?.first().copied().ok_or_else(|| BuildError::Invalid(format!("`{mnemonic}` defines no value")))
    }

    fn push0(&mut self, op: Op) -> Result<(), BuildError> {
        self.push(op).map(|_| ())
    }

    fn current(&mut self) -> &mut Block {
        self.blocks.last_mut().unwrap_or(&mut self.kernel.body)
    }

    /// `const`.
    pub fn constant(&mut self, value: impl Into<Literal>, dtype: DType) -> Result<ValueId, BuildError> {
        self.push1(Op::Const { value: value.into(), dtype })
    }

    /// `block_index`.
    pub fn block_index(&mut self, axis: Axis) -> Result<ValueId, BuildError> {
        self.push1(Op::BlockIndex { axis })
    }

    /// An elementwise unary operation.
    pub fn unary(&mut self, op: UnaryOp, x: impl Into<Operand>) -> Result<ValueId, BuildError> {
        self.push1(Op::Unary { op, x: x.into() })
    }

    /// An elementwise binary operation.
    pub fn binary(
        &mut self,
        op: BinaryOp,
        lhs: impl Into<Operand>,
        rhs: impl Into<Operand>,
    ) -> Result<ValueId, BuildError> {
        self.push1(Op::Binary { op, lhs: lhs.into(), rhs: rhs.into() })
    }

    /// `add`.
    pub fn add(&mut self, lhs: impl Into<Operand>, rhs: impl Into<Operand>) -> Result<ValueId, BuildError> {
        self.binary(BinaryOp::Add, lhs, rhs)
    }

    /// `sub`.
    pub fn sub(&mut self, lhs: impl Into<Operand>, rhs: impl Into<Operand>) -> Result<ValueId, BuildError> {
        self.binary(BinaryOp::Sub, lhs, rhs)
    }

    /// `mul`.
    pub fn mul(&mut self, lhs: impl Into<Operand>, rhs: impl Into<Operand>) -> Result<ValueId, BuildError> {
        self.binary(BinaryOp::Mul, lhs, rhs)
    }

    /// A comparison (result `u1`).
    pub fn compare(
        &mut self,
        op: CompareOp,
        lhs: impl Into<Operand>,
        rhs: impl Into<Operand>,
    ) -> Result<ValueId, BuildError> {
        self.push1(Op::Compare { op, lhs: lhs.into(), rhs: rhs.into() })
    }

    /// `fma`: `a · b + c` rounded once (`f32`).
    pub fn fma(
        &mut self,
        a: impl Into<Operand>,
        b: impl Into<Operand>,
        c: impl Into<Operand>,
    ) -> Result<ValueId, BuildError> {
        self.push1(Op::Fma { a: a.into(), b: b.into(), c: c.into() })
    }

    /// `select`.
    pub fn select(
        &mut self,
        cond: impl Into<Operand>,
        on_true: impl Into<Operand>,
        on_false: impl Into<Operand>,
    ) -> Result<ValueId, BuildError> {
        self.push1(Op::Select { cond: cond.into(), on_true: on_true.into(), on_false: on_false.into() })
    }

    /// `cast`.
    pub fn cast(&mut self, x: impl Into<Operand>, to: DType) -> Result<ValueId, BuildError> {
        self.push1(Op::Cast { x: x.into(), to })
    }

    /// `lookup`: decode `uN` codes through a table of 2^N entries (converted to `to`).
    pub fn lookup(&mut self, x: ValueId, table: Vec<Literal>, to: DType) -> Result<ValueId, BuildError> {
        self.push1(Op::Lookup { x, table, to })
    }

    /// `fill`: a register tensor of one value.
    pub fn fill(&mut self, value: impl Into<Operand>, ty: RegisterTensorType) -> Result<ValueId, BuildError> {
        self.push1(Op::Fill { value: value.into(), ty })
    }

    /// `iota`.
    pub fn iota(&mut self, dim: usize, ty: RegisterTensorType) -> Result<ValueId, BuildError> {
        self.push1(Op::Iota { dim, ty })
    }

    /// `view`.
    pub fn view(&mut self, x: ValueId, ty: RegisterTensorType) -> Result<ValueId, BuildError> {
        self.push1(Op::View { x, ty })
    }

    /// `broadcast`.
    pub fn broadcast(&mut self, x: ValueId, ty: RegisterTensorType) -> Result<ValueId, BuildError> {
        self.push1(Op::Broadcast { x, ty })
    }

    /// `reduce`; the result's layout is derived from the operand's when it has one.
    pub fn reduce(&mut self, op: ReduceOp, x: ValueId, dims: &[usize], keep_dims: bool) -> Result<ValueId, BuildError> {
        let layout = match self.type_of(x)? {
            Type::Register(RegisterTensorType { layout: Some(l), .. }) => {
                Some(l.reduce(dims, keep_dims).map_err(|e| BuildError::Invalid(format!("`reduce` layout: {e}")))?)
            }
            _ => None,
        };
        self.push1(Op::Reduce { op, x, dims: dims.to_vec(), keep_dims, layout })
    }

    /// `dot`: `c + a · b`.
    pub fn dot(&mut self, a: ValueId, b: ValueId, c: ValueId) -> Result<ValueId, BuildError> {
        self.push1(Op::Dot { a, b, c })
    }

    /// `global_view`; `strides` default to row-major (computed with `mul` instructions).
    pub fn global_view(
        &mut self,
        ptr: ValueId,
        shape: &[Operand],
        strides: Option<&[Operand]>,
    ) -> Result<ValueId, BuildError> {
        let strides = match strides {
            Some(s) => s.to_vec(),
            None => {
                let mut strides = vec![Operand::Literal(Literal::Int(1)); shape.len()];
                for d in (0..shape.len().saturating_sub(1)).rev() {
                    strides[d] = match (strides[d + 1], shape[d + 1]) {
                        (Operand::Literal(Literal::Int(a)), Operand::Literal(Literal::Int(b))) => {
                            Operand::Literal(Literal::Int(a.checked_mul(b).ok_or_else(|| {
                                BuildError::Invalid("`global_view` row-major strides overflow".into())
                            })?))
                        }
                        (Operand::Literal(Literal::Int(1)), extent) => extent,
                        (stride, extent) => Operand::Value(self.mul(stride, extent)?),
                    };
                }
                strides
            }
        };
        self.push1(Op::GlobalView { ptr, shape: shape.to_vec(), strides })
    }

    /// `load_global` (elements outside the view read 0).
    pub fn load_global(
        &mut self,
        src: ValueId,
        offsets: &[Operand],
        ty: RegisterTensorType,
    ) -> Result<ValueId, BuildError> {
        self.load_global_inside(src, offsets, ty, &[])
    }

    /// `load_global … inside [dims]`: with the dims along which the kernel promises the tile
    /// inside the view (see [`Op::LoadGlobal`]).
    pub fn load_global_inside(
        &mut self,
        src: ValueId,
        offsets: &[Operand],
        ty: RegisterTensorType,
        inside: &[usize],
    ) -> Result<ValueId, BuildError> {
        self.push1(Op::LoadGlobal { src, offsets: offsets.to_vec(), ty, inside: inside.to_vec() })
    }

    /// `store_global`.
    pub fn store_global(&mut self, value: ValueId, dst: ValueId, offsets: &[Operand]) -> Result<(), BuildError> {
        self.push0(Op::StoreGlobal { value, dst, offsets: offsets.to_vec() })
    }

    /// `alloc_shared`.
    pub fn alloc_shared(&mut self, ty: SharedTensorType) -> Result<ValueId, BuildError> {
        self.push1(Op::AllocShared { ty })
    }

    /// `free_shared`.
    pub fn free_shared(&mut self, tensor: ValueId) -> Result<(), BuildError> {
        self.push0(Op::FreeShared { tensor })
    }

    /// `load_shared`.
    pub fn load_shared(
        &mut self,
        src: ValueId,
        offsets: &[Operand],
        ty: RegisterTensorType,
    ) -> Result<ValueId, BuildError> {
        self.push1(Op::LoadShared { src, offsets: offsets.to_vec(), ty })
    }

    /// `store_shared`.
    pub fn store_shared(&mut self, value: ValueId, dst: ValueId, offsets: &[Operand]) -> Result<(), BuildError> {
        self.push0(Op::StoreShared { value, dst, offsets: offsets.to_vec() })
    }

    /// `copy_async`.
    pub fn copy_async(
        &mut self,
        src: ValueId,
        src_offsets: &[Operand],
        dst: ValueId,
        dst_offsets: &[Operand],
        shape: &[usize],
    ) -> Result<(), BuildError> {
        self.push0(Op::CopyAsync {
            src,
            src_offsets: src_offsets.to_vec(),
            dst,
            dst_offsets: dst_offsets.to_vec(),
            shape: shape.to_vec(),
        })
    }

    /// `commit_group`.
    pub fn commit_group(&mut self) -> Result<(), BuildError> {
        self.push0(Op::CommitGroup)
    }

    /// `wait_group`.
    pub fn wait_group(&mut self, pending: u32) -> Result<(), BuildError> {
        self.push0(Op::WaitGroup { pending })
    }

    /// `sync`.
    pub fn sync(&mut self) -> Result<(), BuildError> {
        self.push0(Op::Sync)
    }

    /// A counted loop `for index = start to end step step`. `body` gets the builder, the index
    /// and the carried values, and returns the next carried values; the loop's results are the
    /// carried values after the last iteration.
    pub fn for_range(
        &mut self,
        start: impl Into<Operand>,
        end: impl Into<Operand>,
        step: impl Into<Operand>,
        unroll: Option<u32>,
        inits: &[Operand],
        body: impl FnOnce(&mut KernelBuilder, ValueId, &[ValueId]) -> Result<Vec<Operand>, BuildError>,
    ) -> Result<Vec<ValueId>, BuildError> {
        let (start, end, step) = (start.into(), end.into(), step.into());
        // Type the loop with a provisional op, so the body can refer to its index and carried
        // values before the real op (which holds the body) exists.
        let provisional = Op::For {
            start,
            end,
            step,
            unroll,
            index: ValueId::from_index(0),
            carried: vec![],
            inits: inits.to_vec(),
            body: Block::default(),
        };
        let types = infer::result_types(&self.kernel, &provisional)?;
        let index_dtype = infer::loop_index_dtype(&self.kernel, &[(start, "start"), (end, "end"), (step, "step")])?;
        let id: InstId =
            self.kernel.insts.append(InstData { op: Op::Sync, results: Vec::new(), via: None, span: None });
        let index = self.new_value(Type::Scalar(index_dtype), ValueDef::LoopIndex(id));
        let carried: Vec<ValueId> =
            types.iter().enumerate().map(|(i, ty)| self.new_value(ty.clone(), ValueDef::LoopCarried(id, i))).collect();
        self.blocks.push(Block::default());
        let yields = body(self, index, &carried)?;
        let mut block = self.blocks.pop().unwrap_or_default();
        self.check_yields("`for` body", &yields, &types)?;
        block.yields = yields;
        let results: Vec<ValueId> =
            types.into_iter().enumerate().map(|(i, ty)| self.new_value(ty, ValueDef::Result(id, i))).collect();
        self.kernel.insts[id] = InstData {
            op: Op::For { start, end, step, unroll, index, carried, inits: inits.to_vec(), body: block },
            results: results.clone(),
            via: None,
            span: None,
        };
        self.current().insts.push(id);
        Ok(results)
    }

    /// `if cond { then } else { otherwise }`; both closures return the values their branch
    /// yields, which must have the same types, and become the results.
    pub fn if_else(
        &mut self,
        cond: impl Into<Operand>,
        then: impl FnOnce(&mut KernelBuilder) -> Result<Vec<Operand>, BuildError>,
        otherwise: impl FnOnce(&mut KernelBuilder) -> Result<Vec<Operand>, BuildError>,
    ) -> Result<Vec<ValueId>, BuildError> {
        let cond = cond.into();
        self.blocks.push(Block::default());
        let then_yields = then(self)?;
        let mut then_body = self.blocks.pop().unwrap_or_default();
        then_body.yields = then_yields;
        self.blocks.push(Block::default());
        let else_yields = otherwise(self)?;
        let mut else_body = self.blocks.pop().unwrap_or_default();
        else_body.yields = else_yields;
        let op = Op::If { cond, then_body, else_body };
        let types = infer::result_types(&self.kernel, &op)?;
        if let Op::If { else_body, .. } = &op {
            self.check_yields("`if` else branch", &else_body.yields, &types)?;
        }
        self.push(op)
    }

    fn check_yields(&self, what: &str, yields: &[Operand], types: &[Type]) -> Result<(), BuildError> {
        if yields.len() != types.len() {
            return Err(BuildError::Invalid(format!(
                "{what} yields {} values, expected {}",
                yields.len(),
                types.len()
            )));
        }
        for (i, (&y, ty)) in yields.iter().zip(types).enumerate() {
            let got = match y {
                Operand::Value(v) => infer::value_type(&self.kernel, v)?,
                Operand::Literal(_) => {
                    return Err(BuildError::Invalid(format!("{what} yield {i} is a literal; yield a typed value")));
                }
            };
            if got != ty {
                return Err(BuildError::Invalid(format!(
                    "{what} yield {i} is a {}, expected a {}",
                    got.describe(),
                    ty.describe()
                )));
            }
        }
        Ok(())
    }

    /// The finished kernel.
    pub fn finish(self) -> Kernel {
        self.kernel
    }

    /// A register layout from its expression, as a builder error when malformed (handy for
    /// generated kernels).
    pub fn layout(expr: &str) -> Result<RegisterLayout, BuildError> {
        expr.parse().map_err(|e: anybit_layouts::ParseError| BuildError::Invalid(format!("layout `{expr}`: {e}")))
    }
}
