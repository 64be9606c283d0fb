//! The layout algebra of anybit: where the elements of a tile live.
//!
//! A kernel works on tiles: small multi-dimensional arrays of some shape `(d0, …, d_{r-1})`.
//! This crate describes three kinds of placement. A [`RegisterLayout`] says which thread
//! of a block holds which element, and in which of its register *slots*. A
//! [`SharedLayout`] gives the offset of each element in shared memory, with an optional
//! XOR [`Swizzle`] on byte addresses. A [`GlobalLayout`] is the usual shape/strides/offset
//! description of a tensor in global memory. The [`fragments`] module names the register
//! layouts that PTX instructions such as `mma` and `ldmatrix` impose.
//!
//! # Modes
//!
//! A register layout is a function `(thread t, slot i) -> coordinates`. It is built out
//! of *modes*. Each logical dim owns a list of modes, outermost first; a mode has a size,
//! and the coordinate along the dim is the mixed-radix number whose digits are the
//! dim's modes (the outermost mode is the most significant digit), so the dim's size is
//! the product of its mode sizes. Every mode is either *spatial* — its digit is a digit of
//! the thread index — or *local* — its digit is a digit of the slot index. The thread
//! index is a mixed-radix number over an ordered list of thread axes (most significant
//! first): each is a spatial mode, or a *replicated* axis of some size that belongs to no
//! dim, so threads that differ only in that digit hold the same elements. The slot index
//! is a mixed-radix number over the ordered list of local modes. Reading a layout is
//! therefore: split `t` into digits along the thread list and `i` along the slot list,
//! hand each digit to its mode, and reassemble each dim's coordinate from its modes.
//!
//! # Primitives and composition
//!
//! `local(s0, s1, …)` puts a whole tile in one thread (slots in row-major order) and
//! `spatial(s0, s1, …)` gives one element to each of `s0·s1·…` threads (threads in
//! row-major order); the `column_` variants use column-major order, `replicated(n)` is a
//! rank-0 layout of `n` threads sharing one element, and `local()` is the unit. Larger
//! layouts come from the Kronecker product `f ∘ g` ([`RegisterLayout::compose`]): `g`
//! is the inner block, repeated in the pattern of `f`. Per dim the modes of `f` come
//! before (above) those of `g`, and likewise in the thread and slot lists, so
//! `h(t, i) = f(t / T_g, i / m_g) ⊙ shape_g + g(t mod T_g, i mod m_g)`. Composition is
//! associative but not commutative, and the unit is an identity on both sides; a rank-0
//! operand is lifted to the other's rank. For example the accumulator fragment of
//! `mma.m16n8k16` is `local(2,1).spatial(8,4).local(1,2)`: each thread holds two adjacent
//! columns (`local(1,2)`), 8×4 threads tile a 8×8 block (`spatial(8,4)`), and each thread
//! repeats that in two row blocks (`local(2,1)`).
//!
//! # Canonical form and division
//!
//! The same map has many mode descriptions: a mode can always be split into an outer and
//! an inner mode that sit next to each other both in the dim's list and in the
//! thread/slot list. The *canonical form* drops size-1 modes and axes and merges every
//! such adjacent pair (and adjacent replicated axes) until nothing changes;
//! [`RegisterLayout`]'s `==` and `Hash` compare canonical forms. *Division* undoes
//! composition: [`RegisterLayout::divide_right`] finds `r` with `r ∘ g = f` and
//! [`RegisterLayout::divide_left`] finds `r` with `g ∘ r = f`. It refines `f` by splitting
//! modes until each dim, the thread list and the slot list have a cut at the divisor's
//! size, checks that the inner (or outer) parts form exactly the divisor, and returns the
//! rest, or a typed error saying which size does not divide or which part does not match.
//! Reduce, permute, reshape, concat and slice are the other shape operations.
//!
//! # The GF(2) view
//!
//! When every mode size and replicated axis is a power of two, each digit is a group of
//! bits, and a layout is a linear map over GF(2) from the bits of `(t, i)` to the bits of
//! the coordinates: each input bit picks one output bit (or none, for replication), and
//! the image of `(t, i)` is the XOR of the columns of its set bits. [`LinearLayout`]
//! stores that matrix by columns. Composition becomes a block matrix product, and
//! matrices that are not mode-like (an input bit feeding several output bits) go beyond
//! modes — which is also how a swizzle looks: [`Swizzle::as_linear`] is the matrix that
//! XORs some address bits into lower ones.
//!
//! # Expression syntax
//!
//! Register layouts parse from and print to a small language ([`RegisterLayout`]
//! implements `FromStr` and `Display`): primitives joined by `.` for composition, with
//! optional whitespace between tokens, for instance `spatial(8,4).local(1,2)` or
//! `column_local(2,2).spatial(8,4).local(1,2)`. Layouts that are no product of
//! primitives use the general form, which lists modes numbered in flattened order (dim 0's
//! outer to inner, then dim 1's, …), the thread axes by number (replicated ones as `r4`)
//! and the slot modes: `layout(dims=[[2,8],[4,2]], threads=[1,2], slots=[0,3])`. The
//! printer writes the canonical form, as primitives when it can (trying local levels
//! before spatial ones), and parse errors carry the byte offset of the problem.
//!
//! ```
//! use anybit_layouts::RegisterLayout;
//!
//! let c: RegisterLayout = "local(2,1).spatial(8,4).local(1,2)".parse()?;
//! assert_eq!(c.shape(), vec![16, 8]);
//! assert_eq!((c.num_threads(), c.num_slots()), (32, 4));
//! assert_eq!(c.map(5, 3)?, vec![9, 3]); // thread 5 = (row 1, column group 1), slot 3
//! assert_eq!(c.to_string(), "local(2,1).spatial(8,4).local(1,2)");
//!
//! let err = "spatial(8,4,]".parse::<RegisterLayout>().unwrap_err();
//! assert_eq!(err.to_string(), "expected a number but found ']' at column 13");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Shared layouts are written `row_major(64,32)`, `column_major(64,32)`,
//! `strided([64,32],[32,1])` or `modes([[8:1,8:64],[64:8]])` (per dim, `size:stride`
//! modes), optionally followed by `.swizzle(B,M,S)`; global layouts are `row_major(…)`,
//! `column_major(…)` or `strided([64,32],[32,-1])`, optionally followed by `.offset(N)`.

#![warn(missing_docs)]

pub mod error;
pub mod expr;
pub mod fragments;
pub mod global;
pub mod linear;
pub mod register;
pub mod shared;

pub use error::{LayoutError, Result};
pub use expr::{ParseError, ParseErrorKind};
pub use fragments::{LdmatrixCount, MmaInstruction, MmaOperand, NamedFragment, all_fragments, ldmatrix_fragment};
pub use global::GlobalLayout;
pub use linear::LinearLayout;
pub use register::{ModeKind, RegisterLayout, ThreadAxis};
pub use shared::{BitAddress, SharedLayout, StridedMode, Swizzle};
