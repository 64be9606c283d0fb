//! Address arithmetic: the one place that builds `getelementptr` instructions.
//!
//! inkwell marks its GEP builders `unsafe fn` because an `inbounds` GEP with a wrong index is
//! undefined behaviour in LLVM, and a typed GEP with a wrong type can read the wrong field.
//! Here every GEP is a plain (not `inbounds`) GEP over `i8` with one integer index: LLVM
//! defines that as wrapping address arithmetic `base + offset`, whatever the values, so
//! building it can never be unsound; whether the resulting address is valid to access is the
//! lowering's business, exactly as with `ptrtoint`/`inttoptr` arithmetic. GEPs (rather than
//! integer arithmetic) keep pointer provenance and address spaces visible to LLVM, which its
//! alias analysis and the load/store vectorizer need.
#![allow(unsafe_code)]

use inkwell::values::{IntValue, PointerValue};

use super::emit::{Em, LResult};

/// `base + offset` bytes.
pub(crate) fn byte_gep<'ctx>(
    em: &Em<'ctx>,
    base: PointerValue<'ctx>,
    offset: IntValue<'ctx>,
) -> LResult<PointerValue<'ctx>> {
    // SAFETY: a non-inbounds GEP over i8 is defined wrapping arithmetic for any operands (see
    // the module documentation); it reads or writes nothing.
    let p = unsafe { em.b.build_gep(em.ctx.i8_type(), base, &[offset], "") }?;
    Ok(p)
}
