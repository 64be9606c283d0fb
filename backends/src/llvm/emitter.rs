//! The emitter interface the per-thread lowering is written against, so that one lowering
//! serves both code generators: [`super::emit::Em`] builds LLVM IR with inkwell (the LLVM
//! backend), `crate::mlir::emit::Em` builds the `llvm` and `nvvm` dialects of MLIR with melior
//! (the MLIR backend).
//!
//! The interface is LLVM's instruction set seen through one untyped value handle
//! ([`Emit::V`]) and one type handle ([`Emit::T`]): a backend implements a small set of
//! primitives (constants, integer and float operations, conversions, memory accesses, calls of
//! intrinsics, inline PTX, always-inlined helper functions, blocks with parameters and
//! branches, the kernel's entry and special registers); everything else — comparisons by
//! name, `min`/`max`, shuffles of any width, `ldmatrix`, the host platform's substitutes for
//! bfloat arithmetic — is provided here once, in terms of those primitives.
//!
//! Control flow is expressed with **block parameters** (MLIR's model): a branch passes values
//! to its target's parameters. The inkwell emitter turns parameters into φ-nodes and each
//! branch into incoming edges, which is the same thing in SSA form.
//!
//! Constants may be used in any block: the inkwell emitter's are LLVM constants; the melior
//! emitter places each in the function's entry block, which dominates every use.

use std::collections::HashMap;

use anybit_ir::program::Kernel;
pub(crate) use inkwell::{FloatPredicate, IntPredicate};

use super::emit::{LResult, Platform, host_fn, internal};

/// Binary integer operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IntOp {
    Add,
    Sub,
    Mul,
    And,
    Or,
    Xor,
    Shl,
    LShr,
    AShr,
    SDiv,
    UDiv,
    SRem,
    URem,
}

/// Binary float operations (on scalars, or on vectors of floats).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FloatOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// Conversions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Conv {
    ZExt,
    SExt,
    Trunc,
    BitCast,
    FpExt,
    FpTrunc,
    SiToFp,
    UiToFp,
    FpToSi,
    PtrToInt,
}

/// Atomic read-modify-write operations (monotonic ordering).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AtomicOp {
    And,
    Or,
}

/// Module-level buffers the lowering addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ModuleBuffer {
    /// 16 constant zero bytes in global memory: what masked-out loads read.
    ZeroPage,
    /// 16 bytes of global memory that masked-out stores write.
    Sink,
}

/// Address spaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Space {
    Global,
    Shared,
}

/// The running thread's indices and the start of the block's shared memory, read once in the
/// kernel's prologue.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ThreadValues<V> {
    /// `tid.x` (`i32`).
    pub tid: V,
    /// `ctaid.{x,y,z}` (`i32`).
    pub ctaid: [V; 3],
    /// The start of the block's shared memory (an `i8` pointer in the shared space).
    pub shared: V,
}

/// An emitter of one kernel: see the module documentation.
pub(crate) trait Emit: Sized {
    /// A value.
    type V: Copy + std::fmt::Debug;
    /// A type.
    type T: Copy + std::fmt::Debug + PartialEq;
    /// A basic block.
    type B: Copy + std::fmt::Debug;
    /// A helper function.
    type F: Clone + std::fmt::Debug;

    /// Where the code runs.
    fn platform(&self) -> Platform;

    // ----- types -----

    /// The integer type of `bits` bits.
    fn int(&self, bits: u32) -> Self::T;
    fn f16(&self) -> Self::T;
    fn bf16(&self) -> Self::T;
    fn f32(&self) -> Self::T;
    fn f64(&self) -> Self::T;
    /// A vector of `n` elements.
    fn vector_type(&self, element: Self::T, n: u32) -> Self::T;
    /// A literal struct.
    fn struct_type(&self, fields: &[Self::T]) -> Self::T;
    /// The type of a value.
    fn type_of(&self, v: Self::V) -> Self::T;
    /// The width of an integer type (`None` for other types).
    fn int_width(&self, t: Self::T) -> Option<u32>;

    // ----- constants -----

    /// A constant of an integer type with these (two's complement) bits.
    fn cint(&self, ty: Self::T, v: i64) -> LResult<Self::V>;
    /// A float constant of `ty` with exactly these bits (NaN payloads included).
    fn cfloat_bits(&self, ty: Self::T, bits: u64) -> LResult<Self::V>;
    /// An undefined value of `ty`.
    fn undef(&self, ty: Self::T) -> LResult<Self::V>;

    // ----- operations -----

    fn ibin(&self, op: IntOp, a: Self::V, b: Self::V) -> LResult<Self::V>;
    fn icmp(&self, p: IntPredicate, a: Self::V, b: Self::V) -> LResult<Self::V>;
    fn fbin(&self, op: FloatOp, a: Self::V, b: Self::V) -> LResult<Self::V>;
    fn fneg(&self, a: Self::V) -> LResult<Self::V>;
    /// A float comparison as the target computes it (see [`Emit::fcmp`]).
    fn fcmp_native(&self, p: FloatPredicate, a: Self::V, b: Self::V) -> LResult<Self::V>;
    /// A conversion to `ty` (never called with `ty` equal to the value's type for extensions
    /// and truncations: the provided helpers skip those).
    fn conv(&self, op: Conv, v: Self::V, ty: Self::T) -> LResult<Self::V>;
    /// `c ? a : b` (`c` an `i1`; any operand type, pointers included).
    fn select(&self, c: Self::V, a: Self::V, b: Self::V) -> LResult<Self::V>;
    fn extract_element(&self, vector: Self::V, index: u32) -> LResult<Self::V>;
    fn insert_element(&self, vector: Self::V, v: Self::V, index: u32) -> LResult<Self::V>;
    fn extract_value(&self, aggregate: Self::V, index: u32) -> LResult<Self::V>;
    /// When `v` was extracted from a vector at a constant index: an identity of the vector
    /// (equal for values extracted from the same vector) and the index.
    fn vector_lane(&self, v: Self::V) -> Option<(usize, u64)>;

    // ----- memory -----

    /// `base + offset` bytes (a wrapping `i8` GEP).
    fn byte_offset(&self, base: Self::V, offset: Self::V) -> LResult<Self::V>;
    /// A load of `ty` with this alignment; `invariant`: the memory does not change during the
    /// kernel (`!invariant.load`).
    fn load_with(&self, ty: Self::T, ptr: Self::V, align: u32, invariant: bool) -> LResult<Self::V>;
    fn store(&self, ptr: Self::V, v: Self::V, align: u32) -> LResult<()>;
    /// A monotonic atomic read-modify-write of an `i32` (the old value is not used).
    fn atomic_rmw(&self, op: AtomicOp, ptr: Self::V, v: Self::V) -> LResult<()>;
    /// The address of a module-level buffer (created on first use).
    fn module_buffer(&self, which: ModuleBuffer) -> LResult<Self::V>;

    // ----- calls -----

    /// Calls an LLVM intrinsic (`llvm.…`) or a function of the host harness by name, with
    /// result type `ret` (None: void).
    fn intrinsic(&self, name: &str, ret: Option<Self::T>, args: &[Self::V]) -> LResult<Option<Self::V>>;
    /// Inline PTX (`side_effects`: not to be removed or moved). A result type that is a struct
    /// holds several outputs.
    fn inline_asm(
        &self,
        asm: &str,
        constraints: &str,
        ret: Option<Self::T>,
        args: &[Self::V],
        side_effects: bool,
    ) -> LResult<Option<Self::V>>;
    /// An internal, always-inlined function `name(params) -> ret` whose body `body` builds
    /// from its parameters (built once; later calls return the existing one).
    fn helper(
        &self,
        name: &str,
        params: &[Self::T],
        ret: Self::T,
        body: impl FnOnce(&Self, &[Self::V]) -> LResult<Self::V>,
    ) -> LResult<Self::F>;
    /// Calls a helper.
    fn call(&self, f: &Self::F, args: &[Self::V]) -> LResult<Self::V>;

    // ----- control flow -----

    /// A new block of the kernel function.
    fn new_block(&self, name: &str) -> LResult<Self::B>;
    /// The block operations go to.
    fn current_block(&self) -> LResult<Self::B>;
    /// Makes operations go to the end of `block`.
    fn position_at_end(&self, block: Self::B);
    /// Adds a parameter of type `ty` to `block` (before any branch to it is built).
    fn block_param(&self, block: Self::B, ty: Self::T) -> LResult<Self::V>;
    /// Branches to `target`, passing `args` to its parameters.
    fn br(&self, target: Self::B, args: &[Self::V]) -> LResult<()>;
    /// Branches on `c` (an `i1`) to blocks without parameters.
    fn cond_br(&self, c: Self::V, then_block: Self::B, else_block: Self::B) -> LResult<()>;

    // ----- the kernel -----

    /// Creates the kernel function (parameters per the manifest's ABI; on the host, then the
    /// thread and block indices and the shared-memory pointer), reads the special registers
    /// in its prologue, and leaves operations going to its body. Returns the kernel's
    /// parameters.
    fn begin_kernel(&mut self, kernel: &Kernel) -> LResult<Vec<Self::V>>;
    /// Ends the kernel (returns from the body, branches from the prologue to the body) and
    /// gives it `shared_bytes` of shared memory.
    fn finish_kernel(&mut self, shared_bytes: usize) -> LResult<()>;
    /// The kernel's entry block (its terminator is added last, by [`Emit::finish_kernel`]).
    fn prologue(&self) -> LResult<Self::B>;
    /// The values [`Emit::begin_kernel`] read.
    fn thread_values(&self) -> LResult<&ThreadValues<Self::V>>;
    /// Per-thread values cached by key (layout coordinates, predicates), computed once in the
    /// prologue.
    fn cache(&mut self) -> &mut HashMap<String, Vec<Self::V>>;

    // ===== provided =====

    /// Runs `f` with operations going to the end of the prologue, so that what it computes
    /// dominates the whole kernel.
    fn in_prologue<R>(&self, f: impl FnOnce(&Self) -> LResult<R>) -> LResult<R> {
        let saved = self.current_block()?;
        self.position_at_end(self.prologue()?);
        let result = f(self);
        self.position_at_end(saved);
        result
    }

    /// `tid.x` (`i32`).
    fn tid(&self) -> LResult<Self::V> {
        Ok(self.thread_values()?.tid)
    }
    /// `ctaid.{x,y,z}` (`i32`).
    fn ctaid(&self, axis: usize) -> LResult<Self::V> {
        match self.thread_values()?.ctaid.get(axis) {
            Some(&v) => Ok(v),
            None => internal("block axis out of range"),
        }
    }
    /// The start of the block's shared memory.
    fn shared_base(&self) -> LResult<Self::V> {
        Ok(self.thread_values()?.shared)
    }

    fn i1(&self) -> Self::T {
        self.int(1)
    }
    fn i8(&self) -> Self::T {
        self.int(8)
    }
    fn i16(&self) -> Self::T {
        self.int(16)
    }
    fn i32(&self) -> Self::T {
        self.int(32)
    }
    fn i64(&self) -> Self::T {
        self.int(64)
    }

    /// The width of a float type (16, 32 or 64).
    fn float_width(&self, ty: Self::T) -> u32 {
        if ty == self.f16() || ty == self.bf16() {
            16
        } else if ty == self.f32() {
            32
        } else {
            64
        }
    }

    /// The type suffix LLVM uses for overloaded float intrinsics (`f32`, `f16`, ...).
    fn float_suffix(&self, ty: Self::T) -> &'static str {
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

    /// The width of a value's integer type (0 when it is not an integer).
    fn width_of(&self, v: Self::V) -> u32 {
        self.int_width(self.type_of(v)).unwrap_or(0)
    }

    fn c32(&self, v: i64) -> LResult<Self::V> {
        self.cint(self.i32(), v)
    }
    fn c64(&self, v: i64) -> LResult<Self::V> {
        self.cint(self.i64(), v)
    }
    fn ctrue(&self) -> LResult<Self::V> {
        self.cint(self.i1(), 1)
    }
    fn cfalse(&self) -> LResult<Self::V> {
        self.cint(self.i1(), 0)
    }
    fn cf32(&self, v: f32) -> LResult<Self::V> {
        self.cfloat_bits(self.f32(), u64::from(v.to_bits()))
    }
    fn cf64(&self, v: f64) -> LResult<Self::V> {
        self.cfloat_bits(self.f64(), v.to_bits())
    }

    // ----- integer operations -----

    fn add(&self, a: Self::V, b: Self::V) -> LResult<Self::V> {
        self.ibin(IntOp::Add, a, b)
    }
    fn sub(&self, a: Self::V, b: Self::V) -> LResult<Self::V> {
        self.ibin(IntOp::Sub, a, b)
    }
    fn mul(&self, a: Self::V, b: Self::V) -> LResult<Self::V> {
        self.ibin(IntOp::Mul, a, b)
    }
    fn and(&self, a: Self::V, b: Self::V) -> LResult<Self::V> {
        self.ibin(IntOp::And, a, b)
    }
    fn or(&self, a: Self::V, b: Self::V) -> LResult<Self::V> {
        self.ibin(IntOp::Or, a, b)
    }
    fn xor(&self, a: Self::V, b: Self::V) -> LResult<Self::V> {
        self.ibin(IntOp::Xor, a, b)
    }
    fn not(&self, a: Self::V) -> LResult<Self::V> {
        let ones = self.cint(self.type_of(a), -1)?;
        self.xor(a, ones)
    }
    fn shl(&self, a: Self::V, b: Self::V) -> LResult<Self::V> {
        self.ibin(IntOp::Shl, a, b)
    }
    fn lshr(&self, a: Self::V, b: Self::V) -> LResult<Self::V> {
        self.ibin(IntOp::LShr, a, b)
    }
    fn ashr(&self, a: Self::V, b: Self::V) -> LResult<Self::V> {
        self.ibin(IntOp::AShr, a, b)
    }
    fn sdiv(&self, a: Self::V, b: Self::V) -> LResult<Self::V> {
        self.ibin(IntOp::SDiv, a, b)
    }
    fn udiv(&self, a: Self::V, b: Self::V) -> LResult<Self::V> {
        self.ibin(IntOp::UDiv, a, b)
    }
    fn srem(&self, a: Self::V, b: Self::V) -> LResult<Self::V> {
        self.ibin(IntOp::SRem, a, b)
    }
    fn urem(&self, a: Self::V, b: Self::V) -> LResult<Self::V> {
        self.ibin(IntOp::URem, a, b)
    }
    fn eq(&self, a: Self::V, b: Self::V) -> LResult<Self::V> {
        self.icmp(IntPredicate::EQ, a, b)
    }
    fn ne(&self, a: Self::V, b: Self::V) -> LResult<Self::V> {
        self.icmp(IntPredicate::NE, a, b)
    }
    fn slt(&self, a: Self::V, b: Self::V) -> LResult<Self::V> {
        self.icmp(IntPredicate::SLT, a, b)
    }
    fn sgt(&self, a: Self::V, b: Self::V) -> LResult<Self::V> {
        self.icmp(IntPredicate::SGT, a, b)
    }
    fn sge(&self, a: Self::V, b: Self::V) -> LResult<Self::V> {
        self.icmp(IntPredicate::SGE, a, b)
    }
    fn ult(&self, a: Self::V, b: Self::V) -> LResult<Self::V> {
        self.icmp(IntPredicate::ULT, a, b)
    }
    fn ugt(&self, a: Self::V, b: Self::V) -> LResult<Self::V> {
        self.icmp(IntPredicate::UGT, a, b)
    }
    fn uge(&self, a: Self::V, b: Self::V) -> LResult<Self::V> {
        self.icmp(IntPredicate::UGE, a, b)
    }
    fn smin(&self, a: Self::V, b: Self::V) -> LResult<Self::V> {
        let c = self.slt(a, b)?;
        self.select(c, a, b)
    }
    fn smax(&self, a: Self::V, b: Self::V) -> LResult<Self::V> {
        let c = self.sgt(a, b)?;
        self.select(c, a, b)
    }
    fn zext(&self, a: Self::V, ty: Self::T) -> LResult<Self::V> {
        if self.type_of(a) == ty {
            return Ok(a);
        }
        self.conv(Conv::ZExt, a, ty)
    }
    fn sext(&self, a: Self::V, ty: Self::T) -> LResult<Self::V> {
        if self.type_of(a) == ty {
            return Ok(a);
        }
        self.conv(Conv::SExt, a, ty)
    }
    fn trunc(&self, a: Self::V, ty: Self::T) -> LResult<Self::V> {
        if self.type_of(a) == ty {
            return Ok(a);
        }
        self.conv(Conv::Trunc, a, ty)
    }
    /// Zero-extends or truncates to `ty`.
    fn resize(&self, a: Self::V, ty: Self::T) -> LResult<Self::V> {
        if self.width_of(a) > self.int_width(ty).unwrap_or(0) { self.trunc(a, ty) } else { self.zext(a, ty) }
    }
    /// `a` as an `i1` truth value (nonzero).
    fn truth(&self, a: Self::V) -> LResult<Self::V> {
        if self.type_of(a) == self.i1() {
            return Ok(a);
        }
        let zero = self.cint(self.type_of(a), 0)?;
        self.ne(a, zero)
    }
    /// An `i1` as an `i32` 0/1.
    fn bool_to_i32(&self, a: Self::V) -> LResult<Self::V> {
        self.zext(a, self.i32())
    }
    fn and_all(&self, values: &[Self::V]) -> LResult<Self::V> {
        let Some((&first, rest)) = values.split_first() else { return self.ctrue() };
        rest.iter().try_fold(first, |acc, &v| self.and(acc, v))
    }
    fn bitcast(&self, a: Self::V, ty: Self::T) -> LResult<Self::V> {
        self.conv(Conv::BitCast, a, ty)
    }
    /// The bits of a float as an integer of its width.
    fn fbits(&self, a: Self::V) -> LResult<Self::V> {
        let width = self.float_width(self.type_of(a));
        self.bitcast(a, self.int(width))
    }
    /// A float of `ty` from bits of its width.
    #[allow(clippy::wrong_self_convention)]
    fn from_bits(&self, a: Self::V, ty: Self::T) -> LResult<Self::V> {
        self.bitcast(a, ty)
    }
    fn ptr_to_int(&self, p: Self::V) -> LResult<Self::V> {
        self.conv(Conv::PtrToInt, p, self.i64())
    }

    // ----- float operations -----

    fn fadd(&self, a: Self::V, b: Self::V) -> LResult<Self::V> {
        self.fbin(FloatOp::Add, a, b)
    }
    fn fsub(&self, a: Self::V, b: Self::V) -> LResult<Self::V> {
        self.fbin(FloatOp::Sub, a, b)
    }
    fn fmul(&self, a: Self::V, b: Self::V) -> LResult<Self::V> {
        self.fbin(FloatOp::Mul, a, b)
    }
    fn fdiv(&self, a: Self::V, b: Self::V) -> LResult<Self::V> {
        self.fbin(FloatOp::Div, a, b)
    }
    fn fcmp(&self, p: FloatPredicate, a: Self::V, b: Self::V) -> LResult<Self::V> {
        if self.platform() == Platform::Host && self.type_of(a) == self.bf16() {
            // The host has no bfloat arithmetic: compare the (exact) f32 values.
            let (a, b) = (self.fext(a, self.f32())?, self.fext(b, self.f32())?);
            return self.fcmp_native(p, a, b);
        }
        self.fcmp_native(p, a, b)
    }
    fn is_nan(&self, a: Self::V) -> LResult<Self::V> {
        self.fcmp(FloatPredicate::UNO, a, a)
    }
    fn fext(&self, a: Self::V, ty: Self::T) -> LResult<Self::V> {
        if self.type_of(a) == ty {
            return Ok(a);
        }
        if self.platform() == Platform::Host && self.type_of(a) == self.bf16() {
            // bfloat is the top half of an f32: widen by bits (the host lowers bfloat
            // conversions to library calls it may not have).
            let bits = self.zext(self.fbits(a)?, self.i32())?;
            let wide = self.from_bits(self.shl(bits, self.c32(16)?)?, self.f32())?;
            return self.fext(wide, ty);
        }
        self.conv(Conv::FpExt, a, ty)
    }
    fn ftrunc(&self, a: Self::V, ty: Self::T) -> LResult<Self::V> {
        if self.type_of(a) == ty {
            return Ok(a);
        }
        self.conv(Conv::FpTrunc, a, ty)
    }
    fn sitofp(&self, a: Self::V, ty: Self::T) -> LResult<Self::V> {
        self.conv(Conv::SiToFp, a, ty)
    }
    fn uitofp(&self, a: Self::V, ty: Self::T) -> LResult<Self::V> {
        self.conv(Conv::UiToFp, a, ty)
    }

    // ----- memory -----

    fn load(&self, ty: Self::T, ptr: Self::V, align: u32) -> LResult<Self::V> {
        self.load_with(ty, ptr, align, false)
    }

    // ----- intrinsics -----

    /// Calls an intrinsic that returns a value.
    fn intrinsic_value(&self, name: &str, ret: Self::T, args: &[Self::V]) -> LResult<Self::V> {
        match self.intrinsic(name, Some(ret), args)? {
            Some(v) => Ok(v),
            None => internal(format!("intrinsic {name} returned nothing")),
        }
    }
    /// `llvm.<name>.<fN>(a)`.
    fn float_intrinsic1(&self, name: &str, a: Self::V) -> LResult<Self::V> {
        let ty = self.type_of(a);
        self.intrinsic_value(&format!("llvm.{name}.{}", self.float_suffix(ty)), ty, &[a])
    }
    /// `llvm.<name>.<fN>(a, b)`.
    fn float_intrinsic2(&self, name: &str, a: Self::V, b: Self::V) -> LResult<Self::V> {
        let ty = self.type_of(a);
        self.intrinsic_value(&format!("llvm.{name}.{}", self.float_suffix(ty)), ty, &[a, b])
    }
    /// `fma(a, b, c)` with a single rounding.
    fn fma(&self, a: Self::V, b: Self::V, c: Self::V) -> LResult<Self::V> {
        let ty = self.type_of(a);
        self.intrinsic_value(&format!("llvm.fma.{}", self.float_suffix(ty)), ty, &[a, b, c])
    }
    /// Count of leading zeros (`ctlz`, defined for 0).
    fn ctlz(&self, a: Self::V) -> LResult<Self::V> {
        let ty = self.type_of(a);
        let name = format!("llvm.ctlz.i{}", self.width_of(a));
        self.intrinsic_value(&name, ty, &[a, self.cfalse()?])
    }

    // ----- platform hooks -----

    /// A block-wide barrier.
    fn barrier(&self) -> LResult<()> {
        match self.platform() {
            Platform::Nvptx(_) => self.intrinsic("llvm.nvvm.barrier.cta.sync.aligned.all", None, &[self.c32(0)?])?,
            Platform::Host => self.intrinsic(host_fn::BARRIER, None, &[])?,
        };
        Ok(())
    }

    /// The value of lane `lane ^ mask` of the warp (every lane takes part), for an `i32`.
    fn shfl_bfly(&self, v: Self::V, mask: u32) -> LResult<Self::V> {
        if self.width_of(v) != 32 {
            return internal("shuffles move 32-bit values");
        }
        let m = self.c32(i64::from(mask))?;
        match self.platform() {
            Platform::Nvptx(_) => {
                let args = [self.c32(-1)?, v, m, self.c32(31)?];
                self.intrinsic_value("llvm.nvvm.shfl.sync.bfly.i32", self.i32(), &args)
            }
            Platform::Host => self.intrinsic_value(host_fn::SHFL_BFLY, self.i32(), &[v, m]),
        }
    }

    /// Shuffles any integer or float value of at most 64 bits.
    fn shfl_bfly_any(&self, v: Self::V, mask: u32) -> LResult<Self::V> {
        let ty = self.type_of(v);
        match self.int_width(ty) {
            Some(32) => self.shfl_bfly(v, mask),
            Some(64) => {
                let lo = self.trunc(v, self.i32())?;
                let hi = self.trunc(self.lshr(v, self.c64(32)?)?, self.i32())?;
                let (lo, hi) = (self.shfl_bfly(lo, mask)?, self.shfl_bfly(hi, mask)?);
                let lo = self.zext(lo, self.i64())?;
                let hi = self.shl(self.zext(hi, self.i64())?, self.c64(32)?)?;
                self.or(lo, hi)
            }
            Some(w) if w < 32 => {
                let wide = self.zext(v, self.i32())?;
                self.trunc(self.shfl_bfly(wide, mask)?, ty)
            }
            Some(_) => internal("cannot shuffle this value"),
            None => {
                let moved = self.shfl_bfly_any(self.fbits(v)?, mask)?;
                self.from_bits(moved, ty)
            }
        }
    }

    /// `ldmatrix.sync.aligned.m8n8.x{count}[.trans].shared.b16`: every lane gives the
    /// address of one 16-byte row; returns `count` registers.
    fn ldmatrix(&self, addr: Self::V, count: u32, trans: bool) -> LResult<Vec<Self::V>> {
        match self.platform() {
            Platform::Nvptx(_) => {
                let name = format!(
                    "llvm.nvvm.ldmatrix.sync.aligned.m8n8.x{count}{}.b16.p3",
                    if trans { ".trans" } else { "" }
                );
                if count == 1 {
                    return Ok(vec![self.intrinsic_value(&name, self.i32(), &[addr])?]);
                }
                let ret = self.struct_type(&vec![self.i32(); count as usize]);
                let v = self.intrinsic_value(&name, ret, &[addr])?;
                (0..count).map(|k| self.extract_value(v, k)).collect()
            }
            Platform::Host => {
                let a = self.ptr_to_int(addr)?;
                (0..count)
                    .map(|which| {
                        let args =
                            [a, self.c32(i64::from(count))?, self.c32(i64::from(trans))?, self.c32(i64::from(which))?];
                        self.intrinsic_value(host_fn::LDMATRIX, self.i32(), &args)
                    })
                    .collect()
            }
        }
    }
}
