//! # anybit-passes: the optimization pipeline between the tile IR and the backends
//!
//! A pass takes a module of the tile IR (`anybit-ir`) and returns one that still verifies and
//! still *means the same thing*: running the CPU interpreter before and after a pass on the
//! same inputs gives the same outputs, bit for bit. That is how every pass is tested
//! (translation validation over every example kernel, in the root crate's tests).
//!
//! The [`manager::PassManager`] runs named passes from plain per-level lists
//! ([`manager::OptLevel`]: `-O0` infers missing layouts and selects instructions, `-O1`/`-O2`
//! also clean up first and vectorize) or
//! from a list given by name (`anybit compile --passes a,b,c`), runs the verifier after each
//! pass in debug builds and tests (an error names the pass), and can hand the module to a
//! callback after each pass (`--print-after-all`).
//!
//! The passes:
//! - [`dce`] — dead code elimination (rebuilding the kernel with [`rebuild`]);
//! - [`simplify`] — index arithmetic simplified by equality saturation with `egg` (bounded
//!   runners, directional documented rules): constant folding, division and remainder by
//!   powers of two, known ranges, common subexpressions;
//! - [`infer`] — layout inference: every missing register and shared layout filled from
//!   per-instruction rules (MMA fragments for `dot`, vector-friendly loads, propagation through
//!   elementwise operations and `view`, swizzled shared layouts);
//! - [`vectorize`] — the widest legal access of every memory instruction, from a divisibility
//!   analysis over the kernel's assumptions: global and shared `via vector(n)` (proven
//!   aligned), global `via vector(n, checked)` (tested at run time), `via scalar`, and
//!   `copy_async via async` / `via async(checked)` for `cp.async`;
//! - [`select`] — instruction selection: `dot` by `mma.sync` with its fragment plan or
//!   per-thread fma (`via mma(m16n8k16)` / `via fma`), shared loads by `ldmatrix`
//!   (`via ldmatrix`), casts of packed weights by dequantization programs (`via dequant`);
//! - [`dequant`] — not a pass over kernels but the search behind `via dequant`, which the
//!   backend runs for the target: for every `cast(view(packed → w))` to `f16`/`bf16`, machine
//!   sequences (`lop3`, `prmt`, half-pair arithmetic) found in an e-graph, extracted by cost
//!   and proven over every input code.
//!
//! Selections are recorded in the IR (`InstData::via`): the backend carries them out and
//! decides nothing itself, except for the layout conversions it inserts on its own (which use
//! the same predicates).
//!
//! Dependencies point one way: this crate uses `anybit-ir` and `anybit-layouts`; the backends
//! use it.

#![warn(missing_docs)]

pub mod dce;
pub mod dequant;
pub mod infer;
pub mod manager;
pub mod rebuild;
pub mod select;
pub mod simplify;
pub mod vectorize;

pub use manager::{OptLevel, Pass, PassError, PassManager};
