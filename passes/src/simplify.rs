//! `simplify-indices`: index arithmetic simplified by equality saturation with `egg`.
//!
//! Kernels compute addresses and tile offsets with uniform scalar integer arithmetic
//! (`mul %bn, 64`, `div %k0, 128`, `cdiv %n_bits, 8`). This pass puts that arithmetic into an
//! e-graph, lets directional rewrite rules add equivalent forms until the graph saturates or
//! a limit is hit, extracts the cheapest form of every value the rest of the kernel uses, and
//! rebuilds the kernel with it.
//!
//! # What the e-graph holds
//!
//! The uniform scalar integer instructions: `const`, `block_index` and the binary operations
//! `add sub mul div rem cdiv min max and or xor shl shr` on integer scalars, with integer
//! literals as constants. Every node carries its integer type (width and signedness) —
//! [`lang::IndexNode`] — because the rules are only valid for a type: wraparound happens
//! modulo 2^N and `shr` is arithmetic for signed types. Everything else is a *leaf*:
//! parameters, loop indices and carried values, results of other instructions. A `div`,
//! `rem` or `cdiv` whose divisor may be 0 is not taken in either: it stays where it is, its
//! result a leaf, so the pass never adds, moves or removes a possible division-by-zero
//! error. Every node of the e-graph is thus a total function, and computing one earlier (out
//! of a loop or a branch) cannot fail.
//!
//! Constants are kept as the value the type reads (`-1` for `i8`, `255` for `u8`), which is
//! also the literal written back: literals must fit their type.
//!
//! # The analysis: constants and intervals
//!
//! Each e-class has an interval holding every value it takes ([`lang::Facts`]); an interval
//! of one value is a constant, and a constant class gets its `Const` node (constant folding,
//! computed by [`lang::eval`] with exactly the interpreter's semantics). Operations propagate
//! intervals ([`lang::transfer`]; an operation that may wrap gives the whole type), merging
//! classes intersects them. The intervals of leaves:
//!
//! - a parameter: its type's range; unsigned types are ≥ 0 by type. A signed parameter that a
//!   declared buffer dimension or a grid axis needs to be nonnegative is bounded below
//!   (`y: ptr f16[m, n]` gives `m, n ≥ 0`): hosts refuse to launch otherwise
//!   ([`SimplifyIndices::trust_declared_shapes`]);
//! - `block_index`: `0 ≤ b < g` where `g` is the largest value the grid axis takes over the
//!   parameters' intervals, and below 2^31 − 1 (`grid(cdiv(n, 64))` with `n: i32` gives
//!   `b < 2^25`); 0 along an axis the grid does not have;
//! - a loop index: `lo(start) ≤ i ≤ hi(end) − 1`, from the intervals of the bounds;
//! - anything else: its type's range.
//!
//! # The rules
//!
//! Each rule is directional, is instantiated for every integer type of the kernel, and
//! applies only when its condition holds on the facts of the matched classes ([`rules::RULES`]
//! is the table; whenever the condition holds, the tests evaluate both sides with the
//! interpreter's semantics — checked against the interpreter itself — for every input,
//! interval and constant of 1-, 3- and 4-bit types, every input and constant of 8-bit types
//! (a second constant sampled), and samples of 16-bit ones).
//! Below, N is the width, arithmetic is modulo 2^N, and "never wraps" is judged from the
//! intervals.
//!
//! | rule | from → to | valid when (and why) |
//! |---|---|---|
//! | `comm-add/mul/min/max/and/or/xor` | `x ∘ y → y ∘ x` | always |
//! | `add-zero`, `sub-zero` | `x + 0 → x`, `x − 0 → x` | always |
//! | `sub-self` | `x − x → 0` | always |
//! | `sub-const` | `x − c → x + (−c)` | `c ≠ 0`; subtraction is addition of the negation mod 2^N |
//! | `add-sub-cancel`, `sub-add-cancel` | `(x − y) + y → x`, `(x + y) − y → x` | always (a group mod 2^N) |
//! | `add-self` | `x + x → x << 1` | always (`→ 0` for `u1`) |
//! | `add-reassoc` | `(x + a) + b → x + (a + b)` | always: wrapping addition is associative |
//! | `mul-zero`, `mul-one` | `x · 0 → 0`, `x · 1 → x` | always |
//! | `mul-neg-one` | `x · c → 0 − x` | `c ≡ −1`, N ≥ 2 |
//! | `mul-pow2` | `x · c → x << k` | the code of `c` is `2^k`, `1 ≤ k < N` (for signed types `c` may be the minimum, `2^(N−1)` mod 2^N): both are `x·2^k mod 2^N` |
//! | `shl-as-mul` | `x << k → x · 2^k` | `k < N`, constant `2^k` taken mod 2^N: the inverse view, so multiplication rules see through shifts |
//! | `mul-reassoc` | `(x · a) · b → x · (a·b)` | always: wrapping multiplication is associative (reduction mod 2^N is a ring homomorphism) |
//! | `mul-add-distribute` | `(x + a) · c → x·c + a·c` | always (distributive mod 2^N) |
//! | `add-mul-factor`, `add-mul-one` | `x·a + x·b → x·(a + b)`, `x·a + x → x·(a + 1)` | always |
//! | `div-one`, `cdiv-one` | `x / 1 → x` | always |
//! | `div-neg-one`, `cdiv-neg-one` | `x / −1 → 0 − x` | signed; `min / −1` wraps to `min` on both sides |
//! | `div-pow2` | `x / 2^k → x >> k` | `2^k > 1` a value of the type: floor division by `2^k` *is* the arithmetic shift, for negative `x` too (and the logical one for unsigned types) |
//! | `shr-as-div` | `x >> k → x / 2^k` | `k ≥ 1`, `2^k` a value of the type (the inverse view) |
//! | `div-mul-exact` | `(x · m) / c → x · (m/c)` | `c ≠ 0` divides `m`, `m/c` a value of the type, `x·m` never wraps: the division is exact |
//! | `div-mul-divisor` | `(x · a) / c → x / (c/a)` | `a ≠ 0` divides `c`, `c/a` a value of the type, `x·a` never wraps: `x·a/c = x/(c/a)` exactly |
//! | `div-div` | `(x / a) / b → x / (a·b)` | `a, b > 0`, `a·b` a value of the type: `⌊⌊x/a⌋/b⌋ = ⌊x/(ab)⌋` |
//! | `div-add-mul` | `(x·c + y) / c → x + y/c` | `c > 0`, `x·c` and `x·c + y` never wrap |
//! | `rem-one` | `x rem ±1 → 0` | always |
//! | `rem-pow2` | `x rem 2^k → x & (2^k − 1)` | `2^k > 1` a value of the type: with a positive divisor the remainder (divisor's sign) is the low k bits in two's complement, for any sign of `x` |
//! | `and-as-rem` | `x & (2^k − 1) → x rem 2^k` | `k ≥ 1`, `2^k` a value of the type (the inverse view) |
//! | `rem-small` | `x rem y → x` | `0 ≤ x < y` for all values (or `y < x ≤ 0`) |
//! | `rem-mul` | `(x · m) rem c → 0` | `c ≠ 0` divides `m`, `x·m` never wraps |
//! | `rem-add-mul` | `(x·c + y) rem c → y rem c` | `c ≠ 0`, `x·c` and `x·c + y` never wrap |
//! | `cdiv-pow2` | `cdiv(x, 2^k) → (x + 2^k − 1) >> k` | `2^k > 1` a value of the type and `x + 2^k − 1` never wraps: `⌈x/d⌉ = ⌊(x + d − 1)/d⌋` |
//! | `cdiv-mul-exact` | `cdiv(x · m, c) → x · (m/c)` | as `div-mul-exact` |
//! | `and-zero`, `and-ones`, `and-self` | `x & 0 → 0`, `x & ~0 → x`, `x & x → x` | always |
//! | `and-mask-small` | `x & m → x` | `m = 2^k − 1 ≥ 0` and `0 ≤ x ≤ m` for all values |
//! | `or-zero`, `or-ones`, `or-self` | `x | 0 → x`, `x | ~0 → ~0`, `x | x → x` | always |
//! | `xor-zero`, `xor-self` | `x ^ 0 → x`, `x ^ x → 0` | always |
//! | `min-self`, `max-self` | `min(x, x) → x` | always |
//! | `min-range`, `max-range` | `min(x, y) → x`, `max(x, y) → x` | `x ≤ y` (resp. `x ≥ y`) for all values |
//! | `shl-zero`, `shr-zero` | `x << 0 → x` | always |
//! | `shl-large` | `x << k → 0` | the code of `k` is ≥ N (amounts are read as unsigned) |
//! | `shr-large` | `x >> k → 0` or `−1` | the code of `k` is ≥ N and `x ≥ 0` (→ 0) or `x < 0` (→ −1) for all values |
//! | `shl-shl` | `(x << a) << b → x << (a + b)` | `a, b < N` (→ 0 when `a + b ≥ N`) |
//! | `shr-shr` | `(x >> a) >> b → x >> (a + b)` | `a, b < N`; unsigned: → 0 when `a + b ≥ N`; signed: amount capped at N − 1 |
//! | `shr-shl-cancel` | `(x << k) >> k → x` | `k < N` and `x·2^k` never wraps |
//!
//! Folding an operation whose operands are constants, and proving a value constant from its
//! interval (`x / 128 → 0` when `0 ≤ x < 128`), is the analysis's job, not a rule's.
//!
//! # Extraction and the cost model
//!
//! A cost is a pair compared lexicographically: (instructions, weight). An instruction weighs
//! [`WEIGHT_SIMPLE`] (`add sub and or xor shl shr`, `block_index`), [`WEIGHT_MIN_MAX`],
//! [`WEIGHT_MUL`], or for `div`/`rem`/`cdiv` [`WEIGHT_DIV_POW2`] by a power of two,
//! [`WEIGHT_DIV_CONST`] by another constant and [`WEIGHT_DIV`] by a variable. Constants
//! (literal operands), leaves in scope and classes already computed in scope cost nothing —
//! a shared subexpression is paid once. Counting instructions first means the pass never
//! trades one instruction for two: a `cdiv` by 8 whose operand may overflow stays a `cdiv`,
//! and the instruction count never grows.
//!
//! The kernel is rebuilt in program order (see `rewrite::Rewriter`): the instructions the
//! e-graph took over are dropped, and each value still needed by the rest of the kernel is
//! computed from the cheapest expression of its class at its original place, every new
//! instruction going to the outermost enclosing block where its operands are defined — so a
//! value whose leaves are all defined before a loop is computed before the loop, equal
//! classes are computed once wherever one computation is in scope, and what nothing uses
//! disappears. If the rebuilt kernel were to have more instructions than the original (the
//! greedy extraction of one value can in principle undo sharing another had), the original
//! kernel is kept.
//!
//! # Limits
//!
//! Saturation runs under an egg `Runner` with a node limit, an iteration limit
//! and a time limit ([`SimplifyIndices`]'s fields; defaults [`DEFAULT_NODE_LIMIT`] nodes,
//! [`DEFAULT_ITER_LIMIT`] iterations, [`DEFAULT_TIME_LIMIT_MS`] ms per kernel). Whatever the
//! runner reached when it stopped is sound — every form in the e-graph is equivalent — so a
//! limit only makes the result less simplified, never wrong.

pub mod lang;
mod ranges;
mod rewrite;
pub mod rules;

use std::time::Duration;

use anybit_ir::program::{Kernel, Module};
use egg::Runner;

use self::lang::IntTy;

/// Weight of `add sub and or xor shl shr` and `block_index`.
pub const WEIGHT_SIMPLE: u32 = 1;
/// Weight of `min` and `max`.
pub const WEIGHT_MIN_MAX: u32 = 2;
/// Weight of `mul`.
pub const WEIGHT_MUL: u32 = 4;
/// Weight of `div`, `rem` and `cdiv` by a constant power of two.
pub const WEIGHT_DIV_POW2: u32 = 8;
/// Weight of `div`, `rem` and `cdiv` by another constant.
pub const WEIGHT_DIV_CONST: u32 = 20;
/// Weight of `div`, `rem` and `cdiv` by a variable.
pub const WEIGHT_DIV: u32 = 40;

/// Default [`SimplifyIndices::node_limit`].
pub const DEFAULT_NODE_LIMIT: usize = 10_000;
/// Default [`SimplifyIndices::iter_limit`].
pub const DEFAULT_ITER_LIMIT: usize = 16;
/// Default [`SimplifyIndices::time_limit`], in milliseconds: only a safety net. The node and
/// iteration limits stop the runner long before it on every kernel we know of, so the output
/// never depends on how loaded the machine is (a 200 ms limit once made a determinism test
/// flaky on a busy 2-core machine).
pub const DEFAULT_TIME_LIMIT_MS: u64 = 5_000;

/// The `simplify-indices` pass. See the [module documentation](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimplifyIndices {
    /// The runner stops once the e-graph has more nodes than this (default
    /// [`DEFAULT_NODE_LIMIT`]).
    pub node_limit: usize,
    /// The runner stops after this many iterations (default [`DEFAULT_ITER_LIMIT`]).
    pub iter_limit: usize,
    /// The runner stops after this long, per kernel (default [`DEFAULT_TIME_LIMIT_MS`] ms).
    pub time_limit: Duration,
    /// Take a signed parameter to be nonnegative where a grid axis or a declared buffer
    /// dimension needs it (hosts refuse such launches otherwise). Default on.
    pub trust_declared_shapes: bool,
}

impl Default for SimplifyIndices {
    fn default() -> SimplifyIndices {
        SimplifyIndices {
            node_limit: DEFAULT_NODE_LIMIT,
            iter_limit: DEFAULT_ITER_LIMIT,
            time_limit: Duration::from_millis(DEFAULT_TIME_LIMIT_MS),
            trust_declared_shapes: true,
        }
    }
}

/// What the pass did to one kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelReport {
    /// The kernel's name.
    pub kernel: String,
    /// Scalar instructions the e-graph took over.
    pub index_insts_before: usize,
    /// Scalar instructions emitted in their place.
    pub index_insts_after: usize,
    /// All instructions, before.
    pub insts_before: usize,
    /// All instructions, after.
    pub insts_after: usize,
    /// E-graph nodes when the runner stopped.
    pub egraph_nodes: usize,
    /// E-graph classes when the runner stopped.
    pub egraph_classes: usize,
    /// Runner iterations.
    pub iterations: usize,
    /// Why the runner stopped (`Saturated`, a limit).
    pub stop_reason: String,
    /// Whether the rebuilt kernel had more instructions than the original, which was kept.
    pub kept_original: bool,
}

impl SimplifyIndices {
    /// Simplifies one kernel, returning the new kernel and a report.
    pub fn simplify_kernel(&self, kernel: &Kernel) -> Result<(Kernel, KernelReport), String> {
        let params = ranges::param_ranges(kernel, self.trust_declared_shapes);
        let blocks = ranges::block_ranges(kernel, &params);
        let graph = rewrite::Graph::build(kernel, &params, blocks)?;
        let types: Vec<IntTy> = graph.types.iter().copied().collect();
        let rules = rules::rewrites(&types)?;
        let rewrite::Graph { egraph, class_of, index_insts, types } = graph;
        let runner = Runner::default()
            .with_egraph(egraph)
            .with_node_limit(self.node_limit)
            .with_iter_limit(self.iter_limit)
            .with_time_limit(self.time_limit)
            .run(&rules);
        let stop_reason = runner.stop_reason.as_ref().map_or_else(|| "none".to_owned(), |r| format!("{r:?}"));
        let iterations = runner.iterations.len();
        let mut egraph = runner.egraph;
        egraph.rebuild();
        let graph = rewrite::Graph { egraph, class_of, index_insts, types };
        let (new, emitted) = rewrite::Rewriter::new(kernel, &graph).run()?;
        let kept_original = new.insts.len() > kernel.insts.len();
        let report = KernelReport {
            kernel: kernel.name.clone(),
            index_insts_before: graph.index_insts.len(),
            index_insts_after: if kept_original { graph.index_insts.len() } else { emitted },
            insts_before: kernel.insts.len(),
            insts_after: if kept_original { kernel.insts.len() } else { new.insts.len() },
            egraph_nodes: graph.egraph.total_size(),
            egraph_classes: graph.egraph.number_of_classes(),
            iterations,
            stop_reason,
            kept_original,
        };
        Ok((if kept_original { kernel.clone() } else { new }, report))
    }

    /// Runs the pass on every kernel of `module`, reporting what it did to each.
    pub fn run_with_reports(&self, module: &mut Module) -> Result<Vec<KernelReport>, String> {
        let mut reports = Vec::with_capacity(module.kernels.len());
        for kernel in &mut module.kernels {
            let (new, report) = self.simplify_kernel(kernel).map_err(|e| format!("kernel `{}`: {e}", kernel.name))?;
            *kernel = new;
            reports.push(report);
        }
        Ok(reports)
    }
}

impl crate::manager::Pass for SimplifyIndices {
    fn name(&self) -> &'static str {
        "simplify-indices"
    }

    fn description(&self) -> &'static str {
        "simplifies uniform integer index arithmetic by equality saturation (egg)"
    }

    fn run(&self, module: &mut Module) -> Result<(), String> {
        self.run_with_reports(module).map(|_| ())
    }
}
