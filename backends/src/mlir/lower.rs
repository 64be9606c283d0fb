//! Lowering one kernel to one `llvm.func` in the `llvm` and `nvvm` dialects.
//!
//! The model is the LLVM backend's (see `crate::llvm`): every thread runs the block-level
//! program on its own slots; a register tile is a Rust `Vec` of MLIR values, one per slot;
//! uniform scalars are single values; carriers are the LLVM backend's (`i32` normalized
//! integers, `f32`/`f16`/`bf16` natively). The backend-independent plans are shared with it:
//! slot coordinates (`anybit_ir::access`, `crate::llvm::layout::thread_axes`), literal codes
//! (`anybit_ir::program::infer`), and where NaN bits must be canonicalized
//! (`crate::llvm::nan`).
//!
//! | instruction | lowering |
//! |---|---|
//! | `const`, `block_index` | `llvm.mlir.constant`; `nvvm.read.ptx.sreg.ctaid.{x,y,z}` |
//! | `add`, `sub`, `mul` | per slot: `llvm.fadd`/`fsub`/`fmul` (`f32`, `f16`, `bf16`; `bf16` on the host in `f32`, rounded on the bits), `llvm.add`/`sub`/`mul` (32-bit integers) |
//! | `and`, `or`, `xor`, `shl` | 32-bit integers (`shl` by 32 or more gives 0) |
//! | `global_view` | the pointer, shape and strides widened to `i64` |
//! | `load_global`, `store_global` via `scalar` | per element: a predicated `ld.global`/`st.global` (inline PTX, like the LLVM backend), `.nc` for buffers never stored to; on the host a masked load/store intrinsic |
//!
//! Everything else is reported [`LowerError::Unsupported`], naming the instruction and the
//! value it defines — as are element types other than those above, vectorized global accesses
//! (`via vector(n)`, which this backend does not emit yet) and kernels that store to a buffer
//! they access more than once (the LLVM backend orders those accesses with barriers; this
//! one does not yet).

use std::rc::Rc;

use anybit_ir::access::{modes, slot_offsets};
use anybit_ir::dtype::DType;
use anybit_ir::program::{BinaryOp, InstData, Kernel, Op, Operand, ParamType, Type, ValueDef, ValueId, Via, infer};
use anybit_layouts::{RegisterLayout, ThreadAxis};
use melior::Context;
use melior::ir::attribute::{ArrayAttribute, DictionaryAttribute, StringAttribute, TypeAttribute};
use melior::ir::operation::{OperationBuilder, OperationLike};
use melior::ir::{
    Attribute, Block, BlockLike, BlockRef, Identifier, Location, Region, RegionLike, Type as MType, Value,
};

use super::emit::{Em, ICmp, internal};
use super::session::{KernelModule, Session};
use crate::llvm::emit::{LResult, LowerError, Platform};
use crate::llvm::layout::thread_axes;
use crate::llvm::lower::stored_params;
use crate::llvm::nan::{self, NanState};

fn unsupported<T>(what: impl Into<String>) -> LResult<T> {
    Err(LowerError::Unsupported(what.into()))
}

/// How an element type is carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Carrier {
    /// A 32-bit integer (`i32` or `u32`).
    Int32,
    F32,
    F16,
    Bf16,
}

fn carrier(dtype: DType) -> LResult<Carrier> {
    match dtype {
        DType::F32 => Ok(Carrier::F32),
        DType::F16 => Ok(Carrier::F16),
        DType::BF16 => Ok(Carrier::Bf16),
        d if d.is_integer() && d.bits() == 32 => Ok(Carrier::Int32),
        d => unsupported(format!("element type {d} (this backend supports f32, f16, bf16, i32 and u32 so far)")),
    }
}

/// A register tile in one thread.
#[derive(Clone, Debug)]
struct Tile<'c, 'm> {
    dtype: DType,
    layout: RegisterLayout,
    slots: Vec<Value<'c, 'm>>,
}

/// A view of global memory.
#[derive(Clone, Debug)]
struct GlobalView<'c, 'm> {
    dtype: DType,
    ptr: Value<'c, 'm>,
    param: usize,
    /// `i64`.
    shape: Vec<Value<'c, 'm>>,
    strides: Vec<Value<'c, 'm>>,
    static_strides: Vec<Option<i64>>,
}

#[derive(Clone, Debug)]
enum Val<'c, 'm> {
    Scalar { dtype: DType, v: Value<'c, 'm> },
    Pointer { dtype: DType, ptr: Value<'c, 'm>, param: usize },
    Global(Rc<GlobalView<'c, 'm>>),
    Register(Rc<Tile<'c, 'm>>),
}

/// Builds `kernel` as the one function of a new module of `session`.
pub(crate) fn build_kernel<'s>(session: &'s Session, kernel: &Kernel, platform: Platform) -> LResult<KernelModule<'s>> {
    check_accesses(kernel)?;
    let module = session.module();
    build_into(session.context(), module.inner().body(), kernel, platform)?;
    Ok(module)
}

/// Refuses kernels whose global accesses would need ordering by barriers (a buffer stored to
/// and accessed more than once).
fn check_accesses(kernel: &Kernel) -> LResult<()> {
    let mut loads = vec![0usize; kernel.params.len()];
    let mut stores = vec![0usize; kernel.params.len()];
    let param_of = |view: ValueId| -> Option<usize> {
        let ValueDef::Result(inst, _) = kernel.values.get(view)?.def else { return None };
        let Op::GlobalView { ptr, .. } = &kernel.insts.get(inst)?.op else { return None };
        match kernel.values.get(*ptr)?.def {
            ValueDef::Param(p) => Some(p),
            _ => None,
        }
    };
    let mut unknown = false;
    kernel.walk(|_, inst| match &inst.op {
        Op::LoadGlobal { src, .. } => match param_of(*src).and_then(|p| loads.get_mut(p)) {
            Some(n) => *n += 1,
            None => unknown = true,
        },
        Op::StoreGlobal { dst, .. } => match param_of(*dst).and_then(|p| stores.get_mut(p)) {
            Some(n) => *n += 1,
            None => unknown = true,
        },
        _ => {}
    });
    if unknown {
        return unsupported("a global access whose buffer cannot be told");
    }
    for (p, (&l, &s)) in loads.iter().zip(&stores).enumerate() {
        if s > 0 && l + s > 1 {
            let name = kernel.params.get(p).map_or("?", |p| p.name.as_str());
            return unsupported(format!(
                "buffer `{name}` is stored to and accessed more than once (ordering by barriers is not implemented)"
            ));
        }
    }
    Ok(())
}

fn build_into<'c, 'm>(ctx: &'c Context, body: BlockRef<'c, 'm>, kernel: &Kernel, platform: Platform) -> LResult<()> {
    let loc = Location::unknown(ctx);
    let mut em = Em { ctx, loc, platform, block: body };
    // Parameters: pointers (global address space), scalars as 32-bit words; on the host,
    // then tid, ctaid.{x,y,z} and the shared-memory pointer.
    let mut params: Vec<MType<'c>> = kernel
        .params
        .iter()
        .map(|p| match p.ty {
            ParamType::Pointer(_) => em.global_ptr(),
            ParamType::Scalar(_) => em.i32(),
        })
        .collect();
    if !platform.is_nvptx() {
        params.extend([em.i32(), em.i32(), em.i32(), em.i32(), em.ptr(0)]);
    }
    let void = melior::dialect::llvm::r#type::void(ctx);
    let fn_type = melior::dialect::llvm::r#type::function(void, &params, false);
    let noalias: Attribute<'c> =
        DictionaryAttribute::new(ctx, &[(Identifier::new(ctx, "llvm.noalias"), Attribute::unit(ctx))]).into();
    let none: Attribute<'c> = DictionaryAttribute::new(ctx, &[]).into();
    let arg_attrs: Vec<Attribute<'c>> = (0..params.len())
        .map(|i| match kernel.params.get(i).map(|p| p.ty) {
            Some(ParamType::Pointer(_)) => noalias,
            _ => none,
        })
        .collect();
    let mut attributes = vec![
        (Identifier::new(ctx, "sym_name"), StringAttribute::new(ctx, &kernel.name).into()),
        (Identifier::new(ctx, "function_type"), TypeAttribute::new(fn_type).into()),
        (Identifier::new(ctx, "arg_attrs"), ArrayAttribute::new(ctx, &arg_attrs).into()),
    ];
    if platform.is_nvptx() {
        // The `nvvm` translation makes this a `ptx_kernel`.
        attributes.push((Identifier::new(ctx, "nvvm.kernel"), Attribute::unit(ctx)));
    }
    let func = OperationBuilder::new("llvm.func", loc)
        .add_attributes(&attributes)
        .add_regions([Region::new()])
        .build()
        .map_err(|e| LowerError::Llvm(format!("cannot build `llvm.func`: {e}")))?;
    let func = body.append_operation(func);
    let region = func.region(0).map_err(|e| LowerError::Llvm(e.to_string()))?;
    let args: Vec<(MType<'c>, Location<'c>)> = params.iter().map(|&t| (t, loc)).collect();
    let entry = region.append_block(Block::new(&args));
    em.block = entry;
    let arg = |i: usize| -> LResult<Value<'c, 'm>> {
        entry.argument(i).map(Value::from).map_err(|e| LowerError::Llvm(e.to_string()))
    };
    let n = kernel.params.len();
    let (tid, ctaid) = if platform.is_nvptx() {
        let read = |name: &str| em.op1(name, &[], em.i32(), &[]);
        (
            read("nvvm.read.ptx.sreg.tid.x")?,
            [
                read("nvvm.read.ptx.sreg.ctaid.x")?,
                read("nvvm.read.ptx.sreg.ctaid.y")?,
                read("nvvm.read.ptx.sreg.ctaid.z")?,
            ],
        )
    } else {
        (arg(n)?, [arg(n + 1)?, arg(n + 2)?, arg(n + 3)?])
    };
    let mut lower = Lower {
        em,
        kernel,
        env: vec![None; kernel.values.len()],
        nan: nan::analyze(kernel),
        tid,
        ctaid,
        stored: stored_params(kernel),
    };
    for (i, p) in kernel.params.iter().enumerate() {
        let a = arg(i)?;
        let val = match p.ty {
            ParamType::Pointer(dtype) => Val::Pointer { dtype, ptr: a, param: i },
            ParamType::Scalar(dtype) => Val::Scalar { dtype, v: lower.carrier_of_code(dtype, a)? },
        };
        lower.bind(p.value, val)?;
    }
    for &id in &kernel.body.insts {
        let Some(inst) = kernel.insts.get(id) else { return internal("instruction handle out of range") };
        lower.inst(inst)?;
    }
    lower.em.op("llvm.return", &[], &[], &[])?;
    Ok(())
}

struct Lower<'k, 'c, 'm> {
    em: Em<'c, 'm>,
    kernel: &'k Kernel,
    env: Vec<Option<Val<'c, 'm>>>,
    nan: Vec<NanState>,
    tid: Value<'c, 'm>,
    ctaid: [Value<'c, 'm>; 3],
    /// Per parameter: whether some `store_global` writes through it.
    stored: Vec<bool>,
}

impl<'k, 'c, 'm> Lower<'k, 'c, 'm> {
    fn name(&self, v: ValueId) -> String {
        self.kernel.values.get(v).map_or_else(|| format!("{v:?}"), |d| format!("%{}", d.name))
    }

    fn bind(&mut self, id: ValueId, val: Val<'c, 'm>) -> LResult<()> {
        match self.env.get_mut(id.index()) {
            Some(slot) => {
                *slot = Some(val);
                Ok(())
            }
            None => internal(format!("value handle {id:?} out of range")),
        }
    }

    fn val(&self, id: ValueId) -> LResult<&Val<'c, 'm>> {
        match self.env.get(id.index()) {
            Some(Some(v)) => Ok(v),
            _ => internal(format!("{} is used before it is defined", self.name(id))),
        }
    }

    fn result(inst: &InstData) -> LResult<ValueId> {
        match inst.results.first() {
            Some(&v) => Ok(v),
            None => internal("missing result"),
        }
    }

    fn inst(&mut self, inst: &'k InstData) -> LResult<()> {
        self.dispatch(inst).map_err(|e| e.in_instruction(inst, |r| self.name(r)))
    }

    fn dispatch(&mut self, inst: &'k InstData) -> LResult<()> {
        match &inst.op {
            Op::Const { value, dtype } => {
                let v = self.const_code(*dtype, infer::literal_code(*value, *dtype))?;
                self.bind(Self::result(inst)?, Val::Scalar { dtype: *dtype, v })
            }
            Op::BlockIndex { axis } => {
                let v = self.ctaid[axis.index()];
                let dtype = DType::int(32).map_err(|e| LowerError::Llvm(e.to_string()))?;
                self.bind(Self::result(inst)?, Val::Scalar { dtype, v })
            }
            Op::Binary { op, lhs, rhs } => self.binary(inst, *op, *lhs, *rhs),
            Op::GlobalView { ptr, shape, strides } => {
                let (dtype, p, param) = match self.val(*ptr)? {
                    Val::Pointer { dtype, ptr, param } => (*dtype, *ptr, *param),
                    _ => return internal("`global_view` of a non-pointer"),
                };
                let shape = shape.iter().map(|&s| self.index64(s)).collect::<LResult<Vec<_>>>()?;
                let static_strides = strides
                    .iter()
                    .map(|s| match s {
                        Operand::Literal(anybit_ir::program::Literal::Int(v)) => Some(*v),
                        _ => None,
                    })
                    .collect();
                let strides = strides.iter().map(|&s| self.index64(s)).collect::<LResult<Vec<_>>>()?;
                let view = GlobalView { dtype, ptr: p, param, shape, strides, static_strides };
                self.bind(Self::result(inst)?, Val::Global(Rc::new(view)))
            }
            Op::LoadGlobal { src, offsets, ty } => {
                Self::check_scalar_access(inst)?;
                let Some(layout) = &ty.layout else { return unsupported("a tile without a layout") };
                self.load_global(inst, *src, offsets, layout)
            }
            Op::StoreGlobal { value, dst, offsets } => {
                Self::check_scalar_access(inst)?;
                self.store_global(*value, *dst, offsets)
            }
            other => unsupported(format!("`{}` is not implemented by the MLIR backend yet", other.mnemonic())),
        }
    }

    fn check_scalar_access(inst: &InstData) -> LResult<()> {
        match inst.via {
            None | Some(Via::Scalar) => Ok(()),
            Some(via) => unsupported(format!("`via {via}` (vectorized global accesses are not implemented yet)")),
        }
    }

    // ----- carriers -----

    fn carrier_type(&self, c: Carrier) -> MType<'c> {
        match c {
            Carrier::Int32 => self.em.i32(),
            Carrier::F32 => MType::float32(self.em.ctx),
            Carrier::F16 => MType::float16(self.em.ctx),
            Carrier::Bf16 => MType::bfloat16(self.em.ctx),
        }
    }

    /// The carrier of a code (an `i32`, zero-extended from the type's width).
    fn carrier_of_code(&self, dtype: DType, code: Value<'c, 'm>) -> LResult<Value<'c, 'm>> {
        let em = &self.em;
        match carrier(dtype)? {
            Carrier::Int32 => Ok(code),
            Carrier::F32 => em.conv("llvm.bitcast", code, self.carrier_type(Carrier::F32)),
            c @ (Carrier::F16 | Carrier::Bf16) => {
                let half = em.conv("llvm.trunc", code, em.int_type(16))?;
                em.conv("llvm.bitcast", half, self.carrier_type(c))
            }
        }
    }

    /// The code of a carrier, zero-extended to `i32`.
    fn to_code(&self, dtype: DType, v: Value<'c, 'm>) -> LResult<Value<'c, 'm>> {
        let em = &self.em;
        match carrier(dtype)? {
            Carrier::Int32 => Ok(v),
            Carrier::F32 => em.conv("llvm.bitcast", v, em.i32()),
            Carrier::F16 | Carrier::Bf16 => {
                let half = em.conv("llvm.bitcast", v, em.int_type(16))?;
                em.conv("llvm.zext", half, em.i32())
            }
        }
    }

    /// A constant carrier with exactly this code.
    fn const_code(&self, dtype: DType, code: u32) -> LResult<Value<'c, 'm>> {
        let c = self.em.c32(i64::from(code as i32))?;
        self.carrier_of_code(dtype, c)
    }

    /// The code of a value about to become observable (a store): NaNs computed natively get
    /// the canonical NaN's bits (`crate::llvm::nan`).
    fn observable_code(&self, id: ValueId, dtype: DType, v: Value<'c, 'm>) -> LResult<Value<'c, 'm>> {
        let code = self.to_code(dtype, v)?;
        let dirty = self.nan.get(id.index()).copied() == Some(NanState::Dirty);
        let DType::Float(f) = dtype else { return Ok(code) };
        let Some(nan) = f.nan_code() else { return Ok(code) };
        if !dirty {
            return Ok(code);
        }
        // NaN: the magnitude's bits above the infinity's code (IEEE formats carried natively).
        let em = &self.em;
        let bits = dtype.bits();
        let magnitude = em.and(code, em.c32((1i64 << (bits - 1)) - 1)?)?;
        let infinity = i64::from(nan & !(1u32 << (bits - 1))) & !((1i64 << f.mantissa_bits()) - 1);
        let is_nan = em.icmp(ICmp::Ult, em.c32(infinity)?, magnitude)?;
        em.select(is_nan, em.c32(i64::from(nan as i32))?, code)
    }

    // ----- operands -----

    /// An integer scalar operand as `i64`.
    fn index64(&self, operand: Operand) -> LResult<Value<'c, 'm>> {
        match operand {
            Operand::Literal(anybit_ir::program::Literal::Int(v)) => self.em.c64(v),
            Operand::Literal(l) => internal(format!("index operand {l} is not an integer")),
            Operand::Value(v) => match self.val(v)? {
                Val::Scalar { dtype, v } if dtype.is_integer() && dtype.bits() == 32 => {
                    let name = if dtype.is_signed() { "llvm.sext" } else { "llvm.zext" };
                    self.em.conv(name, *v, self.em.i64())
                }
                Val::Scalar { dtype, .. } => unsupported(format!("index of type {dtype}")),
                _ => internal(format!("{} is not an integer scalar", self.name(v))),
            },
        }
    }

    /// A scalar or tile operand; a literal takes the element type `context`.
    fn lane(&self, operand: Operand, context: DType) -> LResult<(DType, Lane<'c, 'm>)> {
        match operand {
            Operand::Value(v) => match self.val(v)? {
                Val::Scalar { dtype, v } => Ok((*dtype, Lane::Scalar(*v))),
                Val::Register(t) => Ok((t.dtype, Lane::Tile(t.clone()))),
                _ => internal(format!("{} is not a scalar or register tile", self.name(v))),
            },
            Operand::Literal(l) => {
                infer::check_literal(l, context).map_err(|e| LowerError::Llvm(e.0))?;
                Ok((context, Lane::Scalar(self.const_code(context, infer::literal_code(l, context))?)))
            }
        }
    }

    // ----- elementwise -----

    fn binary(&mut self, inst: &InstData, op: BinaryOp, lhs: Operand, rhs: Operand) -> LResult<()> {
        let context = [lhs, rhs]
            .iter()
            .find_map(|o| match o {
                Operand::Value(v) => self.kernel.values.get(*v).map(|d| d.ty.dtype()),
                Operand::Literal(_) => None,
            })
            .unwrap_or(DType::F32);
        let (dtype, a) = self.lane(lhs, context)?;
        let (_, b) = self.lane(rhs, context)?;
        let c = carrier(dtype)?;
        let name = match (c, op) {
            (Carrier::Int32, BinaryOp::Add) => "llvm.add",
            (Carrier::Int32, BinaryOp::Sub) => "llvm.sub",
            (Carrier::Int32, BinaryOp::Mul) => "llvm.mul",
            (Carrier::Int32, BinaryOp::And) => "llvm.and",
            (Carrier::Int32, BinaryOp::Or) => "llvm.or",
            (Carrier::Int32, BinaryOp::Xor) => "llvm.xor",
            (Carrier::Int32, BinaryOp::Shl) => "llvm.shl",
            (_, BinaryOp::Add) => "llvm.fadd",
            (_, BinaryOp::Sub) => "llvm.fsub",
            (_, BinaryOp::Mul) => "llvm.fmul",
            (_, op) => return unsupported(format!("`{}` on {dtype}", op.name())),
        };
        let id = Self::result(inst)?;
        let em = &self.em;
        // The host has no `bfloat` rounding library call: compute in `f32` (exact for these
        // operands up to one rounding, and double rounding to 8 bits is innocuous) and round
        // to nearest even on the bits.
        let bf16_on_host = c == Carrier::Bf16 && !em.platform.is_nvptx();
        let apply = |x: Value<'c, 'm>, y: Value<'c, 'm>| -> LResult<Value<'c, 'm>> {
            if bf16_on_host {
                let f32t = self.carrier_type(Carrier::F32);
                let r = em.bin(name, em.conv("llvm.fpext", x, f32t)?, em.conv("llvm.fpext", y, f32t)?)?;
                let bits = em.conv("llvm.bitcast", r, em.i32())?;
                let lsb = em.and(em.bin("llvm.lshr", bits, em.c32(16)?)?, em.c32(1)?)?;
                let rounded = em.add(bits, em.add(lsb, em.c32(0x7fff)?)?)?;
                let code = em.bin("llvm.lshr", rounded, em.c32(16)?)?;
                let magnitude = em.and(bits, em.c32(0x7fff_ffff)?)?;
                let is_nan = em.icmp(ICmp::Ult, em.c32(0x7f80_0000)?, magnitude)?;
                let code = em.select(is_nan, em.c32(0x7fc0)?, code)?;
                return self.carrier_of_code(dtype, code);
            }
            let r = em.bin(name, x, y)?;
            if op == BinaryOp::Shl {
                // Shift amounts of 32 or more give 0.
                let big = em.icmp(ICmp::Uge, y, em.c32(32)?)?;
                return em.select(big, em.c32(0)?, r);
            }
            Ok(r)
        };
        let val = match (&a, &b) {
            (Lane::Scalar(x), Lane::Scalar(y)) => Val::Scalar { dtype, v: apply(*x, *y)? },
            _ => {
                let Some(Type::Register(t)) = self.kernel.values.get(id).map(|d| &d.ty) else {
                    return internal("an elementwise result that is not a tile");
                };
                let Some(layout) = &t.layout else { return unsupported("a tile without a layout") };
                let slots = (0..layout.num_slots()).map(|i| apply(a.at(i)?, b.at(i)?)).collect::<LResult<Vec<_>>>()?;
                Val::Register(Rc::new(Tile { dtype, layout: layout.clone(), slots }))
            }
        };
        self.bind(id, val)
    }

    // ----- layouts -----

    /// Per dim, the coordinate of the running thread's slot-0-digits element (`i32`).
    fn coords_base(&self, layout: &RegisterLayout) -> LResult<Vec<Value<'c, 'm>>> {
        let em = &self.em;
        let modes = modes(layout);
        let mut base: Vec<Option<Value<'c, 'm>>> = vec![None; layout.rank()];
        for (k, &(axis, size, stride)) in thread_axes(layout).iter().enumerate() {
            let ThreadAxis::Mode(m) = axis else { continue };
            let Some(mode) = modes.get(m) else { return internal("mode out of range") };
            let q = if stride == 1 { self.tid } else { em.bin("llvm.udiv", self.tid, em.c32(stride as i64)?)? };
            let digit = if k == 0 { q } else { em.bin("llvm.urem", q, em.c32(size as i64)?)? };
            let term = if mode.weight == 1 { digit } else { em.mul(digit, em.c32(mode.weight as i64)?)? };
            base[mode.dim] = Some(match base[mode.dim] {
                None => term,
                Some(b) => em.add(b, term)?,
            });
        }
        base.into_iter().map(|b| b.map_or_else(|| em.c32(0), Ok)).collect()
    }

    /// Whether the running thread is the first holder of its elements (replicas store once).
    fn is_first_holder(&self, layout: &RegisterLayout) -> LResult<Value<'c, 'm>> {
        let em = &self.em;
        let mut acc = em.ctrue()?;
        for (k, &(axis, size, stride)) in thread_axes(layout).iter().enumerate() {
            if !matches!(axis, ThreadAxis::Replicated(_)) || size <= 1 {
                continue;
            }
            let q = if stride == 1 { self.tid } else { em.bin("llvm.udiv", self.tid, em.c32(stride as i64)?)? };
            let digit = if k == 0 { q } else { em.bin("llvm.urem", q, em.c32(size as i64)?)? };
            let zero = em.icmp(ICmp::Eq, digit, em.c32(0)?)?;
            acc = em.and(acc, zero)?;
        }
        Ok(acc)
    }

    // ----- global memory -----

    /// Per slot of `layout` at `offsets` of `view`: the element's address and whether it is
    /// inside the view.
    fn global_elements(
        &self,
        view: &GlobalView<'c, 'm>,
        offsets: &[Operand],
        layout: &RegisterLayout,
    ) -> LResult<Vec<(Value<'c, 'm>, Value<'c, 'm>)>> {
        let em = &self.em;
        let rank = view.shape.len();
        if offsets.len() != rank || layout.rank() != rank {
            return internal("rank mismatch in a global access");
        }
        let bits = view.dtype.bits();
        if !matches!(bits, 8 | 16 | 32) {
            return unsupported(format!("global accesses of {}-bit elements", bits));
        }
        let base = self.coords_base(layout)?;
        let mut coord = Vec::with_capacity(rank);
        let mut index = em.c64(0)?;
        for d in 0..rank {
            let c = em.add(self.index64(offsets[d])?, em.conv("llvm.sext", base[d], em.i64())?)?;
            index = em.add(index, em.mul(c, view.strides[d])?)?;
            coord.push(c);
        }
        let zero = em.c64(0)?;
        let mut out = Vec::new();
        for off in slot_offsets(layout) {
            let mut i = index;
            let mut mask = em.ctrue()?;
            for (d, &o) in off.iter().enumerate() {
                if o != 0 {
                    let term = match view.static_strides.get(d).copied().flatten() {
                        Some(s) => em.c64(s.wrapping_mul(o))?,
                        None => em.mul(view.strides[d], em.c64(o)?)?,
                    };
                    i = em.add(i, term)?;
                }
                let c = if o == 0 { coord[d] } else { em.add(coord[d], em.c64(o)?)? };
                let inside = em.and(em.icmp(ICmp::Sge, c, zero)?, em.icmp(ICmp::Slt, c, view.shape[d])?)?;
                mask = em.and(mask, inside)?;
            }
            let addr = em.byte_offset(view.ptr, em.mul(i, em.c64(i64::from(bits / 8))?)?)?;
            out.push((addr, mask));
        }
        Ok(out)
    }

    fn view(&self, id: ValueId) -> LResult<Rc<GlobalView<'c, 'm>>> {
        match self.val(id)? {
            Val::Global(g) => Ok(g.clone()),
            _ => internal(format!("{} is not a global view", self.name(id))),
        }
    }

    fn load_global(
        &mut self,
        inst: &InstData,
        src: ValueId,
        offsets: &[Operand],
        layout: &RegisterLayout,
    ) -> LResult<()> {
        let view = self.view(src)?;
        let dtype = view.dtype;
        carrier(dtype)?;
        // Only buffers never stored to are read through the non-coherent cache.
        let invariant = !self.stored.get(view.param).copied().unwrap_or(true);
        let bits = dtype.bits();
        let mut slots = Vec::new();
        for (addr, mask) in self.global_elements(&view, offsets, layout)? {
            let code = self.load_pred(addr, bits, mask, invariant)?;
            slots.push(self.carrier_of_code(dtype, code)?);
        }
        let tile = Tile { dtype, layout: layout.clone(), slots };
        self.bind(Self::result(inst)?, Val::Register(Rc::new(tile)))
    }

    fn store_global(&mut self, value: ValueId, dst: ValueId, offsets: &[Operand]) -> LResult<()> {
        let view = self.view(dst)?;
        let tile = match self.val(value)? {
            Val::Register(t) => t.clone(),
            _ => return internal(format!("{} is not a register tile", self.name(value))),
        };
        let first = self.is_first_holder(&tile.layout)?;
        let elements = self.global_elements(&view, offsets, &tile.layout)?;
        for ((addr, mask), &v) in elements.into_iter().zip(&tile.slots) {
            let code = self.observable_code(value, tile.dtype, v)?;
            let pred = self.em.and(mask, first)?;
            self.store_pred(addr, view.dtype.bits(), code, pred)?;
        }
        Ok(())
    }

    /// Loads `bits` (8, 16 or 32) at `addr` where `pred` holds, else 0, zero-extended to `i32`.
    fn load_pred(
        &self,
        addr: Value<'c, 'm>,
        bits: u32,
        pred: Value<'c, 'm>,
        invariant: bool,
    ) -> LResult<Value<'c, 'm>> {
        let em = &self.em;
        if em.platform.is_nvptx() {
            let nc = if invariant { ".nc" } else { "" };
            let ty = match bits {
                8 => "u8",
                16 => "u16",
                _ => "b32",
            };
            let asm = format!("{{ mov.b32 $0, 0; @$2 ld.global{nc}.{ty} $0, [$1]; }}");
            return match em.inline_asm(&asm, "=r,l,b", &[addr, pred], Some(em.i32()), invariant)? {
                Some(v) => Ok(v),
                None => internal("inline load without a result"),
            };
        }
        let ty = em.int_type(bits);
        let vec1 = |t: MType<'c>| MType::vector(&[1], t);
        let mask = self.splat1(pred, vec1(em.i1()))?;
        let pass = em.op1("llvm.mlir.zero", &[], vec1(ty), &[])?;
        let align = melior::ir::attribute::IntegerAttribute::new(em.i32(), i64::from(bits / 8)).into();
        let v = em.op1("llvm.intr.masked.load", &[addr, mask, pass], vec1(ty), &[("alignment", align)])?;
        let e = em.op1("llvm.extractelement", &[v, em.c64(0)?], ty, &[])?;
        if bits == 32 { Ok(e) } else { em.conv("llvm.zext", e, em.i32()) }
    }

    /// Stores the low `bits` of `code` at `addr` where `pred` holds.
    fn store_pred(&self, addr: Value<'c, 'm>, bits: u32, code: Value<'c, 'm>, pred: Value<'c, 'm>) -> LResult<()> {
        let em = &self.em;
        if em.platform.is_nvptx() {
            let ty = match bits {
                8 => "u8",
                16 => "u16",
                _ => "b32",
            };
            em.inline_asm(&format!("@$0 st.global.{ty} [$1], $2;"), "b,l,r", &[pred, addr, code], None, false)?;
            return Ok(());
        }
        let ty = em.int_type(bits);
        let vec1 = |t: MType<'c>| MType::vector(&[1], t);
        let v = if bits == 32 { code } else { em.conv("llvm.trunc", code, ty)? };
        let v = self.splat1(v, vec1(ty))?;
        let mask = self.splat1(pred, vec1(em.i1()))?;
        let align = melior::ir::attribute::IntegerAttribute::new(em.i32(), i64::from(bits / 8)).into();
        em.op("llvm.intr.masked.store", &[v, addr, mask], &[], &[("alignment", align)])?;
        Ok(())
    }

    /// A one-element vector holding `v`.
    fn splat1(&self, v: Value<'c, 'm>, ty: MType<'c>) -> LResult<Value<'c, 'm>> {
        let em = &self.em;
        let undef = em.op1("llvm.mlir.poison", &[], ty, &[])?;
        em.op1("llvm.insertelement", &[undef, v, em.c64(0)?], ty, &[])
    }
}

/// An elementwise operand.
enum Lane<'c, 'm> {
    Scalar(Value<'c, 'm>),
    Tile(Rc<Tile<'c, 'm>>),
}

impl<'c, 'm> Lane<'c, 'm> {
    fn at(&self, i: usize) -> LResult<Value<'c, 'm>> {
        match self {
            Lane::Scalar(v) => Ok(*v),
            Lane::Tile(t) => match t.slots.get(i) {
                Some(v) => Ok(*v),
                None => internal("slot out of range"),
            },
        }
    }
}
