//! The verifier: checks that a module or kernel is well formed, and reports every problem.
//!
//! The verifier accepts *any* [`Module`] or [`Kernel`] — including ones whose handles point
//! outside their arenas, whose blocks share or cycle through instructions, or whose recorded
//! types are wrong — and never panics: it looks handles up with [`Arena::get`], walks blocks
//! iteratively with a visited set, and reports each problem as a [`Diagnostic`] instead of
//! stopping at the first. Each diagnostic starts with the kernel's name, names the instruction
//! (by mnemonic and position in the instruction arena, with the values it defines) and the
//! values (`%name`) concerned, and carries the best span available: the instruction's, else the
//! value's, else the parameter's, else the kernel's.
//!
//! Problems are reported once, where they arise: a layout written in an instruction is checked
//! there, not again on every value whose type derives from it; a value's recorded type that
//! differs from the inferred one is reported on that value. Later instructions may still
//! report what follows from an earlier mistake (a wrongly typed value makes its users'
//! operands wrong too).
//!
//! Verified kernels can be indexed freely (`kernel.values[id]`, [`Kernel::value`]): every
//! handle is in range, blocks form a tree, and every type is the one the typing rules
//! ([`crate::program::infer`]) give. With [`VerifyOptions::require_layouts`] (the *strict*
//! mode the interpreter and the backends need) every register and shared tensor also has its
//! layout.
//!
//! ```
//! use anybit_ir::builder::KernelBuilder;
//! use anybit_ir::program::SharedTensorType;
//! use anybit_ir::verify::{VerifyOptions, verify_kernel};
//! use anybit_ir::DType;
//!
//! // Two 128 KiB tiles at once: over the H100's 227 KiB.
//! let tile = SharedTensorType::new(DType::F16, vec![256, 256], Some("row_major(256,256)".parse()?));
//! let mut k = KernelBuilder::new("tiles", 4);
//! k.alloc_shared(tile.clone())?;
//! k.alloc_shared(tile.clone())?;
//! let kernel = k.finish();
//! let errors = verify_kernel(&kernel, &VerifyOptions::strict()).unwrap_err();
//! assert_eq!(
//!     errors.0[0].message,
//!     "kernel `tiles`: `alloc_shared` (instruction #1, defining %v1): 262144 bytes of shared memory \
//!      may be allocated at once here, over the limit of 232448 bytes"
//! );
//! // Freeing the first tile before allocating the second fits.
//! let mut k = KernelBuilder::new("tiles", 4);
//! let a = k.alloc_shared(tile.clone())?;
//! k.free_shared(a)?;
//! k.alloc_shared(tile)?;
//! assert_eq!(verify_kernel(&k.finish(), &VerifyOptions::strict()), Ok(()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Invariants checked
//!
//! **Handles and structure**
//!
//! 1. Every handle is in range: operands, results, block instruction lists, a loop's index and
//!    carried values, parameters' values, yields.
//! 2. Every instruction of the arena appears in exactly one block, once, and is reachable from
//!    the kernel body: no orphans, no instruction listed twice (in one block or in two), no
//!    instruction listed inside its own body (blocks form a tree, not a cycle).
//! 3. Value definitions are consistent: `ValueDef::Result(inst, i)` ⇔ `inst.results[i]` is the
//!    value; `ValueDef::Param(p)` ⇔ `params[p].value` is the value, and the parameter and its
//!    value have the same name and type; `ValueDef::LoopIndex(l)` / `LoopCarried(l, i)` ⇔ the
//!    value is the `index` / `carried[i]` of the `for` `l`.
//! 4. Every value is defined by exactly one place (a parameter, a result, a loop's index or
//!    carried value).
//!
//! **SSA and scoping**
//!
//! 5. Every operand is defined before its use, in the same block or an enclosing one:
//!    parameters are visible everywhere; a loop's index and carried values only inside that
//!    loop's body; values defined in a block only in that block and the blocks it contains;
//!    an instruction's results are not among its own operands (nor used inside its own blocks).
//! 6. Yields obey the same rule at the end of their block, and are values, not literals
//!    (`if` branches and loop bodies yield typed values); the kernel body yields nothing.
//!
//! **Types**
//!
//! 7. The recorded result types equal [`infer::result_types`], in number and type. That also
//!    checks the operands: their types, literal ranges, elementwise shapes and layouts, `dot`
//!    shapes and element types, `view`'s total bit count, `reduce` dims, a written layout's
//!    shape against its tensor's, and memory spaces (`copy_async` copies global → shared only;
//!    loads and stores match their memory's element type and rank; index operands are integer
//!    scalars; sub-tiles at literal offsets fit their shared tile; a register condition of
//!    `select` has its operands' layout; a literal `for` step is positive; only scalars and
//!    register tensors are carried or yielded). An instruction whose operand
//!    has a recorded tensor type with a zero-sized dimension (never a type the rules give) is
//!    reported instead of typed.
//! 8. `for`: the bounds are scalars of one integer type (typing rules), which is the index's
//!    type ([`infer::loop_index_dtype`], `i32` when all bounds are literals); there are as many
//!    carried values as initial values, each of its initial value's type; the body yields as
//!    many values as there are carried values, of their types; `unroll`, when given, is ≥ 1.
//! 9. `if`: both branches yield the same number of values, of the same types.
//! 10. `view` keeps every thread's bit count (threads × slots × bits) when both layouts are
//!     known (part of the typing rules, invariant 7).
//!
//! **Memory spaces**
//!
//! 11. `free_shared` frees the result of an `alloc_shared` (not a loop-carried or yielded
//!     alias, not a value of another memory space).
//! 12. No use of a shared tile (`load_shared`, `store_shared`, `copy_async`, `free_shared`)
//!     after a `free_shared` of it on some path: a second free is a double free.
//!
//! **Layouts**
//!
//! 13. A register layout's shape equals its tensor's shape, and its `num_threads()` equals the
//!     kernel's 32 × warps (checked on every type written in an instruction — `fill`, `iota`,
//!     `view`, `broadcast`, `load_global`, `load_shared`, `reduce`'s layout — and on every value
//!     type that is not the one its definition gives, which is then reported too).
//! 14. A shared layout's shape equals its tile's shape; it is injective (no two elements share
//!     an offset), checked for tiles of up to [`INJECTIVITY_CHECK_LIMIT`] elements; a swizzle
//!     does not split elements (the element width divides 8 or the swizzle's 2^base-byte
//!     chunks, as [`SharedLayout::address`](anybit_layouts::SharedLayout::address) requires).
//! 15. Strict mode ([`VerifyOptions::require_layouts`]): every register and shared tensor type
//!     written in an instruction (`ty` fields, `reduce`'s layout) has its layout, and so every
//!     value's tensor type (the other types are derived from those; a value whose recorded type
//!     is not the derived one is checked on its own, as in invariant 13).
//!
//! **Shared memory**
//!
//! 16. The peak of simultaneously live shared allocations does not exceed
//!     [`VerifyOptions::shared_memory_limit`]. An `alloc_shared` is live until its
//!     `free_shared` or the end of the kernel; its size is
//!     [`SharedTensorType::size_in_bytes`](crate::program::SharedTensorType::size_in_bytes).
//!     The count is conservative over control flow: each `if` branch is counted from the
//!     state before the `if`; after it, a tile is live if it is live after either branch
//!     (tiles allocated in a branch and not freed there stay allocated to the end of the
//!     kernel, counted as the larger of the two branches' leftovers).
//! 17. An `alloc_shared` inside a loop body is freed in that same body, on every path through
//!     it (else every iteration allocates it again); a `free_shared` inside a loop body frees a
//!     tile allocated in that body (else the next iteration frees it again).
//!
//! **Kernel signature, grid and names**
//!
//! 18. The kernel's name is a valid identifier ([`is_valid_name`]); `warps` is in 1..=32.
//! 19. The grid has 1 to 3 expressions; every [`GridExpr::Param`] of the grid and of pointer
//!     parameters' buffer shapes names an integer scalar parameter; only pointers have shapes.
//! 20. Parameter and value names are valid identifiers and unique within the kernel (a
//!     parameter and its value share one name).
//! 21. In a module: kernel names are unique; named layouts have valid, unique names.
//! 22. Pointer alignments (`align 16`) are powers of two of at most 4096, on pointers only;
//!     assumptions (`where k % 128 == 0`) name integer scalar parameters, with divisors ≥ 1.
//!
//! **Selections** (`via …`, recorded by the selection passes)
//!
//! 23. A selection applies to its instruction: `scalar`/`vector` to global and shared loads
//!     and stores (shared ones never `checked`), `async` to `copy_async`, `mma`/`fma` to
//!     `dot`, `dequant` to `cast`, `ldmatrix` to `load_shared`. A vector width is a power of
//!     two ≥ 2 whose run moves 16 to 128 bits of a power-of-two element width ≤ 32;
//!     `mma(m16n8k16)` takes f16×f16 or bf16×bf16 into f32 and `mma(m16n8k32)` s8/u8 into
//!     32-bit integers, with M, N, K multiples of the shape; `dequant` casts elements of at
//!     most 8 bits to f16/bf16; `ldmatrix` loads 16-bit elements.
//!
//! [`GridExpr::Param`]: crate::program::GridExpr::Param
//! [`infer::result_types`]: crate::program::infer::result_types
//! [`infer::loop_index_dtype`]: crate::program::infer::loop_index_dtype
//! [`crate::program::infer`]: crate::program::infer
//! [`Arena::get`]: crate::arena::Arena::get

mod kernel;
mod layouts;
mod shared;
mod via;
mod walk;

use std::collections::HashMap;

use crate::builder::is_valid_name;
use crate::diag::{Diagnostic, Diagnostics, Span};
use crate::program::{InstId, Kernel, Module, Type, ValueDef, ValueId};

/// The default shared-memory limit: 227 KiB, the most one thread block can use on an H100.
pub const H100_SHARED_MEMORY_LIMIT: usize = 232_448;

/// Shared layouts of tiles up to this many elements are checked for injectivity (the check
/// enumerates every element).
pub const INJECTIVITY_CHECK_LIMIT: usize = 1 << 16;

/// What the verifier requires beyond well-formedness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Strict mode: every register and shared tensor type has its layout. The interpreter and
    /// the backends need it; kernels before layout inference do not have them.
    pub require_layouts: bool,
    /// The most bytes of shared memory a thread block may have allocated at once.
    pub shared_memory_limit: usize,
}

impl Default for VerifyOptions {
    /// Layouts optional, the H100's 227 KiB of shared memory per block.
    fn default() -> VerifyOptions {
        VerifyOptions { require_layouts: false, shared_memory_limit: H100_SHARED_MEMORY_LIMIT }
    }
}

impl VerifyOptions {
    /// The default options: layouts optional, [`H100_SHARED_MEMORY_LIMIT`].
    pub fn new() -> VerifyOptions {
        VerifyOptions::default()
    }

    /// Strict mode (every layout present) with the default shared-memory limit: what the
    /// interpreter and the backends need.
    pub fn strict() -> VerifyOptions {
        VerifyOptions { require_layouts: true, ..VerifyOptions::default() }
    }

    /// These options with `require_layouts` set.
    pub fn with_require_layouts(mut self, require_layouts: bool) -> VerifyOptions {
        self.require_layouts = require_layouts;
        self
    }

    /// These options with another shared-memory limit, in bytes (e.g. 101_376 for sm_86).
    pub fn with_shared_memory_limit(mut self, bytes: usize) -> VerifyOptions {
        self.shared_memory_limit = bytes;
        self
    }
}

/// Verifies a module: its named layouts, that its kernel names are unique, and every kernel
/// (see [`verify_kernel`]). Returns every problem found.
pub fn verify_module(module: &Module, options: &VerifyOptions) -> Result<(), Diagnostics> {
    let mut diags = Vec::new();
    let mut layout_names: HashMap<&str, usize> = HashMap::new();
    for (i, named) in module.layouts.iter().enumerate() {
        if !is_valid_name(&named.name) {
            diags.push(Diagnostic::error(
                format!("layout #{i} is named `@{}`, which is not a valid identifier", named.name),
                named.span,
            ));
        }
        if let Some(&first) = layout_names.get(named.name.as_str()) {
            diags.push(
                Diagnostic::error(format!("layout `@{}` is defined more than once", named.name), named.span)
                    .with_note(format!("first defined as layout #{first}")),
            );
        } else {
            layout_names.insert(&named.name, i);
        }
    }
    let mut kernel_names: HashMap<&str, usize> = HashMap::new();
    for (i, kernel) in module.kernels.iter().enumerate() {
        if let Some(&first) = kernel_names.get(kernel.name.as_str()) {
            diags.push(
                Diagnostic::error(format!("kernel `{}` is defined more than once", kernel.name), kernel.span)
                    .with_note(format!("first defined as kernel #{first} of the module")),
            );
        } else {
            kernel_names.insert(&kernel.name, i);
        }
    }
    for kernel in &module.kernels {
        diags.extend(kernel_diagnostics(kernel, options));
    }
    if diags.is_empty() { Ok(()) } else { Err(Diagnostics(diags)) }
}

/// Verifies one kernel against every invariant of the module documentation. Returns every
/// problem found.
pub fn verify_kernel(kernel: &Kernel, options: &VerifyOptions) -> Result<(), Diagnostics> {
    let diags = kernel_diagnostics(kernel, options);
    if diags.is_empty() { Ok(()) } else { Err(Diagnostics(diags)) }
}

fn kernel_diagnostics(kernel: &Kernel, options: &VerifyOptions) -> Vec<Diagnostic> {
    let mut checker = Checker { kernel, options, diags: Vec::new() };
    checker.check_signature();
    checker.check_names();
    checker.check_definitions();
    checker.check_body();
    checker.diags
}

/// The state shared by the kernel checks: the kernel, the options, the problems found.
struct Checker<'k> {
    kernel: &'k Kernel,
    options: &'k VerifyOptions,
    diags: Vec<Diagnostic>,
}

impl<'k> Checker<'k> {
    /// Reports an error about this kernel at `span` (the kernel's span when `None`).
    fn error(&mut self, span: Option<Span>, message: String, notes: Vec<String>) {
        let mut diagnostic =
            Diagnostic::error(format!("kernel `{}`: {message}", self.kernel.name), span.or(self.kernel.span));
        diagnostic.notes = notes;
        self.diags.push(diagnostic);
    }

    /// Threads per block, when `warps` is valid.
    fn threads(&self) -> Option<usize> {
        (1..=32).contains(&self.kernel.warps).then(|| 32 * self.kernel.warps as usize)
    }

    /// `%name`, or a description of a handle out of range.
    fn value_ref(&self, v: ValueId) -> String {
        match self.kernel.values.get(v) {
            Some(data) => format!("%{}", data.name),
            None => format!("value #{} (no such value)", v.index()),
        }
    }

    /// `` `add` (instruction #3) ``.
    fn inst_short(&self, id: InstId) -> String {
        match self.kernel.insts.get(id) {
            Some(inst) => format!("`{}` (instruction #{})", inst.op.mnemonic(), id.index()),
            None => format!("instruction #{} (no such instruction)", id.index()),
        }
    }

    /// `` `add` (instruction #3, defining %v3) ``: the mnemonic, the position and the results.
    fn inst_ref(&self, id: InstId) -> String {
        let Some(inst) = self.kernel.insts.get(id) else { return self.inst_short(id) };
        let names: Vec<String> = inst
            .results
            .iter()
            .filter_map(|&r| self.kernel.values.get(r))
            .map(|data| format!("%{}", data.name))
            .collect();
        if names.is_empty() {
            self.inst_short(id)
        } else {
            format!("`{}` (instruction #{}, defining {})", inst.op.mnemonic(), id.index(), names.join(", "))
        }
    }

    fn inst_span(&self, id: InstId) -> Option<Span> {
        self.kernel.insts.get(id).and_then(|inst| inst.span)
    }

    /// A value's span, else that of what defines it.
    fn value_span(&self, v: ValueId) -> Option<Span> {
        let data = self.kernel.values.get(v)?;
        data.span.or(match data.def {
            ValueDef::Param(p) => self.kernel.params.get(p).and_then(|param| param.span),
            ValueDef::Result(i, _) | ValueDef::LoopIndex(i) | ValueDef::LoopCarried(i, _) => self.inst_span(i),
        })
    }

    /// What a definition says, in words.
    fn def_desc(&self, def: ValueDef) -> String {
        match def {
            ValueDef::Param(p) => match self.kernel.params.get(p) {
                Some(param) => format!("parameter #{p} (`{}`)", param.name),
                None => format!("parameter #{p} (no such parameter)"),
            },
            ValueDef::Result(i, n) => format!("result {n} of {}", self.inst_short(i)),
            ValueDef::LoopIndex(i) => format!("the index of {}", self.inst_short(i)),
            ValueDef::LoopCarried(i, n) => format!("carried value {n} of {}", self.inst_short(i)),
        }
    }
}

/// A type in words, layout included (`register f32[16, 8] layout spatial(16,8)`), so that two
/// types that differ only in their layouts read differently.
fn type_text(ty: &Type) -> String {
    match ty {
        Type::Register(t) => match &t.layout {
            Some(layout) => format!("{} layout {layout}", ty.describe()),
            None => format!("{} (no layout)", ty.describe()),
        },
        Type::Shared(t) => match &t.layout {
            Some(layout) => format!("{} layout {layout}", ty.describe()),
            None => format!("{} (no layout)", ty.describe()),
        },
        _ => ty.describe(),
    }
}
