//! `infer-layouts`: fills every missing register and shared layout.
//!
//! Authors may leave out the layouts of register tiles (`fill`, `iota`, `view`, `broadcast`,
//! `load_global`, `load_shared`, `reduce`) and shared tiles (`alloc_shared`); the interpreter
//! and the backends need them all (strict verification). This pass chooses them so that the
//! kernel verifies strictly, keeps every layout the author wrote, and uses the layouts that
//! make the LLVM backend emit its fast code: `mma.sync` for `dot`, `ldmatrix` and vectorized
//! loads, conversions without data exchange.
//!
//! # How
//!
//! A value's layout is decided per *class*: register values that must share one layout by
//! the typing rules are one class — the operands (register ones) and results of elementwise
//! instructions, compares, `select` (with its condition) and `cast` (a cast keeps the layout:
//! each thread keeps its slots), a `dot`'s c and result, a `for`'s initial value, carried
//! value, yielded value and result, an `if`'s two yields and its result. Layouts therefore
//! propagate in both directions through all of these. Two relations tie classes together
//! without making them equal:
//!
//! - **`view`** keeps the bits of every thread. When one side's layout is known, the other side
//!   is its **memory-order reinterpretation**: the tile flattened row-major, its innermost mode
//!   — when it is local and the innermost slot, so that a thread's consecutive slots are
//!   consecutive elements — scaled by the ratio of the bit widths (a new innermost local mode
//!   when it is spatial and the new type divides the old), reshaped to the new shape (see
//!   [`rules::reinterpret`]): u8 `spatial(16,8).local(4,4)` on [64, 32] ↔ u4
//!   `spatial(16,8).local(4,8)` on [64, 64]. With such layouts a `view` means *read the packed
//!   bits as the new type*: element `e` of the result (row-major) is bits `[e·N, (e+1)·N)` of the
//!   operand's elements laid out row-major — exactly what the hand-written kernels do with
//!   packed weights, and what a kernel without layouts means by `view` after this pass. Every
//!   choice is checked against this: a layout that has no memory-order reinterpretation on the
//!   other side of a view is not chosen (only a view whose two sides the author both wrote may
//!   be anything that keeps the bits per thread).
//! - **`reduce`**: the result's layout is the operand's reduced ([`RegisterLayout::reduce`](anybit_layouts::RegisterLayout::reduce), as
//!   the typing rules require). A result whose layout is fixed first (the author wrote it)
//!   constrains the operand to layouts that reduce to it ([`rules::reduce_preimage`] builds one
//!   when nothing else fits).
//!
//! Every tentative layout is propagated through these relations to every class it reaches and
//! kept only when nothing it reaches already has another layout. Every inferred register
//! layout has the tile's shape and `32 × warps` threads.
//!
//! # Rules, in priority order
//!
//! 1. **Written layouts** are kept, and so is what they force through `view`s and `reduce`s.
//!    Two written layouts that meet in one class (say `fill … layout A` and `load_global …
//!    layout B` whose values are added to one value), or that disagree through a `view` or a
//!    `reduce`, are an **error** naming both instructions (mnemonics and `%names`) and the
//!    instructions that connect them; so is a written layout on one side of a view whose other
//!    side has no memory-order reinterpretation of it.
//! 2. **`dot`** (in program order), for f16/bf16 inputs with the m16n8k16 fragments and i8/u8
//!    inputs with m16n8k32 ([`rules::mma_instruction`]), when M, N and K are multiples of the
//!    instruction's m, n, k (otherwise, and for other input types, the lower rules decide):
//!    - c and the result: the C fragment repeated over the tile, the warps split over M and N
//!      ([`rules::warp_split`]: as many warps on distinct tiles as possible, then the smallest
//!      per-warp tile half-perimeter, then more warps along N), the rest of the tile in slots:
//!      `local(M/16/wm, N/8/wn).spatial(wm, wn) ∘ C` (16×64 over 4 warps:
//!      `local(1,2).spatial(1,4).local(2,1).spatial(8,4).local(1,2)`, 64×64:
//!      `local(2,4).spatial(2,2).local(2,1).spatial(8,4).local(1,2)`);
//!    - a: the A fragment over every (m-tile, k-tile), replicated across the warps that share
//!      rows of c (16×64 with warps along N: `replicated(4).local(1,4).column_local(2,2)
//!      .spatial(8,4).local(1,2)`); b: the B fragment likewise, replicated across the warps
//!      that share columns ([`rules::mma_operands`], what the backend's `mma.sync` path wants);
//!      a and b fit the accumulator c ends up with, even when the author wrote it.
//!    - When a and b already have layouts (from views, say) and some accumulator takes both
//!      as they are ([`rules::conversion_free_accumulator`]: every warp split and nesting,
//!      straight, then swapped), c gets that one instead. Swapped, the instructions compute
//!      `cᵀ = bᵀ·aᵀ` (`via mma(…, swapped)`); c is then the transposed C fragments and the
//!      operands' targets are the straight targets of the transposed product, transposed.
//!
//!    A class that cannot take its arrangement keeps whatever the lower rules give it: when it
//!    reaches a `view` with no memory-order reinterpretation of it, a class that has another
//!    layout, or a global load that would read less than 32 bits at a time
//!    ([`rules::reasonable_global_load`]; shared loads take any layout, `ldmatrix` reads the
//!    fragments). The backend then converts that operand inside the `dot` (through shared
//!    scratch, read back with `ldmatrix`) — the low-bit matmul's dequantized weights are such
//!    an operand: the `view` of packed bytes fixes them in memory order along N, while the B
//!    fragment runs along K, which no view of bytes can give.
//! 3. **Propagation** (the classes and relations above) applies to every choice, of every rule.
//! 4. **`broadcast`**: the result takes its consumers' layout (it is in their class, or gets
//!    rule 5/6's); as soon as it is known, the operand gets a layout in which every thread
//!    holds every element its result slots read ([`rules::broadcast_source`]: the result's
//!    repeats reduced, e.g. `replicated(16).spatial(1,8).local(1,8)` for a [1, 64] row of
//!    scales broadcast to `local(4,1).spatial(16,8).local(1,8)`), so the backend copies
//!    registers instead of exchanging through shared scratch.
//! 5. **Loads** (`load_global`, `load_shared`), for classes still without a layout (in program
//!    order, those that feed a `broadcast` whose result has no layout yet last):
//!    vector-friendly layouts ([`rules::vector_candidates`]) — each thread holds contiguous
//!    runs along the last dim of up to 16 bytes, threads spread row-major ([`rules::spread`]);
//!    without replication when the tile has at least as many elements as threads, then the
//!    longest run; for smaller tiles the longest run, replicated. The first candidate that
//!    propagates is taken, unless a later one (as much replication, a shorter run) forces
//!    fewer `broadcast` exchanges, or halves the registers of the values derived from it (the
//!    operands of the `broadcast`s it feeds, the results of its `reduce`s) while every class
//!    it lays out still holds runs of at least 16 bytes of its widest element type. That is
//!    how packed weights get the hand-written kernel's shape — `bits` bytes (8 codes) per
//!    thread and row, `local(4,1).spatial(16,8).local(1,bits)`: a 16-byte run of u4 codes
//!    would span 32 columns and need 32 scales and zero points per thread, 4 bytes span 8
//!    and still convert to runs of 8 f16 — while a tile without such consumers keeps its
//!    16-byte runs. (With groups of scales smaller than the tile's rows, a thread's rows span
//!    several groups and no shorter run halves the scales: the 16-byte run stays.)
//! 6. **Defaults**, for every class still without a layout (in program order): the first that
//!    propagates of the vector-friendly layouts of its loads, a preimage of its `reduce`
//!    result's layout, and the row-major spreads of its widest element type — a row-major
//!    spread of the tile over the block's threads with runs of up to 16 bytes, replicated when
//!    the tile has fewer elements than threads. When none fits, the pass fails naming the
//!    value.
//! 7. **Shared tiles** without a layout: row-major with an XOR swizzle of 16-byte chunks on
//!    byte addresses derived from the row size in bytes R ([`rules::shared_swizzle`]:
//!    `Swizzle(min(3, log2(R/16)), 4, max(3, log2(R) − 4))`, so that the 8 rows of 16 bytes an
//!    `ldmatrix` phase reads — and 16-byte vector accesses of 8 consecutive rows — fall in 8
//!    different bank groups: `Swizzle(3,4,3)` for 64 f16 per row, `Swizzle(2,4,3)` for 32);
//!    plain row-major when the tile is rank 1, its rows are not a power-of-two number of bytes
//!    or under 32 bytes, or the tile is too small for the swizzle to act.
//!
//! The pass adds and removes no instructions. A kernel whose layouts are all written is left exactly as it is, so running the pass twice
//! changes nothing the second time.

mod analysis;
mod rewrite;
pub mod rules;
mod solve;

use anybit_ir::program::{Kernel, Module, Op, Type};

use analysis::Analysis;
use solve::Solver;

/// Infers every missing register and shared layout (see the module documentation).
#[derive(Clone, Copy, Debug, Default)]
pub struct InferLayouts;

impl crate::manager::Pass for InferLayouts {
    fn name(&self) -> &'static str {
        "infer-layouts"
    }

    fn description(&self) -> &'static str {
        "fills every missing register and shared layout (MMA fragments for dot, vector-friendly loads, swizzled shared tiles)"
    }

    fn run(&self, module: &mut Module) -> Result<(), String> {
        for kernel in &mut module.kernels {
            infer_kernel(kernel)?;
        }
        Ok(())
    }
}

/// Whether some register or shared tensor of the kernel has no layout.
pub fn has_missing_layouts(kernel: &Kernel) -> bool {
    let values = kernel.values.iter().any(|(_, v)| match &v.ty {
        Type::Register(t) => t.layout.is_none(),
        Type::Shared(t) => t.layout.is_none(),
        _ => false,
    });
    values
        || kernel.insts.iter().any(|(_, inst)| match &inst.op {
            Op::Fill { ty, .. }
            | Op::Iota { ty, .. }
            | Op::View { ty, .. }
            | Op::Broadcast { ty, .. }
            | Op::LoadGlobal { ty, .. }
            | Op::LoadShared { ty, .. } => ty.layout.is_none(),
            Op::Reduce { layout, .. } => layout.is_none(),
            Op::AllocShared { ty } => ty.layout.is_none(),
            _ => false,
        })
}

/// Infers the missing layouts of one kernel. A kernel with every layout written is unchanged.
pub fn infer_kernel(kernel: &mut Kernel) -> Result<(), String> {
    if !has_missing_layouts(kernel) {
        return Ok(());
    }
    if !(1..=32).contains(&kernel.warps) {
        return Err(format!("kernel `{}`: warps({}) is out of range (1 to 32)", kernel.name, kernel.warps));
    }
    let analysis = Analysis::of(kernel)?;
    let mut solver = Solver::new(kernel, &analysis);
    solver.solve()?;
    let mut shared = Vec::with_capacity(analysis.shared.len());
    for tile in &analysis.shared {
        let layout = rules::shared_layout(&tile.shape, tile.bits).ok_or_else(|| {
            format!("kernel `{}`: no row-major layout for a shared tile of shape {:?}", kernel.name, tile.shape)
        })?;
        shared.push((tile.inst, layout));
    }
    let assigned = solver.assigned.clone();
    drop(solver);
    rewrite::apply(kernel, &analysis, &assigned, &shared)?;
    Ok(())
}
