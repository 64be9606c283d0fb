//! Why a run stopped.

use std::fmt;

use crate::diag::{Diagnostic, Span};
use crate::program::InstId;

/// What kind of problem stopped a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The arguments do not fit the parameters: count, kind (scalar or buffer), a buffer's
    /// element type, a scalar out of its type's range or a float for an integer parameter.
    BadArgument,
    /// The grid cannot be evaluated (a division by zero, a size outside 0..2^31, no axes).
    BadGrid,
    /// The kernel is not well formed (a foreign handle, a value used before it is defined, an
    /// operand of the wrong kind or type): what the verifier rejects.
    Malformed,
    /// A register or shared tensor has no layout.
    MissingLayout,
    /// A global element outside its *buffer* is read or written.
    OutOfBounds,
    /// A shared sub-tile does not lie inside its tile.
    SubTileOutOfBounds,
    /// A shared element is read before anything wrote it.
    UninitializedRead,
    /// Two threads access a shared element without a `sync` in between (one of them writing),
    /// or a thread reads data of a completed `copy_async` before a `sync`.
    SharedRace,
    /// The target of a `copy_async` is read or written before its group completed, or freed,
    /// or copied to again while in flight.
    AsyncPending,
    /// What one block computes depends on whether another block ran before it: both write an
    /// element of global memory (different values), or one reads what the other writes.
    BlockConflict,
    /// A `view` does not keep the bits of every thread, or gives the holders of a replicated
    /// element different bits.
    InvalidView,
    /// An integer division (`div`, `rem`, `cdiv`) by zero.
    DivisionByZero,
    /// A `for` loop with a step ≤ 0.
    BadLoopStep,
    /// A global access selected as proven-aligned vector runs (`via vector(8)`) is not
    /// aligned or whole at run time: the vectorizer's proof was wrong.
    BrokenVectorPromise,
    /// A `load_global … inside [d]` whose tile does not lie inside the view along dim `d`: the
    /// kernel's promise (the backend tests no bound there) is false.
    BrokenInsidePromise,
    /// The run executed more instructions than [`RunOptions::max_instructions`](super::RunOptions).
    BudgetExceeded,
    /// Arithmetic on a float type whose values are not all exact `f64`s (11 or more exponent
    /// bits); moving, selecting, comparing and casting such values works.
    UnsupportedType,
    /// A tile, shared allocation or launch exceeds the interpreter's limits
    /// ([`RunOptions`](super::RunOptions)).
    TooLarge,
}

/// Why a run stopped: what went wrong, and where — the instruction, its source span when the
/// kernel was parsed, and the block that was running.
///
/// `Display` writes e.g. ``block (3, 0, 0): `load_global` (inst 12): element 70 is outside the
/// 64-element buffer of `w` ``.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterpError {
    /// The kind of problem.
    pub kind: ErrorKind,
    /// What went wrong, in one line.
    pub message: String,
    /// The instruction that failed, if one did.
    pub inst: Option<InstId>,
    /// Its mnemonic (`load_global`, `add`, …).
    pub mnemonic: Option<&'static str>,
    /// Its source span, when the kernel came from text.
    pub span: Option<Span>,
    /// The index (x, y, z) of the block that was running.
    pub block: Option<[u32; 3]>,
}

impl InterpError {
    /// An error with no location yet.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> InterpError {
        InterpError { kind, message: message.into(), inst: None, mnemonic: None, span: None, block: None }
    }

    /// Records the failing instruction, unless an inner one is already recorded.
    pub(crate) fn at_inst(mut self, inst: InstId, mnemonic: &'static str, span: Option<Span>) -> InterpError {
        if self.inst.is_none() {
            self.inst = Some(inst);
            self.mnemonic = Some(mnemonic);
            self.span = span;
        }
        self
    }

    /// Records the running block, unless already recorded.
    pub(crate) fn in_block(mut self, block: [u32; 3]) -> InterpError {
        self.block.get_or_insert(block);
        self
    }

    /// The error as a [`Diagnostic`] at the instruction's span, for rendering with the source
    /// ([`crate::diag::SourceFile::render`]).
    pub fn to_diagnostic(&self) -> Diagnostic {
        let mut message = String::new();
        if let Some([x, y, z]) = self.block {
            message.push_str(&format!("block ({x}, {y}, {z}): "));
        }
        message.push_str(&self.message);
        Diagnostic::error(message, self.span)
    }
}

impl fmt::Display for InterpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some([x, y, z]) = self.block {
            write!(f, "block ({x}, {y}, {z}): ")?;
        }
        match (self.mnemonic, self.inst) {
            (Some(mnemonic), Some(inst)) => write!(f, "`{mnemonic}` (inst {}): ", inst.index())?,
            (Some(mnemonic), None) => write!(f, "`{mnemonic}`: ")?,
            (None, Some(inst)) => write!(f, "inst {}: ", inst.index())?,
            (None, None) => {}
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for InterpError {}

/// Shorthand for an error result.
pub(crate) fn fail<T>(kind: ErrorKind, message: impl Into<String>) -> Result<T, InterpError> {
    Err(InterpError::new(kind, message))
}
