//! The error type shared by every fallible operation of the crate.

use thiserror::Error;

/// Why a layout operation could not be carried out.
///
/// Every public fallible operation of this crate returns `Result<_, LayoutError>`
/// (the expression parsers wrap it in [`crate::ParseError`], which adds a position).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LayoutError {
    /// A size that must be at least 1 was 0 (`what` names it, e.g. "dim 1 of the shape").
    #[error("{what} is 0; sizes must be at least 1")]
    ZeroSize {
        /// What was zero.
        what: String,
    },
    /// A product or offset does not fit in the integer type used for it.
    #[error("arithmetic overflow while computing {what}")]
    Overflow {
        /// What was being computed.
        what: String,
    },
    /// Two layouts (or a layout and a list of coordinates) have different ranks.
    #[error("rank mismatch: {left} vs {right}")]
    RankMismatch {
        /// Rank of the left operand (or the expected rank).
        left: usize,
        /// Rank of the right operand (or the rank found).
        right: usize,
    },
    /// A thread index is not below the number of threads.
    #[error("thread {thread} is out of range (the layout has {num_threads} threads)")]
    ThreadOutOfRange {
        /// The thread index given.
        thread: usize,
        /// The number of threads of the layout.
        num_threads: usize,
    },
    /// A slot index is not below the number of slots per thread.
    #[error("slot {slot} is out of range (the layout has {num_slots} slots per thread)")]
    SlotOutOfRange {
        /// The slot index given.
        slot: usize,
        /// The number of slots per thread.
        num_slots: usize,
    },
    /// A coordinate is not below the size of its dim.
    #[error("coordinate {coord} of dim {dim} is out of range (size {size})")]
    CoordinateOutOfRange {
        /// The dim.
        dim: usize,
        /// The coordinate given.
        coord: usize,
        /// The size of that dim.
        size: usize,
    },
    /// A dim index is not below the rank.
    #[error("dim {dim} is out of range for rank {rank}")]
    DimOutOfRange {
        /// The dim given.
        dim: usize,
        /// The rank of the layout.
        rank: usize,
    },
    /// A dim was named twice where each dim may appear once.
    #[error("dim {dim} is given more than once")]
    DuplicateDim {
        /// The repeated dim.
        dim: usize,
    },
    /// The parts given to a general constructor do not describe a valid layout.
    #[error("invalid layout parts: {reason}")]
    InvalidParts {
        /// What is wrong.
        reason: String,
    },
    /// A division failed because a size of the divisor does not divide the dividend's.
    #[error("not divisible: {what} of the dividend is {dividend}, which {divisor} does not divide")]
    NotDivisible {
        /// What was compared ("shape of dim 0", "number of threads", "number of slots").
        what: String,
        /// The dividend's size.
        dividend: usize,
        /// The divisor's size.
        divisor: usize,
    },
    /// A division failed although the sizes divide: the dividend has no factor equal to the divisor.
    #[error("no quotient: {reason}")]
    NoQuotient {
        /// Which part does not match, and how.
        reason: String,
    },
    /// A list that had to be a permutation of `0..rank` is not one.
    #[error("{perm:?} is not a permutation of 0..{rank}")]
    NotAPermutation {
        /// The list given.
        perm: Vec<usize>,
        /// The rank it had to permute.
        rank: usize,
    },
    /// Two shapes that had to hold the same number of elements do not.
    #[error("element count mismatch: {from} elements vs {to}")]
    ElementCountMismatch {
        /// Elements of the source shape.
        from: usize,
        /// Elements of the target shape.
        to: usize,
    },
    /// A reshape would have to split a mode of a size that the new dim size does not divide.
    #[error("cannot reshape: {reason}")]
    ReshapeImpossible {
        /// Which mode could not be split, and why.
        reason: String,
    },
    /// A slice is not expressible as a register layout.
    #[error("invalid slice: {reason}")]
    InvalidSlice {
        /// Why.
        reason: String,
    },
    /// A size is not a power of two where the GF(2) view needs one.
    #[error("{what} is {size}, not a power of two")]
    NotPowerOfTwo {
        /// What was not a power of two.
        what: String,
        /// Its size.
        size: usize,
    },
    /// A linear layout is not of the shape of one that comes from modes.
    #[error("linear layout is not mode-like: {reason}")]
    NotModeLike {
        /// Why.
        reason: String,
    },
    /// A linear layout was built from inconsistent parts, or two of them do not fit together.
    #[error("invalid linear layout: {reason}")]
    InvalidLinear {
        /// Why.
        reason: String,
    },
    /// A swizzle's parameters do not make it a bijection or do not fit in 64 bits.
    #[error("invalid swizzle (bits {bits}, base {base}, shift {shift}): {reason}")]
    InvalidSwizzle {
        /// Number of XORed bits (B).
        bits: u32,
        /// Lowest target bit (M).
        base: u32,
        /// Distance between source and target bits (S).
        shift: u32,
        /// Why it is rejected.
        reason: String,
    },
    /// An element bit width outside 1..=64.
    #[error("element bit width {bits} is outside 1..=64")]
    InvalidElementBits {
        /// The width given.
        bits: u32,
    },
    /// The swizzle moves chunks of 2^M bytes and such a chunk would cut an element in two.
    #[error(
        "a swizzle chunk of 2^{base} bytes would split a {elem_bits}-bit element \
         ({elem_bits} divides neither 8 nor 8*2^{base})"
    )]
    SwizzleSplitsElement {
        /// The element bit width.
        elem_bits: u32,
        /// The swizzle's base M.
        base: u32,
    },
}

/// Shorthand for `Result<T, LayoutError>`.
pub type Result<T> = std::result::Result<T, LayoutError>;

pub(crate) fn overflow(what: &str) -> LayoutError {
    LayoutError::Overflow { what: what.to_string() }
}

/// Product of `sizes`, or an overflow error naming `what`.
pub(crate) fn checked_product<'a>(sizes: impl IntoIterator<Item = &'a usize>, what: &str) -> Result<usize> {
    sizes.into_iter().try_fold(1usize, |acc, &s| acc.checked_mul(s)).ok_or_else(|| overflow(what))
}
