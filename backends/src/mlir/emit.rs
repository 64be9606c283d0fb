//! The melior emitter: implements the shared lowering's [`Emit`] interface by building
//! operations of MLIR's `llvm` and `nvvm` dialects into one module of a
//! [`Session`](super::Session).
//!
//! Every operation is built generically (`OperationBuilder`: name, operands, result types,
//! inherent attributes); MLIR's verifier checks the module once it is complete. The kernel is
//! one `llvm.func` marked `nvvm.kernel` (which MLIR's translation turns into a `ptx_kernel`):
//! a prologue block (the entry: special registers from `nvvm.read.ptx.sreg.*`, per-thread
//! values the lowering computes once, and every constant, so that constants dominate all
//! their uses as LLVM's do) branching to the body. Blocks take parameters where the inkwell
//! emitter has φ-nodes; intrinsics are `llvm.call_intrinsic`, inline PTX `llvm.inline_asm`,
//! the exact codecs and math functions internal `always_inline` `llvm.func`s, module buffers
//! and the shared memory `llvm.mlir.global`s (the shared one sized when the kernel is done).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};

use anybit_ir::program::{Kernel, ParamType};
use melior::Context;
use melior::ir::attribute::{
    ArrayAttribute, DenseI32ArrayAttribute, DenseI64ArrayAttribute, DictionaryAttribute, FlatSymbolRefAttribute,
    IntegerAttribute, StringAttribute, TypeAttribute,
};
use melior::ir::operation::{OperationBuilder, OperationLike, OperationResult};
use melior::ir::r#type::IntegerType;
use melior::ir::{
    Attribute, Block, BlockLike, BlockRef, Identifier, Location, Region, RegionLike, RegionRef, Type, Value, ValueLike,
};

use crate::llvm::emit::{LResult, LowerError, Platform, internal};
use crate::llvm::emitter::{
    AtomicOp, Conv, Emit, FloatOp, FloatPredicate, IntOp, IntPredicate, ModuleBuffer, Space, ThreadValues,
};

/// The symbol of the block's shared memory.
const SHARED: &str = "anybit_smem";

/// The kernel function being built.
struct KernelFn<'c, 'm> {
    region: RegionRef<'c, 'm>,
    prologue: BlockRef<'c, 'm>,
    body: BlockRef<'c, 'm>,
    values: ThreadValues<Value<'c, 'm>>,
}

/// The emitter of one kernel into a module.
pub(crate) struct Em<'c, 'm> {
    ctx: &'c Context,
    loc: Location<'c>,
    platform: Platform,
    /// The module's body, where functions and globals go.
    module: BlockRef<'c, 'm>,
    /// Where operations go.
    block: Cell<BlockRef<'c, 'm>>,
    /// Where constants go: the entry block of the function being built.
    const_block: Cell<BlockRef<'c, 'm>>,
    kernel: Option<KernelFn<'c, 'm>>,
    /// Constants by (block, type, bits), so that each is built once per function.
    constants: RefCell<HashMap<(usize, String, i64), Value<'c, 'm>>>,
    /// Symbols defined in the module (functions and globals).
    symbols: RefCell<HashSet<String>>,
    /// The element types of the vector and struct types made here, by their text (melior has
    /// no accessors for them): a vector's element, a struct's fields.
    composites: RefCell<HashMap<String, Vec<Type<'c>>>>,
    cache: HashMap<String, Vec<Value<'c, 'm>>>,
}

fn mlir_error(what: &str, e: impl std::fmt::Display) -> LowerError {
    LowerError::Llvm(format!("{what}: {e}"))
}

impl<'c, 'm> Em<'c, 'm> {
    /// An emitter adding to the module whose body is `module`.
    pub(crate) fn new(ctx: &'c Context, module: BlockRef<'c, 'm>, platform: Platform) -> Em<'c, 'm> {
        Em {
            ctx,
            loc: Location::unknown(ctx),
            platform,
            module,
            block: Cell::new(module),
            const_block: Cell::new(module),
            kernel: None,
            constants: RefCell::new(HashMap::new()),
            symbols: RefCell::new(HashSet::new()),
            composites: RefCell::new(HashMap::new()),
            cache: HashMap::new(),
        }
    }

    fn attributes(&self, attributes: &[(&str, Attribute<'c>)]) -> Vec<(Identifier<'c>, Attribute<'c>)> {
        attributes.iter().map(|(k, v)| (Identifier::new(self.ctx, k), *v)).collect()
    }

    /// Appends `name(operands) {attributes} : results` to `block` and returns its results.
    fn op_in(
        &self,
        block: BlockRef<'c, 'm>,
        name: &str,
        operands: &[Value<'c, 'm>],
        results: &[Type<'c>],
        attributes: &[(&str, Attribute<'c>)],
    ) -> LResult<Vec<Value<'c, 'm>>> {
        let op = OperationBuilder::new(name, self.loc)
            .add_operands(operands)
            .add_results(results)
            .add_attributes(&self.attributes(attributes))
            .build()
            .map_err(|e| mlir_error(&format!("cannot build `{name}`"), e))?;
        let op = block.append_operation(op);
        (0..op.result_count())
            .map(|i| op.result(i).map(Value::from).map_err(|e| mlir_error(&format!("`{name}` result {i}"), e)))
            .collect()
    }

    /// Appends an operation where operations go.
    fn op(
        &self,
        name: &str,
        operands: &[Value<'c, 'm>],
        results: &[Type<'c>],
        attributes: &[(&str, Attribute<'c>)],
    ) -> LResult<Vec<Value<'c, 'm>>> {
        self.op_in(self.block.get(), name, operands, results, attributes)
    }

    /// Appends an operation with one result.
    fn op1(
        &self,
        name: &str,
        operands: &[Value<'c, 'm>],
        result: Type<'c>,
        attributes: &[(&str, Attribute<'c>)],
    ) -> LResult<Value<'c, 'm>> {
        match self.op(name, operands, &[result], attributes)?.first() {
            Some(&v) => Ok(v),
            None => internal(format!("`{name}` has no result")),
        }
    }

    /// Appends a terminator with successors.
    fn terminator(
        &self,
        name: &str,
        operands: &[Value<'c, 'm>],
        successors: &[BlockRef<'c, 'm>],
        attributes: &[(&str, Attribute<'c>)],
    ) -> LResult<()> {
        let successors: Vec<&Block<'c>> = successors.iter().map(|b| &**b).collect();
        let op = OperationBuilder::new(name, self.loc)
            .add_operands(operands)
            .add_successors(&successors)
            .add_attributes(&self.attributes(attributes))
            .build()
            .map_err(|e| mlir_error(&format!("cannot build `{name}`"), e))?;
        self.block.get().append_operation(op);
        Ok(())
    }

    fn string_attr(&self, s: &str) -> Attribute<'c> {
        StringAttribute::new(self.ctx, s).into()
    }
    fn unit_attr(&self) -> Attribute<'c> {
        Attribute::unit(self.ctx)
    }
    fn i32_attr(&self, v: i64) -> Attribute<'c> {
        IntegerAttribute::new(self.int(32), v).into()
    }
    fn i64_attr(&self, v: i64) -> Attribute<'c> {
        IntegerAttribute::new(self.int(64), v).into()
    }
    fn segments(&self, sizes: &[i32]) -> Attribute<'c> {
        DenseI32ArrayAttribute::new(self.ctx, sizes).into()
    }
    fn parse_attr(&self, text: &str) -> LResult<Attribute<'c>> {
        Attribute::parse(self.ctx, text).ok_or_else(|| LowerError::Llvm(format!("cannot parse attribute `{text}`")))
    }
    fn ptr_type(&self, space: Space) -> Type<'c> {
        melior::dialect::llvm::r#type::pointer(self.ctx, u32::from(self.platform.space_number(space)))
    }
    fn function_type(&self, ret: Option<Type<'c>>, params: &[Type<'c>]) -> Type<'c> {
        let ret = ret.unwrap_or_else(|| melior::dialect::llvm::r#type::void(self.ctx));
        melior::dialect::llvm::r#type::function(ret, params, false)
    }

    /// Field `index` of a struct type, or the element of a vector type, made by this emitter.
    fn component(&self, ty: Type<'c>, index: usize) -> LResult<Type<'c>> {
        match self.composites.borrow().get(&ty.to_string()).and_then(|c| c.get(index)) {
            Some(&t) => Ok(t),
            None => internal(format!("no component {index} of {ty}")),
        }
    }

    fn kernel(&self) -> LResult<&KernelFn<'c, 'm>> {
        match &self.kernel {
            Some(k) => Ok(k),
            None => internal("no kernel function"),
        }
    }

    /// Appends a module-level operation with one (empty or filled later) region.
    fn module_op(&self, name: &str, attributes: &[(&str, Attribute<'c>)]) -> LResult<RegionRef<'c, 'm>> {
        let op = OperationBuilder::new(name, self.loc)
            .add_attributes(&self.attributes(attributes))
            .add_regions([Region::new()])
            .build()
            .map_err(|e| mlir_error(&format!("cannot build `{name}`"), e))?;
        let op = self.module.append_operation(op);
        op.region(0).map_err(|e| mlir_error(name, e))
    }

    /// Defines a global of `bytes` bytes (`bytes` None: an external array of unknown size).
    fn global(
        &self,
        name: &str,
        space: Space,
        bytes: Option<u32>,
        align: i64,
        zero: bool,
        constant: bool,
    ) -> LResult<()> {
        if !self.symbols.borrow_mut().insert(name.to_string()) {
            return Ok(());
        }
        let ty = melior::dialect::llvm::r#type::array(self.int(8), bytes.unwrap_or(0));
        let linkage = if bytes.is_some() { "internal" } else { "external" };
        let mut attributes = vec![
            ("sym_name", self.string_attr(name)),
            ("global_type", TypeAttribute::new(ty).into()),
            ("linkage", self.parse_attr(&format!("#llvm.linkage<{linkage}>"))?),
            ("addr_space", self.i32_attr(i64::from(self.platform.space_number(space)))),
            ("alignment", self.i64_attr(align)),
        ];
        if zero {
            attributes.push(("value", self.parse_attr(&format!("dense<0> : tensor<{}xi8>", bytes.unwrap_or(0)))?));
        }
        if constant {
            attributes.push(("constant", self.unit_attr()));
        }
        self.module_op("llvm.mlir.global", &attributes)?;
        Ok(())
    }

    /// The address of a global, taken in the function's entry block.
    fn address_of(&self, name: &str, space: Space) -> LResult<Value<'c, 'm>> {
        let symbol = FlatSymbolRefAttribute::new(self.ctx, name).into();
        let v = self.op_in(
            self.const_block.get(),
            "llvm.mlir.addressof",
            &[],
            &[self.ptr_type(space)],
            &[("global_name", symbol)],
        )?;
        v.first().copied().ok_or_else(|| LowerError::Llvm("addressof without result".into()))
    }

    /// Declares an external function (the host harness's).
    fn declare(&self, name: &str, ret: Option<Type<'c>>, params: &[Type<'c>]) -> LResult<()> {
        if !self.symbols.borrow_mut().insert(name.to_string()) {
            return Ok(());
        }
        let attributes = [
            ("sym_name", self.string_attr(name)),
            ("function_type", TypeAttribute::new(self.function_type(ret, params)).into()),
            ("linkage", self.parse_attr("#llvm.linkage<external>")?),
        ];
        self.module_op("llvm.func", &attributes)?;
        Ok(())
    }

    /// Calls a function of the module by name.
    fn call_symbol(&self, name: &str, ret: Option<Type<'c>>, args: &[Value<'c, 'm>]) -> LResult<Option<Value<'c, 'm>>> {
        let attributes = [
            ("callee", FlatSymbolRefAttribute::new(self.ctx, name).into()),
            ("operandSegmentSizes", self.segments(&[args.len() as i32, 0])),
            ("op_bundle_sizes", self.segments(&[])),
        ];
        let results: Vec<Type<'c>> = ret.into_iter().collect();
        Ok(self.op("llvm.call", args, &results, &attributes)?.first().copied())
    }
}

impl<'c, 'm> Emit for Em<'c, 'm> {
    type V = Value<'c, 'm>;
    type T = Type<'c>;
    type B = BlockRef<'c, 'm>;
    /// A helper: its symbol and result type.
    type F = (String, Type<'c>);

    fn platform(&self) -> Platform {
        self.platform
    }

    // ----- types -----

    fn int(&self, bits: u32) -> Self::T {
        IntegerType::new(self.ctx, bits).into()
    }
    fn f16(&self) -> Self::T {
        Type::float16(self.ctx)
    }
    fn bf16(&self) -> Self::T {
        Type::bfloat16(self.ctx)
    }
    fn f32(&self) -> Self::T {
        Type::float32(self.ctx)
    }
    fn f64(&self) -> Self::T {
        Type::float64(self.ctx)
    }
    fn vector_type(&self, element: Self::T, n: u32) -> Self::T {
        let t = Type::vector(&[u64::from(n)], element);
        self.composites.borrow_mut().insert(t.to_string(), vec![element]);
        t
    }
    fn struct_type(&self, fields: &[Self::T]) -> Self::T {
        let t = melior::dialect::llvm::r#type::r#struct(self.ctx, fields, false);
        self.composites.borrow_mut().insert(t.to_string(), fields.to_vec());
        t
    }
    fn type_of(&self, v: Self::V) -> Self::T {
        v.r#type()
    }
    fn int_width(&self, t: Self::T) -> Option<u32> {
        IntegerType::try_from(t).ok().map(|i| i.width())
    }

    // ----- constants -----

    fn cint(&self, ty: Self::T, v: i64) -> LResult<Self::V> {
        let block = self.const_block.get();
        let key = (block.to_raw().ptr as usize, ty.to_string(), v);
        if let Some(&c) = self.constants.borrow().get(&key) {
            return Ok(c);
        }
        let c =
            self.op_in(block, "llvm.mlir.constant", &[], &[ty], &[("value", IntegerAttribute::new(ty, v).into())])?;
        let c = c.first().copied().ok_or_else(|| LowerError::Llvm("constant without result".into()))?;
        self.constants.borrow_mut().insert(key, c);
        Ok(c)
    }
    fn cfloat_bits(&self, ty: Self::T, bits: u64) -> LResult<Self::V> {
        // An integer constant cast to the float type: exactly these bits (an MLIR float
        // attribute would go through an `f64` and could lose NaN payloads).
        let block = self.const_block.get();
        let key = (block.to_raw().ptr as usize, ty.to_string(), bits as i64);
        if let Some(&c) = self.constants.borrow().get(&key) {
            return Ok(c);
        }
        let int = self.cint(self.int(self.float_width(ty)), bits as i64)?;
        let c = self.op_in(block, "llvm.bitcast", &[int], &[ty], &[])?;
        let c = c.first().copied().ok_or_else(|| LowerError::Llvm("bitcast without result".into()))?;
        self.constants.borrow_mut().insert(key, c);
        Ok(c)
    }
    fn undef(&self, ty: Self::T) -> LResult<Self::V> {
        self.op1("llvm.mlir.undef", &[], ty, &[])
    }

    // ----- operations -----

    fn ibin(&self, op: IntOp, a: Self::V, b: Self::V) -> LResult<Self::V> {
        let name = match op {
            IntOp::Add => "llvm.add",
            IntOp::Sub => "llvm.sub",
            IntOp::Mul => "llvm.mul",
            IntOp::And => "llvm.and",
            IntOp::Or => "llvm.or",
            IntOp::Xor => "llvm.xor",
            IntOp::Shl => "llvm.shl",
            IntOp::LShr => "llvm.lshr",
            IntOp::AShr => "llvm.ashr",
            IntOp::SDiv => "llvm.sdiv",
            IntOp::UDiv => "llvm.udiv",
            IntOp::SRem => "llvm.srem",
            IntOp::URem => "llvm.urem",
        };
        self.op1(name, &[a, b], a.r#type(), &[])
    }
    fn icmp(&self, p: IntPredicate, a: Self::V, b: Self::V) -> LResult<Self::V> {
        // The numbering of the `llvm.icmp` predicate attribute.
        let n = match p {
            IntPredicate::EQ => 0,
            IntPredicate::NE => 1,
            IntPredicate::SLT => 2,
            IntPredicate::SLE => 3,
            IntPredicate::SGT => 4,
            IntPredicate::SGE => 5,
            IntPredicate::ULT => 6,
            IntPredicate::ULE => 7,
            IntPredicate::UGT => 8,
            IntPredicate::UGE => 9,
        };
        self.op1("llvm.icmp", &[a, b], self.i1(), &[("predicate", self.i64_attr(n))])
    }
    fn fbin(&self, op: FloatOp, a: Self::V, b: Self::V) -> LResult<Self::V> {
        let name = match op {
            FloatOp::Add => "llvm.fadd",
            FloatOp::Sub => "llvm.fsub",
            FloatOp::Mul => "llvm.fmul",
            FloatOp::Div => "llvm.fdiv",
        };
        self.op1(name, &[a, b], a.r#type(), &[])
    }
    fn fneg(&self, a: Self::V) -> LResult<Self::V> {
        self.op1("llvm.fneg", &[a], a.r#type(), &[])
    }
    fn fcmp_native(&self, p: FloatPredicate, a: Self::V, b: Self::V) -> LResult<Self::V> {
        // The numbering of the `llvm.fcmp` predicate attribute.
        let n = match p {
            FloatPredicate::PredicateFalse => 0,
            FloatPredicate::OEQ => 1,
            FloatPredicate::OGT => 2,
            FloatPredicate::OGE => 3,
            FloatPredicate::OLT => 4,
            FloatPredicate::OLE => 5,
            FloatPredicate::ONE => 6,
            FloatPredicate::ORD => 7,
            FloatPredicate::UEQ => 8,
            FloatPredicate::UGT => 9,
            FloatPredicate::UGE => 10,
            FloatPredicate::ULT => 11,
            FloatPredicate::ULE => 12,
            FloatPredicate::UNE => 13,
            FloatPredicate::UNO => 14,
            FloatPredicate::PredicateTrue => 15,
        };
        self.op1("llvm.fcmp", &[a, b], self.i1(), &[("predicate", self.i64_attr(n))])
    }
    fn conv(&self, op: Conv, v: Self::V, ty: Self::T) -> LResult<Self::V> {
        let name = match op {
            Conv::ZExt => "llvm.zext",
            Conv::SExt => "llvm.sext",
            Conv::Trunc => "llvm.trunc",
            Conv::BitCast => "llvm.bitcast",
            Conv::FpExt => "llvm.fpext",
            Conv::FpTrunc => "llvm.fptrunc",
            Conv::SiToFp => "llvm.sitofp",
            Conv::UiToFp => "llvm.uitofp",
            Conv::FpToSi => "llvm.fptosi",
            Conv::PtrToInt => "llvm.ptrtoint",
        };
        self.op1(name, &[v], ty, &[])
    }
    fn select(&self, c: Self::V, a: Self::V, b: Self::V) -> LResult<Self::V> {
        self.op1("llvm.select", &[c, a, b], a.r#type(), &[])
    }
    fn extract_element(&self, vector: Self::V, index: u32) -> LResult<Self::V> {
        let element = self.component(vector.r#type(), 0)?;
        self.op1("llvm.extractelement", &[vector, self.c32(i64::from(index))?], element, &[])
    }
    fn insert_element(&self, vector: Self::V, v: Self::V, index: u32) -> LResult<Self::V> {
        self.op1("llvm.insertelement", &[vector, v, self.c32(i64::from(index))?], vector.r#type(), &[])
    }
    fn extract_value(&self, aggregate: Self::V, index: u32) -> LResult<Self::V> {
        let ty = self.component(aggregate.r#type(), index as usize)?;
        let position = DenseI64ArrayAttribute::new(self.ctx, &[i64::from(index)]).into();
        self.op1("llvm.extractvalue", &[aggregate], ty, &[("position", position)])
    }
    fn vector_lane(&self, v: Self::V) -> Option<(usize, u64)> {
        let result = OperationResult::try_from(v).ok()?;
        let op = result.owner();
        if op.name().as_string_ref().as_str().ok()? != "llvm.extractelement" {
            return None;
        }
        let (vector, index) = (op.operand(0).ok()?, op.operand(1).ok()?);
        let index_op = OperationResult::try_from(index).ok()?.owner();
        if index_op.name().as_string_ref().as_str().ok()? != "llvm.mlir.constant" {
            return None;
        }
        let lane = IntegerAttribute::try_from(index_op.attribute("value").ok()?).ok()?.value();
        Some((vector.to_raw().ptr as usize, u64::try_from(lane).ok()?))
    }

    // ----- memory -----

    fn byte_offset(&self, base: Self::V, offset: Self::V) -> LResult<Self::V> {
        // A plain (not `inbounds`) GEP over `i8` with one dynamic index: wrapping `base + offset`.
        let i8 = TypeAttribute::new(self.int(8)).into();
        let dynamic = DenseI32ArrayAttribute::new(self.ctx, &[i32::MIN]).into();
        self.op1(
            "llvm.getelementptr",
            &[base, offset],
            base.r#type(),
            &[("elem_type", i8), ("rawConstantIndices", dynamic)],
        )
    }
    fn load_with(&self, ty: Self::T, ptr: Self::V, align: u32, invariant: bool) -> LResult<Self::V> {
        let mut attributes = vec![("alignment", self.i64_attr(i64::from(align)))];
        if invariant {
            attributes.push(("invariant", self.unit_attr()));
        }
        self.op1("llvm.load", &[ptr], ty, &attributes)
    }
    fn store(&self, ptr: Self::V, v: Self::V, align: u32) -> LResult<()> {
        self.op("llvm.store", &[v, ptr], &[], &[("alignment", self.i64_attr(i64::from(align)))])?;
        Ok(())
    }
    fn atomic_rmw(&self, op: AtomicOp, ptr: Self::V, v: Self::V) -> LResult<()> {
        // `llvm.atomicrmw`'s numbering: `_and` 3, `_or` 5; ordering 2 is `monotonic`.
        let bin_op = match op {
            AtomicOp::And => 3,
            AtomicOp::Or => 5,
        };
        self.op(
            "llvm.atomicrmw",
            &[ptr, v],
            &[v.r#type()],
            &[("bin_op", self.i64_attr(bin_op)), ("ordering", self.i64_attr(2))],
        )?;
        Ok(())
    }
    fn module_buffer(&self, which: ModuleBuffer) -> LResult<Self::V> {
        let (name, constant) = match which {
            ModuleBuffer::ZeroPage => ("anybit.zero", true),
            ModuleBuffer::Sink => ("anybit.sink", false),
        };
        self.global(name, Space::Global, Some(16), 16, true, constant)?;
        self.address_of(name, Space::Global)
    }

    // ----- calls -----

    fn intrinsic(&self, name: &str, ret: Option<Self::T>, args: &[Self::V]) -> LResult<Option<Self::V>> {
        let results: Vec<Type<'c>> = ret.into_iter().collect();
        if name.starts_with("llvm.") {
            let attributes = [
                ("intrin", self.string_attr(name)),
                ("operandSegmentSizes", self.segments(&[args.len() as i32, 0])),
                ("op_bundle_sizes", self.segments(&[])),
            ];
            return Ok(self.op("llvm.call_intrinsic", args, &results, &attributes)?.first().copied());
        }
        // A function of the host harness.
        let params: Vec<Type<'c>> = args.iter().map(|a| a.r#type()).collect();
        self.declare(name, ret, &params)?;
        self.call_symbol(name, ret, args)
    }
    fn inline_asm(
        &self,
        asm: &str,
        constraints: &str,
        ret: Option<Self::T>,
        args: &[Self::V],
        side_effects: bool,
    ) -> LResult<Option<Self::V>> {
        let mut attributes =
            vec![("asm_string", self.string_attr(asm)), ("constraints", self.string_attr(constraints))];
        if side_effects {
            attributes.push(("has_side_effects", self.unit_attr()));
        }
        let results: Vec<Type<'c>> = ret.into_iter().collect();
        Ok(self.op("llvm.inline_asm", args, &results, &attributes)?.first().copied())
    }
    fn helper(
        &self,
        name: &str,
        params: &[Self::T],
        ret: Self::T,
        body: impl FnOnce(&Self, &[Self::V]) -> LResult<Self::V>,
    ) -> LResult<Self::F> {
        if !self.symbols.borrow_mut().insert(name.to_string()) {
            return Ok((name.to_string(), ret));
        }
        let attributes = [
            ("sym_name", self.string_attr(name)),
            ("function_type", TypeAttribute::new(self.function_type(Some(ret), params)).into()),
            ("linkage", self.parse_attr("#llvm.linkage<internal>")?),
            ("always_inline", self.unit_attr()),
        ];
        let region = self.module_op("llvm.func", &attributes)?;
        let args: Vec<(Type<'c>, Location<'c>)> = params.iter().map(|&t| (t, self.loc)).collect();
        let entry = region.append_block(Block::new(&args));
        let values = (0..params.len())
            .map(|i| entry.argument(i).map(Value::from).map_err(|e| mlir_error("helper parameter", e)))
            .collect::<LResult<Vec<_>>>()?;
        let (saved, saved_consts) = (self.block.replace(entry), self.const_block.replace(entry));
        let result = body(self, &values).and_then(|v| self.op("llvm.return", &[v], &[], &[]).map(|_| ()));
        self.block.set(saved);
        self.const_block.set(saved_consts);
        result.map(|()| (name.to_string(), ret))
    }
    fn call(&self, f: &Self::F, args: &[Self::V]) -> LResult<Self::V> {
        match self.call_symbol(&f.0, Some(f.1), args)? {
            Some(v) => Ok(v),
            None => internal(format!("call to {} returns no value", f.0)),
        }
    }

    // ----- control flow -----

    fn new_block(&self, _name: &str) -> LResult<Self::B> {
        Ok(self.kernel()?.region.append_block(Block::new(&[])))
    }
    fn current_block(&self) -> LResult<Self::B> {
        Ok(self.block.get())
    }
    fn position_at_end(&self, block: Self::B) {
        self.block.set(block);
    }
    fn block_param(&self, block: Self::B, ty: Self::T) -> LResult<Self::V> {
        Ok(block.add_argument(ty, self.loc))
    }
    fn br(&self, target: Self::B, args: &[Self::V]) -> LResult<()> {
        self.terminator("llvm.br", args, &[target], &[])
    }
    fn cond_br(&self, c: Self::V, then_block: Self::B, else_block: Self::B) -> LResult<()> {
        self.terminator(
            "llvm.cond_br",
            &[c],
            &[then_block, else_block],
            &[("operandSegmentSizes", self.segments(&[1, 0, 0]))],
        )
    }

    // ----- the kernel -----

    fn begin_kernel(&mut self, kernel: &Kernel) -> LResult<Vec<Self::V>> {
        let ctx = self.ctx;
        // Parameters: pointers (global address space), scalars as 32-bit words; on the host,
        // then tid, ctaid.{x,y,z} and the shared-memory pointer.
        let mut params: Vec<Type<'c>> = kernel
            .params
            .iter()
            .map(|p| match p.ty {
                ParamType::Pointer(_) => self.ptr_type(Space::Global),
                ParamType::Scalar(_) => self.i32(),
            })
            .collect();
        let host = !self.platform.is_nvptx();
        if host {
            params.extend([self.i32(), self.i32(), self.i32(), self.i32(), self.ptr_type(Space::Shared)]);
        }
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
            ("sym_name", self.string_attr(&kernel.name)),
            ("function_type", TypeAttribute::new(self.function_type(None, &params)).into()),
            ("arg_attrs", ArrayAttribute::new(ctx, &arg_attrs).into()),
        ];
        if !host {
            // The `nvvm` translation makes this a `ptx_kernel`.
            attributes.push(("nvvm.kernel", self.unit_attr()));
        }
        self.symbols.borrow_mut().insert(kernel.name.clone());
        let region = self.module_op("llvm.func", &attributes)?;
        let args: Vec<(Type<'c>, Location<'c>)> = params.iter().map(|&t| (t, self.loc)).collect();
        let prologue = region.append_block(Block::new(&args));
        let body = region.append_block(Block::new(&[]));
        self.block.set(prologue);
        self.const_block.set(prologue);
        let values = (0..params.len())
            .map(|i| prologue.argument(i).map(Value::from).map_err(|e| mlir_error("kernel parameter", e)))
            .collect::<LResult<Vec<_>>>()?;
        let n = kernel.params.len();
        let (tid, ctaid, shared) = if host {
            match values.get(n..n + 5) {
                Some(&[tid, x, y, z, shared]) => (tid, [x, y, z], shared),
                _ => return internal("missing host parameters"),
            }
        } else {
            let read = |name: &str| self.op1(name, &[], self.i32(), &[]);
            let tid = read("nvvm.read.ptx.sreg.tid.x")?;
            // No `.reqntid`/`.maxntid` (see the LLVM backend): the range of `tid.x` reaches
            // LLVM through an assumption.
            let in_block = self.ult(tid, self.c32(kernel.num_threads() as i64)?)?;
            self.intrinsic("llvm.assume", None, &[in_block])?;
            let ctaid = [
                read("nvvm.read.ptx.sreg.ctaid.x")?,
                read("nvvm.read.ptx.sreg.ctaid.y")?,
                read("nvvm.read.ptx.sreg.ctaid.z")?,
            ];
            // The global is defined (and sized) when the kernel is done.
            (tid, ctaid, self.address_of(SHARED, Space::Shared)?)
        };
        self.kernel = Some(KernelFn { region, prologue, body, values: ThreadValues { tid, ctaid, shared } });
        self.block.set(body);
        Ok(values.into_iter().take(n).collect())
    }

    fn finish_kernel(&mut self, shared_bytes: usize) -> LResult<()> {
        let (prologue, body) = {
            let k = self.kernel()?;
            (k.prologue, k.body)
        };
        self.op("llvm.return", &[], &[], &[])?;
        self.block.set(prologue);
        self.br(body, &[])?;
        if self.platform.is_nvptx() {
            // Above the static limit, dynamic shared memory: an external array of unknown size
            // (the manifest tells the host to opt in).
            let bytes = (shared_bytes <= anybit_ir::target::Target::STATIC_SHARED_MEMORY_LIMIT)
                .then(|| u32::try_from(shared_bytes.max(1)).unwrap_or(u32::MAX));
            self.global(SHARED, Space::Shared, bytes, 1024, false, false)?;
        }
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
