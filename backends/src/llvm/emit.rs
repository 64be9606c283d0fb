//! What both code generators share about emitting — why lowering stops ([`LowerError`]), where
//! the code runs ([`Platform`]), the host harness's functions — and the inkwell emitter [`Em`]:
//! an inkwell context, module and builder implementing [`Emit`] (see `emitter.rs`), with
//! block parameters as φ-nodes and the shared buffer as a placeholder global replaced once its
//! size is known.
//!
//! The [`Platform`] is NVPTX for real compilation. The `Host` platform exists so that the very
//! same lowering can be JIT-compiled for the machine running the tests and executed there with
//! one OS thread per GPU thread (see the `host` test module): thread and block indices become
//! function parameters, and barriers, shuffles and `mma` become calls into the test harness.

use std::cell::RefCell;
use std::collections::HashMap;

use anybit_ir::program::{Kernel, ParamType};
use inkwell::AddressSpace;
use inkwell::attributes::{Attribute, AttributeLoc};
use inkwell::basic_block::BasicBlock;
use inkwell::builder::{Builder, BuilderError};
use inkwell::context::Context;
use inkwell::module::{Linkage, Module};
use inkwell::types::{BasicMetadataTypeEnum, BasicType, BasicTypeEnum, FloatType, FunctionType, IntType};
use inkwell::values::{
    BasicMetadataValueEnum, BasicValueEnum, FloatValue, FunctionValue, GlobalValue, IntValue, PhiValue, PointerValue,
};

use super::emitter::{
    AtomicOp, Conv, Emit, FloatOp, FloatPredicate, IntOp, IntPredicate, ModuleBuffer, Space, ThreadValues,
};

use crate::Target;

/// Why lowering stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LowerError {
    /// Something the backend does not lower (the message names it).
    Unsupported(String),
    /// LLVM refused an operation (a bug of this backend).
    Llvm(String),
}

impl LowerError {
    /// This error raised by `inst`: an `Unsupported` one names the instruction and the values
    /// it defines (`` `fill` defining %zero: … ``), so the user can find it in the kernel.
    pub(crate) fn in_instruction(
        self,
        inst: &anybit_ir::program::InstData,
        name: impl Fn(anybit_ir::program::ValueId) -> String,
    ) -> LowerError {
        match self {
            LowerError::Unsupported(what) => {
                let names: Vec<String> = inst.results.iter().map(|&r| name(r)).collect();
                let at = if names.is_empty() { String::new() } else { format!(" defining {}", names.join(", ")) };
                LowerError::Unsupported(format!("`{}`{at}: {what}", inst.op.mnemonic()))
            }
            other => other,
        }
    }
}

impl From<BuilderError> for LowerError {
    fn from(e: BuilderError) -> LowerError {
        LowerError::Llvm(format!("IR builder: {e}"))
    }
}

/// Results of the lowering.
pub(crate) type LResult<T> = Result<T, LowerError>;

/// An internal inconsistency (never expected on verified kernels).
pub(crate) fn internal<T>(message: impl Into<String>) -> LResult<T> {
    Err(LowerError::Llvm(message.into()))
}

/// Where the generated code runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Platform {
    /// A real GPU target: NVVM intrinsics, address spaces 1 (global) and 3 (shared).
    Nvptx(Target),
    /// The test machine, through the JIT: every GPU-specific operation is a parameter or a
    /// call into the harness; one address space.
    #[cfg_attr(not(test), allow(dead_code))]
    Host,
}

impl Platform {
    pub(crate) fn is_nvptx(self) -> bool {
        matches!(self, Platform::Nvptx(_))
    }

    /// The address space of global memory.
    pub(crate) fn global_space(self) -> AddressSpace {
        AddressSpace::from(self.space_number(Space::Global))
    }

    /// The address space of shared memory.
    pub(crate) fn shared_space(self) -> AddressSpace {
        AddressSpace::from(self.space_number(Space::Shared))
    }

    /// The number of an address space on this platform (NVPTX's, or the host's one space).
    pub(crate) fn space_number(self, space: Space) -> u16 {
        match (self, space) {
            (Platform::Host, _) => 0,
            (Platform::Nvptx(_), Space::Global) => 1,
            (Platform::Nvptx(_), Space::Shared) => 3,
        }
    }
}

/// Names of the functions the host harness provides (`Platform::Host`).
pub(crate) mod host_fn {
    /// `void()`: block-wide barrier.
    pub const BARRIER: &str = "anybit_host_barrier";
    /// `i32(i32 value, i32 lane_mask)`: butterfly shuffle within the warp.
    pub const SHFL_BFLY: &str = "anybit_host_shfl_bfly";
    /// `i32(i32 kind, i32 a0..a3, i32 b0, b1, i32 c0..c3, i32 which)`: one result register of
    /// a warp-wide `mma` (see `dot.rs`).
    pub const MMA: &str = "anybit_host_mma";
    /// `i32(i64 row_address, i32 count, i32 trans, i32 which)`: one register of a warp-wide
    /// `ldmatrix`.
    pub const LDMATRIX: &str = "anybit_host_ldmatrix";
}

/// The inkwell emitter: builds LLVM IR into one module. One per kernel.
pub(crate) struct Em<'ctx> {
    pub ctx: &'ctx Context,
    pub module: Module<'ctx>,
    pub b: Builder<'ctx>,
    pub platform: Platform,
    /// The kernel function being built, its prologue block (thread-invariant values are
    /// computed there) and the special registers read in it.
    pub kernel: Option<KernelFn<'ctx>>,
    /// See [`Emit::cache`].
    pub cache: HashMap<String, Vec<BasicValueEnum<'ctx>>>,
    /// The φ-nodes standing for each block's parameters, in order.
    phis: RefCell<Vec<(BasicBlock<'ctx>, Vec<PhiValue<'ctx>>)>>,
}

/// The kernel function and its per-thread constants.
pub(crate) struct KernelFn<'ctx> {
    pub func: FunctionValue<'ctx>,
    pub prologue: BasicBlock<'ctx>,
    pub body: BasicBlock<'ctx>,
    pub values: ThreadValues<BasicValueEnum<'ctx>>,
    /// On NVPTX, the placeholder global the shared memory is addressed through until its size
    /// is known.
    pub placeholder: Option<GlobalValue<'ctx>>,
}

fn int_value(v: BasicValueEnum<'_>) -> LResult<IntValue<'_>> {
    match v {
        BasicValueEnum::IntValue(i) => Ok(i),
        other => internal(format!("expected an integer, found {other:?}")),
    }
}

fn float_value(v: BasicValueEnum<'_>) -> LResult<FloatValue<'_>> {
    match v {
        BasicValueEnum::FloatValue(f) => Ok(f),
        other => internal(format!("expected a float, found {other:?}")),
    }
}

fn pointer_value(v: BasicValueEnum<'_>) -> LResult<PointerValue<'_>> {
    match v {
        BasicValueEnum::PointerValue(p) => Ok(p),
        other => internal(format!("expected a pointer, found {other:?}")),
    }
}

fn int_type(t: BasicTypeEnum<'_>) -> LResult<IntType<'_>> {
    match t {
        BasicTypeEnum::IntType(i) => Ok(i),
        other => internal(format!("expected an integer type, found {other:?}")),
    }
}

fn float_type(t: BasicTypeEnum<'_>) -> LResult<FloatType<'_>> {
    match t {
        BasicTypeEnum::FloatType(f) => Ok(f),
        other => internal(format!("expected a float type, found {other:?}")),
    }
}

impl<'ctx> Em<'ctx> {
    pub(crate) fn new(ctx: &'ctx Context, name: &str, platform: Platform) -> Em<'ctx> {
        let module = ctx.create_module(name);
        Em::with_module(ctx, module, platform)
    }

    /// An emitter adding to an existing module (the MLIR backend's translated modules, which
    /// the host harness completes with its entry function).
    pub(crate) fn with_module(ctx: &'ctx Context, module: Module<'ctx>, platform: Platform) -> Em<'ctx> {
        let b = ctx.create_builder();
        Em { ctx, module, b, platform, kernel: None, cache: HashMap::new(), phis: RefCell::new(Vec::new()) }
    }

    pub(crate) fn kernel(&self) -> LResult<&KernelFn<'ctx>> {
        match &self.kernel {
            Some(k) => Ok(k),
            None => internal("no kernel function"),
        }
    }

    /// The function `name` of type `ty`, declared if absent.
    pub(crate) fn declare(&self, name: &str, ty: FunctionType<'ctx>) -> FunctionValue<'ctx> {
        match self.module.get_function(name) {
            Some(f) => f,
            None => self.module.add_function(name, ty, Some(Linkage::External)),
        }
    }

    fn call_function(
        &self,
        f: FunctionValue<'ctx>,
        args: &[BasicValueEnum<'ctx>],
    ) -> LResult<Option<BasicValueEnum<'ctx>>> {
        let args: Vec<BasicMetadataValueEnum<'ctx>> = args.iter().map(|&a| a.into()).collect();
        let site = self.b.build_direct_call(f, &args, "")?;
        Ok(match site.try_as_basic_value() {
            inkwell::values::ValueKind::Basic(v) => Some(v),
            inkwell::values::ValueKind::Instruction(_) => None,
        })
    }

    fn fn_type(&self, ret: Option<BasicTypeEnum<'ctx>>, params: &[BasicTypeEnum<'ctx>]) -> FunctionType<'ctx> {
        let params: Vec<BasicMetadataTypeEnum<'ctx>> = params.iter().map(|&t| t.into()).collect();
        match ret {
            Some(r) => r.fn_type(&params, false),
            None => self.ctx.void_type().fn_type(&params, false),
        }
    }

    fn enum_attribute(&self, name: &str) -> Attribute {
        self.ctx.create_enum_attribute(Attribute::get_named_enum_kind_id(name), 0)
    }

    fn buffer_global(&self, name: &str, constant: bool) -> PointerValue<'ctx> {
        if let Some(g) = self.module.get_global(name) {
            return g.as_pointer_value();
        }
        let ty = self.ctx.i8_type().array_type(16);
        let g = self.module.add_global(ty, Some(self.platform.global_space()), name);
        g.set_linkage(Linkage::Internal);
        g.set_constant(constant);
        g.set_initializer(&ty.const_zero());
        g.set_alignment(16);
        g.as_pointer_value()
    }
}

impl<'ctx> Emit for Em<'ctx> {
    type V = BasicValueEnum<'ctx>;
    type T = BasicTypeEnum<'ctx>;
    type B = BasicBlock<'ctx>;
    type F = FunctionValue<'ctx>;

    fn platform(&self) -> Platform {
        self.platform
    }

    // ----- types -----

    fn int(&self, bits: u32) -> Self::T {
        let t = match bits {
            1 => self.ctx.bool_type(),
            8 => self.ctx.i8_type(),
            16 => self.ctx.i16_type(),
            32 => self.ctx.i32_type(),
            64 => self.ctx.i64_type(),
            128 => self.ctx.i128_type(),
            b => match std::num::NonZeroU32::new(b).map(|w| self.ctx.custom_width_int_type(w)) {
                Some(Ok(t)) => t,
                _ => self.ctx.i32_type(),
            },
        };
        t.into()
    }
    fn f16(&self) -> Self::T {
        self.ctx.f16_type().into()
    }
    fn bf16(&self) -> Self::T {
        self.ctx.bf16_type().into()
    }
    fn f32(&self) -> Self::T {
        self.ctx.f32_type().into()
    }
    fn f64(&self) -> Self::T {
        self.ctx.f64_type().into()
    }
    fn vector_type(&self, element: Self::T, n: u32) -> Self::T {
        match element {
            BasicTypeEnum::IntType(t) => t.vec_type(n).into(),
            BasicTypeEnum::FloatType(t) => t.vec_type(n).into(),
            other => other,
        }
    }
    fn struct_type(&self, fields: &[Self::T]) -> Self::T {
        self.ctx.struct_type(fields, false).into()
    }
    fn type_of(&self, v: Self::V) -> Self::T {
        v.get_type()
    }
    fn int_width(&self, t: Self::T) -> Option<u32> {
        match t {
            BasicTypeEnum::IntType(i) => Some(i.get_bit_width()),
            _ => None,
        }
    }

    // ----- constants -----

    fn cint(&self, ty: Self::T, v: i64) -> LResult<Self::V> {
        Ok(int_type(ty)?.const_int(v as u64, true).into())
    }
    fn cfloat_bits(&self, ty: Self::T, bits: u64) -> LResult<Self::V> {
        let width = self.float_width(ty);
        let int = int_type(self.int(width))?.const_int(bits, false);
        // The builder folds a cast of a constant into a constant with exactly these bits (NaN
        // payloads included, which `const_float` from an f64 would not promise).
        Ok(self.b.build_bit_cast(int, ty, "")?)
    }
    fn undef(&self, ty: Self::T) -> LResult<Self::V> {
        Ok(match ty {
            BasicTypeEnum::IntType(t) => t.get_undef().into(),
            BasicTypeEnum::FloatType(t) => t.get_undef().into(),
            BasicTypeEnum::VectorType(t) => t.get_undef().into(),
            BasicTypeEnum::StructType(t) => t.get_undef().into(),
            BasicTypeEnum::PointerType(t) => t.get_undef().into(),
            BasicTypeEnum::ArrayType(t) => t.get_undef().into(),
            BasicTypeEnum::ScalableVectorType(t) => t.get_undef().into(),
        })
    }

    // ----- operations -----

    fn ibin(&self, op: IntOp, a: Self::V, b: Self::V) -> LResult<Self::V> {
        let (a, b) = (int_value(a)?, int_value(b)?);
        let v = match op {
            IntOp::Add => self.b.build_int_add(a, b, "")?,
            IntOp::Sub => self.b.build_int_sub(a, b, "")?,
            IntOp::Mul => self.b.build_int_mul(a, b, "")?,
            IntOp::And => self.b.build_and(a, b, "")?,
            IntOp::Or => self.b.build_or(a, b, "")?,
            IntOp::Xor => self.b.build_xor(a, b, "")?,
            IntOp::Shl => self.b.build_left_shift(a, b, "")?,
            IntOp::LShr => self.b.build_right_shift(a, b, false, "")?,
            IntOp::AShr => self.b.build_right_shift(a, b, true, "")?,
            IntOp::SDiv => self.b.build_int_signed_div(a, b, "")?,
            IntOp::UDiv => self.b.build_int_unsigned_div(a, b, "")?,
            IntOp::SRem => self.b.build_int_signed_rem(a, b, "")?,
            IntOp::URem => self.b.build_int_unsigned_rem(a, b, "")?,
        };
        Ok(v.into())
    }
    fn icmp(&self, p: IntPredicate, a: Self::V, b: Self::V) -> LResult<Self::V> {
        Ok(self.b.build_int_compare(p, int_value(a)?, int_value(b)?, "")?.into())
    }
    fn fbin(&self, op: FloatOp, a: Self::V, b: Self::V) -> LResult<Self::V> {
        macro_rules! apply {
            ($x:expr, $y:expr) => {
                match op {
                    FloatOp::Add => self.b.build_float_add($x, $y, "")?.into(),
                    FloatOp::Sub => self.b.build_float_sub($x, $y, "")?.into(),
                    FloatOp::Mul => self.b.build_float_mul($x, $y, "")?.into(),
                    FloatOp::Div => self.b.build_float_div($x, $y, "")?.into(),
                }
            };
        }
        Ok(match (a, b) {
            (BasicValueEnum::FloatValue(x), BasicValueEnum::FloatValue(y)) => apply!(x, y),
            (BasicValueEnum::VectorValue(x), BasicValueEnum::VectorValue(y)) => apply!(x, y),
            _ => return internal("float operation on non-floats"),
        })
    }
    fn fneg(&self, a: Self::V) -> LResult<Self::V> {
        Ok(self.b.build_float_neg(float_value(a)?, "")?.into())
    }
    fn fcmp_native(&self, p: FloatPredicate, a: Self::V, b: Self::V) -> LResult<Self::V> {
        Ok(self.b.build_float_compare(p, float_value(a)?, float_value(b)?, "")?.into())
    }
    fn conv(&self, op: Conv, v: Self::V, ty: Self::T) -> LResult<Self::V> {
        Ok(match op {
            Conv::ZExt => self.b.build_int_z_extend(int_value(v)?, int_type(ty)?, "")?.into(),
            Conv::SExt => self.b.build_int_s_extend(int_value(v)?, int_type(ty)?, "")?.into(),
            Conv::Trunc => self.b.build_int_truncate(int_value(v)?, int_type(ty)?, "")?.into(),
            Conv::BitCast => self.b.build_bit_cast(v, ty, "")?,
            Conv::FpExt => self.b.build_float_ext(float_value(v)?, float_type(ty)?, "")?.into(),
            Conv::FpTrunc => self.b.build_float_trunc(float_value(v)?, float_type(ty)?, "")?.into(),
            Conv::SiToFp => self.b.build_signed_int_to_float(int_value(v)?, float_type(ty)?, "")?.into(),
            Conv::UiToFp => self.b.build_unsigned_int_to_float(int_value(v)?, float_type(ty)?, "")?.into(),
            Conv::FpToSi => self.b.build_float_to_signed_int(float_value(v)?, int_type(ty)?, "")?.into(),
            Conv::PtrToInt => self.b.build_ptr_to_int(pointer_value(v)?, int_type(ty)?, "")?.into(),
        })
    }
    fn select(&self, c: Self::V, a: Self::V, b: Self::V) -> LResult<Self::V> {
        Ok(self.b.build_select(int_value(c)?, a, b, "")?)
    }
    fn extract_element(&self, vector: Self::V, index: u32) -> LResult<Self::V> {
        let BasicValueEnum::VectorValue(v) = vector else { return internal("extract_element of a non-vector") };
        Ok(self.b.build_extract_element(v, self.ctx.i32_type().const_int(u64::from(index), false), "")?)
    }
    fn insert_element(&self, vector: Self::V, v: Self::V, index: u32) -> LResult<Self::V> {
        let BasicValueEnum::VectorValue(vec) = vector else { return internal("insert_element into a non-vector") };
        let i = self.ctx.i32_type().const_int(u64::from(index), false);
        Ok(self.b.build_insert_element(vec, v, i, "")?.into())
    }
    fn extract_value(&self, aggregate: Self::V, index: u32) -> LResult<Self::V> {
        let BasicValueEnum::StructValue(s) = aggregate else { return internal("extract_value of a non-struct") };
        Ok(self.b.build_extract_value(s, index, "")?)
    }
    fn vector_lane(&self, v: Self::V) -> Option<(usize, u64)> {
        use inkwell::values::{AsValueRef, BasicValue, InstructionOpcode, Operand};
        let inst = v.as_instruction_value()?;
        if inst.get_opcode() != InstructionOpcode::ExtractElement {
            return None;
        }
        let (Some(Operand::Value(vector)), Some(Operand::Value(index))) = (inst.get_operand(0), inst.get_operand(1))
        else {
            return None;
        };
        let BasicValueEnum::IntValue(index) = index else { return None };
        Some((vector.as_value_ref() as usize, index.get_zero_extended_constant()?))
    }

    // ----- memory -----

    fn byte_offset(&self, base: Self::V, offset: Self::V) -> LResult<Self::V> {
        Ok(super::address::byte_gep(self, pointer_value(base)?, int_value(offset)?)?.into())
    }
    fn load_with(&self, ty: Self::T, ptr: Self::V, align: u32, invariant: bool) -> LResult<Self::V> {
        let v = self.b.build_load(ty, pointer_value(ptr)?, "")?;
        if let Some(inst) = inkwell::values::BasicValue::as_instruction_value(&v) {
            inst.set_alignment(align).map_err(|e| LowerError::Llvm(format!("load alignment: {e}")))?;
            if invariant {
                let kind = self.ctx.get_kind_id("invariant.load");
                let node = self.ctx.metadata_node(&[]);
                inst.set_metadata(node, kind).map_err(|e| LowerError::Llvm(format!("load metadata: {e}")))?;
            }
        }
        Ok(v)
    }
    fn store(&self, ptr: Self::V, v: Self::V, align: u32) -> LResult<()> {
        let inst = self.b.build_store(pointer_value(ptr)?, v)?;
        inst.set_alignment(align).map_err(|e| LowerError::Llvm(format!("store alignment: {e}")))?;
        Ok(())
    }
    fn atomic_rmw(&self, op: AtomicOp, ptr: Self::V, v: Self::V) -> LResult<()> {
        let op = match op {
            AtomicOp::And => inkwell::AtomicRMWBinOp::And,
            AtomicOp::Or => inkwell::AtomicRMWBinOp::Or,
        };
        self.b.build_atomicrmw(op, pointer_value(ptr)?, int_value(v)?, inkwell::AtomicOrdering::Monotonic)?;
        Ok(())
    }
    fn module_buffer(&self, which: ModuleBuffer) -> LResult<Self::V> {
        Ok(match which {
            ModuleBuffer::ZeroPage => self.buffer_global("anybit.zero", true),
            ModuleBuffer::Sink => self.buffer_global("anybit.sink", false),
        }
        .into())
    }

    // ----- calls -----

    fn intrinsic(&self, name: &str, ret: Option<Self::T>, args: &[Self::V]) -> LResult<Option<Self::V>> {
        let params: Vec<BasicTypeEnum<'ctx>> = args.iter().map(|a| a.get_type()).collect();
        let f = self.declare(name, self.fn_type(ret, &params));
        let v = self.call_function(f, args)?;
        if ret.is_some() && v.is_none() {
            return internal(format!("call to {name} returns no value"));
        }
        Ok(v)
    }
    fn inline_asm(
        &self,
        asm: &str,
        constraints: &str,
        ret: Option<Self::T>,
        args: &[Self::V],
        side_effects: bool,
    ) -> LResult<Option<Self::V>> {
        let params: Vec<BasicTypeEnum<'ctx>> = args.iter().map(|a| a.get_type()).collect();
        let fn_ty = self.fn_type(ret, &params);
        let asm = self.ctx.create_inline_asm(
            fn_ty,
            asm.to_string(),
            constraints.to_string(),
            side_effects,
            false,
            None,
            false,
        );
        let args: Vec<BasicMetadataValueEnum<'ctx>> = args.iter().map(|&a| a.into()).collect();
        let call = self.b.build_indirect_call(fn_ty, asm, &args, "")?;
        Ok(match call.try_as_basic_value() {
            inkwell::values::ValueKind::Basic(v) => Some(v),
            inkwell::values::ValueKind::Instruction(_) => None,
        })
    }
    fn helper(
        &self,
        name: &str,
        params: &[Self::T],
        ret: Self::T,
        body: impl FnOnce(&Self, &[Self::V]) -> LResult<Self::V>,
    ) -> LResult<Self::F> {
        if let Some(f) = self.module.get_function(name) {
            return Ok(f);
        }
        let f = self.module.add_function(name, self.fn_type(Some(ret), params), Some(Linkage::Internal));
        f.add_attribute(AttributeLoc::Function, self.enum_attribute("alwaysinline"));
        f.add_attribute(AttributeLoc::Function, self.enum_attribute("nounwind"));
        let entry = self.ctx.append_basic_block(f, "entry");
        let saved = self.b.get_insert_block();
        self.b.position_at_end(entry);
        let result = body(self, &f.get_params()).and_then(|v| Ok(self.b.build_return(Some(&v))?));
        if let Some(block) = saved {
            self.b.position_at_end(block);
        }
        result.map(|_| f)
    }
    fn call(&self, f: &Self::F, args: &[Self::V]) -> LResult<Self::V> {
        match self.call_function(*f, args)? {
            Some(v) => Ok(v),
            None => internal(format!("call to {:?} returns no value", f.get_name())),
        }
    }

    // ----- control flow -----

    fn new_block(&self, name: &str) -> LResult<Self::B> {
        Ok(self.ctx.append_basic_block(self.kernel()?.func, name))
    }
    fn current_block(&self) -> LResult<Self::B> {
        match self.b.get_insert_block() {
            Some(b) => Ok(b),
            None => internal("the builder has no block"),
        }
    }
    fn position_at_end(&self, block: Self::B) {
        self.b.position_at_end(block);
    }
    fn block_param(&self, block: Self::B, ty: Self::T) -> LResult<Self::V> {
        let saved = self.b.get_insert_block();
        // Parameters are added before anything else goes into the block.
        self.b.position_at_end(block);
        let phi = self.b.build_phi(ty, "");
        if let Some(b) = saved {
            self.b.position_at_end(b);
        }
        let phi = phi?;
        let mut phis = self.phis.borrow_mut();
        match phis.iter_mut().find(|(b, _)| *b == block) {
            Some((_, list)) => list.push(phi),
            None => phis.push((block, vec![phi])),
        }
        Ok(phi.as_basic_value())
    }
    fn br(&self, target: Self::B, args: &[Self::V]) -> LResult<()> {
        let from = self.current_block()?;
        let phis = self.phis.borrow();
        let params: &[PhiValue<'ctx>] = phis.iter().find(|(b, _)| *b == target).map_or(&[], |(_, l)| l);
        if params.len() != args.len() {
            return internal(format!("a branch passes {} values to {} parameters", args.len(), params.len()));
        }
        for (phi, arg) in params.iter().zip(args) {
            if phi.as_basic_value().get_type() != arg.get_type() {
                return internal("a branch passes a value of the wrong type");
            }
            phi.add_incoming(&[(arg, from)]);
        }
        self.b.build_unconditional_branch(target)?;
        Ok(())
    }
    fn cond_br(&self, c: Self::V, then_block: Self::B, else_block: Self::B) -> LResult<()> {
        self.b.build_conditional_branch(int_value(c)?, then_block, else_block)?;
        Ok(())
    }

    // ----- the kernel -----

    fn begin_kernel(&mut self, kernel: &Kernel) -> LResult<Vec<Self::V>> {
        let ctx = self.ctx;
        let platform = self.platform;
        // Parameters: pointers (global address space), scalars as 32-bit words.
        let mut param_types: Vec<BasicTypeEnum<'ctx>> = kernel
            .params
            .iter()
            .map(|p| match p.ty {
                ParamType::Pointer(_) => ctx.ptr_type(platform.global_space()).into(),
                ParamType::Scalar(_) => ctx.i32_type().into(),
            })
            .collect();
        let n = kernel.params.len() as u32;
        if platform == Platform::Host {
            // tid, ctaid.x, ctaid.y, ctaid.z, shared memory.
            param_types.extend([self.i32(), self.i32(), self.i32(), self.i32()]);
            param_types.push(ctx.ptr_type(platform.shared_space()).into());
        }
        let func = self.module.add_function(&kernel.name, self.fn_type(None, &param_types), Some(Linkage::External));
        if let Platform::Nvptx(_) = platform {
            // No `.reqntid`/`.maxntid`: with them, ptxas caps 128-thread kernels at 128
            // registers and spills rather than use more; the thread index's range reaches LLVM
            // through an assumption instead (below).
            func.set_call_conventions(71);
        }
        let noalias = self.enum_attribute("noalias");
        for (i, p) in kernel.params.iter().enumerate() {
            if let ParamType::Pointer(_) = p.ty {
                func.add_attribute(AttributeLoc::Param(i as u32), noalias);
            }
        }
        let prologue = ctx.append_basic_block(func, "prologue");
        let body = ctx.append_basic_block(func, "body");
        self.b.position_at_end(prologue);
        let param = |i: u32| -> LResult<BasicValueEnum<'ctx>> {
            func.get_nth_param(i).ok_or_else(|| LowerError::Llvm(format!("missing parameter {i}")))
        };
        let (tid, ctaid, shared, placeholder) = match platform {
            Platform::Nvptx(_) => {
                let read = |name: &str| self.intrinsic_value(name, self.i32(), &[]);
                let tid = read("llvm.nvvm.read.ptx.sreg.tid.x")?;
                let in_block = self.ult(tid, self.c32(kernel.num_threads() as i64)?)?;
                self.intrinsic("llvm.assume", None, &[in_block])?;
                let ctaid = [
                    read("llvm.nvvm.read.ptx.sreg.ctaid.x")?,
                    read("llvm.nvvm.read.ptx.sreg.ctaid.y")?,
                    read("llvm.nvvm.read.ptx.sreg.ctaid.z")?,
                ];
                // The shared buffer: an (internal, unused in the end, so deleted by the
                // optimizer) placeholder whose uses are replaced once the buffer's size is known.
                let ty = ctx.i8_type().array_type(0);
                let g = self.module.add_global(ty, Some(platform.shared_space()), "anybit.smem.placeholder");
                g.set_linkage(Linkage::Internal);
                g.set_initializer(&ty.get_undef());
                (tid, ctaid, g.as_pointer_value().into(), Some(g))
            }
            Platform::Host => (param(n)?, [param(n + 1)?, param(n + 2)?, param(n + 3)?], param(n + 4)?, None),
        };
        let values = ThreadValues { tid, ctaid, shared };
        self.kernel = Some(KernelFn { func, prologue, body, values, placeholder });
        self.b.position_at_end(body);
        (0..n).map(param).collect()
    }

    fn finish_kernel(&mut self, shared_bytes: usize) -> LResult<()> {
        let k = self.kernel()?;
        let (prologue, body, placeholder) = (k.prologue, k.body, k.placeholder);
        self.b.build_return(None)?;
        self.b.position_at_end(prologue);
        self.b.build_unconditional_branch(body)?;
        let Some(placeholder) = placeholder else { return Ok(()) };
        let space = Some(self.platform.shared_space());
        let real = if shared_bytes > Target::STATIC_SHARED_MEMORY_LIMIT {
            let g = self.module.add_global(self.ctx.i8_type().array_type(0), space, "anybit_dynamic_smem");
            g.set_linkage(Linkage::External);
            g
        } else {
            let ty = self.ctx.i8_type().array_type(shared_bytes.max(1) as u32);
            let g = self.module.add_global(ty, space, "anybit_smem");
            g.set_linkage(Linkage::Internal);
            g.set_initializer(&ty.get_undef());
            g
        };
        real.set_alignment(1024);
        placeholder.as_pointer_value().replace_all_uses_with(real.as_pointer_value());
        Ok(())
    }

    fn prologue(&self) -> LResult<Self::B> {
        Ok(self.kernel()?.prologue)
    }
    fn thread_values(&self) -> LResult<&ThreadValues<Self::V>> {
        Ok(&self.kernel()?.values)
    }
    fn cache(&mut self) -> &mut HashMap<String, Vec<Self::V>> {
        &mut self.cache
    }
}
