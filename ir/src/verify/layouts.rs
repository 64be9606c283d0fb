//! Layout checks (invariants 13–15): register layouts against their tensors and the block's
//! threads, shared layouts against their tiles, injectivity and swizzles, and strict mode.

use anybit_layouts::{RegisterLayout, SharedLayout};

use super::{Checker, INJECTIVITY_CHECK_LIMIT};
use crate::diag::Span;
use crate::program::{InstData, InstId, Op, RegisterTensorType, SharedTensorType, Type, ValueId};

/// Says what is checked (computed only when there is something to report).
type Describe<'a> = dyn Fn(&Checker<'_>) -> String + 'a;

fn shape_text(shape: &[usize]) -> String {
    format!("[{}]", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", "))
}

impl Checker<'_> {
    /// The types written in an instruction, which become its result's type. Their layouts'
    /// shapes are checked by the typing rules; the rest here.
    pub(super) fn check_op_layouts(&mut self, id: InstId, inst: &InstData) {
        let what = |c: &Checker<'_>| format!("{}: the written type", c.inst_ref(id));
        match &inst.op {
            Op::Fill { ty, .. }
            | Op::Iota { ty, .. }
            | Op::View { ty, .. }
            | Op::Broadcast { ty, .. }
            | Op::LoadGlobal { ty, .. }
            | Op::LoadShared { ty, .. } => self.check_register_type(ty, &what, inst.span, false),
            Op::AllocShared { ty } => self.check_shared_type(ty, &what, inst.span, false),
            Op::Reduce { layout, .. } => match layout {
                Some(layout) => {
                    let what = |c: &Checker<'_>| format!("{}: the result layout", c.inst_ref(id));
                    self.check_register_threads(layout, &what, inst.span);
                }
                None if self.options.require_layouts => self.error(
                    inst.span,
                    format!(
                        "{}: `reduce` has no result layout (strict verification needs every layout)",
                        self.inst_ref(id)
                    ),
                    vec![],
                ),
                None => {}
            },
            _ => {}
        }
    }

    /// The layouts of a value's type, checked in full (used for types that are not the ones
    /// their definition gives, so were not checked where they were written).
    pub(super) fn check_value_layouts(&mut self, v: ValueId) {
        let Some(data) = self.kernel.values.get(v) else { return };
        let span = self.value_span(v);
        let what = |_: &Checker<'_>| format!("the type of %{}", data.name);
        match &data.ty {
            Type::Register(ty) => self.check_register_type(ty, &what, span, true),
            Type::Shared(ty) => self.check_shared_type(ty, &what, span, true),
            _ => {}
        }
    }

    fn check_register_type(&mut self, ty: &RegisterTensorType, what: &Describe, span: Option<Span>, check_shape: bool) {
        match &ty.layout {
            Some(layout) => {
                if check_shape && layout.shape() != ty.shape {
                    let what = what(self);
                    self.error(
                        span,
                        format!(
                            "{what}: layout {layout} has shape {}, the tensor {}",
                            shape_text(&layout.shape()),
                            shape_text(&ty.shape)
                        ),
                        vec![],
                    );
                }
                self.check_register_threads(layout, what, span);
            }
            None if self.options.require_layouts => {
                let what = what(self);
                self.error(
                    span,
                    format!(
                        "{what}: register {}{} has no layout (strict verification needs every layout)",
                        ty.dtype,
                        shape_text(&ty.shape)
                    ),
                    vec![],
                );
            }
            None => {}
        }
    }

    fn check_register_threads(&mut self, layout: &RegisterLayout, what: &Describe, span: Option<Span>) {
        if let Some(threads) = self.threads()
            && layout.num_threads() != threads
        {
            let what = what(self);
            self.error(
                span,
                format!(
                    "{what}: layout {layout} spreads the tile over {} threads, but a block of this kernel has \
                     32 × {} = {threads} threads",
                    layout.num_threads(),
                    self.kernel.warps
                ),
                vec![],
            );
        }
    }

    fn check_shared_type(&mut self, ty: &SharedTensorType, what: &Describe, span: Option<Span>, check_shape: bool) {
        let Some(layout) = &ty.layout else {
            if self.options.require_layouts {
                let what = what(self);
                self.error(
                    span,
                    format!(
                        "{what}: shared {}{} has no layout (strict verification needs every layout)",
                        ty.dtype,
                        shape_text(&ty.shape)
                    ),
                    vec![],
                );
            }
            return;
        };
        if check_shape && layout.shape() != ty.shape {
            let what = what(self);
            self.error(
                span,
                format!(
                    "{what}: layout {layout} has shape {}, the tile {}",
                    shape_text(&layout.shape()),
                    shape_text(&ty.shape)
                ),
                vec![],
            );
        }
        self.check_shared_layout(layout, ty.dtype.bits(), what, span);
    }

    fn check_shared_layout(&mut self, layout: &SharedLayout, elem_bits: u32, what: &Describe, span: Option<Span>) {
        let elements = layout.shape().iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if elements.is_some_and(|n| n <= INJECTIVITY_CHECK_LIMIT) && layout.is_injective() == Ok(false) {
            let what = what(self);
            self.error(
                span,
                format!("{what}: shared layout {layout} is not injective: two elements of the tile share an offset"),
                vec![],
            );
        }
        if let Some(swizzle) = layout.swizzle() {
            let chunk_bits = 8u128 << swizzle.base().min(100);
            if elem_bits == 0 || (!8u32.is_multiple_of(elem_bits) && !chunk_bits.is_multiple_of(u128::from(elem_bits)))
            {
                let what = what(self);
                self.error(
                    span,
                    format!(
                        "{what}: the swizzle of {layout} permutes chunks of 2^{} bytes, which split {elem_bits}-bit \
                         elements",
                        swizzle.base()
                    ),
                    vec![],
                );
            }
        }
    }
}
