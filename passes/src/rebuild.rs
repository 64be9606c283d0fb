//! Rebuilding kernels: dropping instructions and renumbering handles.
//!
//! Arenas only grow, and the verifier insists that every instruction sits in exactly one
//! block, so a pass that removes instructions rebuilds the kernel: the kept values and
//! instructions are copied, in their original order, into fresh arenas, and every handle is
//! renumbered.

use std::collections::HashMap;

use anybit_ir::arena::Arena;
use anybit_ir::program::{Block, InstData, InstId, Kernel, Op, Operand, ValueData, ValueDef, ValueId};

/// Old handle → new handle.
struct Renumber {
    values: HashMap<ValueId, ValueId>,
    insts: HashMap<InstId, InstId>,
}

impl Renumber {
    fn value(&self, v: ValueId) -> Result<ValueId, String> {
        self.values.get(&v).copied().ok_or_else(|| format!("value {v:?} is used but not kept"))
    }

    fn operand(&self, o: Operand) -> Result<Operand, String> {
        Ok(match o {
            Operand::Value(v) => Operand::Value(self.value(v)?),
            literal => literal,
        })
    }

    fn operands(&self, os: &[Operand]) -> Result<Vec<Operand>, String> {
        os.iter().map(|&o| self.operand(o)).collect()
    }

    fn block(&self, block: &Block) -> Result<Block, String> {
        Ok(Block {
            insts: block.insts.iter().filter_map(|i| self.insts.get(i).copied()).collect(),
            yields: self.operands(&block.yields)?,
        })
    }

    fn op(&self, op: &Op) -> Result<Op, String> {
        let v = |x: &ValueId| self.value(*x);
        Ok(match op {
            Op::Const { value, dtype } => Op::Const { value: *value, dtype: *dtype },
            Op::BlockIndex { axis } => Op::BlockIndex { axis: *axis },
            Op::Unary { op, x } => Op::Unary { op: *op, x: self.operand(*x)? },
            Op::Binary { op, lhs, rhs } => Op::Binary { op: *op, lhs: self.operand(*lhs)?, rhs: self.operand(*rhs)? },
            Op::Compare { op, lhs, rhs } => Op::Compare { op: *op, lhs: self.operand(*lhs)?, rhs: self.operand(*rhs)? },
            Op::Fma { a, b, c } => Op::Fma { a: self.operand(*a)?, b: self.operand(*b)?, c: self.operand(*c)? },
            Op::Select { cond, on_true, on_false } => Op::Select {
                cond: self.operand(*cond)?,
                on_true: self.operand(*on_true)?,
                on_false: self.operand(*on_false)?,
            },
            Op::Cast { x, to } => Op::Cast { x: self.operand(*x)?, to: *to },
            Op::Lookup { x, table, to } => Op::Lookup { x: v(x)?, table: table.clone(), to: *to },
            Op::Fill { value, ty } => Op::Fill { value: self.operand(*value)?, ty: ty.clone() },
            Op::Iota { dim, ty } => Op::Iota { dim: *dim, ty: ty.clone() },
            Op::View { x, ty } => Op::View { x: v(x)?, ty: ty.clone() },
            Op::Broadcast { x, ty } => Op::Broadcast { x: v(x)?, ty: ty.clone() },
            Op::Reduce { op, x, dims, keep_dims, layout } => {
                Op::Reduce { op: *op, x: v(x)?, dims: dims.clone(), keep_dims: *keep_dims, layout: layout.clone() }
            }
            Op::Dot { a, b, c } => Op::Dot { a: v(a)?, b: v(b)?, c: v(c)? },
            Op::GlobalView { ptr, shape, strides } => {
                Op::GlobalView { ptr: v(ptr)?, shape: self.operands(shape)?, strides: self.operands(strides)? }
            }
            Op::LoadGlobal { src, offsets, ty, inside } => Op::LoadGlobal {
                src: v(src)?,
                offsets: self.operands(offsets)?,
                ty: ty.clone(),
                inside: inside.clone(),
            },
            Op::StoreGlobal { value, dst, offsets } => {
                Op::StoreGlobal { value: v(value)?, dst: v(dst)?, offsets: self.operands(offsets)? }
            }
            Op::AllocShared { ty } => Op::AllocShared { ty: ty.clone() },
            Op::FreeShared { tensor } => Op::FreeShared { tensor: v(tensor)? },
            Op::LoadShared { src, offsets, ty } => {
                Op::LoadShared { src: v(src)?, offsets: self.operands(offsets)?, ty: ty.clone() }
            }
            Op::StoreShared { value, dst, offsets } => {
                Op::StoreShared { value: v(value)?, dst: v(dst)?, offsets: self.operands(offsets)? }
            }
            Op::CopyAsync { src, src_offsets, dst, dst_offsets, shape } => Op::CopyAsync {
                src: v(src)?,
                src_offsets: self.operands(src_offsets)?,
                dst: v(dst)?,
                dst_offsets: self.operands(dst_offsets)?,
                shape: shape.clone(),
            },
            Op::CommitGroup => Op::CommitGroup,
            Op::WaitGroup { pending } => Op::WaitGroup { pending: *pending },
            Op::Sync => Op::Sync,
            Op::For { start, end, step, unroll, index, carried, inits, body } => Op::For {
                start: self.operand(*start)?,
                end: self.operand(*end)?,
                step: self.operand(*step)?,
                unroll: *unroll,
                index: v(index)?,
                carried: carried.iter().map(v).collect::<Result<_, _>>()?,
                inits: self.operands(inits)?,
                body: self.block(body)?,
            },
            Op::If { cond, then_body, else_body } => Op::If {
                cond: self.operand(*cond)?,
                then_body: self.block(then_body)?,
                else_body: self.block(else_body)?,
            },
        })
    }
}

/// The kernel with only the instructions `keep` accepts (and the values they define), handles
/// renumbered in the original order. Fails if a kept instruction uses a value of a dropped one.
pub fn retain_insts(kernel: &Kernel, keep: &dyn Fn(InstId) -> bool) -> Result<Kernel, String> {
    let mut renumber = Renumber { values: HashMap::new(), insts: HashMap::new() };
    for (id, _) in kernel.insts.iter() {
        if keep(id) {
            let next = InstId::from_index(renumber.insts.len());
            renumber.insts.insert(id, next);
        }
    }
    let value_kept = |def: &ValueDef| match def {
        ValueDef::Param(_) => true,
        ValueDef::Result(i, _) | ValueDef::LoopIndex(i) | ValueDef::LoopCarried(i, _) => renumber.insts.contains_key(i),
    };
    let mut values = Arena::new();
    let kept: Vec<(ValueId, &ValueData)> = kernel.values.iter().filter(|(_, v)| value_kept(&v.def)).collect();
    for (i, (old, _)) in kept.iter().enumerate() {
        renumber.values.insert(*old, ValueId::from_index(i));
    }
    for (_, data) in kept {
        let inst = |i: &InstId| renumber.insts.get(i).copied().ok_or("a kept value of a dropped instruction");
        let def = match data.def {
            ValueDef::Param(p) => ValueDef::Param(p),
            ValueDef::Result(i, n) => ValueDef::Result(inst(&i)?, n),
            ValueDef::LoopIndex(i) => ValueDef::LoopIndex(inst(&i)?),
            ValueDef::LoopCarried(i, n) => ValueDef::LoopCarried(inst(&i)?, n),
        };
        values.append(ValueData { def, ..data.clone() });
    }
    let mut insts = Arena::new();
    for (id, data) in kernel.insts.iter() {
        if !renumber.insts.contains_key(&id) {
            continue;
        }
        insts.append(InstData {
            op: renumber.op(&data.op)?,
            results: data.results.iter().map(|&r| renumber.value(r)).collect::<Result<_, _>>()?,
            via: data.via,
            span: data.span,
        });
    }
    let mut params = kernel.params.clone();
    for param in &mut params {
        param.value = renumber.value(param.value)?;
    }
    Ok(Kernel { params, values, insts, body: renumber.block(&kernel.body)?, ..kernel.clone() })
}
