//! The kernel language (`.abk` files): parser and printer.
//!
//! The grammar is that of `docs/language.md`. [`parse_module`] turns a source text into a
//! [`Module`], resolving names (each value defined once per kernel, used only where its
//! definition is visible) and typing every instruction with the IR's typing rules
//! ([`crate::program::infer`]); it reports every problem it finds as a [`Diagnostic`] with
//! a span, recovering at statement boundaries so one run reports several errors.
//! [`print_module`] writes the canonical text, which parses back to an equal module:
//!
//! ```
//! use anybit_ir::text::{parse_module, print_module};
//!
//! let source = "\
//! layout @row = spatial(32)
//!
//! kernel scale(x: ptr f32, n: i32) grid(cdiv(n, 32)) warps(1) {
//!     %g = global_view %x [%n] strides [1]
//!     %b = block_index x
//!     %o = mul %b, 32
//!     %v = load_global %g [%o] : f32[32] layout @row
//!     %w = mul %v, 2.0
//!     store_global %w, %g [%o]
//! }
//! ";
//! let module = parse_module(source).unwrap();
//! assert_eq!(print_module(&module), source);
//! assert_eq!(parse_module(&print_module(&module)), Ok(module));
//! ```
//!
//! Grammar details the reference leaves open, as implemented here:
//!
//! - Newlines separate tokens like other whitespace; a statement ends where its grammar ends.
//!   Lines matter only in four places: error recovery skips to the next line at the same
//!   brace depth; a layout expression ends at the end of its line; `kernel` or `layout` at the
//!   start of a line inside a kernel body means the body's `}` is missing; and `%x =` at the
//!   start of a line always starts a statement (it is never taken as an operand of the line
//!   before).
//! - Every result must be named, and the number of names must equal the number of values the
//!   instruction defines (`for`: one per `iter` binding; `if`: one per yielded value).
//! - Bracketed lists may be empty (`f32[]` is a rank-0 tensor type); the typing rules decide
//!   whether that is allowed.
//! - `for %i = A to B [step S] [unroll N] [iter (%c = init, …)] { … }`, clauses in this order;
//!   `step` may be omitted (step 1), the printer always writes it; `iter` is omitted when
//!   nothing is carried. `reduce OP %x dims [...] [keep] [layout L]`, in this order.
//! - A block's `yield` (at least one operand) must be its last statement; the kernel body
//!   cannot yield. The printer writes `else { … }` when the else block has statements or
//!   either block yields values.
//! - The operands of `view`, `broadcast`, `reduce`, `dot`, `free_shared` and the memory
//!   operands of loads, stores, `global_view` and `copy_async` are values (`%name`), never
//!   literals.
//! - Parameters are values: the body refers to parameter `n` as `%n`; their names share the
//!   kernel's value namespace. Names are unique per kernel even across sibling blocks.
//! - Layouts must be defined before a kernel uses them; layout and kernel names are unique in
//!   a module.
//! - Integer literals are 64-bit signed; hexadecimal literals (`0x1f`) are non-negative.
//!   `inf` and `nan` are float literals where an operand is expected, `-inf` is one token.
//!   Grid constants are integer literals from 0 to 2^63 − 1; a grid has 1 to 3 axes; `warps`
//!   takes 0 to 2^32 − 1 (the verifier judges the value).
//! - Blocks nest at most 64 deep, grid expressions likewise.
//! - Spans: a value's span is its `%name`, a parameter's `name: type`, a named layout's the
//!   whole definition, a kernel's from `kernel` to its `}`; an instruction's runs from its
//!   mnemonic to its last token, and for `for` and `if` covers the header (up to the `{`).

mod lexer;
mod parser;
mod printer;

use std::fmt;

pub use crate::diag::{Diagnostic, Diagnostics};
use crate::program::{Kernel, Module, NamedLayout};

/// Parses a module from kernel-language text, or returns every problem found.
pub fn parse_module(source: &str) -> Result<Module, Diagnostics> {
    parser::parse(source)
}

/// The canonical text of a module: layout definitions first, then kernels separated by blank
/// lines. It ends with a newline (the empty module prints as the empty string).
pub fn print_module(module: &Module) -> String {
    printer::module(module)
}

/// The canonical text of one kernel, writing layouts equal to one of `layouts` by name.
pub fn print_kernel(kernel: &Kernel, layouts: &[NamedLayout]) -> String {
    printer::kernel(kernel, layouts)
}

impl fmt::Display for Module {
    /// The canonical text ([`print_module`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&print_module(self))
    }
}
