//! The emitter: builds operations of the `llvm` and `nvvm` dialects into one function of a
//! [`KernelModule`](super::KernelModule), at the end of the current block.
//!
//! Every operation is built generically (`OperationBuilder`: name, operands, result types,
//! inherent attributes); MLIR's verifier checks them once the function is complete. Values
//! borrow the module (`'m`), blocks are appended to the function's region as they are needed.

use melior::Context;
use melior::ir::attribute::{IntegerAttribute, StringAttribute};
use melior::ir::operation::{OperationBuilder, OperationLike};
use melior::ir::r#type::IntegerType;
use melior::ir::{Attribute, BlockLike, BlockRef, Identifier, Location, Type, Value};

use crate::llvm::emit::{LResult, LowerError, Platform};

/// An internal inconsistency (never expected on verified kernels).
pub(crate) fn internal<T>(message: impl Into<String>) -> LResult<T> {
    Err(LowerError::Llvm(message.into()))
}

/// `icmp` predicates (LLVM's numbering of the `llvm.icmp` predicate attribute).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ICmp {
    Eq = 0,
    Slt = 2,
    Sge = 5,
    Ult = 6,
    Uge = 9,
}

/// The emitter of one function.
pub(crate) struct Em<'c, 'm> {
    pub ctx: &'c Context,
    pub loc: Location<'c>,
    pub platform: Platform,
    /// Where operations go.
    pub block: BlockRef<'c, 'm>,
}

impl<'c, 'm> Em<'c, 'm> {
    // ----- types -----

    pub(crate) fn int_type(&self, bits: u32) -> Type<'c> {
        IntegerType::new(self.ctx, bits).into()
    }
    pub(crate) fn i1(&self) -> Type<'c> {
        self.int_type(1)
    }
    pub(crate) fn i32(&self) -> Type<'c> {
        self.int_type(32)
    }
    pub(crate) fn i64(&self) -> Type<'c> {
        self.int_type(64)
    }
    pub(crate) fn ptr(&self, space: u32) -> Type<'c> {
        melior::dialect::llvm::r#type::pointer(self.ctx, space)
    }
    /// The pointer type of global memory on this platform.
    pub(crate) fn global_ptr(&self) -> Type<'c> {
        self.ptr(if self.platform.is_nvptx() { 1 } else { 0 })
    }

    // ----- operations -----

    /// Appends `name(operands) {attributes} : results` and returns its results.
    pub(crate) fn op(
        &self,
        name: &str,
        operands: &[Value<'c, 'm>],
        results: &[Type<'c>],
        attributes: &[(&str, Attribute<'c>)],
    ) -> LResult<Vec<Value<'c, 'm>>> {
        let attributes: Vec<(Identifier<'c>, Attribute<'c>)> =
            attributes.iter().map(|(k, v)| (Identifier::new(self.ctx, k), *v)).collect();
        let op = OperationBuilder::new(name, self.loc)
            .add_operands(operands)
            .add_results(results)
            .add_attributes(&attributes)
            .build()
            .map_err(|e| LowerError::Llvm(format!("cannot build `{name}`: {e}")))?;
        let op = self.block.append_operation(op);
        (0..op.result_count())
            .map(|i| op.result(i).map(Value::from).map_err(|e| LowerError::Llvm(format!("`{name}` result {i}: {e}"))))
            .collect()
    }

    /// Appends an operation with one result.
    pub(crate) fn op1(
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

    pub(crate) fn string_attr(&self, s: &str) -> Attribute<'c> {
        StringAttribute::new(self.ctx, s).into()
    }

    pub(crate) fn unit_attr(&self) -> Attribute<'c> {
        Attribute::unit(self.ctx)
    }

    /// A constant of an integer type with these (two's complement) bits.
    pub(crate) fn cint(&self, ty: Type<'c>, v: i64) -> LResult<Value<'c, 'm>> {
        self.op1("llvm.mlir.constant", &[], ty, &[("value", IntegerAttribute::new(ty, v).into())])
    }
    pub(crate) fn c32(&self, v: i64) -> LResult<Value<'c, 'm>> {
        self.cint(self.i32(), v)
    }
    pub(crate) fn c64(&self, v: i64) -> LResult<Value<'c, 'm>> {
        self.cint(self.i64(), v)
    }
    pub(crate) fn ctrue(&self) -> LResult<Value<'c, 'm>> {
        self.cint(self.i1(), 1)
    }

    /// A binary operation whose result has the operands' type.
    pub(crate) fn bin(&self, name: &str, a: Value<'c, 'm>, b: Value<'c, 'm>) -> LResult<Value<'c, 'm>> {
        use melior::ir::ValueLike;
        self.op1(name, &[a, b], a.r#type(), &[])
    }
    pub(crate) fn add(&self, a: Value<'c, 'm>, b: Value<'c, 'm>) -> LResult<Value<'c, 'm>> {
        self.bin("llvm.add", a, b)
    }
    pub(crate) fn mul(&self, a: Value<'c, 'm>, b: Value<'c, 'm>) -> LResult<Value<'c, 'm>> {
        self.bin("llvm.mul", a, b)
    }
    pub(crate) fn and(&self, a: Value<'c, 'm>, b: Value<'c, 'm>) -> LResult<Value<'c, 'm>> {
        self.bin("llvm.and", a, b)
    }

    pub(crate) fn icmp(&self, pred: ICmp, a: Value<'c, 'm>, b: Value<'c, 'm>) -> LResult<Value<'c, 'm>> {
        let p = IntegerAttribute::new(self.i64(), pred as i64).into();
        self.op1("llvm.icmp", &[a, b], self.i1(), &[("predicate", p)])
    }

    pub(crate) fn select(&self, c: Value<'c, 'm>, a: Value<'c, 'm>, b: Value<'c, 'm>) -> LResult<Value<'c, 'm>> {
        use melior::ir::ValueLike;
        self.op1("llvm.select", &[c, a, b], a.r#type(), &[])
    }

    /// A conversion (`llvm.sext`, `zext`, `trunc`, `bitcast`, …) to `ty`.
    pub(crate) fn conv(&self, name: &str, v: Value<'c, 'm>, ty: Type<'c>) -> LResult<Value<'c, 'm>> {
        self.op1(name, &[v], ty, &[])
    }

    /// `ptr + bytes` (an `i8` GEP).
    pub(crate) fn byte_offset(&self, ptr: Value<'c, 'm>, bytes: Value<'c, 'm>) -> LResult<Value<'c, 'm>> {
        use melior::ir::ValueLike;
        let i8 = melior::ir::attribute::TypeAttribute::new(self.int_type(8)).into();
        let dynamic = melior::ir::attribute::DenseI32ArrayAttribute::new(self.ctx, &[i32::MIN]).into();
        self.op1(
            "llvm.getelementptr",
            &[ptr, bytes],
            ptr.r#type(),
            &[("elem_type", i8), ("rawConstantIndices", dynamic)],
        )
    }

    /// Inline PTX (`llvm.inline_asm`, with side effects unless `pure`).
    pub(crate) fn inline_asm(
        &self,
        asm: &str,
        constraints: &str,
        operands: &[Value<'c, 'm>],
        result: Option<Type<'c>>,
        pure: bool,
    ) -> LResult<Option<Value<'c, 'm>>> {
        let mut attributes =
            vec![("asm_string", self.string_attr(asm)), ("constraints", self.string_attr(constraints))];
        if !pure {
            attributes.push(("has_side_effects", self.unit_attr()));
        }
        let results: Vec<Type<'c>> = result.into_iter().collect();
        Ok(self.op("llvm.inline_asm", operands, &results, &attributes)?.first().copied())
    }
}
