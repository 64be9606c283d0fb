//! The machine: runs one block after another, instruction by instruction.

use std::collections::HashMap;
use std::rc::Rc;

use crate::dtype::DType;
use crate::program::{
    Block, InstData, InstId, Kernel, Literal, Op, Operand, RegisterTensorType, Type, ValueId, Via, infer,
};

use super::buffer::Buffer;
use super::error::{ErrorKind, InterpError, fail};
use super::layout::{EVERY, LayoutTable, SEVERAL, ThreadGroups};
use super::numeric::{int_value, wrap};
use super::shared::{Access, SharedMemory, SharedTileSpec, Violation};
use super::tensor::{self, advance, strides};
use super::values::{self, Codec, GlobalView, Lane, Tile, Val};
use super::{RunOptions, RunReport};
use crate::access::AccessShape;

/// Blocks nested deeper than this are refused (a malformed kernel could nest forever; the
/// language allows 64 levels inside the kernel body).
const MAX_DEPTH: usize = 66;

fn malformed<T>(message: impl Into<String>) -> Result<T, InterpError> {
    fail(ErrorKind::Malformed, message)
}

/// Which blocks wrote and read each element of a buffer that the kernel stores to, so that
/// results that depend on the order of blocks are caught.
#[derive(Debug)]
pub(crate) struct Tracker {
    /// Per element: 0, or the last writing block's id + 1.
    writer: Vec<u32>,
    /// Per element: 0, a reading block's id + 1, or [`Tracker::MANY`].
    reader: Vec<u32>,
}

impl Tracker {
    const MANY: u32 = u32::MAX;

    pub fn new(len: usize) -> Tracker {
        Tracker { writer: vec![0; len], reader: vec![0; len] }
    }

    /// Block `block` reads element `e`: an error (the other block) if another block wrote it.
    fn read(&mut self, e: usize, block: u32) -> Result<(), u32> {
        let me = block + 1;
        let writer = self.writer.get(e).copied().unwrap_or(0);
        if writer != 0 && writer != me {
            return Err(writer - 1);
        }
        if let Some(r) = self.reader.get_mut(e) {
            *r = if *r == 0 || *r == me { me } else { Tracker::MANY };
        }
        Ok(())
    }

    /// Block `block` writes element `e` (`changes`: with a new value): an error (the other
    /// block, `MANY` for several, and whether it read) if that makes the result order-dependent.
    fn write(&mut self, e: usize, block: u32, changes: bool) -> Result<(), (u32, bool)> {
        let me = block + 1;
        let writer = self.writer.get(e).copied().unwrap_or(0);
        let reader = self.reader.get(e).copied().unwrap_or(0);
        if changes && writer != 0 && writer != me {
            return Err((writer - 1, false));
        }
        if changes && reader != 0 && reader != me {
            return Err((if reader == Tracker::MANY { Tracker::MANY } else { reader - 1 }, true));
        }
        if let Some(w) = self.writer.get_mut(e) {
            *w = me;
        }
        Ok(())
    }
}

/// An elementwise operand, fetched.
enum Opnd {
    Scalar(DType, u32),
    Tile(Rc<Tile>),
}

impl Opnd {
    fn dtype(&self) -> DType {
        match self {
            Opnd::Scalar(d, _) => *d,
            Opnd::Tile(t) => t.dtype,
        }
    }

    fn lane(&self) -> Lane<'_> {
        match self {
            Opnd::Scalar(_, c) => Lane::Scalar(*c),
            Opnd::Tile(t) => Lane::Tile(&t.codes),
        }
    }

    fn shape(&self) -> Option<&[usize]> {
        match self {
            Opnd::Scalar(..) => None,
            Opnd::Tile(t) => Some(&t.shape),
        }
    }
}

/// The state of a launch.
pub(crate) struct Machine<'k, 'a> {
    kernel: &'k Kernel,
    options: &'a RunOptions,
    threads: usize,
    grid: [u64; 3],
    /// Per parameter position, its value in every block.
    params: Vec<Option<Val>>,
    /// Per parameter position, the buffer of a pointer parameter.
    buffers: Vec<Option<&'a mut Buffer>>,
    trackers: Vec<Option<Tracker>>,
    env: Vec<Option<Val>>,
    codecs: HashMap<DType, Rc<Codec>>,
    casts: HashMap<(DType, DType), Rc<Vec<u32>>>,
    tables: Vec<Option<Rc<LayoutTable>>>,
    checked: Vec<bool>,
    shared_offsets: Vec<Option<Rc<Vec<u32>>>>,
    /// Per instruction with a proven vector selection: the static part of its check.
    access_shapes: HashMap<InstId, Rc<(AccessShape, u32)>>,
    groups: ThreadGroups,
    shared: SharedMemory,
    block: [u32; 3],
    block_id: u32,
    depth: usize,
    steps: u64,
    pub report: RunReport,
}

/// What a launch is made of, checked by the caller.
pub(crate) struct Setup<'a> {
    pub threads: usize,
    pub grid: [u64; 3],
    pub params: Vec<Option<Val>>,
    pub buffers: Vec<Option<&'a mut Buffer>>,
    pub trackers: Vec<Option<Tracker>>,
}

impl<'k, 'a> Machine<'k, 'a> {
    pub fn new(kernel: &'k Kernel, options: &'a RunOptions, setup: Setup<'a>) -> Machine<'k, 'a> {
        let values = kernel.values.len();
        Machine {
            kernel,
            options,
            threads: setup.threads,
            grid: setup.grid,
            params: setup.params,
            buffers: setup.buffers,
            trackers: setup.trackers,
            env: vec![None; values],
            codecs: HashMap::new(),
            casts: HashMap::new(),
            tables: vec![None; values],
            checked: vec![false; values],
            shared_offsets: vec![None; values],
            access_shapes: HashMap::new(),
            groups: ThreadGroups::new(setup.threads as u32),
            shared: SharedMemory::new(),
            block: [0; 3],
            block_id: 0,
            depth: 0,
            steps: 0,
            report: RunReport::default(),
        }
    }

    /// Runs the block with index `block` (linear id `id`).
    pub fn run_block(&mut self, block: [u32; 3], id: u32) -> Result<(), InterpError> {
        self.block = block;
        self.block_id = id;
        self.env.iter_mut().for_each(|v| *v = None);
        self.shared = SharedMemory::new();
        self.depth = 0;
        let kernel = self.kernel;
        let result = (|| {
            self.tick()?;
            for (position, param) in kernel.params.iter().enumerate() {
                let Some(val) = self.params.get(position).cloned().flatten() else {
                    return malformed(format!("parameter `{}` has no value", param.name));
                };
                self.bind(param.value, val)?;
            }
            self.exec_block(&kernel.body)
        })();
        self.report.blocks += 1;
        result.map_err(|e| e.in_block(block))
    }

    fn tick(&mut self) -> Result<(), InterpError> {
        self.steps += 1;
        if self.steps > self.options.max_instructions {
            return fail(
                ErrorKind::BudgetExceeded,
                format!(
                    "the run went past {} instructions (RunOptions::max_instructions): a loop that does not end?",
                    self.options.max_instructions
                ),
            );
        }
        Ok(())
    }

    fn exec_block(&mut self, block: &'k Block) -> Result<(), InterpError> {
        if self.depth >= MAX_DEPTH {
            return malformed(format!("blocks are nested more than {MAX_DEPTH} deep"));
        }
        self.depth += 1;
        for &id in &block.insts {
            self.exec(id)?;
        }
        self.depth -= 1;
        Ok(())
    }

    fn exec(&mut self, id: InstId) -> Result<(), InterpError> {
        let kernel = self.kernel;
        let Some(inst) = kernel.insts.get(id) else {
            return malformed(format!("instruction handle {id:?} does not exist"));
        };
        self.report.instructions += 1;
        // Control flow recurses through here: keep its frames small (the other instructions
        // run in `dispatch`, whose frame is large in unoptimized builds).
        let result = match &inst.op {
            Op::For { start, end, step, index, carried, inits, body, .. } => {
                self.tick().and_then(|()| self.exec_for(inst, [*start, *end, *step], *index, carried, inits, body))
            }
            Op::If { cond, then_body, else_body } => {
                self.tick().and_then(|()| self.exec_if(inst, *cond, then_body, else_body))
            }
            _ => self.dispatch(id, inst),
        };
        result.map_err(|e| e.at_inst(id, inst.op.mnemonic(), inst.span))
    }

    fn exec_if(
        &mut self,
        inst: &'k InstData,
        cond: Operand,
        then_body: &'k Block,
        else_body: &'k Block,
    ) -> Result<(), InterpError> {
        let taken = match self.operand(cond, None, "the condition")? {
            Opnd::Scalar(d, c) if d.is_integer() => c != 0,
            _ => return malformed("the `if` condition must be an integer or u1 scalar"),
        };
        let body = if taken { then_body } else { else_body };
        self.exec_block(body)?;
        let yields = self.yields(body, &inst.results)?;
        for (i, v) in yields.into_iter().enumerate() {
            self.define(inst, i, v)?;
        }
        Ok(())
    }

    // ----- values -----

    fn name(&self, v: ValueId) -> String {
        self.kernel.values.get(v).map_or_else(|| format!("{v:?}"), |d| format!("%{}", d.name))
    }

    fn val(&self, v: ValueId) -> Result<&Val, InterpError> {
        match self.env.get(v.index()) {
            Some(Some(val)) => Ok(val),
            Some(None) => malformed(format!("{} is used before it is defined", self.name(v))),
            None => malformed(format!("value handle {v:?} does not exist")),
        }
    }

    fn define(&mut self, inst: &InstData, index: usize, val: Val) -> Result<(), InterpError> {
        let Some(&id) = inst.results.get(index) else {
            return malformed(format!("the instruction has {} results, not {}", inst.results.len(), index + 1));
        };
        self.bind(id, val)
    }

    /// Gives `id` its value, checking it against the declared type.
    fn bind(&mut self, id: ValueId, val: Val) -> Result<(), InterpError> {
        let kernel = self.kernel;
        let Some(data) = kernel.values.get(id) else {
            return malformed(format!("value handle {id:?} does not exist"));
        };
        let fits = match (&data.ty, &val) {
            (Type::Scalar(d), Val::Scalar { dtype, .. }) => d == dtype,
            (Type::Pointer(d), Val::Pointer { dtype, .. }) => d == dtype,
            (Type::Global(g), Val::Global(v)) => g.dtype == v.dtype && g.rank == v.shape.len(),
            (Type::Shared(t), Val::Shared { dtype, .. }) => t.dtype == *dtype,
            (Type::Register(t), Val::Register(tile)) if t.dtype == tile.dtype && t.shape == tile.shape => {
                self.register_type(id)?;
                true
            }
            _ => false,
        };
        if !fits {
            return malformed(format!(
                "%{} is declared a {}, but it gets a {} (is the kernel verified?)",
                data.name,
                data.ty.describe(),
                val.describe()
            ));
        }
        match self.env.get_mut(id.index()) {
            Some(slot) => {
                *slot = Some(val);
                Ok(())
            }
            None => malformed(format!("value handle {id:?} does not exist")),
        }
    }

    /// The declared register type of `id`, with its layout checked (once).
    fn register_type(&mut self, id: ValueId) -> Result<&'k RegisterTensorType, InterpError> {
        let kernel = self.kernel;
        let Some(data) = kernel.values.get(id) else {
            return malformed(format!("value handle {id:?} does not exist"));
        };
        let Type::Register(ty) = &data.ty else {
            return malformed(format!("%{} is a {}, not a register tensor", data.name, data.ty.describe()));
        };
        if self.checked.get(id.index()).copied().unwrap_or(false) {
            return Ok(ty);
        }
        let Some(layout) = &ty.layout else {
            return fail(
                ErrorKind::MissingLayout,
                format!(
                    "register tensor %{} ({}) has no layout; run layout inference first",
                    data.name,
                    data.ty.describe()
                ),
            );
        };
        if layout.num_threads() != self.threads {
            return malformed(format!(
                "the layout {layout} of %{} spreads it over {} threads, but the block has {}",
                data.name,
                layout.num_threads(),
                self.threads
            ));
        }
        if layout.shape() != ty.shape {
            return malformed(format!(
                "the layout {layout} of %{} has shape {:?}, the tensor {:?}",
                data.name,
                layout.shape(),
                ty.shape
            ));
        }
        let cap = self.options.max_tile_elements;
        if ty.num_elements() > cap || layout.num_threads().saturating_mul(layout.num_slots()) > cap {
            return fail(
                ErrorKind::TooLarge,
                format!(
                    "%{} has more than {cap} elements or register slots (RunOptions::max_tile_elements)",
                    data.name
                ),
            );
        }
        if let Some(c) = self.checked.get_mut(id.index()) {
            *c = true;
        }
        Ok(ty)
    }

    /// The tabulated layout of the register value `id`.
    fn table(&mut self, id: ValueId) -> Result<Rc<LayoutTable>, InterpError> {
        if let Some(Some(table)) = self.tables.get(id.index()) {
            return Ok(table.clone());
        }
        let ty = self.register_type(id)?;
        let layout = ty.layout.as_ref().ok_or_else(|| InterpError::new(ErrorKind::MissingLayout, "no layout"))?;
        let table = Rc::new(
            LayoutTable::build(layout, &ty.shape, &mut self.groups)
                .map_err(|e| InterpError::new(ErrorKind::Malformed, e))?,
        );
        if let Some(slot) = self.tables.get_mut(id.index()) {
            *slot = Some(table.clone());
        }
        Ok(table)
    }

    fn codec(&mut self, dtype: DType) -> Rc<Codec> {
        self.codecs.entry(dtype).or_insert_with(|| Rc::new(Codec::new(dtype))).clone()
    }

    fn cast_table(&mut self, from: DType, to: DType) -> Result<Rc<Vec<u32>>, InterpError> {
        if let Some(table) = self.casts.get(&(from, to)) {
            return Ok(table.clone());
        }
        let (fc, tc) = (self.codec(from), self.codec(to));
        let table: Vec<u32> =
            (0..1u32 << from.bits()).map(|code| values::cast_code(&fc, &tc, code)).collect::<Result<_, _>>()?;
        let table = Rc::new(table);
        self.casts.insert((from, to), table.clone());
        Ok(table)
    }

    /// An integer operand (offsets, shapes, strides, loop bounds).
    fn index(&self, operand: Operand, what: &str) -> Result<i64, InterpError> {
        match operand {
            Operand::Literal(Literal::Int(v)) => Ok(v),
            Operand::Literal(l) => malformed(format!("{what} must be an integer, found {l}")),
            Operand::Value(v) => match self.val(v)? {
                Val::Scalar { dtype, code } if dtype.is_integer() => {
                    Ok(int_value(dtype.bits(), dtype.is_signed(), *code))
                }
                other => malformed(format!("{what} must be an integer scalar, found a {}", other.describe())),
            },
        }
    }

    fn indices(&self, operands: &[Operand], what: &str) -> Result<Vec<i64>, InterpError> {
        operands.iter().enumerate().map(|(i, &o)| self.index(o, &format!("{what} {i}"))).collect()
    }

    /// The element type a literal among `operands` takes: that of the first value.
    fn context(&self, operands: &[Operand]) -> Result<Option<DType>, InterpError> {
        for &o in operands {
            if let Operand::Value(v) = o {
                return Ok(Some(match self.val(v)? {
                    Val::Scalar { dtype, .. } | Val::Pointer { dtype, .. } | Val::Shared { dtype, .. } => *dtype,
                    Val::Global(g) => g.dtype,
                    Val::Register(t) => t.dtype,
                }));
            }
        }
        Ok(None)
    }

    /// A scalar or register operand; a literal takes the type `context`.
    fn operand(&self, operand: Operand, context: Option<DType>, what: &str) -> Result<Opnd, InterpError> {
        match operand {
            Operand::Value(v) => match self.val(v)? {
                Val::Scalar { dtype, code } => Ok(Opnd::Scalar(*dtype, *code)),
                Val::Register(t) => Ok(Opnd::Tile(t.clone())),
                other => {
                    malformed(format!("{what} must be a scalar or a register tensor, found a {}", other.describe()))
                }
            },
            Operand::Literal(l) => {
                let Some(dtype) = context else {
                    return malformed(format!("{what} is a literal, but nothing gives it a type"));
                };
                infer::check_literal(l, dtype)
                    .map_err(|e| InterpError::new(ErrorKind::Malformed, format!("{what}: {e}")))?;
                Ok(Opnd::Scalar(dtype, infer::literal_code(l, dtype)))
            }
        }
    }

    fn register(&self, v: ValueId, what: &str) -> Result<Rc<Tile>, InterpError> {
        match self.val(v)? {
            Val::Register(t) => Ok(t.clone()),
            other => malformed(format!("{what} must be a register tensor, found a {}", other.describe())),
        }
    }

    fn result_id(inst: &InstData, index: usize) -> Result<ValueId, InterpError> {
        inst.results.get(index).copied().ok_or_else(|| {
            InterpError::new(
                ErrorKind::Malformed,
                format!("the instruction has {} results, not {}", inst.results.len(), index + 1),
            )
        })
    }

    fn common_shape(operands: &[&Opnd]) -> Result<Option<Vec<usize>>, InterpError> {
        let mut shape: Option<&[usize]> = None;
        for o in operands {
            if let Some(s) = o.shape() {
                match shape {
                    Some(prev) if prev != s => return malformed(format!("operand shapes differ: {prev:?} and {s:?}")),
                    _ => shape = Some(s),
                }
            }
        }
        Ok(shape.map(<[usize]>::to_vec))
    }

    fn assemble(shape: Option<Vec<usize>>, dtype: DType, codes: Vec<u32>) -> Val {
        match shape {
            Some(shape) => Val::Register(Rc::new(Tile { dtype, shape, codes })),
            None => Val::Scalar { dtype, code: codes.first().copied().unwrap_or(0) },
        }
    }

    fn same_dtype(a: &Opnd, b: &Opnd) -> Result<(), InterpError> {
        if a.dtype() != b.dtype() {
            return malformed(format!("operands have different element types: {} and {}", a.dtype(), b.dtype()));
        }
        Ok(())
    }

    // ----- instructions -----

    fn dispatch(&mut self, id: InstId, inst: &'k InstData) -> Result<(), InterpError> {
        self.tick()?;
        match &inst.op {
            Op::Const { value, dtype } => {
                infer::check_literal(*value, *dtype).map_err(|e| InterpError::new(ErrorKind::Malformed, e.0))?;
                let code = infer::literal_code(*value, *dtype);
                self.define(inst, 0, Val::Scalar { dtype: *dtype, code })
            }
            Op::BlockIndex { axis } => {
                let index = self.block.get(axis.index()).copied().unwrap_or(0);
                let dtype = DType::int(32).map_err(|e| InterpError::new(ErrorKind::Malformed, e.to_string()))?;
                self.define(inst, 0, Val::Scalar { dtype, code: index })
            }
            Op::Unary { op, x } => {
                let x = self.operand(*x, None, "the operand")?;
                let codec = self.codec(x.dtype());
                let n = x.shape().map_or(1, |s| s.iter().product());
                let codes = values::unary(*op, &codec, &x.lane(), n)?;
                self.define(inst, 0, Self::assemble(x.shape().map(<[usize]>::to_vec), x.dtype(), codes))
            }
            Op::Binary { op, lhs, rhs } => {
                let context = self.context(&[*lhs, *rhs])?;
                let a = self.operand(*lhs, context, "the left operand")?;
                let b = self.operand(*rhs, context, "the right operand")?;
                Self::same_dtype(&a, &b)?;
                let shape = Self::common_shape(&[&a, &b])?;
                let n = shape.as_ref().map_or(1, |s| s.iter().product());
                let codec = self.codec(a.dtype());
                let codes = values::binary(*op, &codec, &a.lane(), &b.lane(), n)?;
                self.define(inst, 0, Self::assemble(shape, a.dtype(), codes))
            }
            Op::Compare { op, lhs, rhs } => {
                let context = self.context(&[*lhs, *rhs])?;
                let a = self.operand(*lhs, context, "the left operand")?;
                let b = self.operand(*rhs, context, "the right operand")?;
                Self::same_dtype(&a, &b)?;
                let shape = Self::common_shape(&[&a, &b])?;
                let n = shape.as_ref().map_or(1, |s| s.iter().product());
                let codec = self.codec(a.dtype());
                let codes = values::compare(*op, &codec, &a.lane(), &b.lane(), n);
                let u1 = DType::uint(1).map_err(|e| InterpError::new(ErrorKind::Malformed, e.to_string()))?;
                self.define(inst, 0, Self::assemble(shape, u1, codes))
            }
            Op::Fma { a, b, c } => {
                let context = self.context(&[*a, *b, *c])?;
                let x = self.operand(*a, context, "the multiplicand")?;
                let y = self.operand(*b, context, "the multiplier")?;
                let z = self.operand(*c, context, "the addend")?;
                Self::same_dtype(&x, &y)?;
                Self::same_dtype(&x, &z)?;
                if x.dtype() != DType::F32 {
                    return malformed(format!("`fma` computes on f32, found {}", x.dtype()));
                }
                let shape = Self::common_shape(&[&x, &y, &z])?;
                let n = shape.as_ref().map_or(1, |s| s.iter().product());
                let codes = values::fma_f32(&self.codec(x.dtype()), &x.lane(), &y.lane(), &z.lane(), n)?;
                self.define(inst, 0, Self::assemble(shape, x.dtype(), codes))
            }
            Op::Select { cond, on_true, on_false } => {
                let c = self.operand(*cond, None, "the condition")?;
                if c.dtype() != DType::uint(1).map_err(|e| InterpError::new(ErrorKind::Malformed, e.to_string()))? {
                    return malformed(format!("the condition must be u1, found {}", c.dtype()));
                }
                let context = self.context(&[*on_true, *on_false])?;
                let a = self.operand(*on_true, context, "the true operand")?;
                let b = self.operand(*on_false, context, "the false operand")?;
                Self::same_dtype(&a, &b)?;
                let shape = Self::common_shape(&[&c, &a, &b])?;
                let n = shape.as_ref().map_or(1, |s| s.iter().product());
                let codes = values::select(&c.lane(), &a.lane(), &b.lane(), n);
                self.define(inst, 0, Self::assemble(shape, a.dtype(), codes))
            }
            Op::Cast { x, to } => {
                let x = self.operand(*x, None, "the operand")?;
                let from = x.dtype();
                let n = x.shape().map_or(1, |s| s.iter().product());
                let codes = if from.bits() <= 8 && n > 1 {
                    let table = self.cast_table(from, *to)?;
                    let lane = x.lane();
                    (0..n)
                        .map(|i| {
                            let code = match &lane {
                                Lane::Scalar(c) => *c,
                                Lane::Tile(t) => t.get(i).copied().unwrap_or(0),
                            };
                            table.get(code as usize).copied().unwrap_or(0)
                        })
                        .collect()
                } else {
                    let (fc, tc) = (self.codec(from), self.codec(*to));
                    match &x {
                        Opnd::Scalar(_, c) => vec![values::cast_code(&fc, &tc, *c)?],
                        Opnd::Tile(t) => {
                            t.codes.iter().map(|&c| values::cast_code(&fc, &tc, c)).collect::<Result<_, _>>()?
                        }
                    }
                };
                self.define(inst, 0, Self::assemble(x.shape().map(<[usize]>::to_vec), *to, codes))
            }
            Op::Lookup { x, table, to } => {
                let x = self.operand(Operand::Value(*x), None, "the codes")?;
                let from = x.dtype();
                if !matches!(from, DType::Uint(_)) || from.bits() > infer::MAX_LOOKUP_BITS {
                    return malformed(format!("`lookup` codes must be u1…u8, found {from}"));
                }
                if table.len() as u64 != from.num_codes() {
                    return malformed(format!(
                        "`lookup` table has {} entries, {from} has {} codes",
                        table.len(),
                        from.num_codes()
                    ));
                }
                let entries = table
                    .iter()
                    .map(|&l| {
                        infer::check_literal(l, *to).map_err(|e| InterpError::new(ErrorKind::Malformed, e.0))?;
                        Ok(infer::literal_code(l, *to))
                    })
                    .collect::<Result<Vec<u32>, InterpError>>()?;
                // Codes are within the type (values are kept in range), so every index is in the table.
                let entry = |code: u32| entries.get(code as usize).copied().unwrap_or(0);
                let codes = match &x {
                    Opnd::Scalar(_, c) => vec![entry(*c)],
                    Opnd::Tile(t) => t.codes.iter().map(|&c| entry(c)).collect(),
                };
                self.define(inst, 0, Self::assemble(x.shape().map(<[usize]>::to_vec), *to, codes))
            }
            Op::Fill { value, ty } => {
                let rt = self.register_type(Self::result_id(inst, 0)?)?;
                let v = self.operand(*value, Some(ty.dtype), "the fill value")?;
                let code = match v {
                    Opnd::Scalar(d, c) if d == rt.dtype => c,
                    _ => return malformed(format!("the fill value must be a scalar {}", rt.dtype)),
                };
                let tile = Tile { dtype: rt.dtype, shape: rt.shape.clone(), codes: vec![code; rt.num_elements()] };
                self.define(inst, 0, Val::Register(Rc::new(tile)))
            }
            Op::Iota { dim, .. } => {
                let rt = self.register_type(Self::result_id(inst, 0)?)?;
                let codes = tensor::iota(*dim, &rt.shape, rt.dtype)?;
                self.define(inst, 0, Val::Register(Rc::new(Tile { dtype: rt.dtype, shape: rt.shape.clone(), codes })))
            }
            Op::View { x, .. } => {
                let result = Self::result_id(inst, 0)?;
                let src = self.register(*x, "the operand")?;
                let rt = self.register_type(result)?;
                let (src_table, dst_table) = (self.table(*x)?, self.table(result)?);
                let codes = tensor::view(&src, &src_table, rt.dtype, rt.num_elements(), &dst_table, self.threads)?;
                self.define(inst, 0, Val::Register(Rc::new(Tile { dtype: rt.dtype, shape: rt.shape.clone(), codes })))
            }
            Op::Broadcast { x, .. } => {
                let src = self.register(*x, "the operand")?;
                let rt = self.register_type(Self::result_id(inst, 0)?)?;
                if rt.dtype != src.dtype {
                    return malformed(format!(
                        "`broadcast` cannot change the element type ({} → {})",
                        src.dtype, rt.dtype
                    ));
                }
                let codes = tensor::broadcast(&src, &rt.shape)?;
                self.define(inst, 0, Val::Register(Rc::new(Tile { dtype: rt.dtype, shape: rt.shape.clone(), codes })))
            }
            Op::Reduce { op, x, dims, keep_dims, .. } => {
                let src = self.register(*x, "the operand")?;
                self.register_type(Self::result_id(inst, 0)?)?;
                let codec = self.codec(src.dtype);
                let (shape, codes) = tensor::reduce(*op, &codec, &src, dims, *keep_dims)?;
                self.define(inst, 0, Val::Register(Rc::new(Tile { dtype: src.dtype, shape, codes })))
            }
            Op::Dot { a, b, c } => {
                let (a, b, c) = (self.register(*a, "a")?, self.register(*b, "b")?, self.register(*c, "c")?);
                self.register_type(Self::result_id(inst, 0)?)?;
                let (ab, acc) = (self.codec(a.dtype), self.codec(c.dtype));
                let codes = tensor::dot(&a, &b, &c, &ab, &acc)?;
                self.report.multiply_adds +=
                    (a.codes.len() as u64).saturating_mul(b.shape.get(1).copied().unwrap_or(0) as u64);
                self.define(inst, 0, Val::Register(Rc::new(Tile { dtype: c.dtype, shape: c.shape.clone(), codes })))
            }
            Op::GlobalView { ptr, shape, strides } => {
                let (param, dtype) = match self.val(*ptr)? {
                    Val::Pointer { param, dtype } => (*param, *dtype),
                    other => {
                        return malformed(format!(
                            "`global_view` needs a pointer parameter, found a {}",
                            other.describe()
                        ));
                    }
                };
                let shape = self.indices(shape, "dimension")?;
                let strides = self.indices(strides, "stride")?;
                if shape.is_empty() || shape.len() != strides.len() {
                    return malformed(format!(
                        "`global_view` has {} dimensions and {} strides",
                        shape.len(),
                        strides.len()
                    ));
                }
                if let Some((d, s)) = shape.iter().enumerate().find(|(_, s)| **s < 0) {
                    return fail(ErrorKind::OutOfBounds, format!("dimension {d} of the view is negative ({s})"));
                }
                self.define(inst, 0, Val::Global(Rc::new(GlobalView { param, dtype, shape, strides })))
            }
            Op::LoadGlobal { src, offsets, inside, .. } => self.load_global(id, inst, *src, offsets, inside),
            Op::StoreGlobal { value, dst, offsets } => self.store_global(id, inst, *value, *dst, offsets),
            Op::AllocShared { .. } => self.alloc_shared(inst),
            Op::FreeShared { tensor } => self.free_shared(*tensor),
            Op::LoadShared { src, offsets, .. } => self.load_shared(id, inst, *src, offsets),
            Op::StoreShared { value, dst, offsets } => self.store_shared(id, *value, *dst, offsets),
            Op::CopyAsync { src, src_offsets, dst, dst_offsets, shape } => {
                self.copy_async(id, *src, src_offsets, *dst, dst_offsets, shape)
            }
            Op::CommitGroup => {
                self.shared.commit();
                Ok(())
            }
            Op::WaitGroup { pending } => {
                self.shared.wait(*pending, id.index() as u32);
                Ok(())
            }
            Op::Sync => {
                self.report.syncs += 1;
                self.shared.epoch = self
                    .shared
                    .epoch
                    .checked_add(1)
                    .ok_or_else(|| InterpError::new(ErrorKind::TooLarge, "more than 2^32 `sync`s in one block"))?;
                Ok(())
            }
            Op::For { .. } | Op::If { .. } => malformed("control flow is run by `exec`"),
        }
    }

    /// The values a block yields, one per target value (whose types type literals).
    fn yields(&self, body: &Block, targets: &[ValueId]) -> Result<Vec<Val>, InterpError> {
        if body.yields.len() != targets.len() {
            return malformed(format!("the block yields {} values, expected {}", body.yields.len(), targets.len()));
        }
        body.yields
            .iter()
            .zip(targets)
            .map(|(&y, &target)| match y {
                Operand::Value(v) => self.val(v).cloned(),
                Operand::Literal(l) => match self.kernel.values.get(target).map(|d| &d.ty) {
                    Some(Type::Scalar(d)) => {
                        infer::check_literal(l, *d).map_err(|e| InterpError::new(ErrorKind::Malformed, e.0))?;
                        Ok(Val::Scalar { dtype: *d, code: infer::literal_code(l, *d) })
                    }
                    _ => malformed("a block yields a literal where a tensor is expected"),
                },
            })
            .collect()
    }

    fn exec_for(
        &mut self,
        inst: &'k InstData,
        bounds: [Operand; 3],
        index: ValueId,
        carried: &[ValueId],
        inits: &[Operand],
        body: &'k Block,
    ) -> Result<(), InterpError> {
        let kernel = self.kernel;
        let [start, end, step] = bounds;
        let dtype = infer::loop_index_dtype(kernel, &[(start, "start"), (end, "end"), (step, "step")])
            .map_err(|e| InterpError::new(ErrorKind::Malformed, e.0))?;
        let (first, end, step) =
            (self.index(start, "the start")?, self.index(end, "the end")?, self.index(step, "the step")?);
        if step <= 0 {
            return fail(ErrorKind::BadLoopStep, format!("the loop's step is {step}; it must be positive"));
        }
        if carried.len() != inits.len() || inst.results.len() != carried.len() {
            return malformed(format!(
                "the loop carries {} values with {} initial values and {} results",
                carried.len(),
                inits.len(),
                inst.results.len()
            ));
        }
        let mut current: Vec<Val> = inits
            .iter()
            .map(|&init| match init {
                Operand::Value(v) => self.val(v).cloned(),
                Operand::Literal(_) => malformed("a carried value starts from a literal (use a typed value)"),
            })
            .collect::<Result<_, _>>()?;
        let mut i = first;
        while i < end {
            self.tick()?;
            self.report.loop_iterations += 1;
            self.bind(index, Val::Scalar { dtype, code: wrap(dtype.bits(), i) })?;
            for (&c, v) in carried.iter().zip(current.drain(..)) {
                self.bind(c, v)?;
            }
            self.exec_block(body)?;
            current = self.yields(body, carried)?;
            i = match i.checked_add(step) {
                Some(next) => next,
                None => break,
            };
        }
        for (k, v) in current.into_iter().enumerate() {
            self.define(inst, k, v)?;
        }
        Ok(())
    }

    // ----- global memory -----

    fn global(&self, v: ValueId) -> Result<Rc<GlobalView>, InterpError> {
        match self.val(v)? {
            Val::Global(g) => Ok(g.clone()),
            other => malformed(format!("{} must be a global view, found a {}", self.name(v), other.describe())),
        }
    }

    fn param_name(&self, param: usize) -> String {
        self.kernel.params.get(param).map_or_else(|| format!("parameter {param}"), |p| p.name.clone())
    }

    fn block_of(&self, id: u32) -> String {
        let [gx, gy, _] = self.grid.map(|g| g.max(1));
        let id = u64::from(id);
        format!("({}, {}, {})", id % gx, (id / gx) % gy, id / (gx * gy))
    }

    fn conflict(&self, e: usize, buffer: &str, other: u32, read: bool, writing: bool) -> InterpError {
        let me = self.block_of(self.block_id);
        let other = if other == Tracker::MANY {
            "several other blocks".to_owned()
        } else {
            format!("block {}", self.block_of(other))
        };
        let message = match (writing, read) {
            (false, _) => format!(
                "element {e} of `{buffer}` is read by block {me} but written by {other}: the result depends on the order of blocks"
            ),
            (true, false) => format!(
                "element {e} of `{buffer}` is written by block {me} and, with another value, by {other}: the result depends on the order of blocks"
            ),
            (true, true) => format!(
                "element {e} of `{buffer}` is written by block {me} but read by {other}: the result depends on the order of blocks"
            ),
        };
        InterpError::new(ErrorKind::BlockConflict, message)
    }

    /// The codes of the tile of `shape` at `offsets` of a global view, in row-major order:
    /// elements outside the view are 0 (not read); reads are counted and checked against other
    /// blocks' writes.
    fn read_global_tile(
        &mut self,
        view: &GlobalView,
        offsets: &[i64],
        shape: &[usize],
    ) -> Result<Vec<u32>, InterpError> {
        let name = self.param_name(view.param);
        let block = self.block_id;
        let n = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).unwrap_or(usize::MAX);
        let mut codes = vec![0u32; n];
        let mut conflict = None;
        let mut read = 0u64;
        {
            let Some(Some(buffer)) = self.buffers.get(view.param) else {
                return malformed(format!("`{name}` has no buffer"));
            };
            let mut tracker = self.trackers.get_mut(view.param).and_then(Option::as_mut);
            visit_global(view, offsets, shape, buffer.len(), &name, |i, e| {
                if let Some(e) = e {
                    read += 1;
                    if let Some(slot) = codes.get_mut(i) {
                        *slot = buffer.read(e).unwrap_or(0);
                    }
                    if let Some(t) = tracker.as_mut()
                        && let Err(other) = t.read(e, block)
                    {
                        conflict.get_or_insert((e, other));
                    }
                }
                Ok(())
            })?;
        }
        self.report.global_elements_read += read;
        if let Some((e, other)) = conflict {
            return Err(self.conflict(e, &name, other, false, false));
        }
        Ok(codes)
    }

    /// A global access selected as proven vector runs (`via vector(n)`), or a copy selected as
    /// proven `cp.async` runs (`via async`), must find them aligned and whole
    /// ([`AccessShape::promise_holds`]; the layout's part computed once per instruction); a
    /// checked or element access promises nothing.
    fn check_vector_promise(
        &mut self,
        id: InstId,
        inst: &InstData,
        view: &GlobalView,
        origin: &[i64],
        layout: Option<&anybit_layouts::RegisterLayout>,
    ) -> Result<(), InterpError> {
        let proven = matches!(inst.via, Some(Via::Vector { checked: false, .. } | Via::Async { checked: false }));
        let Some(layout) = layout.filter(|_| proven) else {
            return if proven { malformed("a proven vector access without a layout") } else { Ok(()) };
        };
        let shape = match self.access_shapes.get(&id).cloned() {
            Some(shape) => shape,
            None => {
                let width = match inst.via {
                    Some(Via::Vector { width, .. }) => width,
                    // cp.async moves the copy layout's longest runs.
                    _ => crate::access::longest_run(&crate::access::plan_runs(
                        &crate::access::slot_offsets(layout),
                        view.dtype.bits(),
                        u32::MAX,
                    )) as u32,
                };
                let shape = Rc::new((AccessShape::of(layout), width));
                self.access_shapes.insert(id, shape.clone());
                shape
            }
        };
        let (access, width) = &*shape;
        if access.promise_holds(origin, &view.shape, &view.strides, *width) {
            return Ok(());
        }
        let selection = inst.via.map_or_else(String::new, |v| v.to_string());
        fail(
            ErrorKind::BrokenVectorPromise,
            format!(
                "`{}` at {origin:?} of a view of shape {:?} and strides {:?} was selected as aligned runs of {width} \
                 elements (`via {selection}`), but they are not aligned or whole here",
                inst.op.mnemonic(),
                view.shape,
                view.strides
            ),
        )
    }

    fn load_global(
        &mut self,
        id: InstId,
        inst: &InstData,
        src: ValueId,
        offsets: &[Operand],
        inside: &[usize],
    ) -> Result<(), InterpError> {
        let view = self.global(src)?;
        let offsets = self.indices(offsets, "offset")?;
        let rt = self.register_type(Self::result_id(inst, 0)?)?;
        if rt.dtype != view.dtype {
            return malformed(format!("the view holds {}, the tile is {}", view.dtype, rt.dtype));
        }
        for &d in inside {
            let (Some(&origin), Some(&size), Some(&extent)) = (offsets.get(d), rt.shape.get(d), view.shape.get(d))
            else {
                return malformed(format!("`inside` names dim {d} of a rank-{} access", offsets.len()));
            };
            if origin < 0 || i128::from(origin) + size as i128 > i128::from(extent) {
                return fail(
                    ErrorKind::BrokenInsidePromise,
                    format!(
                        "`load_global` at {offsets:?} of a view of shape {:?}: its tile of size {size} along dim {d} \
                         ({origin}..{}) does not lie inside the view's extent {extent}, which `inside [{d}]` promises",
                        view.shape,
                        i128::from(origin) + size as i128
                    ),
                );
            }
        }
        self.check_vector_promise(id, inst, &view, &offsets, rt.layout.as_ref())?;
        let codes = self.read_global_tile(&view, &offsets, &rt.shape)?;
        let tile = Tile { dtype: rt.dtype, shape: rt.shape.clone(), codes };
        self.define(inst, 0, Val::Register(Rc::new(tile)))
    }

    fn store_global(
        &mut self,
        id: InstId,
        inst: &InstData,
        value: ValueId,
        dst: ValueId,
        offsets: &[Operand],
    ) -> Result<(), InterpError> {
        let tile = self.register(value, "the stored value")?;
        let view = self.global(dst)?;
        let offsets = self.indices(offsets, "offset")?;
        let layout = match self.kernel.values.get(value).map(|v| &v.ty) {
            Some(Type::Register(t)) => t.layout.as_ref(),
            _ => None,
        };
        self.check_vector_promise(id, inst, &view, &offsets, layout)?;
        if tile.dtype != view.dtype {
            return malformed(format!("the view holds {}, the tile is {}", view.dtype, tile.dtype));
        }
        let name = self.param_name(view.param);
        let block = self.block_id;
        let mut conflict = None;
        let mut written = 0u64;
        {
            let Some(Some(buffer)) = self.buffers.get_mut(view.param) else {
                return malformed(format!("`{name}` has no buffer"));
            };
            let mut tracker = self.trackers.get_mut(view.param).and_then(Option::as_mut);
            visit_global(&view, &offsets, &tile.shape, buffer.len(), &name, |i, e| {
                if let Some(e) = e {
                    let code = tile.codes.get(i).copied().unwrap_or(0);
                    if let Some(t) = tracker.as_mut()
                        && let Err(other) = t.write(e, block, buffer.read(e) != Some(code))
                    {
                        conflict.get_or_insert((e, other));
                        return Ok(());
                    }
                    written += 1;
                    buffer.set(e, code).map_err(|err| InterpError::new(ErrorKind::Malformed, err.to_string()))?;
                }
                Ok(())
            })?;
        }
        self.report.global_elements_written += written;
        if let Some((e, (other, read))) = conflict {
            return Err(self.conflict(e, &name, other, read, true));
        }
        Ok(())
    }

    // ----- shared memory -----

    fn alloc_shared(&mut self, inst: &InstData) -> Result<(), InterpError> {
        let id = Self::result_id(inst, 0)?;
        let kernel = self.kernel;
        let Some(data) = kernel.values.get(id) else {
            return malformed(format!("value handle {id:?} does not exist"));
        };
        let Type::Shared(ty) = &data.ty else {
            return malformed(format!("%{} is a {}, not a shared tensor", data.name, data.ty.describe()));
        };
        let Some(layout) = &ty.layout else {
            return fail(
                ErrorKind::MissingLayout,
                format!(
                    "shared tensor %{} ({}) has no layout; run layout inference first",
                    data.name,
                    data.ty.describe()
                ),
            );
        };
        if layout.shape() != ty.shape || ty.shape.is_empty() {
            return malformed(format!(
                "the layout {layout} of %{} has shape {:?}, the tile {:?}",
                data.name,
                layout.shape(),
                ty.shape
            ));
        }
        let cap = self.options.max_tile_elements;
        if ty.num_elements() > cap || layout.cosize() > cap {
            return fail(
                ErrorKind::TooLarge,
                format!("%{} spans more than {cap} elements (RunOptions::max_tile_elements)", data.name),
            );
        }
        layout.address(&vec![0; ty.shape.len()], ty.dtype.bits()).map_err(|e| {
            InterpError::new(ErrorKind::Malformed, format!("the layout {layout} of %{}: {e}", data.name))
        })?;
        let bytes = ty.size_in_bytes();
        if self.shared.live_bytes.saturating_add(bytes) > self.options.max_shared_bytes {
            return fail(
                ErrorKind::TooLarge,
                format!(
                    "%{} needs {bytes} bytes, more than the {} bytes of shared memory left (RunOptions::max_shared_bytes)",
                    data.name,
                    self.options.max_shared_bytes.saturating_sub(self.shared.live_bytes)
                ),
            );
        }
        let offsets = match self.shared_offsets.get(id.index()).cloned().flatten() {
            Some(offsets) => offsets,
            None => {
                let n = ty.num_elements();
                let mut offsets = Vec::with_capacity(n);
                let mut coords = vec![0usize; ty.shape.len()];
                for _ in 0..n {
                    let offset =
                        layout.offset(&coords).map_err(|e| InterpError::new(ErrorKind::Malformed, e.to_string()))?;
                    offsets.push(offset as u32);
                    advance(&mut coords, &ty.shape);
                }
                let offsets = Rc::new(offsets);
                if let Some(slot) = self.shared_offsets.get_mut(id.index()) {
                    *slot = Some(offsets.clone());
                }
                offsets
            }
        };
        let tile = self.shared.alloc(SharedTileSpec {
            name: format!("%{}", data.name),
            dtype: ty.dtype,
            shape: ty.shape.clone(),
            offsets,
            cells: layout.cosize(),
            bytes,
        });
        self.define(inst, 0, Val::Shared { tile, dtype: ty.dtype })
    }

    fn shared_tile(&self, v: ValueId) -> Result<usize, InterpError> {
        match self.val(v)? {
            Val::Shared { tile, .. } => match self.shared.tiles.get(*tile) {
                Some(t) if !t.freed => Ok(*tile),
                _ => malformed(format!("shared tile {} is used after `free_shared`", self.name(v))),
            },
            other => malformed(format!("{} must be a shared tensor, found a {}", self.name(v), other.describe())),
        }
    }

    fn free_shared(&mut self, tensor: ValueId) -> Result<(), InterpError> {
        let index = self.shared_tile(tensor)?;
        let Some(tile) = self.shared.tile_mut(index) else {
            return malformed("the shared tile does not exist");
        };
        if tile.in_flight > 0 {
            return fail(
                ErrorKind::AsyncPending,
                format!(
                    "shared tile {} is freed while {} elements of `copy_async`s into it are in flight",
                    tile.name, tile.in_flight
                ),
            );
        }
        tile.freed = true;
        tile.cells = Vec::new();
        let bytes = tile.bytes;
        self.shared.live_bytes = self.shared.live_bytes.saturating_sub(bytes);
        Ok(())
    }

    fn load_shared(
        &mut self,
        id: InstId,
        inst: &InstData,
        src: ValueId,
        offsets: &[Operand],
    ) -> Result<(), InterpError> {
        let index = self.shared_tile(src)?;
        let offsets = self.indices(offsets, "offset")?;
        let result = Self::result_id(inst, 0)?;
        let rt = self.register_type(result)?;
        let table = self.table(result)?;
        let access = Access {
            groups: &self.groups,
            check_races: self.options.check_races,
            epoch: self.shared.epoch,
            inst: id.index() as u32,
        };
        let Some(tile) = self.shared.tiles.get_mut(index) else {
            return malformed("the shared tile does not exist");
        };
        if tile.dtype != rt.dtype {
            return malformed(format!("the shared tile holds {}, the loaded tile is {}", tile.dtype, rt.dtype));
        }
        subtile_fits(&tile.shape, &offsets, &rt.shape, &tile.name)?;
        let n = rt.num_elements();
        let mut codes = Vec::with_capacity(n);
        let tile_strides = strides(&tile.shape);
        let mut coords = vec![0usize; rt.shape.len()];
        for i in 0..n {
            let lin = linear(&coords, &offsets, &tile_strides);
            let who = table.accessor.get(i).copied().unwrap_or(0);
            let cell_index = tile.offsets.get(lin).copied().unwrap_or(0) as usize;
            let Some(cell) = tile.cells.get_mut(cell_index) else {
                return malformed("a shared element lies outside its tile's storage");
            };
            match access.read(cell, who) {
                Ok(code) => codes.push(code),
                Err(v) => {
                    let at = element_coords(&coords, &offsets);
                    return Err(violation(self.kernel, access.groups, v, &tile.name, &at, who, "read"));
                }
            }
            advance(&mut coords, &rt.shape);
        }
        self.report.shared_elements_read += n as u64;
        self.define(inst, 0, Val::Register(Rc::new(Tile { dtype: rt.dtype, shape: rt.shape.clone(), codes })))
    }

    fn store_shared(
        &mut self,
        id: InstId,
        value: ValueId,
        dst: ValueId,
        offsets: &[Operand],
    ) -> Result<(), InterpError> {
        let src = self.register(value, "the stored value")?;
        let table = self.table(value)?;
        let index = self.shared_tile(dst)?;
        let offsets = self.indices(offsets, "offset")?;
        let access = Access {
            groups: &self.groups,
            check_races: self.options.check_races,
            epoch: self.shared.epoch,
            inst: id.index() as u32,
        };
        let Some(tile) = self.shared.tiles.get_mut(index) else {
            return malformed("the shared tile does not exist");
        };
        if tile.dtype != src.dtype {
            return malformed(format!("the shared tile holds {}, the stored tile is {}", tile.dtype, src.dtype));
        }
        subtile_fits(&tile.shape, &offsets, &src.shape, &tile.name)?;
        let tile_strides = strides(&tile.shape);
        let mut coords = vec![0usize; src.shape.len()];
        for (i, &code) in src.codes.iter().enumerate() {
            let lin = linear(&coords, &offsets, &tile_strides);
            let who = table.accessor.get(i).copied().unwrap_or(0);
            let cell_index = tile.offsets.get(lin).copied().unwrap_or(0) as usize;
            let Some(cell) = tile.cells.get_mut(cell_index) else {
                return malformed("a shared element lies outside its tile's storage");
            };
            if let Err(v) = access.write(cell, who, code) {
                let at = element_coords(&coords, &offsets);
                return Err(violation(self.kernel, access.groups, v, &tile.name, &at, who, "written"));
            }
            advance(&mut coords, &src.shape);
        }
        self.report.shared_elements_written += src.codes.len() as u64;
        Ok(())
    }

    fn copy_async(
        &mut self,
        id: InstId,
        src: ValueId,
        src_offsets: &[Operand],
        dst: ValueId,
        dst_offsets: &[Operand],
        shape: &[usize],
    ) -> Result<(), InterpError> {
        let view = self.global(src)?;
        let src_offsets = self.indices(src_offsets, "source offset")?;
        let index = self.shared_tile(dst)?;
        let dst_offsets = self.indices(dst_offsets, "destination offset")?;
        let n = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).unwrap_or(usize::MAX);
        if shape.is_empty() || n == 0 {
            return malformed(format!("`copy_async` needs a non-empty shape, found {shape:?}"));
        }
        if n > self.options.max_tile_elements {
            return fail(
                ErrorKind::TooLarge,
                format!("the copy has more than {} elements", self.options.max_tile_elements),
            );
        }
        // A copy selected as proven-aligned `cp.async` runs must find them aligned and whole.
        if let Some(inst) = self.kernel.insts.get(id)
            && inst.via == Some(Via::Async { checked: false })
        {
            let layout = crate::access::copy_layout(shape, self.kernel.num_threads(), view.dtype.bits())
                .map_err(|e| InterpError::new(ErrorKind::Malformed, format!("copy layout: {e}")))?;
            self.check_vector_promise(id, inst, &view, &src_offsets, Some(&layout))?;
        }
        // Read the source now (global memory does not change while the copy is in flight).
        let codes = self.read_global_tile(&view, &src_offsets, shape)?;
        let access = Access {
            groups: &self.groups,
            check_races: self.options.check_races,
            epoch: self.shared.epoch,
            inst: id.index() as u32,
        };
        let group = self.shared.group;
        let Some(tile) = self.shared.tiles.get_mut(index) else {
            return malformed("the shared tile does not exist");
        };
        if tile.dtype != view.dtype {
            return malformed(format!("the shared tile holds {}, the view {}", tile.dtype, view.dtype));
        }
        subtile_fits(&tile.shape, &dst_offsets, shape, &tile.name)?;
        let tile_strides = strides(&tile.shape);
        let mut coords = vec![0usize; shape.len()];
        for &code in &codes {
            let lin = linear(&coords, &dst_offsets, &tile_strides);
            let cell_index = tile.offsets.get(lin).copied().unwrap_or(0);
            let Some(cell) = tile.cells.get_mut(cell_index as usize) else {
                return malformed("a shared element lies outside its tile's storage");
            };
            if let Err(v) = access.issue(cell, code, group) {
                let at = element_coords(&coords, &dst_offsets);
                return Err(violation(self.kernel, access.groups, v, &tile.name, &at, EVERY, "copied to"));
            }
            tile.in_flight += 1;
            self.shared.open.push((index as u32, cell_index));
            advance(&mut coords, shape);
        }
        self.report.shared_elements_written += n as u64;
        Ok(())
    }
}

/// The row-major index in a tile of the element at `offsets + coords`.
fn linear(coords: &[usize], offsets: &[i64], strides: &[usize]) -> usize {
    coords.iter().zip(offsets).zip(strides).map(|((&c, &o), &s)| (c + o as usize) * s).sum()
}

fn element_coords(coords: &[usize], offsets: &[i64]) -> Vec<i64> {
    coords.iter().zip(offsets).map(|(&c, &o)| c as i64 + o).collect()
}

/// Checks that the sub-tile of `part` at `offsets` lies inside a tile of `whole`.
fn subtile_fits(whole: &[usize], offsets: &[i64], part: &[usize], name: &str) -> Result<(), InterpError> {
    if whole.len() != offsets.len() || whole.len() != part.len() {
        return malformed(format!(
            "shared tile {name} has rank {}, the access has {} offsets and rank {}",
            whole.len(),
            offsets.len(),
            part.len()
        ));
    }
    for (d, ((&w, &o), &p)) in whole.iter().zip(offsets).zip(part).enumerate() {
        if o < 0 || i128::from(o) + p as i128 > w as i128 {
            return fail(
                ErrorKind::SubTileOutOfBounds,
                format!("along dimension {d}, the sub-tile [{o}, {o} + {p}) does not fit in shared tile {name}'s {w}"),
            );
        }
    }
    Ok(())
}

/// The error for a broken shared-memory rule.
fn violation(
    kernel: &Kernel,
    groups: &ThreadGroups,
    v: Violation,
    tile: &str,
    at: &[i64],
    who: u32,
    verb: &str,
) -> InterpError {
    let inst_name = |i: u32| {
        let id = InstId::from_index(i as usize);
        let mnemonic = kernel.insts.get(id).map_or("?", |d| d.op.mnemonic());
        format!("`{mnemonic}`, inst {i}")
    };
    let element = format!("element {at:?} of shared tile {tile}");
    let by = if who == EVERY { "a `copy_async`".to_owned() } else { groups.describe(who) };
    let (kind, message) = match v {
        Violation::Uninitialized => {
            (ErrorKind::UninitializedRead, format!("{element} is read by {by} but was never written"))
        }
        Violation::Pending { inst } => (
            ErrorKind::AsyncPending,
            format!(
                "{element} is {verb} by {by} while the `copy_async` into it ({}) is still in flight: its group must complete (`commit_group`, `wait_group`) first",
                inst_name(inst)
            ),
        ),
        Violation::AfterCopy { inst } => (
            ErrorKind::SharedRace,
            format!(
                "{element} is {verb} by {by} after its `copy_async` completed ({}) with no `sync` in between",
                inst_name(inst)
            ),
        ),
        Violation::AfterWrite { writer, inst } => (
            ErrorKind::SharedRace,
            format!(
                "{element} is {verb} by {by}, but {} wrote it ({}) with no `sync` in between",
                groups.describe(writer),
                inst_name(inst)
            ),
        ),
        Violation::AfterRead { reader, inst } => (
            ErrorKind::SharedRace,
            format!(
                "{element} is {verb} by {by}, but {} read it ({}) with no `sync` in between",
                if reader == SEVERAL { "several threads".to_owned() } else { groups.describe(reader) },
                inst_name(inst)
            ),
        ),
    };
    InterpError::new(kind, message)
}

/// Visits the elements of a tile of `shape` at `offsets` of a global view, row-major:
/// `f(tile index, buffer element)`, with `None` for elements outside the view's shape (masked).
/// An element inside the view but outside the buffer (of `len` elements) is an error.
fn visit_global(
    view: &GlobalView,
    offsets: &[i64],
    shape: &[usize],
    len: usize,
    name: &str,
    mut f: impl FnMut(usize, Option<usize>) -> Result<(), InterpError>,
) -> Result<(), InterpError> {
    let rank = shape.len();
    if rank == 0 || view.shape.len() != rank || view.strides.len() != rank || offsets.len() != rank {
        return malformed(format!(
            "the view has rank {}, the tile rank {rank}, and {} offsets are given",
            view.shape.len(),
            offsets.len()
        ));
    }
    let n: usize = shape.iter().product();
    let inner = shape[rank - 1];
    let outer_shape = &shape[..rank - 1];
    let mut outer = vec![0usize; rank - 1];
    let (c0, stride, extent) =
        (i128::from(offsets[rank - 1]), i128::from(view.strides[rank - 1]), i128::from(view.shape[rank - 1]));
    let mut index = 0usize;
    while index < n {
        let mut base = 0i128;
        let mut inside = true;
        for d in 0..rank - 1 {
            let c = i128::from(offsets[d]) + outer[d] as i128;
            inside &= c >= 0 && c < i128::from(view.shape[d]);
            base += c * i128::from(view.strides[d]);
        }
        for j in 0..inner {
            let c = c0 + j as i128;
            let element = if inside && c >= 0 && c < extent {
                let e = base + c * stride;
                if e < 0 || e >= len as i128 {
                    let coords: Vec<i128> =
                        outer.iter().zip(offsets).map(|(&o, &off)| o as i128 + i128::from(off)).chain([c]).collect();
                    return fail(
                        ErrorKind::OutOfBounds,
                        format!(
                            "element {e} is outside the {len}-element buffer of `{name}` (view coordinates {coords:?})"
                        ),
                    );
                }
                Some(e as usize)
            } else {
                None
            };
            f(index, element)?;
            index += 1;
        }
        advance(&mut outer, outer_shape);
    }
    Ok(())
}
