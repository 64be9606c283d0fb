//! The CPU interpreter: anybit's reference semantics, bit for bit.
//!
//! [`run_kernel`] runs a [`Kernel`] on [`Arg`]s — scalars and [`Buffer`]s of packed global
//! memory — exactly as `docs/language.md` defines each instruction, and is the oracle every
//! backend and pass is tested against. It also enforces the rules a GPU leaves undefined: every
//! shared-memory race, read of never-written shared memory, out-of-buffer access, sub-tile
//! outside its tile and integer division by zero is an [`InterpError`] naming the instruction
//! and the block; a malformed (unverified) kernel gives an error too, never a panic.
//!
//! # How it runs
//!
//! Blocks run one after another, x fastest, then y, then z. Inside a block, instructions run in
//! program order for the whole block at once, as the language defines them. Scalars are single
//! values; a register tile is kept as a dense row-major array of element *codes* (the bits of
//! its type), so data movement — loads, stores, `view`, `select`, `broadcast` — is exact for
//! every type, NaN payloads included. The register layout decides what the language says it
//! decides: how `view` regroups each thread's bits, and which threads access which shared
//! element (all holders of a replicated element access it); every register tensor needs one.
//!
//! Arithmetic decodes codes to `f64` (floats; exact for every type whose values fit an `f64`)
//! or `i64` (integers), computes exactly and rounds once to the result type, as
//! [`DType::encode`](crate::DType::encode) rounds (see [`numeric`] for the fast paths and how
//! each is exact). Choices the reference leaves open are made as follows:
//!
//! - a NaN result is the type's canonical NaN ([`numeric::canonical_nan`]); `neg` and `abs` of a
//!   number flip or clear its sign bit (so `neg 0.0` is `-0.0`); `min`/`max` of `+0` and `-0`
//!   are `-0` and `+0`;
//! - `sqrt`, `rsqrt`, `recip` and `div` are correctly rounded; `exp`, `exp2`, `log`, `log2` and
//!   `tanh` are the platform's `f64` functions, rounded once;
//! - `reduce sum` of floats is the exact sum, rounded once (so it does not depend on an order);
//!   of integers, the sum modulo 2^N;
//! - the amount of `shl`/`shr` is read as an unsigned number (a negative amount is huge, so the
//!   result is 0, or −1 for `shr` of a negative value); `iota` wraps coordinates modulo 2^N;
//! - a `global_view` with a negative dimension is an error, as is a `for` with a step ≤ 0 even
//!   when it would run zero times.
//!
//! # Shared memory
//!
//! Each shared tile has one storage element per offset of its layout. An element written by
//! one thread and read or written by another needs a `sync` in between, and so does an element
//! read by one thread and then written by another; the holders of a replicated register element
//! count as one access that is fine for each of them to read back. A `copy_async` reads global
//! memory when it is issued and marks its elements in flight: reading or writing them before
//! their group completes (`commit_group`, then a covering `wait_group`) is an error, and after
//! completion they count as written by every thread, so a `sync` must come before any access.
//! Reading an element never written is an error. Race checks can be turned off
//! ([`RunOptions::check_races`]); the others cannot.
//!
//! # Arguments and the order of blocks
//!
//! Arguments are checked against the parameters: a scalar must fit its type, a buffer must have
//! its pointer's element type, and a pointer parameter that declares its buffer's shape
//! (`x: ptr f16[m, k]`) must get a buffer of exactly that many elements.
//!
//! Results must not depend on the order in which blocks run. For every buffer the kernel stores
//! to, the interpreter records which block wrote and read each element, and reports a
//! [`ErrorKind::BlockConflict`] when one block reads what another writes, or two blocks write
//! different values ([`RunOptions::check_block_conflicts`]).

mod buffer;
mod error;
mod exec;
mod layout;
pub mod numeric;
mod shared;
mod tensor;
mod values;

pub use buffer::{Arg, Buffer};
pub use error::{ErrorKind, InterpError};

use crate::dtype::{Dyadic, ExactValue};
use crate::program::{GridError, GridExpr, Kernel, Op, ParamType, ValueDef};

use exec::{Machine, Setup, Tracker};
use values::Val;

/// How a run is checked and bounded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOptions {
    /// Stop with [`ErrorKind::BudgetExceeded`] after this many steps: executed instructions,
    /// loop iterations and blocks together (default 10^8), so that a loop that never ends
    /// ends.
    pub max_instructions: u64,
    /// Check shared-memory races between threads (default on).
    pub check_races: bool,
    /// Check that no block reads what another block writes, and that no two blocks write an
    /// element with different values (default on).
    pub check_block_conflicts: bool,
    /// The most elements (and register slots over all threads) a register or shared tile may
    /// have, and a `copy_async` may copy (default 2^22).
    pub max_tile_elements: usize,
    /// The most bytes of shared memory a block may have allocated at once (default 16 MiB;
    /// the interpreter does not model a GPU's limit, it only refuses absurd sizes).
    pub max_shared_bytes: usize,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            max_instructions: 100_000_000,
            check_races: true,
            check_block_conflicts: true,
            max_tile_elements: 1 << 22,
            max_shared_bytes: 16 << 20,
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunReport {
    /// The grid's size along x, y and z.
    pub grid: [u64; 3],
    /// Blocks run.
    pub blocks: u64,
    /// Instructions executed (each execution of each instruction, over all blocks).
    pub instructions: u64,
    /// Loop iterations run.
    pub loop_iterations: u64,
    /// Global elements read (`load_global`, `copy_async`; masked elements are not read).
    pub global_elements_read: u64,
    /// Global elements written by `store_global`.
    pub global_elements_written: u64,
    /// Shared elements read by `load_shared`.
    pub shared_elements_read: u64,
    /// Shared elements written by `store_shared` and `copy_async`.
    pub shared_elements_written: u64,
    /// Multiply-adds of `dot`s.
    pub multiply_adds: u64,
    /// `sync`s executed.
    pub syncs: u64,
}

fn bad_argument(message: String) -> InterpError {
    InterpError::new(ErrorKind::BadArgument, message)
}

/// The code of a scalar argument for a parameter of type `dtype`.
fn scalar_argument(name: &str, dtype: crate::DType, arg: &Arg) -> Result<u32, InterpError> {
    match (arg, dtype.is_integer()) {
        (Arg::Int(v), true) => {
            let value = Dyadic::from_i64(*v);
            if value.cmp_value(dtype.min()).is_lt() || value.cmp_value(dtype.max()).is_gt() {
                return Err(bad_argument(format!(
                    "argument `{name}`: {v} is outside the range of {dtype} ({} to {})",
                    dtype.min(),
                    dtype.max()
                )));
            }
            Ok(numeric::wrap(dtype.bits(), *v))
        }
        (Arg::Int(v), false) => {
            Ok(dtype.encode_exact(ExactValue::Finite(Dyadic::from_i64(*v)), dtype.default_conversion()))
        }
        (Arg::Float(v), false) => Ok(match dtype {
            crate::DType::Float(f) => numeric::encode_float(f, *v),
            _ => dtype.encode(*v),
        }),
        (Arg::Float(v), true) => Err(bad_argument(format!("argument `{name}`: the float {v} cannot be a {dtype}"))),
        (Arg::Buffer(_), _) => {
            Err(bad_argument(format!("argument `{name}`: expected a scalar {dtype}, found {}", arg.describe())))
        }
    }
}

/// The pointer parameters some `store_global` writes through (all of them when that cannot be
/// told from the program).
pub(crate) fn stored_params(kernel: &Kernel) -> Vec<bool> {
    let mut stored = vec![false; kernel.params.len()];
    let mut unknown = false;
    // Every instruction once, nested blocks included (`Kernel::walk` would recurse forever on
    // a malformed kernel whose loop contains itself).
    let mut seen = vec![false; kernel.insts.len()];
    let mut pending: Vec<&crate::program::Block> = vec![&kernel.body];
    while let Some(block) = pending.pop() {
        for &id in &block.insts {
            let Some(inst) = kernel.insts.get(id) else { continue };
            match seen.get_mut(id.index()) {
                Some(seen) if !*seen => *seen = true,
                _ => continue,
            }
            pending.extend(inst.op.blocks());
            let Op::StoreGlobal { dst, .. } = &inst.op else { continue };
            let param = kernel.values.get(*dst).and_then(|v| match v.def {
                ValueDef::Result(view, _) => match kernel.insts.get(view).map(|i| &i.op) {
                    Some(Op::GlobalView { ptr, .. }) => match kernel.values.get(*ptr).map(|p| p.def) {
                        Some(ValueDef::Param(p)) => Some(p),
                        _ => None,
                    },
                    _ => None,
                },
                _ => None,
            });
            match param.and_then(|p| stored.get_mut(p)) {
                Some(flag) => *flag = true,
                None => unknown = true,
            }
        }
    }
    if unknown {
        stored.iter_mut().for_each(|s| *s = true);
    }
    stored
}

/// A grid expression as the kernel language writes it.
fn grid_text(kernel: &Kernel, expr: &GridExpr) -> String {
    match expr {
        GridExpr::Const(c) => c.to_string(),
        GridExpr::Param(p) => kernel.params.get(*p).map_or_else(|| format!("#{p}"), |p| p.name.clone()),
        GridExpr::Binary(op, a, b) => format!("{}({}, {})", op.name(), grid_text(kernel, a), grid_text(kernel, b)),
    }
}

/// Runs `kernel` on `args` (one per parameter, in order): evaluates the grid, runs every block,
/// and leaves the stores in the argument buffers.
///
/// Scalar arguments are converted to their parameter's type (an integer out of its range, or a
/// float for an integer parameter, is an error); a buffer's element type must be its pointer
/// parameter's. The first error stops the run; buffers then hold what was stored until then.
pub fn run_kernel(kernel: &Kernel, args: &mut [Arg], options: &RunOptions) -> Result<RunReport, InterpError> {
    if args.len() != kernel.params.len() {
        return Err(bad_argument(format!(
            "kernel `{}` has {} parameters, but {} arguments are given",
            kernel.name,
            kernel.params.len(),
            args.len()
        )));
    }
    let threads = kernel.num_threads();
    if threads == 0 {
        return Err(InterpError::new(ErrorKind::Malformed, format!("kernel `{}` has no warps", kernel.name)));
    }
    if threads > 1 << 20 {
        return Err(InterpError::new(
            ErrorKind::TooLarge,
            format!("kernel `{}` has {} threads per block", kernel.name, threads),
        ));
    }
    let mut grid_params = Vec::with_capacity(args.len());
    let mut params = Vec::with_capacity(args.len());
    for (position, (param, arg)) in kernel.params.iter().zip(args.iter()).enumerate() {
        match param.ty {
            ParamType::Scalar(dtype) => {
                let code = scalar_argument(&param.name, dtype, arg)?;
                grid_params.push(match (arg, dtype.is_integer()) {
                    (Arg::Int(v), true) => Some(*v),
                    _ => None,
                });
                params.push(Some(Val::Scalar { dtype, code }));
            }
            ParamType::Pointer(dtype) => {
                match arg {
                    Arg::Buffer(b) if b.dtype() == dtype => {}
                    other => {
                        return Err(bad_argument(format!(
                            "argument `{}`: expected a buffer of {dtype}, found {}",
                            param.name,
                            other.describe()
                        )));
                    }
                }
                grid_params.push(None);
                params.push(Some(Val::Pointer { param: position, dtype }));
            }
        }
    }
    // The kernel's assumptions (`where k % 128 == 0`) must hold: passes relied on them.
    for a in &kernel.assumptions {
        let Some(param) = kernel.params.get(a.param) else { continue };
        if let Some(Some(v)) = grid_params.get(a.param)
            && (a.divisor == 0 || i128::from(*v).rem_euclid(i128::from(a.divisor)) != 0)
        {
            return Err(bad_argument(format!(
                "argument `{}` = {v} breaks the kernel's assumption `{} % {} == 0`",
                param.name, param.name, a.divisor
            )));
        }
    }
    // Buffers must hold exactly the elements their parameters' declared shapes give.
    for (param, arg) in kernel.params.iter().zip(args.iter()) {
        let (Some(declared), Some(buffer)) = (param.buffer_len(&grid_params), arg.buffer()) else { continue };
        let shape = param.shape.iter().map(|d| grid_text(kernel, d)).collect::<Vec<_>>().join(", ");
        match declared {
            Ok(len) if len == buffer.len() as u64 => {}
            Ok(len) => {
                return Err(bad_argument(format!(
                    "argument `{}`: the buffer has {} elements, but `{}: {}[{shape}]` needs {len}",
                    param.name,
                    buffer.len(),
                    param.name,
                    param.ty
                )));
            }
            Err(e) => {
                return Err(bad_argument(format!(
                    "argument `{}`: its shape [{shape}] cannot be evaluated: {e}",
                    param.name
                )));
            }
        }
    }
    if kernel.grid.is_empty() || kernel.grid.len() > 3 {
        return Err(InterpError::new(
            ErrorKind::BadGrid,
            format!("the grid has {} axes; 1 to 3 are allowed", kernel.grid.len()),
        ));
    }
    let mut grid = [1u64; 3];
    for (axis, expr) in kernel.grid.iter().enumerate() {
        grid[axis] = expr.eval(&grid_params).map_err(|e: GridError| {
            InterpError::new(ErrorKind::BadGrid, format!("grid axis {}: {e}", ["x", "y", "z"][axis]))
        })?;
    }
    let blocks = grid.iter().try_fold(1u64, |n, &g| n.checked_mul(g)).unwrap_or(u64::MAX);
    if blocks >= u64::from(u32::MAX - 1) {
        return Err(InterpError::new(ErrorKind::TooLarge, format!("the grid {grid:?} has too many blocks")));
    }
    let stored = stored_params(kernel);
    let mut buffers = Vec::with_capacity(args.len());
    let mut trackers = Vec::with_capacity(args.len());
    for (position, arg) in args.iter_mut().enumerate() {
        let track = options.check_block_conflicts && blocks > 1 && stored.get(position).copied().unwrap_or(true);
        match arg {
            Arg::Buffer(b) => {
                trackers.push(track.then(|| Tracker::new(b.len())));
                buffers.push(Some(b));
            }
            _ => {
                trackers.push(None);
                buffers.push(None);
            }
        }
    }
    let mut machine = Machine::new(kernel, options, Setup { threads, grid, params, buffers, trackers });
    let mut id = 0u32;
    for z in 0..grid[2] {
        for y in 0..grid[1] {
            for x in 0..grid[0] {
                machine.run_block([x as u32, y as u32, z as u32], id)?;
                id += 1;
            }
        }
    }
    let mut report = machine.report;
    report.grid = grid;
    Ok(report)
}
