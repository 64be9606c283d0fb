//! The emitter: an inkwell context, module and builder, plus the few things every part of the
//! lowering needs — typed constants, integer and float helpers that turn inkwell's
//! `BuilderError` into [`LowerError`], intrinsic declarations, and the per-platform hooks
//! (thread and block indices, barriers, warp shuffles, shared memory).
//!
//! The [`Platform`] is NVPTX for real compilation. The `Host` platform exists so that the very
//! same lowering can be JIT-compiled for the machine running the tests and executed there with
//! one OS thread per GPU thread (see the `host` test module): thread and block indices become
//! function parameters, and barriers, shuffles and `mma` become calls into the test harness.

use std::collections::HashMap;

use inkwell::attributes::{Attribute, AttributeLoc};
use inkwell::basic_block::BasicBlock;
use inkwell::builder::{Builder, BuilderError};
use inkwell::context::Context;
use inkwell::module::{Linkage, Module};
use inkwell::types::{BasicMetadataTypeEnum, BasicType, BasicTypeEnum, FloatType, FunctionType, IntType};
use inkwell::values::{BasicMetadataValueEnum, BasicValueEnum, FloatValue, FunctionValue, IntValue, PointerValue};
use inkwell::{AddressSpace, FloatPredicate, IntPredicate};

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
        match self {
            Platform::Nvptx(_) => AddressSpace::from(1u16),
            Platform::Host => AddressSpace::default(),
        }
    }

    /// The address space of shared memory.
    pub(crate) fn shared_space(self) -> AddressSpace {
        match self {
            Platform::Nvptx(_) => AddressSpace::from(3u16),
            Platform::Host => AddressSpace::default(),
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

/// The emitter. One per LLVM module.
pub(crate) struct Em<'ctx> {
    pub ctx: &'ctx Context,
    pub module: Module<'ctx>,
    pub b: Builder<'ctx>,
    pub platform: Platform,
    /// The kernel function being built, its prologue block (thread-invariant values are
    /// computed there) and the special registers read in it.
    pub kernel: Option<KernelFn<'ctx>>,
    /// Per-thread values cached by key (layout coordinates, predicates): computed once in the
    /// prologue.
    pub cache: HashMap<String, Vec<IntValue<'ctx>>>,
}

/// The kernel function and its per-thread constants.
pub(crate) struct KernelFn<'ctx> {
    pub func: FunctionValue<'ctx>,
    pub prologue: BasicBlock<'ctx>,
    pub tid: IntValue<'ctx>,
    pub ctaid: [IntValue<'ctx>; 3],
    /// The start of the block's shared memory (i8, shared address space).
    pub shared: Option<PointerValue<'ctx>>,
}

impl<'ctx> Em<'ctx> {
    pub(crate) fn new(ctx: &'ctx Context, name: &str, platform: Platform) -> Em<'ctx> {
        let module = ctx.create_module(name);
        let b = ctx.create_builder();
        Em { ctx, module, b, platform, kernel: None, cache: HashMap::new() }
    }

    /// An emitter adding to an existing module (the MLIR backend's translated modules, which
    /// the host harness completes with its entry function).
    #[cfg(all(test, feature = "mlir"))]
    pub(crate) fn with_module(ctx: &'ctx Context, module: Module<'ctx>, platform: Platform) -> Em<'ctx> {
        let b = ctx.create_builder();
        Em { ctx, module, b, platform, kernel: None, cache: HashMap::new() }
    }

    // ----- types -----

    pub(crate) fn i1(&self) -> IntType<'ctx> {
        self.ctx.bool_type()
    }
    pub(crate) fn i8(&self) -> IntType<'ctx> {
        self.ctx.i8_type()
    }
    pub(crate) fn i16(&self) -> IntType<'ctx> {
        self.ctx.i16_type()
    }
    pub(crate) fn i32(&self) -> IntType<'ctx> {
        self.ctx.i32_type()
    }
    pub(crate) fn i64(&self) -> IntType<'ctx> {
        self.ctx.i64_type()
    }
    pub(crate) fn int(&self, bits: u32) -> IntType<'ctx> {
        match bits {
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
        }
    }
    pub(crate) fn f16(&self) -> FloatType<'ctx> {
        self.ctx.f16_type()
    }
    pub(crate) fn bf16(&self) -> FloatType<'ctx> {
        self.ctx.bf16_type()
    }
    pub(crate) fn f32(&self) -> FloatType<'ctx> {
        self.ctx.f32_type()
    }
    pub(crate) fn f64(&self) -> FloatType<'ctx> {
        self.ctx.f64_type()
    }

    // ----- constants -----

    pub(crate) fn c32(&self, v: i64) -> IntValue<'ctx> {
        self.i32().const_int(v as u64, true)
    }
    pub(crate) fn c64(&self, v: i64) -> IntValue<'ctx> {
        self.i64().const_int(v as u64, true)
    }
    pub(crate) fn cint(&self, ty: IntType<'ctx>, v: i64) -> IntValue<'ctx> {
        ty.const_int(v as u64, true)
    }
    pub(crate) fn ctrue(&self) -> IntValue<'ctx> {
        self.i1().const_int(1, false)
    }
    pub(crate) fn cfalse(&self) -> IntValue<'ctx> {
        self.i1().const_int(0, false)
    }
    /// A float constant of `ty` with exactly these bits.
    pub(crate) fn cfloat_bits(&self, ty: FloatType<'ctx>, bits: u64) -> LResult<FloatValue<'ctx>> {
        let width = self.float_width(ty);
        let int = self.int(width).const_int(bits, false);
        // The builder folds a cast of a constant into a constant with exactly these bits (NaN
        // payloads included, which `const_float` from an f64 would not promise).
        Ok(self.b.build_bit_cast(int, ty, "")?.into_float_value())
    }
    pub(crate) fn cf32(&self, v: f32) -> FloatValue<'ctx> {
        self.f32().const_float(f64::from(v))
    }
    pub(crate) fn cf64(&self, v: f64) -> FloatValue<'ctx> {
        self.f64().const_float(v)
    }

    pub(crate) fn float_width(&self, ty: FloatType<'ctx>) -> u32 {
        if ty == self.f16() || ty == self.bf16() {
            16
        } else if ty == self.f32() {
            32
        } else {
            64
        }
    }

    // ----- integer operations -----

    pub(crate) fn add(&self, a: IntValue<'ctx>, b: IntValue<'ctx>) -> LResult<IntValue<'ctx>> {
        Ok(self.b.build_int_add(a, b, "")?)
    }
    pub(crate) fn sub(&self, a: IntValue<'ctx>, b: IntValue<'ctx>) -> LResult<IntValue<'ctx>> {
        Ok(self.b.build_int_sub(a, b, "")?)
    }
    pub(crate) fn mul(&self, a: IntValue<'ctx>, b: IntValue<'ctx>) -> LResult<IntValue<'ctx>> {
        Ok(self.b.build_int_mul(a, b, "")?)
    }
    pub(crate) fn and(&self, a: IntValue<'ctx>, b: IntValue<'ctx>) -> LResult<IntValue<'ctx>> {
        Ok(self.b.build_and(a, b, "")?)
    }
    pub(crate) fn or(&self, a: IntValue<'ctx>, b: IntValue<'ctx>) -> LResult<IntValue<'ctx>> {
        Ok(self.b.build_or(a, b, "")?)
    }
    pub(crate) fn xor(&self, a: IntValue<'ctx>, b: IntValue<'ctx>) -> LResult<IntValue<'ctx>> {
        Ok(self.b.build_xor(a, b, "")?)
    }
    pub(crate) fn not(&self, a: IntValue<'ctx>) -> LResult<IntValue<'ctx>> {
        Ok(self.b.build_not(a, "")?)
    }
    pub(crate) fn shl(&self, a: IntValue<'ctx>, b: IntValue<'ctx>) -> LResult<IntValue<'ctx>> {
        Ok(self.b.build_left_shift(a, b, "")?)
    }
    pub(crate) fn lshr(&self, a: IntValue<'ctx>, b: IntValue<'ctx>) -> LResult<IntValue<'ctx>> {
        Ok(self.b.build_right_shift(a, b, false, "")?)
    }
    pub(crate) fn ashr(&self, a: IntValue<'ctx>, b: IntValue<'ctx>) -> LResult<IntValue<'ctx>> {
        Ok(self.b.build_right_shift(a, b, true, "")?)
    }
    pub(crate) fn sdiv(&self, a: IntValue<'ctx>, b: IntValue<'ctx>) -> LResult<IntValue<'ctx>> {
        Ok(self.b.build_int_signed_div(a, b, "")?)
    }
    pub(crate) fn udiv(&self, a: IntValue<'ctx>, b: IntValue<'ctx>) -> LResult<IntValue<'ctx>> {
        Ok(self.b.build_int_unsigned_div(a, b, "")?)
    }
    pub(crate) fn srem(&self, a: IntValue<'ctx>, b: IntValue<'ctx>) -> LResult<IntValue<'ctx>> {
        Ok(self.b.build_int_signed_rem(a, b, "")?)
    }
    pub(crate) fn urem(&self, a: IntValue<'ctx>, b: IntValue<'ctx>) -> LResult<IntValue<'ctx>> {
        Ok(self.b.build_int_unsigned_rem(a, b, "")?)
    }
    pub(crate) fn icmp(&self, p: IntPredicate, a: IntValue<'ctx>, b: IntValue<'ctx>) -> LResult<IntValue<'ctx>> {
        Ok(self.b.build_int_compare(p, a, b, "")?)
    }
    pub(crate) fn eq(&self, a: IntValue<'ctx>, b: IntValue<'ctx>) -> LResult<IntValue<'ctx>> {
        self.icmp(IntPredicate::EQ, a, b)
    }
    pub(crate) fn ne(&self, a: IntValue<'ctx>, b: IntValue<'ctx>) -> LResult<IntValue<'ctx>> {
        self.icmp(IntPredicate::NE, a, b)
    }
    pub(crate) fn slt(&self, a: IntValue<'ctx>, b: IntValue<'ctx>) -> LResult<IntValue<'ctx>> {
        self.icmp(IntPredicate::SLT, a, b)
    }
    pub(crate) fn sgt(&self, a: IntValue<'ctx>, b: IntValue<'ctx>) -> LResult<IntValue<'ctx>> {
        self.icmp(IntPredicate::SGT, a, b)
    }
    pub(crate) fn sge(&self, a: IntValue<'ctx>, b: IntValue<'ctx>) -> LResult<IntValue<'ctx>> {
        self.icmp(IntPredicate::SGE, a, b)
    }
    pub(crate) fn ult(&self, a: IntValue<'ctx>, b: IntValue<'ctx>) -> LResult<IntValue<'ctx>> {
        self.icmp(IntPredicate::ULT, a, b)
    }
    pub(crate) fn ugt(&self, a: IntValue<'ctx>, b: IntValue<'ctx>) -> LResult<IntValue<'ctx>> {
        self.icmp(IntPredicate::UGT, a, b)
    }
    pub(crate) fn uge(&self, a: IntValue<'ctx>, b: IntValue<'ctx>) -> LResult<IntValue<'ctx>> {
        self.icmp(IntPredicate::UGE, a, b)
    }
    pub(crate) fn smin(&self, a: IntValue<'ctx>, b: IntValue<'ctx>) -> LResult<IntValue<'ctx>> {
        let c = self.slt(a, b)?;
        self.select_int(c, a, b)
    }
    pub(crate) fn smax(&self, a: IntValue<'ctx>, b: IntValue<'ctx>) -> LResult<IntValue<'ctx>> {
        let c = self.sgt(a, b)?;
        self.select_int(c, a, b)
    }
    pub(crate) fn select_int(
        &self,
        c: IntValue<'ctx>,
        a: IntValue<'ctx>,
        b: IntValue<'ctx>,
    ) -> LResult<IntValue<'ctx>> {
        Ok(self.b.build_select(c, a, b, "")?.into_int_value())
    }
    pub(crate) fn select_float(
        &self,
        c: IntValue<'ctx>,
        a: FloatValue<'ctx>,
        b: FloatValue<'ctx>,
    ) -> LResult<FloatValue<'ctx>> {
        Ok(self.b.build_select(c, a, b, "")?.into_float_value())
    }
    pub(crate) fn select(
        &self,
        c: IntValue<'ctx>,
        a: BasicValueEnum<'ctx>,
        b: BasicValueEnum<'ctx>,
    ) -> LResult<BasicValueEnum<'ctx>> {
        Ok(self.b.build_select(c, a, b, "")?)
    }
    pub(crate) fn zext(&self, a: IntValue<'ctx>, ty: IntType<'ctx>) -> LResult<IntValue<'ctx>> {
        if a.get_type() == ty {
            return Ok(a);
        }
        Ok(self.b.build_int_z_extend(a, ty, "")?)
    }
    pub(crate) fn sext(&self, a: IntValue<'ctx>, ty: IntType<'ctx>) -> LResult<IntValue<'ctx>> {
        if a.get_type() == ty {
            return Ok(a);
        }
        Ok(self.b.build_int_s_extend(a, ty, "")?)
    }
    /// Zero-extends or truncates to `ty`.
    pub(crate) fn resize(&self, a: IntValue<'ctx>, ty: IntType<'ctx>) -> LResult<IntValue<'ctx>> {
        if a.get_type().get_bit_width() > ty.get_bit_width() { self.trunc(a, ty) } else { self.zext(a, ty) }
    }
    pub(crate) fn trunc(&self, a: IntValue<'ctx>, ty: IntType<'ctx>) -> LResult<IntValue<'ctx>> {
        if a.get_type() == ty {
            return Ok(a);
        }
        Ok(self.b.build_int_truncate(a, ty, "")?)
    }
    /// `a` as an `i1` truth value (nonzero).
    pub(crate) fn truth(&self, a: IntValue<'ctx>) -> LResult<IntValue<'ctx>> {
        if a.get_type() == self.i1() {
            return Ok(a);
        }
        let zero = a.get_type().const_zero();
        self.ne(a, zero)
    }
    /// An `i1` as an `i32` 0/1.
    pub(crate) fn bool_to_i32(&self, a: IntValue<'ctx>) -> LResult<IntValue<'ctx>> {
        self.zext(a, self.i32())
    }
    pub(crate) fn and_all(&self, values: &[IntValue<'ctx>]) -> LResult<IntValue<'ctx>> {
        let mut acc = self.ctrue();
        for (i, &v) in values.iter().enumerate() {
            acc = if i == 0 { v } else { self.and(acc, v)? };
        }
        Ok(acc)
    }

    // ----- float operations -----

    pub(crate) fn fadd(&self, a: FloatValue<'ctx>, b: FloatValue<'ctx>) -> LResult<FloatValue<'ctx>> {
        Ok(self.b.build_float_add(a, b, "")?)
    }
    pub(crate) fn fsub(&self, a: FloatValue<'ctx>, b: FloatValue<'ctx>) -> LResult<FloatValue<'ctx>> {
        Ok(self.b.build_float_sub(a, b, "")?)
    }
    pub(crate) fn fmul(&self, a: FloatValue<'ctx>, b: FloatValue<'ctx>) -> LResult<FloatValue<'ctx>> {
        Ok(self.b.build_float_mul(a, b, "")?)
    }
    pub(crate) fn fdiv(&self, a: FloatValue<'ctx>, b: FloatValue<'ctx>) -> LResult<FloatValue<'ctx>> {
        Ok(self.b.build_float_div(a, b, "")?)
    }
    pub(crate) fn fneg(&self, a: FloatValue<'ctx>) -> LResult<FloatValue<'ctx>> {
        Ok(self.b.build_float_neg(a, "")?)
    }
    pub(crate) fn fcmp(&self, p: FloatPredicate, a: FloatValue<'ctx>, b: FloatValue<'ctx>) -> LResult<IntValue<'ctx>> {
        if self.platform == Platform::Host && a.get_type() == self.bf16() {
            // The host has no bfloat arithmetic: compare the (exact) f32 values.
            let (a, b) = (self.fext(a, self.f32())?, self.fext(b, self.f32())?);
            return Ok(self.b.build_float_compare(p, a, b, "")?);
        }
        Ok(self.b.build_float_compare(p, a, b, "")?)
    }
    pub(crate) fn is_nan(&self, a: FloatValue<'ctx>) -> LResult<IntValue<'ctx>> {
        self.fcmp(FloatPredicate::UNO, a, a)
    }
    pub(crate) fn fext(&self, a: FloatValue<'ctx>, ty: FloatType<'ctx>) -> LResult<FloatValue<'ctx>> {
        if a.get_type() == ty {
            return Ok(a);
        }
        if self.platform == Platform::Host && a.get_type() == self.bf16() {
            // bfloat is the top half of an f32: widen by bits (the host lowers bfloat
            // conversions to library calls it may not have).
            let bits = self.zext(self.fbits(a)?, self.i32())?;
            let wide = self.from_bits(self.shl(bits, self.c32(16))?, self.f32())?;
            return self.fext(wide, ty);
        }
        Ok(self.b.build_float_ext(a, ty, "")?)
    }
    pub(crate) fn ftrunc(&self, a: FloatValue<'ctx>, ty: FloatType<'ctx>) -> LResult<FloatValue<'ctx>> {
        if a.get_type() == ty {
            return Ok(a);
        }
        Ok(self.b.build_float_trunc(a, ty, "")?)
    }
    /// The bits of a float as an integer of its width.
    pub(crate) fn fbits(&self, a: FloatValue<'ctx>) -> LResult<IntValue<'ctx>> {
        let width = self.float_width(a.get_type());
        Ok(self.b.build_bit_cast(a, self.int(width), "")?.into_int_value())
    }
    /// A float of `ty` from bits of its width.
    #[allow(clippy::wrong_self_convention)]
    pub(crate) fn from_bits(&self, a: IntValue<'ctx>, ty: FloatType<'ctx>) -> LResult<FloatValue<'ctx>> {
        Ok(self.b.build_bit_cast(a, ty, "")?.into_float_value())
    }
    pub(crate) fn sitofp(&self, a: IntValue<'ctx>, ty: FloatType<'ctx>) -> LResult<FloatValue<'ctx>> {
        Ok(self.b.build_signed_int_to_float(a, ty, "")?)
    }
    pub(crate) fn uitofp(&self, a: IntValue<'ctx>, ty: FloatType<'ctx>) -> LResult<FloatValue<'ctx>> {
        Ok(self.b.build_unsigned_int_to_float(a, ty, "")?)
    }

    // ----- calls and intrinsics -----

    /// The function `name` of type `ty`, declared if absent.
    pub(crate) fn declare(&self, name: &str, ty: FunctionType<'ctx>) -> FunctionValue<'ctx> {
        match self.module.get_function(name) {
            Some(f) => f,
            None => self.module.add_function(name, ty, Some(Linkage::External)),
        }
    }

    /// Calls `f` and returns its value (for a function returning one).
    pub(crate) fn call(&self, f: FunctionValue<'ctx>, args: &[BasicValueEnum<'ctx>]) -> LResult<BasicValueEnum<'ctx>> {
        let args: Vec<BasicMetadataValueEnum<'ctx>> = args.iter().map(|&a| a.into()).collect();
        let site = self.b.build_direct_call(f, &args, "")?;
        match site.try_as_basic_value() {
            inkwell::values::ValueKind::Basic(v) => Ok(v),
            inkwell::values::ValueKind::Instruction(_) => {
                internal(format!("call to {:?} returns no value", f.get_name()))
            }
        }
    }

    /// Calls a function that returns nothing.
    pub(crate) fn call_void(&self, f: FunctionValue<'ctx>, args: &[BasicValueEnum<'ctx>]) -> LResult<()> {
        let args: Vec<BasicMetadataValueEnum<'ctx>> = args.iter().map(|&a| a.into()).collect();
        self.b.build_direct_call(f, &args, "")?;
        Ok(())
    }

    /// Calls the intrinsic (or any function) `name` with result type `ret` (None: void).
    pub(crate) fn intrinsic(
        &self,
        name: &str,
        ret: Option<BasicTypeEnum<'ctx>>,
        args: &[BasicValueEnum<'ctx>],
    ) -> LResult<Option<BasicValueEnum<'ctx>>> {
        let params: Vec<BasicMetadataTypeEnum<'ctx>> = args.iter().map(|a| a.get_type().into()).collect();
        let ty = match ret {
            Some(r) => r.fn_type(&params, false),
            None => self.ctx.void_type().fn_type(&params, false),
        };
        let f = self.declare(name, ty);
        if ret.is_some() { self.call(f, args).map(Some) } else { self.call_void(f, args).map(|()| None) }
    }

    /// Calls an intrinsic that returns a value.
    pub(crate) fn intrinsic_value(
        &self,
        name: &str,
        ret: BasicTypeEnum<'ctx>,
        args: &[BasicValueEnum<'ctx>],
    ) -> LResult<BasicValueEnum<'ctx>> {
        match self.intrinsic(name, Some(ret), args)? {
            Some(v) => Ok(v),
            None => internal(format!("intrinsic {name} returned nothing")),
        }
    }

    /// The type suffix LLVM uses for overloaded float intrinsics (`f32`, `f16`, ...).
    pub(crate) fn float_suffix(&self, ty: FloatType<'ctx>) -> &'static str {
        if ty == self.f16() {
            "f16"
        } else if ty == self.bf16() {
            "bf16"
        } else if ty == self.f32() {
            "f32"
        } else {
            "f64"
        }
    }

    /// `llvm.<name>.<fN>(a)`.
    pub(crate) fn float_intrinsic1(&self, name: &str, a: FloatValue<'ctx>) -> LResult<FloatValue<'ctx>> {
        let ty = a.get_type();
        let full = format!("llvm.{name}.{}", self.float_suffix(ty));
        Ok(self.intrinsic_value(&full, ty.as_basic_type_enum(), &[a.into()])?.into_float_value())
    }

    /// `llvm.<name>.<fN>(a, b)`.
    pub(crate) fn float_intrinsic2(
        &self,
        name: &str,
        a: FloatValue<'ctx>,
        b: FloatValue<'ctx>,
    ) -> LResult<FloatValue<'ctx>> {
        let ty = a.get_type();
        let full = format!("llvm.{name}.{}", self.float_suffix(ty));
        Ok(self.intrinsic_value(&full, ty.as_basic_type_enum(), &[a.into(), b.into()])?.into_float_value())
    }

    /// `fma(a, b, c)` with a single rounding.
    pub(crate) fn fma(
        &self,
        a: FloatValue<'ctx>,
        b: FloatValue<'ctx>,
        c: FloatValue<'ctx>,
    ) -> LResult<FloatValue<'ctx>> {
        let ty = a.get_type();
        let full = format!("llvm.fma.{}", self.float_suffix(ty));
        Ok(self.intrinsic_value(&full, ty.as_basic_type_enum(), &[a.into(), b.into(), c.into()])?.into_float_value())
    }

    /// Count of leading zeros (`ctlz`, defined for 0).
    pub(crate) fn ctlz(&self, a: IntValue<'ctx>) -> LResult<IntValue<'ctx>> {
        let ty = a.get_type();
        let name = format!("llvm.ctlz.i{}", ty.get_bit_width());
        Ok(self.intrinsic_value(&name, ty.as_basic_type_enum(), &[a.into(), self.cfalse().into()])?.into_int_value())
    }

    // ----- attributes and helper functions -----

    fn enum_attribute(&self, name: &str) -> Attribute {
        self.ctx.create_enum_attribute(Attribute::get_named_enum_kind_id(name), 0)
    }

    /// A new internal, always-inlined function `name` of type `ty`, and the block to build its
    /// body in; `None` if it already exists (then `existing` is it).
    pub(crate) fn begin_helper(
        &self,
        name: &str,
        ty: FunctionType<'ctx>,
    ) -> Result<FunctionValue<'ctx>, (FunctionValue<'ctx>, BasicBlock<'ctx>)> {
        if let Some(f) = self.module.get_function(name) {
            return Ok(f);
        }
        let f = self.module.add_function(name, ty, Some(Linkage::Internal));
        f.add_attribute(AttributeLoc::Function, self.enum_attribute("alwaysinline"));
        f.add_attribute(AttributeLoc::Function, self.enum_attribute("nounwind"));
        let entry = self.ctx.append_basic_block(f, "entry");
        Err((f, entry))
    }

    /// Builds a helper function's body with `body`, keeping the builder's current position.
    /// Returns the function (reused when it exists).
    pub(crate) fn helper(
        &self,
        name: &str,
        ty: FunctionType<'ctx>,
        body: impl FnOnce(&Em<'ctx>, FunctionValue<'ctx>) -> LResult<BasicValueEnum<'ctx>>,
    ) -> LResult<FunctionValue<'ctx>> {
        let (f, entry) = match self.begin_helper(name, ty) {
            Ok(f) => return Ok(f),
            Err(pair) => pair,
        };
        let saved = self.b.get_insert_block();
        self.b.position_at_end(entry);
        let result = body(self, f);
        let result = result.and_then(|v| Ok(self.b.build_return(Some(&v))?));
        if let Some(block) = saved {
            self.b.position_at_end(block);
        }
        result.map(|_| f)
    }

    // ----- kernel-level helpers -----

    pub(crate) fn kernel(&self) -> LResult<&KernelFn<'ctx>> {
        match &self.kernel {
            Some(k) => Ok(k),
            None => internal("no kernel function"),
        }
    }

    /// Runs `f` with the builder at the end of the prologue (before its terminator, which is
    /// added last), so that what it computes dominates the whole kernel.
    pub(crate) fn in_prologue<T>(&self, f: impl FnOnce(&Em<'ctx>) -> LResult<T>) -> LResult<T> {
        let prologue = self.kernel()?.prologue;
        let saved = self.b.get_insert_block();
        self.b.position_at_end(prologue);
        let result = f(self);
        if let Some(block) = saved {
            self.b.position_at_end(block);
        }
        result
    }

    pub(crate) fn tid(&self) -> LResult<IntValue<'ctx>> {
        Ok(self.kernel()?.tid)
    }

    /// A block-wide barrier.
    pub(crate) fn barrier(&self) -> LResult<()> {
        match self.platform {
            Platform::Nvptx(_) => {
                self.intrinsic("llvm.nvvm.barrier.cta.sync.aligned.all", None, &[self.c32(0).into()])?;
            }
            Platform::Host => {
                self.intrinsic(host_fn::BARRIER, None, &[])?;
            }
        }
        Ok(())
    }

    /// The value of lane `lane ^ mask` of the warp (every lane takes part).
    pub(crate) fn shfl_bfly(&self, v: IntValue<'ctx>, mask: u32) -> LResult<IntValue<'ctx>> {
        let v = match v.get_type().get_bit_width() {
            32 => v,
            _ => return internal("shuffles move 32-bit values"),
        };
        let r = match self.platform {
            Platform::Nvptx(_) => self.intrinsic_value(
                "llvm.nvvm.shfl.sync.bfly.i32",
                self.i32().into(),
                &[self.c32(-1).into(), v.into(), self.c32(i64::from(mask)).into(), self.c32(31).into()],
            )?,
            Platform::Host => self.intrinsic_value(
                host_fn::SHFL_BFLY,
                self.i32().into(),
                &[v.into(), self.c32(i64::from(mask)).into()],
            )?,
        };
        Ok(r.into_int_value())
    }

    /// Shuffles any 32- or 64-bit value (integers and floats).
    pub(crate) fn shfl_bfly_any(&self, v: BasicValueEnum<'ctx>, mask: u32) -> LResult<BasicValueEnum<'ctx>> {
        match v {
            BasicValueEnum::IntValue(i) if i.get_type().get_bit_width() == 32 => Ok(self.shfl_bfly(i, mask)?.into()),
            BasicValueEnum::IntValue(i) if i.get_type().get_bit_width() == 64 => {
                let lo = self.trunc(i, self.i32())?;
                let hi = self.trunc(self.lshr(i, self.c64(32))?, self.i32())?;
                let (lo, hi) = (self.shfl_bfly(lo, mask)?, self.shfl_bfly(hi, mask)?);
                let lo = self.zext(lo, self.i64())?;
                let hi = self.shl(self.zext(hi, self.i64())?, self.c64(32))?;
                Ok(self.or(lo, hi)?.into())
            }
            BasicValueEnum::IntValue(i) => {
                let wide = self.zext(i, self.i32())?;
                Ok(self.trunc(self.shfl_bfly(wide, mask)?, i.get_type())?.into())
            }
            BasicValueEnum::FloatValue(f) => {
                let ty = f.get_type();
                let bits = self.fbits(f)?;
                let moved = self.shfl_bfly_any(bits.into(), mask)?.into_int_value();
                Ok(self.from_bits(moved, ty)?.into())
            }
            _ => internal("cannot shuffle this value"),
        }
    }

    /// `ldmatrix.sync.aligned.m8n8.x{count}[.trans].shared.b16`: every lane gives the
    /// address of one 16-byte row; returns `count` registers.
    pub(crate) fn ldmatrix(&self, addr: PointerValue<'ctx>, count: u32, trans: bool) -> LResult<Vec<IntValue<'ctx>>> {
        match self.platform {
            Platform::Nvptx(_) => {
                let name = format!(
                    "llvm.nvvm.ldmatrix.sync.aligned.m8n8.x{count}{}.b16.p3",
                    if trans { ".trans" } else { "" }
                );
                let ret: BasicTypeEnum<'ctx> = if count == 1 {
                    self.i32().into()
                } else {
                    self.ctx.struct_type(&vec![self.i32().into(); count as usize], false).into()
                };
                let v = self.intrinsic_value(&name, ret, &[addr.into()])?;
                match v {
                    BasicValueEnum::IntValue(i) => Ok(vec![i]),
                    BasicValueEnum::StructValue(s) => {
                        (0..count).map(|k| Ok(self.b.build_extract_value(s, k, "")?.into_int_value())).collect()
                    }
                    _ => internal("ldmatrix result"),
                }
            }
            Platform::Host => {
                let a = self.b.build_ptr_to_int(addr, self.i64(), "")?;
                (0..count)
                    .map(|which| {
                        let args = [
                            a.into(),
                            self.c32(i64::from(count)).into(),
                            self.c32(i64::from(trans)).into(),
                            self.c32(i64::from(which)).into(),
                        ];
                        Ok(self.intrinsic_value(host_fn::LDMATRIX, self.i32().into(), &args)?.into_int_value())
                    })
                    .collect()
            }
        }
    }

    /// A pointer `base + offset` (bytes).
    pub(crate) fn byte_offset(&self, base: PointerValue<'ctx>, offset: IntValue<'ctx>) -> LResult<PointerValue<'ctx>> {
        super::address::byte_gep(self, base, offset)
    }

    /// A load of `ty` from `ptr` with the given alignment.
    pub(crate) fn load(
        &self,
        ty: BasicTypeEnum<'ctx>,
        ptr: PointerValue<'ctx>,
        align: u32,
    ) -> LResult<BasicValueEnum<'ctx>> {
        let v = self.b.build_load(ty, ptr, "")?;
        if let Some(inst) = inkwell::values::BasicValue::as_instruction_value(&v) {
            inst.set_alignment(align).map_err(|e| LowerError::Llvm(format!("load alignment: {e}")))?;
        }
        Ok(v)
    }

    /// A store with the given alignment.
    pub(crate) fn store(&self, ptr: PointerValue<'ctx>, v: BasicValueEnum<'ctx>, align: u32) -> LResult<()> {
        let inst = self.b.build_store(ptr, v)?;
        inst.set_alignment(align).map_err(|e| LowerError::Llvm(format!("store alignment: {e}")))?;
        Ok(())
    }
}
