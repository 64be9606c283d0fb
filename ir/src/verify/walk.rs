//! The walk over the blocks in program order: structure (every instruction placed once, in a
//! tree), SSA scoping, types, and the per-instruction layout and shared-memory checks.
//!
//! The walk is iterative (an explicit stack of open blocks), so no nesting depth or cycle can
//! overflow the call stack; an instruction already placed is reported and not entered again.

use super::shared::SharedState;
use super::{Checker, type_text};
use crate::program::infer;
use crate::program::{Block, InstData, InstId, Op, Operand, Type, ValueDef, ValueId};

/// Which block an instruction is listed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BlockKind {
    /// The kernel body.
    Body,
    /// The body of this `for`.
    ForBody(InstId),
    /// The `then` branch of this `if`.
    Then(InstId),
    /// The `else` branch of this `if`.
    Else(InstId),
}

impl BlockKind {
    /// The instruction that owns the block (none for the kernel body).
    pub(super) fn owner(self) -> Option<InstId> {
        match self {
            BlockKind::Body => None,
            BlockKind::ForBody(i) | BlockKind::Then(i) | BlockKind::Else(i) => Some(i),
        }
    }
}

/// A block being walked.
pub(super) struct Frame<'k> {
    block: &'k Block,
    pub(super) kind: BlockKind,
    /// The next instruction to visit.
    pos: usize,
    /// The length of the scope's undo log when the block was entered.
    undo_len: usize,
}

/// Where a value is used.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    /// As an operand of this instruction.
    Operand(InstId),
    /// As yield number `n` of a block.
    Yield(BlockKind, usize),
}

/// The walk's state.
pub(super) struct Walk<'k> {
    /// For each instruction of the arena, the block it was first found in.
    placed: Vec<Option<BlockKind>>,
    /// For each value of the arena, whether it is visible at the current point.
    visible: Vec<bool>,
    /// Values made visible, in order, so leaving a block hides those it defined.
    undo: Vec<usize>,
    /// The open blocks, innermost last.
    pub(super) frames: Vec<Frame<'k>>,
    /// Shared allocations at the current point.
    pub(super) shared: SharedState,
    /// Shared states saved at an `if`: the state before it while in `then`, the state after
    /// `then` while in `else`.
    saved: Vec<SharedState>,
}

impl Walk<'_> {
    fn make_visible(&mut self, v: ValueId) {
        if let Some(seen) = self.visible.get_mut(v.index())
            && !*seen
        {
            *seen = true;
            self.undo.push(v.index());
        }
    }

    fn is_visible(&self, v: ValueId) -> bool {
        self.visible.get(v.index()).copied().unwrap_or(false)
    }

    /// The innermost open loop body's `for`.
    pub(super) fn innermost_loop(&self) -> Option<InstId> {
        self.frames.iter().rev().find_map(|f| match f.kind {
            BlockKind::ForBody(i) => Some(i),
            _ => None,
        })
    }

    /// How many loop bodies are open.
    pub(super) fn loop_depth(&self) -> usize {
        self.frames.iter().filter(|f| matches!(f.kind, BlockKind::ForBody(_))).count()
    }
}

impl<'k> Checker<'k> {
    /// The block in words.
    pub(super) fn block_desc(&self, kind: BlockKind) -> String {
        match kind {
            BlockKind::Body => "the kernel body".to_string(),
            BlockKind::ForBody(i) => format!("the body of {}", self.inst_short(i)),
            BlockKind::Then(i) => format!("the `then` branch of {}", self.inst_short(i)),
            BlockKind::Else(i) => format!("the `else` branch of {}", self.inst_short(i)),
        }
    }

    fn block_span(&self, kind: BlockKind) -> Option<crate::diag::Span> {
        kind.owner().and_then(|i| self.inst_span(i))
    }

    /// Walks the body in program order (invariants 1–2, 5–9, 11–17), then reports the
    /// instructions the walk never reached.
    pub(super) fn check_body(&mut self) {
        let k = self.kernel;
        let mut w = Walk {
            placed: vec![None; k.insts.len()],
            visible: vec![false; k.values.len()],
            undo: Vec::new(),
            frames: Vec::new(),
            shared: SharedState::default(),
            saved: Vec::new(),
        };
        for param in &k.params {
            w.make_visible(param.value);
        }
        w.frames.push(Frame { block: &k.body, kind: BlockKind::Body, pos: 0, undo_len: w.undo.len() });
        while let Some(frame) = w.frames.last_mut() {
            if let Some(&id) = frame.block.insts.get(frame.pos) {
                frame.pos += 1;
                let kind = frame.kind;
                self.enter_inst(&mut w, id, kind);
            } else {
                self.leave_block(&mut w);
            }
        }
        for (id, inst) in k.insts.iter() {
            if w.placed.get(id.index()).is_some_and(Option::is_none) {
                self.error(
                    inst.span,
                    format!("{} is in no block: it is unreachable from the kernel body", self.inst_ref(id)),
                    vec![],
                );
            }
        }
    }

    fn enter_inst(&mut self, w: &mut Walk<'k>, id: InstId, kind: BlockKind) {
        let k = self.kernel;
        let Some(inst) = k.insts.get(id) else {
            self.error(
                self.block_span(kind),
                format!(
                    "{} lists instruction #{}, which does not exist (the kernel has {} instructions)",
                    self.block_desc(kind),
                    id.index(),
                    k.insts.len()
                ),
                vec![],
            );
            return;
        };
        let Some(slot) = w.placed.get_mut(id.index()) else { return };
        if let Some(first) = *slot {
            let message = if w.frames.iter().any(|f| f.kind.owner() == Some(id)) {
                format!(
                    "{} is listed inside its own block ({}): blocks must form a tree",
                    self.inst_ref(id),
                    self.block_desc(kind)
                )
            } else if first == kind {
                format!("{} is listed more than once in {}", self.inst_ref(id), self.block_desc(kind))
            } else {
                format!(
                    "{} is listed in {} and again in {}: an instruction belongs to one block",
                    self.inst_ref(id),
                    self.block_desc(first),
                    self.block_desc(kind)
                )
            };
            self.error(inst.span.or(self.block_span(kind)), message, vec![]);
            return;
        }
        *slot = Some(kind);

        for (n, operand) in inst.op.operands().into_iter().enumerate() {
            if let Operand::Value(v) = operand {
                self.check_use(w, Use::Operand(id), n, v);
            }
        }
        self.check_op_layouts(id, inst);
        self.shared_effects(w, id, inst);

        match &inst.op {
            Op::For { index, carried, body, .. } => {
                let undo_len = w.undo.len();
                w.make_visible(*index);
                for &c in carried {
                    w.make_visible(c);
                }
                w.frames.push(Frame { block: body, kind: BlockKind::ForBody(id), pos: 0, undo_len });
            }
            Op::If { then_body, .. } => {
                w.saved.push(w.shared.clone());
                w.frames.push(Frame { block: then_body, kind: BlockKind::Then(id), pos: 0, undo_len: w.undo.len() });
            }
            _ => self.finish_inst(w, id, inst),
        }
    }

    /// Leaves the innermost open block: checks its yields (while it is still open, so its
    /// values are in scope), closes its scope, and finishes the instruction that owns it.
    fn leave_block(&mut self, w: &mut Walk<'k>) {
        let k = self.kernel;
        let Some(&Frame { block, kind, undo_len, .. }) = w.frames.last() else { return };
        for (n, y) in block.yields.iter().enumerate() {
            if let Operand::Value(v) = *y {
                self.check_use(w, Use::Yield(kind, n), n, v);
            }
        }
        w.frames.pop();
        if kind == BlockKind::Body && !block.yields.is_empty() {
            self.error(
                k.span,
                format!("the kernel body yields {} values; it must yield none", block.yields.len()),
                vec![],
            );
        }
        while w.undo.len() > undo_len {
            if let Some(v) = w.undo.pop()
                && let Some(seen) = w.visible.get_mut(v)
            {
                *seen = false;
            }
        }
        let in_loop = match kind {
            BlockKind::ForBody(i) => Some(i),
            _ => w.innermost_loop(),
        };
        self.shared_leave_block(w, w.frames.len() + 1, in_loop);
        match kind {
            BlockKind::Body => {}
            BlockKind::ForBody(id) => {
                if let Some(inst) = k.insts.get(id) {
                    self.finish_inst(w, id, inst);
                }
            }
            BlockKind::Then(id) => {
                let before = w.saved.pop().unwrap_or_default();
                let after_then = std::mem::replace(&mut w.shared, before);
                w.saved.push(after_then);
                if let Some(InstData { op: Op::If { else_body, .. }, .. }) = k.insts.get(id) {
                    w.frames.push(Frame {
                        block: else_body,
                        kind: BlockKind::Else(id),
                        pos: 0,
                        undo_len: w.undo.len(),
                    });
                }
            }
            BlockKind::Else(id) => {
                let after_then = w.saved.pop().unwrap_or_default();
                let after_else = std::mem::take(&mut w.shared);
                w.shared = SharedState::merge(after_then, after_else);
                if let Some(inst) = k.insts.get(id) {
                    self.finish_inst(w, id, inst);
                }
            }
        }
    }

    /// The checks made once an instruction's blocks are walked; then its results come into
    /// scope.
    fn finish_inst(&mut self, w: &mut Walk<'k>, id: InstId, inst: &'k InstData) {
        self.check_types(id, inst);
        self.check_via(id, inst);
        match &inst.op {
            Op::For { .. } => self.check_for(id, inst),
            Op::If { .. } => self.check_if(id, inst),
            _ => {}
        }
        for &r in &inst.results {
            w.make_visible(r);
        }
    }

    /// Invariant 5: `v`, used at `at`, is in range and visible.
    fn check_use(&mut self, w: &Walk<'k>, at: Use, n: usize, v: ValueId) {
        let k = self.kernel;
        if w.is_visible(v) {
            return;
        }
        let (what, span) = match at {
            Use::Operand(i) => (format!("{}: operand {n}", self.inst_ref(i)), self.inst_span(i)),
            Use::Yield(kind, _) => (format!("`yield` {n} of {}", self.block_desc(kind)), self.block_span(kind)),
        };
        let Some(data) = k.values.get(v) else {
            self.error(
                span,
                format!(
                    "{what} refers to value #{}, which does not exist (the kernel has {} values)",
                    v.index(),
                    k.values.len()
                ),
                vec![],
            );
            return;
        };
        let enclosing = |i: InstId| w.frames.iter().any(|f| f.kind.owner() == Some(i));
        let reason = match data.def {
            ValueDef::Result(i, _) if at == Use::Operand(i) => "is the instruction's own result".to_string(),
            ValueDef::Result(i, _) if enclosing(i) => {
                format!("is a result of the enclosing {}, which is not defined inside it", self.inst_short(i))
            }
            ValueDef::LoopIndex(i) if !enclosing(i) => {
                format!("is the index of {}: it is visible only inside that loop's body", self.inst_short(i))
            }
            ValueDef::LoopCarried(i, _) if !enclosing(i) => format!(
                "is a carried value of {}: it is visible only inside that loop's body (use the loop's results after it)",
                self.inst_short(i)
            ),
            ValueDef::Result(i, _) => match w.placed.get(i.index()).copied().flatten() {
                Some(kind) if !w.frames.iter().any(|f| f.kind == kind) => format!(
                    "is defined by {} in {}, which does not enclose this use",
                    self.inst_short(i),
                    self.block_desc(kind)
                ),
                Some(_) => format!("is not in scope here (it is recorded as {})", self.def_desc(data.def)),
                None => format!("is used before it is defined (by {})", self.inst_short(i)),
            },
            _ => format!("is not in scope here (it is recorded as {})", self.def_desc(data.def)),
        };
        self.error(span.or(self.value_span(v)), format!("{what} %{} {reason}", data.name), vec![]);
    }

    /// Invariant 7: the recorded result types are the inferred ones. Result values whose
    /// recorded types are not the inferred ones get their layouts checked on their own.
    fn check_types(&mut self, id: InstId, inst: &InstData) {
        let k = self.kernel;
        let mut handles: Vec<ValueId> = inst.op.operands().into_iter().filter_map(Operand::value).collect();
        if let Op::If { then_body, .. } = &inst.op {
            handles.extend(then_body.yields.iter().filter_map(|y| y.value()));
        }
        if handles.iter().any(|&v| !k.values.contains(v)) {
            // Reported as handles out of range; the types cannot be inferred.
            for &r in &inst.results {
                self.check_value_layouts(r);
            }
            return;
        }
        // A tensor type with a zero-sized dimension is never inferred (its definition is
        // reported), and the typing rules may divide by its sizes: do not infer from it.
        let malformed: Vec<String> = handles
            .iter()
            .filter_map(|&v| k.values.get(v))
            .filter(|data| match &data.ty {
                Type::Register(t) => t.shape.contains(&0),
                Type::Shared(t) => t.shape.contains(&0),
                _ => false,
            })
            .map(|data| format!("%{} is a {}", data.name, type_text(&data.ty)))
            .collect();
        if !malformed.is_empty() {
            self.error(
                inst.span,
                format!(
                    "{}: operands with a zero-sized dimension cannot be typed: {}",
                    self.inst_ref(id),
                    malformed.join(", ")
                ),
                vec![],
            );
            for &r in &inst.results {
                self.check_value_layouts(r);
            }
            return;
        }
        let types = match infer::result_types(k, &inst.op) {
            Ok(types) => types,
            Err(e) => {
                self.error(inst.span, format!("{}: {e}", self.inst_ref(id)), vec![]);
                for &r in &inst.results {
                    self.check_value_layouts(r);
                }
                return;
            }
        };
        if types.len() != inst.results.len() {
            self.error(
                inst.span,
                format!(
                    "{} has {} results, but `{}` defines {} here",
                    self.inst_ref(id),
                    inst.results.len(),
                    inst.op.mnemonic(),
                    types.len()
                ),
                vec![],
            );
        }
        for (i, &r) in inst.results.iter().enumerate() {
            let Some(data) = k.values.get(r) else { continue };
            match types.get(i) {
                Some(expected) if *expected == data.ty => {}
                Some(expected) => {
                    self.error(
                        data.span.or(inst.span),
                        format!(
                            "{}: result %{} is recorded as a {}, but `{}` gives a {}",
                            self.inst_ref(id),
                            data.name,
                            type_text(&data.ty),
                            inst.op.mnemonic(),
                            type_text(expected)
                        ),
                        vec![],
                    );
                    self.check_value_layouts(r);
                }
                None => self.check_value_layouts(r),
            }
        }
    }

    /// Invariant 8: a loop's index, carried values and yields.
    fn check_for(&mut self, id: InstId, inst: &InstData) {
        let k = self.kernel;
        let Op::For { start, end, step, unroll, index, carried, inits, body } = &inst.op else { return };
        let span = inst.span;
        let bounds = [(*start, "start"), (*end, "end"), (*step, "step")];
        let bounds_ok = bounds.iter().all(|(o, _)| o.value().is_none_or(|v| k.values.contains(v)));
        let index_dtype = if bounds_ok { infer::loop_index_dtype(k, &bounds).ok() } else { None };
        if let Some(data) = k.values.get(*index)
            && let Some(dtype) = index_dtype
            && data.ty != Type::Scalar(dtype)
        {
            self.error(
                data.span.or(span),
                format!(
                    "{}: the loop index %{} is recorded as a {}, but the bounds make it a scalar {dtype}",
                    self.inst_ref(id),
                    data.name,
                    type_text(&data.ty)
                ),
                vec![],
            );
        }
        if *unroll == Some(0) {
            self.error(
                span,
                format!("{}: `unroll 0`: the unroll factor must be at least 1", self.inst_ref(id)),
                vec![],
            );
        }
        if carried.len() != inits.len() {
            self.error(
                span,
                format!(
                    "{} has {} carried values for {} initial values",
                    self.inst_ref(id),
                    carried.len(),
                    inits.len()
                ),
                vec![],
            );
        }
        // The carried values' types: those of the initial values.
        let expected: Vec<Option<&Type>> =
            inits.iter().map(|o| o.value().and_then(|v| k.values.get(v)).map(|d| &d.ty)).collect();
        for (i, &c) in carried.iter().enumerate() {
            let Some(data) = k.values.get(c) else { continue };
            match expected.get(i).copied().flatten() {
                Some(ty) if *ty == data.ty => {}
                Some(ty) => {
                    self.error(
                        data.span.or(span),
                        format!(
                            "{}: carried value %{} is recorded as a {}, but its initial value is a {}",
                            self.inst_ref(id),
                            data.name,
                            type_text(&data.ty),
                            type_text(ty)
                        ),
                        vec![],
                    );
                    self.check_value_layouts(c);
                }
                None => self.check_value_layouts(c),
            }
        }
        if body.yields.len() != inits.len() {
            self.error(
                span,
                format!(
                    "{}: the body yields {} values for {} carried values",
                    self.inst_ref(id),
                    body.yields.len(),
                    inits.len()
                ),
                vec![],
            );
        }
        for (i, (y, ty)) in body.yields.iter().zip(&expected).enumerate() {
            match *y {
                Operand::Literal(l) => self.error(
                    span,
                    format!("{}: the body's yield {i} is the literal {l}; yield a typed value", self.inst_ref(id)),
                    vec![],
                ),
                Operand::Value(v) => {
                    if let (Some(data), Some(ty)) = (k.values.get(v), ty)
                        && data.ty != **ty
                    {
                        self.error(
                            span,
                            format!(
                                "{}: the body's yield {i} %{} is a {}, but carried value {i} is a {}",
                                self.inst_ref(id),
                                data.name,
                                type_text(&data.ty),
                                type_text(ty)
                            ),
                            vec![],
                        );
                    }
                }
            }
        }
    }

    /// Invariant 9: both branches of an `if` yield the same number of values, of the same
    /// types (the `then` branch's types the results, checked by [`Self::check_types`]).
    fn check_if(&mut self, id: InstId, inst: &InstData) {
        let k = self.kernel;
        let Op::If { then_body, else_body, .. } = &inst.op else { return };
        let span = inst.span;
        if then_body.yields.len() != else_body.yields.len() {
            self.error(
                span,
                format!(
                    "{}: the `then` branch yields {} values, the `else` branch {}",
                    self.inst_ref(id),
                    then_body.yields.len(),
                    else_body.yields.len()
                ),
                vec![],
            );
        }
        for (i, (t, e)) in then_body.yields.iter().zip(&else_body.yields).enumerate() {
            match (*t, *e) {
                (_, Operand::Literal(l)) => self.error(
                    span,
                    format!(
                        "{}: the `else` branch's yield {i} is the literal {l}; yield a typed value",
                        self.inst_ref(id)
                    ),
                    vec![],
                ),
                (Operand::Value(tv), Operand::Value(ev)) => {
                    if let (Some(td), Some(ed)) = (k.values.get(tv), k.values.get(ev))
                        && td.ty != ed.ty
                    {
                        self.error(
                            span,
                            format!(
                                "{}: yield {i}: the `then` branch yields %{}, a {}, the `else` branch %{}, a {}",
                                self.inst_ref(id),
                                td.name,
                                type_text(&td.ty),
                                ed.name,
                                type_text(&ed.ty)
                            ),
                            vec![],
                        );
                    }
                }
                // A literal in the `then` branch: reported by the typing rules.
                (Operand::Literal(_), Operand::Value(_)) => {}
            }
        }
    }
}
