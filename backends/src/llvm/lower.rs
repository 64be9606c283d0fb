//! Lowering one kernel: the tile IR → one module (LLVM IR through inkwell, or MLIR's `llvm`
//! and `nvvm` dialects through melior: [`build_kernel`] is generic over the emitter, see
//! `emitter.rs`) → PTX.
//!
//! # The model
//!
//! Every thread runs the block-level program on **its own slots**. A register tile of layout
//! `L` is, in each thread, a Rust `Vec` of LLVM values — one per slot, slot `i` holding the
//! element `L.map(tid, i)` — never an LLVM array or `alloca`, so it lives in registers.
//! Uniform scalars are single values. Carriers (which LLVM type holds an element) and the
//! exact arithmetic are described in `arith.rs`; the coordinates of a thread's slots (a dynamic
//! base from `tid.x` plus static per-slot offsets) in `layout.rs`.
//!
//! | instruction | lowering |
//! |---|---|
//! | `const`, `block_index` | a constant; `ctaid.{x,y,z}` (read once in the prologue) |
//! | elementwise (`add`…`tanh`, compares, `select`, `cast`, `fma`) | per slot (`arith.rs`; `fma` as `llvm.fma.f32`); scalars broadcast |
//! | `lookup` | per slot: a tree of 2^N − 1 selects on the code's bits over the entries' codes (`arith.rs`), no memory access |
//! | `fill`, `iota` | per slot: the value; the slot's coordinate along the dim, wrapped |
//! | `view` | per thread: slot codes concatenated LSB-first and re-split (static shifts) |
//! | `broadcast` | register copies when every thread holds what it needs, else through scratch |
//! | `reduce` | per thread over its slots, then butterfly shuffles across lanes and/or scratch across warps (`tensor.rs`) |
//! | `dot` | `mma.sync` (f16/bf16 → f32, s8/u8 → s32) when c is made of accumulator fragments, a and b converted to fragments when they are not; else a loop over k from scratch (`dot.rs`) |
//! | `global_view` | the pointer, shape and strides widened to `i64` |
//! | `load_global`, `store_global` | predicated accesses (`@p ld.global`, `@p st.global`), vectorized over aligned runs of consecutive elements, with no bounds test along a load's `inside` dims; sub-byte stores as atomic read-modify-writes of 32-bit words; loads through pointers never stored to are `.nc` (`memory.rs`) |
//! | `alloc_shared`, `free_shared` | static offsets from a first-fit plan of the kernel; nothing at run time |
//! | `load_shared`, `store_shared` | per slot through the shared layout (swizzle included), vectorized when provably aligned, `ldmatrix` for fragment layouts; sub-byte stores atomic |
//! | `copy_async` | `cp.async` (4/8/16 bytes, zero-filled outside the view) for aligned runs of byte-sized elements, else a synchronous copy; `commit_group`/`wait_group N` as `cp.async.commit_group`/`wait_group N` |
//! | `sync` | `barrier.cta.sync.aligned.all 0` |
//! | `for` | a loop with φ-nodes for the index and every slot of every carried value; `unroll N` emits the body N times per iteration plus a remainder loop; a step ≤ 0 skips the loop (the interpreter reports an error) |
//! | `if` | a branch with φ-nodes for the results (conditions are uniform) |
//!
//! **Ordering of global memory.** Instructions act on the whole block one after another; the
//! threads of a GPU block do not. A barrier is therefore emitted before a load of a buffer the
//! block may have stored to since the last barrier, and before a store to a buffer it may
//! have read since then (or stored to earlier in the same iteration) — see
//! [`Lower::global_access`]. Kernels that read their inputs and write their outputs get none.
//!
//! Shared memory is one buffer: the kernel's tiles at planned offsets, then a scratch area
//! for the cross-thread operations, sized by the largest one. Up to 48 KiB it is a static
//! `.shared` array; above, an `extern .shared` array of dynamic shared memory (the manifest
//! tells the host to opt in).

use std::rc::Rc;

use anybit_ir::dtype::DType;
use anybit_ir::program::{Block, InstData, InstId, Kernel, Literal, Op, Operand, ParamType, Type, ValueId, infer};
use anybit_layouts::{RegisterLayout, SharedLayout};
use inkwell::OptimizationLevel;
use inkwell::context::Context;
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{CodeModel, FileType, InitializationConfig, RelocMode, Target as LlvmTarget, TargetTriple};

use super::arith;
use super::dequant;
use super::emit::{Em, LResult, LowerError, Platform, internal};
use super::emitter::Emit;
use super::memory::SharedPlan;
use super::nan::{self, NanState};
use crate::{BackendError, CompileOptions, Target};

/// A compiled kernel.
pub(crate) struct LoweredKernel {
    /// The PTX text.
    pub ptx: String,
    /// The optimized LLVM IR, when asked for.
    pub llvm_ir: Option<String>,
    /// Shared memory per block, in bytes.
    pub shared_memory_bytes: usize,
}

/// Compiles one kernel for `target`.
pub(crate) fn compile_kernel(
    kernel: &Kernel,
    target: Target,
    options: &CompileOptions,
) -> Result<LoweredKernel, BackendError> {
    let llvm = |message: String| BackendError::Llvm { kernel: kernel.name.clone(), message };
    let context = Context::create();
    let em = Em::new(&context, &kernel.name, Platform::Nvptx(target));
    let (em, shared_memory_bytes) = build_kernel(em, kernel).map_err(|e| match e {
        LowerError::Unsupported(what) => BackendError::Unsupported { kernel: kernel.name.clone(), what },
        LowerError::Llvm(message) => llvm(message),
    })?;

    let (ptx, llvm_ir) = emit_ptx(&em.module, &kernel.name, target, options)?;
    Ok(LoweredKernel { ptx, llvm_ir, shared_memory_bytes })
}

/// Optimizes a kernel's LLVM module with `options.llvm`'s pipeline and emits PTX for `target`;
/// returns the PTX and, when asked for, the optimized LLVM IR. The MLIR backend hands the
/// module MLIR translated to here too.
pub(crate) fn emit_ptx(
    module: &inkwell::module::Module<'_>,
    kernel: &str,
    target: Target,
    options: &CompileOptions,
) -> Result<(String, Option<String>), BackendError> {
    let llvm = |message: String| BackendError::Llvm { kernel: kernel.to_string(), message };
    // Registering the target is global state: once per process, before any thread uses it.
    static NVPTX: std::sync::Once = std::sync::Once::new();
    NVPTX.call_once(|| LlvmTarget::initialize_nvptx(&InitializationConfig::default()));
    let triple = TargetTriple::create("nvptx64-nvidia-cuda");
    let llvm_target = LlvmTarget::from_triple(&triple).map_err(|e| llvm(e.to_string()))?;
    let machine = llvm_target
        .create_target_machine(
            &triple,
            target.name(),
            &target.llvm_features(),
            // `Default` code generation emits the same SASS as `Aggressive` here, measurably faster.
            OptimizationLevel::Default,
            RelocMode::Default,
            CodeModel::Default,
        )
        .ok_or_else(|| llvm(format!("no NVPTX target machine for {target}")))?;
    module.set_triple(&triple);
    module.set_data_layout(&machine.get_target_data().get_data_layout());
    module.verify().map_err(|e| llvm(format!("the generated module does not verify: {e}")))?;
    module
        .run_passes(options.llvm.pipeline(), &machine, PassBuilderOptions::create())
        .map_err(|e| llvm(format!("optimization failed: {e}")))?;
    let llvm_ir = options.emit_llvm_ir.then(|| module.print_to_string().to_string());
    let buffer = machine
        .write_to_memory_buffer(module, FileType::Assembly)
        .map_err(|e| llvm(format!("PTX emission failed: {e}")))?;
    let ptx = String::from_utf8_lossy(buffer.as_slice()).trim_end_matches('\0').to_string();
    Ok((ptx, llvm_ir))
}

// ----- values -----

/// A register tile in one thread: one carrier per slot.
#[derive(Clone, Debug)]
pub(crate) struct Tile<V> {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub layout: RegisterLayout,
    pub slots: Vec<V>,
    /// Where the tile was loaded from, while that memory is unchanged: converting the tile to
    /// another layout can then load it again instead of exchanging it through scratch.
    pub origin: Option<Origin>,
}

/// The shared-memory sub-tile a register tile was loaded from.
#[derive(Clone, Debug)]
pub(crate) struct Origin {
    pub tile: ValueId,
    pub offsets: Vec<Operand>,
    /// The shared-memory epoch of the load (see [`Lower::epoch`]).
    pub epoch: u64,
}

/// A view of global memory.
#[derive(Clone, Debug)]
pub(crate) struct GlobalView<V> {
    pub dtype: DType,
    pub ptr: V,
    /// The pointer parameter's position.
    pub param: usize,
    /// Shape and strides, in elements, as `i64`.
    pub shape: Vec<V>,
    pub strides: Vec<V>,
    /// Strides known at compile time (literals).
    pub static_strides: Vec<Option<i64>>,
}

/// A shared tile: its place in the block's shared memory.
#[derive(Clone, Debug)]
pub(crate) struct SharedTile {
    pub dtype: DType,
    pub layout: SharedLayout,
    /// Byte offset of the tile in the shared buffer.
    pub offset: usize,
}

/// The value of an SSA value in the running thread.
#[derive(Clone, Debug)]
pub(crate) enum Val<V> {
    Scalar { dtype: DType, v: V },
    Pointer { dtype: DType, ptr: V, param: usize },
    Global(Rc<GlobalView<V>>),
    Shared(Rc<SharedTile>),
    Register(Rc<Tile<V>>),
}

/// An elementwise operand: the same carrier for every slot, or a tile's slots.
pub(crate) enum Lane<V> {
    Scalar(V),
    Tile(Rc<Tile<V>>),
}

impl<V: Copy> Lane<V> {
    pub(crate) fn at(&self, i: usize) -> LResult<V> {
        match self {
            Lane::Scalar(v) => Ok(*v),
            Lane::Tile(t) => match t.slots.get(i) {
                Some(v) => Ok(*v),
                None => internal("slot out of range"),
            },
        }
    }

    pub(crate) fn tile_ref(&self) -> Option<&Rc<Tile<V>>> {
        self.tile()
    }

    fn tile(&self) -> Option<&Rc<Tile<V>>> {
        match self {
            Lane::Tile(t) => Some(t),
            Lane::Scalar(_) => None,
        }
    }
}

// ----- the lowering -----

/// The state of lowering one kernel.
pub(crate) struct Lower<'k, E: Emit> {
    pub em: E,
    pub kernel: &'k Kernel,
    pub env: Vec<Option<Val<E::V>>>,
    pub plan: SharedPlan,
    /// Bumped by everything that may write shared memory (stores, copies, waits, frees, and
    /// loops or branches containing them): a register tile loaded from shared memory may be
    /// reloaded while the epoch is unchanged.
    pub epoch: u64,
    /// Per parameter: whether some `store_global` writes through it.
    pub stored_params: Vec<bool>,
    /// Bytes of scratch the cross-thread operations need (the largest).
    pub scratch_bytes: usize,
    /// Whether the kernel has `copy_async`s (then `commit_group` and `wait_group` emit theirs).
    pub async_copies: bool,
    /// Per pointer parameter: read / written since the last barrier (see [`Lower::global_access`]).
    pub global_state: GlobalState,
    /// Per value: what its NaN bits are (`nan.rs`).
    pub nan: Vec<NanState>,
}

/// Which pointer parameters the block's threads may have read and written since the last
/// barrier.
#[derive(Clone, Debug, Default)]
pub(crate) struct GlobalState {
    pub loaded: Vec<bool>,
    pub stored: Vec<bool>,
    /// Stored by the current loop iteration (or straight-line code) since the barrier, as
    /// opposed to stores a previous iteration may have made.
    pub stored_here: Vec<bool>,
}

impl GlobalState {
    fn union(&mut self, other: &GlobalState) {
        for (a, b) in self.loaded.iter_mut().zip(&other.loaded) {
            *a |= *b;
        }
        for (a, b) in self.stored.iter_mut().zip(&other.stored) {
            *a |= *b;
        }
        for (a, b) in self.stored_here.iter_mut().zip(&other.stored_here) {
            *a |= *b;
        }
    }

    /// Accesses a previous iteration of a loop may have made (its stores do not order later
    /// stores, see [`Lower::global_access`]).
    fn union_previous_iteration(&mut self, body: &GlobalState) {
        for (a, b) in self.loaded.iter_mut().zip(&body.loaded) {
            *a |= *b;
        }
        for (a, b) in self.stored.iter_mut().zip(&body.stored) {
            *a |= *b;
        }
    }
}

fn unsupported<T>(what: String) -> LResult<T> {
    Err(LowerError::Unsupported(what))
}

/// Builds the kernel function with `em`; returns the emitter back and the shared memory
/// bytes the kernel uses.
pub(crate) fn build_kernel<E: Emit>(mut em: E, kernel: &Kernel) -> LResult<(E, usize)> {
    let plan = SharedPlan::new(kernel)?;
    let params = em.begin_kernel(kernel)?;
    let stored_params = stored_params(kernel);
    let mut lower = Lower {
        em,
        kernel,
        env: vec![None; kernel.values.len()],
        plan,
        epoch: 0,
        stored_params,
        scratch_bytes: 0,
        async_copies: has_copies(kernel),
        global_state: GlobalState {
            loaded: vec![false; kernel.params.len()],
            stored: vec![false; kernel.params.len()],
            stored_here: vec![false; kernel.params.len()],
        },
        nan: nan::analyze(kernel),
    };
    lower.run(&params)?;
    let Lower { mut em, plan, scratch_bytes, .. } = lower;
    let shared_bytes = if scratch_bytes > 0 { plan.scratch_offset() + scratch_bytes } else { plan.peak() };
    em.finish_kernel(shared_bytes)?;
    Ok((em, shared_bytes))
}

/// Whether the kernel has a `copy_async` (then every `commit_group` and `wait_group` is the
/// PTX one, wherever it stands relative to the copies).
fn has_copies(kernel: &Kernel) -> bool {
    let mut found = false;
    kernel.walk(|_, inst| found |= matches!(inst.op, Op::CopyAsync { .. }));
    found
}

/// Per parameter, whether some `store_global` writes through it (all of them when that
/// cannot be told).
pub(crate) fn stored_params(kernel: &Kernel) -> Vec<bool> {
    let mut stored = vec![false; kernel.params.len()];
    let mut unknown = false;
    kernel.walk(|_, inst| {
        if let Op::StoreGlobal { dst, .. } = &inst.op {
            let param = kernel.values.get(*dst).and_then(|v| match v.def {
                anybit_ir::program::ValueDef::Result(view, _) => match kernel.insts.get(view).map(|i| &i.op) {
                    Some(Op::GlobalView { ptr, .. }) => match kernel.values.get(*ptr).map(|p| p.def) {
                        Some(anybit_ir::program::ValueDef::Param(p)) => Some(p),
                        _ => None,
                    },
                    _ => None,
                },
                _ => None,
            });
            match param.and_then(|p| stored.get_mut(p)) {
                Some(flag) => *flag = true,
                None => unknown = true,
            }
        }
    });
    if unknown {
        stored.iter_mut().for_each(|s| *s = true);
    }
    stored
}

impl<'k, E: Emit> Lower<'k, E> {
    fn run(&mut self, params: &[E::V]) -> LResult<()> {
        for (position, param) in self.kernel.params.iter().enumerate() {
            let Some(&p) = params.get(position) else { return internal("missing parameter") };
            let val = match param.ty {
                ParamType::Pointer(dtype) => Val::Pointer { dtype, ptr: p, param: position },
                ParamType::Scalar(dtype) => {
                    let word = p;
                    let code = if dtype.bits() >= 32 {
                        word
                    } else {
                        self.em.and(word, self.em.c32((1i64 << dtype.bits()) - 1)?)?
                    };
                    Val::Scalar { dtype, v: arith::from_code(&self.em, dtype, code)? }
                }
            };
            self.bind(param.value, val)?;
        }
        let body = &self.kernel.body;
        self.block(body)
    }

    // ----- values -----

    pub(crate) fn name(&self, v: ValueId) -> String {
        self.kernel.values.get(v).map_or_else(|| format!("{v:?}"), |d| format!("%{}", d.name))
    }

    pub(crate) fn bind(&mut self, id: ValueId, val: Val<E::V>) -> LResult<()> {
        match self.env.get_mut(id.index()) {
            Some(slot) => {
                *slot = Some(val);
                Ok(())
            }
            None => internal(format!("value handle {id:?} out of range")),
        }
    }

    pub(crate) fn val(&self, id: ValueId) -> LResult<&Val<E::V>> {
        match self.env.get(id.index()) {
            Some(Some(v)) => Ok(v),
            _ => internal(format!("{} is used before it is defined", self.name(id))),
        }
    }

    /// The NaN state of a value.
    pub(crate) fn nan_state(&self, id: ValueId) -> NanState {
        self.nan.get(id.index()).copied().unwrap_or(NanState::Exact)
    }

    /// The value with NaNs canonicalized (every slot), when it may hold NaNs with other bits.
    pub(crate) fn canonical(&self, id: ValueId, val: &Val<E::V>) -> LResult<Val<E::V>> {
        if self.nan_state(id) != NanState::Dirty {
            return Ok(val.clone());
        }
        Ok(match val {
            Val::Scalar { dtype, v } => Val::Scalar { dtype: *dtype, v: arith::canonicalize(&self.em, *dtype, *v)? },
            Val::Register(t) => {
                let slots =
                    t.slots.iter().map(|&v| arith::canonicalize(&self.em, t.dtype, v)).collect::<LResult<_>>()?;
                Val::Register(Rc::new(Tile { slots, origin: None, ..(**t).clone() }))
            }
            other => other.clone(),
        })
    }

    /// An operand flowing into a merge whose result is in state `into`: canonicalized when
    /// the merge keeps exact bits and the operand's may be any NaN.
    fn merge_operand(&self, operand: Operand, into: NanState, val: Val<E::V>) -> LResult<Val<E::V>> {
        match operand {
            Operand::Value(v) if into == NanState::Exact => self.canonical(v, &val),
            _ => Ok(val),
        }
    }

    pub(crate) fn tile(&self, id: ValueId) -> LResult<Rc<Tile<E::V>>> {
        match self.val(id)? {
            Val::Register(t) => Ok(t.clone()),
            _ => internal(format!("{} is not a register tile", self.name(id))),
        }
    }

    pub(crate) fn value_type(&self, id: ValueId) -> LResult<&'k Type> {
        match self.kernel.values.get(id) {
            Some(d) => Ok(&d.ty),
            None => internal(format!("value handle {id:?} out of range")),
        }
    }

    /// The declared register type of a value, with its layout.
    pub(crate) fn register_type(&self, id: ValueId) -> LResult<(DType, &'k [usize], &'k RegisterLayout)> {
        match self.value_type(id)? {
            Type::Register(t) => match &t.layout {
                Some(l) => Ok((t.dtype, &t.shape, l)),
                None => unsupported(format!("{} has no layout", self.name(id))),
            },
            other => internal(format!("{} is a {}, not a register tile", self.name(id), other.describe())),
        }
    }

    fn result(inst: &InstData, i: usize) -> LResult<ValueId> {
        match inst.results.get(i) {
            Some(&v) => Ok(v),
            None => internal("missing result"),
        }
    }

    /// A scalar or register operand; a literal takes the element type `context`.
    pub(crate) fn lane(&self, operand: Operand, context: DType) -> LResult<(DType, Lane<E::V>)> {
        match operand {
            Operand::Value(v) => match self.val(v)? {
                Val::Scalar { dtype, v } => Ok((*dtype, Lane::Scalar(*v))),
                Val::Register(t) => Ok((t.dtype, Lane::Tile(t.clone()))),
                _ => internal(format!("{} is not a scalar or register tile", self.name(v))),
            },
            Operand::Literal(l) => {
                infer::check_literal(l, context).map_err(|e| LowerError::Llvm(e.0))?;
                Ok((context, Lane::Scalar(arith::const_code(&self.em, context, infer::literal_code(l, context))?)))
            }
        }
    }

    /// A lane for a merge into a value of state `into` (see [`Lower::merge_operand`]).
    fn merge_lane(&self, operand: Operand, context: DType, into: NanState) -> LResult<(DType, Lane<E::V>)> {
        if let Operand::Value(v) = operand
            && into == NanState::Exact
            && self.nan_state(v) == NanState::Dirty
        {
            return match self.canonical(v, self.val(v)?)? {
                Val::Scalar { dtype, v } => Ok((dtype, Lane::Scalar(v))),
                Val::Register(t) => Ok((t.dtype, Lane::Tile(t))),
                _ => internal("select of a non-value"),
            };
        }
        self.lane(operand, context)
    }

    /// The element type of the first value among the operands (what literals take).
    fn context(&self, operands: &[Operand]) -> LResult<Option<DType>> {
        for &o in operands {
            if let Operand::Value(v) = o {
                return Ok(Some(self.value_type(v)?.dtype()));
            }
        }
        Ok(None)
    }

    /// An integer scalar operand as `i64` (signed or unsigned per its type).
    pub(crate) fn index64(&self, operand: Operand) -> LResult<E::V> {
        match operand {
            Operand::Literal(Literal::Int(v)) => Ok(self.em.c64(v)?),
            Operand::Literal(l) => internal(format!("index operand {l} is not an integer")),
            Operand::Value(v) => match self.val(v)? {
                Val::Scalar { dtype, v } if dtype.is_integer() => {
                    let i = v;
                    if dtype.is_signed() { self.em.sext(*i, self.em.i64()) } else { self.em.zext(*i, self.em.i64()) }
                }
                _ => internal(format!("{} is not an integer scalar", self.name(v))),
            },
        }
    }

    /// An operand's value when it is a literal integer.
    pub(crate) fn static_index(operand: Operand) -> Option<i64> {
        match operand {
            Operand::Literal(Literal::Int(v)) => Some(v),
            _ => None,
        }
    }

    // ----- blocks -----

    pub(crate) fn block(&mut self, block: &'k Block) -> LResult<()> {
        for &id in &block.insts {
            self.inst(id)?;
        }
        Ok(())
    }

    /// The values a block yields, typed by the targets (literals take their scalar type).
    fn yields(&self, block: &'k Block, targets: &[ValueId]) -> LResult<Vec<Val<E::V>>> {
        if block.yields.len() != targets.len() {
            return internal("a block yields the wrong number of values");
        }
        block
            .yields
            .iter()
            .zip(targets)
            .map(|(&y, &t)| match y {
                Operand::Value(v) => self.merge_operand(y, self.nan_state(t), self.val(v)?.clone()),
                Operand::Literal(l) => match self.value_type(t)? {
                    Type::Scalar(d) => {
                        Ok(Val::Scalar { dtype: *d, v: arith::const_code(&self.em, *d, infer::literal_code(l, *d))? })
                    }
                    _ => internal("a block yields a literal for a tensor"),
                },
            })
            .collect()
    }

    fn inst(&mut self, id: InstId) -> LResult<()> {
        let kernel = self.kernel;
        let Some(inst) = kernel.insts.get(id) else { return internal("instruction handle out of range") };
        self.dispatch(inst).map_err(|e| e.in_instruction(inst, |r| self.name(r)))
    }

    fn dispatch(&mut self, inst: &'k InstData) -> LResult<()> {
        match &inst.op {
            Op::Const { value, dtype } => {
                let v = arith::const_code(&self.em, *dtype, infer::literal_code(*value, *dtype))?;
                self.bind(Self::result(inst, 0)?, Val::Scalar { dtype: *dtype, v })
            }
            Op::BlockIndex { axis } => {
                let v = self.em.ctaid(axis.index())?;
                let dtype = DType::int(32).map_err(|e| LowerError::Llvm(e.to_string()))?;
                self.bind(Self::result(inst, 0)?, Val::Scalar { dtype, v })
            }
            Op::Unary { op, x } => {
                let (dtype, lane) = self.lane(*x, DType::F32)?;
                let op = *op;
                self.elementwise(inst, dtype, &[lane], |em, v| arith::unary(em, op, dtype, v[0]))
            }
            Op::Binary { op, lhs, rhs } => {
                let context = self.context(&[*lhs, *rhs])?.unwrap_or(DType::F32);
                let (dtype, a) = self.lane(*lhs, context)?;
                let (_, b) = self.lane(*rhs, context)?;
                let op = *op;
                if let Some(pairs) = dequant::pairable(&self.em, op, dtype, &a, &b) {
                    let slots = dequant::paired_binary(&self.em, op, dtype, &pairs, |i| a.at(i), |i| b.at(i))?;
                    let id = Self::result(inst, 0)?;
                    let (rd, shape, layout) = self.register_type(id)?;
                    let tile = Tile { dtype: rd, shape: shape.to_vec(), layout: layout.clone(), slots, origin: None };
                    return self.bind(id, Val::Register(Rc::new(tile)));
                }
                self.elementwise(inst, dtype, &[a, b], |em, v| arith::binary(em, op, dtype, v[0], v[1]))
            }
            Op::Compare { op, lhs, rhs } => {
                let context = self.context(&[*lhs, *rhs])?.unwrap_or(DType::F32);
                let (dtype, a) = self.lane(*lhs, context)?;
                let (_, b) = self.lane(*rhs, context)?;
                let op = *op;
                let u1 = DType::uint(1).map_err(|e| LowerError::Llvm(e.to_string()))?;
                self.elementwise(inst, u1, &[a, b], |em, v| arith::compare(em, op, dtype, v[0], v[1]))
            }
            Op::Fma { a, b, c } => {
                // f32 only (the typing rules): `llvm.fma.f32`, one rounding, as the interpreter.
                let (dtype, x) = self.lane(*a, DType::F32)?;
                let (_, y) = self.lane(*b, DType::F32)?;
                let (_, z) = self.lane(*c, DType::F32)?;
                self.elementwise(inst, dtype, &[x, y, z], |em, v| em.fma(v[0], v[1], v[2]))
            }
            Op::Select { cond, on_true, on_false } => {
                let u1 = DType::uint(1).map_err(|e| LowerError::Llvm(e.to_string()))?;
                let (_, c) = self.lane(*cond, u1)?;
                let context = self.context(&[*on_true, *on_false])?.unwrap_or(DType::F32);
                let into = self.nan_state(Self::result(inst, 0)?);
                let (dtype, a) = self.merge_lane(*on_true, context, into)?;
                let (_, b) = self.merge_lane(*on_false, context, into)?;
                self.elementwise(inst, dtype, &[c, a, b], |em, v| arith::select(em, v[0], v[1], v[2]))
            }
            Op::Cast { x, to } => {
                // `select-instructions` chose the dequantization program.
                if inst.via == Some(anybit_ir::program::Via::Dequant) {
                    let Operand::Value(v) = x else { return internal("`cast via dequant` of a literal") };
                    if self.dequant_cast(inst, *v, *to)? {
                        return Ok(());
                    }
                    return internal(format!("`cast via dequant` to {to}: no dequantization program applies"));
                }
                let (from, lane) = self.lane(*x, *to)?;
                let to = *to;
                self.elementwise(inst, to, &[lane], |em, v| arith::cast(em, from, to, v[0]))
            }
            Op::Lookup { x, table, to } => {
                let (from, lane) = self.lane(Operand::Value(*x), *to)?;
                let to = *to;
                let codes: Vec<u32> = table.iter().map(|&l| infer::literal_code(l, to)).collect();
                self.elementwise(inst, to, &[lane], |em, v| arith::lookup(em, from, to, &codes, v[0]))
            }
            Op::Fill { value, ty } => {
                let (_, lane) = self.lane(*value, ty.dtype)?;
                let id = Self::result(inst, 0)?;
                let (dtype, shape, layout) = self.register_type(id)?;
                let v = lane.at(0)?;
                let tile = Tile {
                    dtype,
                    shape: shape.to_vec(),
                    layout: layout.clone(),
                    slots: vec![v; layout.num_slots()],
                    origin: None,
                };
                self.bind(id, Val::Register(Rc::new(tile)))
            }
            Op::Iota { dim, .. } => self.iota(inst, *dim),
            Op::View { x, .. } => self.view(inst, *x),
            Op::Broadcast { x, .. } => self.broadcast(inst, *x),
            Op::Reduce { op, x, dims, keep_dims, .. } => self.reduce(inst, *op, *x, dims, *keep_dims),
            Op::Dot { a, b, c } => self.dot(inst, *a, *b, *c),
            Op::GlobalView { ptr, shape, strides } => self.global_view(inst, *ptr, shape, strides),
            Op::LoadGlobal { src, offsets, inside, .. } => self.load_global(inst, *src, offsets, inside),
            Op::StoreGlobal { value, dst, offsets } => self.store_global(inst, *value, *dst, offsets),
            Op::AllocShared { .. } => self.alloc_shared(inst),
            Op::FreeShared { .. } => {
                self.epoch += 1;
                Ok(())
            }
            Op::LoadShared { src, offsets, .. } => self.load_shared(inst, *src, offsets),
            Op::StoreShared { value, dst, offsets } => self.store_shared(inst, *value, *dst, offsets),
            Op::CopyAsync { src, src_offsets, dst, dst_offsets, shape } => {
                self.copy_async(inst, *src, src_offsets, *dst, dst_offsets, shape)
            }
            Op::CommitGroup => self.commit_group(),
            Op::WaitGroup { pending } => self.wait_group(*pending),
            Op::Sync => self.barrier(),
            Op::For { start, end, step, unroll, index, carried, inits, body } => {
                self.lower_for(inst, [*start, *end, *step], *unroll, *index, carried, inits, body)
            }
            Op::If { cond, then_body, else_body } => self.lower_if(inst, *cond, then_body, else_body),
        }
    }

    /// Applies `f` per slot (or once, for scalars) and binds the result.
    /// `cast(view(packed → w)) : f16/bf16` through the selected dequantization program
    /// (`dequant.rs`); false when the pattern or no program applies.
    fn dequant_cast(&mut self, inst: &InstData, x: ValueId, to: DType) -> LResult<bool> {
        let view_source = match self.kernel.values.get(x).map(|v| v.def) {
            Some(anybit_ir::program::ValueDef::Result(def, _)) => match self.kernel.insts.get(def).map(|i| &i.op) {
                Some(Op::View { x: source, .. }) => *source,
                _ => return Ok(false),
            },
            _ => return Ok(false),
        };
        let source = match self.canonical(view_source, self.val(view_source)?)? {
            Val::Register(t) => t,
            _ => return Ok(false),
        };
        let (from, _, _) = self.register_type(x)?;
        let code_bits = source.dtype.bits();
        let Some(program) = dequant::program_for(&self.em, from, to, source.slots.len() * code_bits as usize) else {
            return Ok(false);
        };
        let codes =
            source.slots.iter().map(|&v| arith::to_code(&self.em, source.dtype, v)).collect::<LResult<Vec<_>>>()?;
        let slots = dequant::run(&self.em, &program, code_bits, &codes)?;
        let id = Self::result(inst, 0)?;
        let (dtype, shape, layout) = self.register_type(id)?;
        if slots.len() != layout.num_slots() {
            return internal("dequantization gave the wrong number of slots");
        }
        let tile = Tile { dtype, shape: shape.to_vec(), layout: layout.clone(), slots, origin: None };
        self.bind(id, Val::Register(Rc::new(tile)))?;
        Ok(true)
    }

    fn elementwise(
        &mut self,
        inst: &InstData,
        result_dtype: DType,
        lanes: &[Lane<E::V>],
        f: impl Fn(&E, &[E::V]) -> LResult<E::V>,
    ) -> LResult<()> {
        let id = Self::result(inst, 0)?;
        let template = lanes.iter().find_map(|l| l.tile()).cloned();
        match template {
            None => {
                let args: Vec<E::V> = lanes.iter().map(|l| l.at(0)).collect::<LResult<_>>()?;
                let v = f(&self.em, &args)?;
                self.bind(id, Val::Scalar { dtype: result_dtype, v })
            }
            Some(t) => {
                let n = t.slots.len();
                let mut slots = Vec::with_capacity(n);
                for i in 0..n {
                    let args: Vec<E::V> = lanes.iter().map(|l| l.at(i)).collect::<LResult<_>>()?;
                    slots.push(f(&self.em, &args)?);
                }
                let tile =
                    Tile { dtype: result_dtype, shape: t.shape.clone(), layout: t.layout.clone(), slots, origin: None };
                self.bind(id, Val::Register(Rc::new(tile)))
            }
        }
    }

    // ----- control flow -----

    /// The LLVM values of a carried value (one per slot, or one for a scalar).
    fn flatten(val: &Val<E::V>) -> LResult<Vec<E::V>> {
        match val {
            Val::Scalar { v, .. } => Ok(vec![*v]),
            Val::Register(t) => Ok(t.slots.clone()),
            _ => internal("only scalars and register tiles are carried"),
        }
    }

    /// A value shaped like `template` with new LLVM values.
    fn rebuild(template: &Val<E::V>, values: Vec<E::V>) -> LResult<Val<E::V>> {
        match template {
            Val::Scalar { dtype, .. } => match values.first() {
                Some(&v) => Ok(Val::Scalar { dtype: *dtype, v }),
                None => internal("empty scalar"),
            },
            Val::Register(t) => Ok(Val::Register(Rc::new(Tile {
                dtype: t.dtype,
                shape: t.shape.clone(),
                layout: t.layout.clone(),
                slots: values,
                origin: None,
            }))),
            _ => internal("only scalars and register tiles are carried"),
        }
    }

    /// Parameters of `block` for every value of `vals` (one per slot).
    fn block_params(&self, block: E::B, vals: &[Val<E::V>]) -> LResult<Vec<Val<E::V>>> {
        vals.iter()
            .map(|v| {
                let params = Self::flatten(v)?
                    .iter()
                    .map(|&x| self.em.block_param(block, self.em.type_of(x)))
                    .collect::<LResult<Vec<_>>>()?;
                Self::rebuild(v, params)
            })
            .collect()
    }

    /// Branches to `target` passing every value of `lead` and `vals` (one per slot).
    fn branch_with(&self, target: E::B, lead: &[E::V], vals: &[Val<E::V>]) -> LResult<()> {
        let mut args = lead.to_vec();
        for v in vals {
            args.extend(Self::flatten(v)?);
        }
        self.em.br(target, &args)
    }

    fn new_block(&self, name: &str) -> LResult<E::B> {
        self.em.new_block(name)
    }

    /// Whether a block (or a block nested in it) may write shared memory.
    pub(crate) fn writes_shared(&self, block: &Block) -> bool {
        block.insts.iter().any(|&id| match self.kernel.insts.get(id).map(|i| &i.op) {
            Some(
                Op::StoreShared { .. }
                | Op::CopyAsync { .. }
                | Op::WaitGroup { .. }
                | Op::FreeShared { .. }
                | Op::AllocShared { .. },
            ) => true,
            Some(op) => op.blocks().iter().any(|b| self.writes_shared(b)),
            None => false,
        })
    }

    /// A block-wide barrier (which also orders every global access before it).
    pub(crate) fn barrier(&mut self) -> LResult<()> {
        self.em.barrier()?;
        self.global_state.loaded.iter_mut().for_each(|x| *x = false);
        self.global_state.stored.iter_mut().for_each(|x| *x = false);
        self.global_state.stored_here.iter_mut().for_each(|x| *x = false);
        Ok(())
    }

    /// The pointer parameter a global view value views, when it can be told.
    pub(crate) fn view_param(&self, view: ValueId) -> Option<usize> {
        let def = self.kernel.values.get(view)?.def;
        let anybit_ir::program::ValueDef::Result(inst, _) = def else { return None };
        let Op::GlobalView { ptr, .. } = &self.kernel.insts.get(inst)?.op else { return None };
        match self.kernel.values.get(*ptr)?.def {
            anybit_ir::program::ValueDef::Param(p) => Some(p),
            _ => None,
        }
    }

    /// Orders global accesses the way the block-level program does. Instructions act on the
    /// whole block one after another, so a thread must see the stores other threads made to
    /// a buffer by earlier instructions, and must not see stores of later ones. Threads run
    /// ahead of each other, so a load of a buffer that the block may have stored to since the
    /// last barrier, and a store to a buffer it may have read since then or written earlier
    /// in the same loop iteration (or straight-line code), first take a barrier. Kernels that
    /// read their inputs and write their outputs pay nothing. One deviation: a store does not
    /// wait for the stores of *previous iterations* of the loop it is in (loops that store a
    /// new tile each iteration would otherwise take a barrier per iteration), so when two
    /// iterations store to the same element from different threads, either store may land
    /// last.
    pub(crate) fn global_access(&mut self, param: Option<usize>, store: bool) -> LResult<()> {
        let n = self.global_state.loaded.len();
        let params: Vec<usize> = match param {
            Some(p) if p < n => vec![p],
            _ => (0..n).collect(),
        };
        let conflict = params.iter().any(|&p| {
            if store {
                self.global_state.loaded[p] || self.global_state.stored_here[p]
            } else {
                self.global_state.stored[p]
            }
        });
        if conflict {
            self.barrier()?;
        }
        for p in params {
            if store {
                self.global_state.stored[p] = true;
                self.global_state.stored_here[p] = true;
            } else {
                self.global_state.loaded[p] = true;
            }
        }
        Ok(())
    }

    /// The global accesses a block may make (per parameter: loaded, stored).
    fn block_global_accesses(&self, block: &Block) -> GlobalState {
        let n = self.kernel.params.len();
        let mut state = GlobalState { loaded: vec![false; n], stored: vec![false; n], stored_here: vec![false; n] };
        let mut pending = vec![block];
        while let Some(b) = pending.pop() {
            for &id in &b.insts {
                let Some(inst) = self.kernel.insts.get(id) else { continue };
                let (view, store) = match &inst.op {
                    Op::LoadGlobal { src, .. } | Op::CopyAsync { src, .. } => (Some(*src), false),
                    Op::StoreGlobal { dst, .. } => (Some(*dst), true),
                    op => {
                        pending.extend(op.blocks());
                        (None, false)
                    }
                };
                let Some(view) = view else { continue };
                let flags = if store { &mut state.stored } else { &mut state.loaded };
                match self.view_param(view) {
                    Some(p) if p < n => flags[p] = true,
                    _ => flags.iter_mut().for_each(|x| *x = true),
                }
            }
        }
        state
    }

    #[allow(clippy::too_many_arguments)]
    fn lower_for(
        &mut self,
        inst: &'k InstData,
        bounds: [Operand; 3],
        unroll: Option<u32>,
        index: ValueId,
        carried: &[ValueId],
        inits: &[Operand],
        body: &'k Block,
    ) -> LResult<()> {
        let index_dtype = match self.value_type(index)? {
            Type::Scalar(d) => *d,
            _ => return internal("loop index is not a scalar"),
        };
        let [start, end, step] = bounds.map(|b| self.index64(b));
        let (start, end, step) = (start?, end?, step?);
        if carried.len() != inits.len() || inst.results.len() != carried.len() {
            return internal("loop arity mismatch");
        }
        let mut init_vals = Vec::with_capacity(inits.len());
        for (k, &init) in inits.iter().enumerate() {
            let into = carried.get(k).map_or(NanState::Exact, |&c| self.nan_state(c));
            match init {
                Operand::Value(v) => init_vals.push(self.merge_operand(init, into, self.val(v)?.clone())?),
                Operand::Literal(_) => return internal("carried values start from values"),
            }
        }
        if self.writes_shared(body) {
            self.epoch += 1;
        }
        let body_accesses = self.block_global_accesses(body);
        let stored_before = self.global_state.stored_here.clone();
        // A step ≤ 0 skips the loop (the interpreter reports an error).
        let step_ok = self.em.sgt(step, self.em.c64(0)?)?;
        let unroll = unroll.unwrap_or(1).clamp(1, 16) as i64;
        let mut current = init_vals;
        let mut idx_in = start;
        let exit = self.new_block("loop.exit")?;
        // The unrolled loop, then the remainder loop (unroll 1: just the loop).
        for copies in if unroll > 1 { vec![unroll, 1] } else { vec![1] } {
            let header = self.new_block("loop.header")?;
            let body_block = self.new_block("loop.body")?;
            let after = self.new_block("loop.after")?;
            let idx = self.em.block_param(header, self.em.i64())?;
            let params = self.block_params(header, &current)?;
            self.branch_with(header, &[idx_in], &current)?;
            self.em.position_at_end(header);
            let last = self.em.add(idx, self.em.mul(step, self.em.c64(copies - 1)?)?)?;
            let in_range = self.em.slt(last, end)?;
            let go = self.em.and(in_range, step_ok)?;
            self.em.cond_br(go, body_block, after)?;
            self.em.position_at_end(body_block);
            // Earlier iterations' accesses come before this one's.
            self.global_state.union_previous_iteration(&body_accesses);
            self.global_state.stored_here = stored_before.clone();
            let mut vals = params.clone();
            let mut i = idx;
            for copy in 0..copies {
                if copy > 0 {
                    // Each copy is another iteration.
                    self.global_state.union_previous_iteration(&body_accesses);
                    self.global_state.stored_here = stored_before.clone();
                }
                let iv = arith::normalize(
                    &self.em,
                    index_dtype.bits(),
                    index_dtype.is_signed(),
                    self.em.trunc(i, self.em.i32())?,
                )?;
                self.bind(index, Val::Scalar { dtype: index_dtype, v: iv })?;
                for (&c, v) in carried.iter().zip(vals.iter()) {
                    self.bind(c, v.clone())?;
                }
                self.block(body)?;
                vals = self.yields(body, carried)?;
                i = self.em.add(i, step)?;
            }
            self.branch_with(header, &[i], &vals)?;
            // After this loop: the values at its header.
            self.em.position_at_end(after);
            current = params;
            idx_in = idx;
        }
        self.em.br(exit, &[])?;
        self.em.position_at_end(exit);
        self.global_state.union_previous_iteration(&body_accesses);
        for (here, &stored) in self.global_state.stored_here.iter_mut().zip(&body_accesses.stored) {
            *here |= stored;
        }
        if self.writes_shared(body) {
            self.epoch += 1;
        }
        for (k, v) in current.into_iter().enumerate() {
            self.bind(Self::result(inst, k)?, v)?;
        }
        Ok(())
    }

    fn lower_if(
        &mut self,
        inst: &'k InstData,
        cond: Operand,
        then_body: &'k Block,
        else_body: &'k Block,
    ) -> LResult<()> {
        let c = match cond {
            Operand::Value(v) => match self.val(v)? {
                Val::Scalar { v, .. } => self.em.truth(*v)?,
                _ => return internal("`if` condition is not a scalar"),
            },
            Operand::Literal(Literal::Int(v)) => {
                if v != 0 {
                    self.em.ctrue()?
                } else {
                    self.em.cfalse()?
                }
            }
            Operand::Literal(_) => return internal("`if` condition is a float literal"),
        };
        let then_block = self.new_block("if.then")?;
        let else_block = self.new_block("if.else")?;
        let merge = self.new_block("if.merge")?;
        self.em.cond_br(c, then_block, else_block)?;
        let before = self.global_state.clone();
        let mut after = before.clone();
        // The merge block's parameters, typed by the first arm's values.
        let mut results: Option<Vec<Val<E::V>>> = None;
        for (block, body) in [(then_block, then_body), (else_block, else_body)] {
            self.global_state = before.clone();
            self.em.position_at_end(block);
            self.block(body)?;
            after.union(&self.global_state);
            let vals = self.yields(body, &inst.results)?;
            if results.is_none() {
                results = Some(self.block_params(merge, &vals)?);
            }
            self.branch_with(merge, &[], &vals)?;
        }
        self.global_state = after;
        self.em.position_at_end(merge);
        if self.writes_shared(then_body) || self.writes_shared(else_body) {
            self.epoch += 1;
        }
        let Some(results) = results else { return internal("no arms") };
        for (k, v) in results.into_iter().enumerate() {
            self.bind(Self::result(inst, k)?, v)?;
        }
        Ok(())
    }
}
