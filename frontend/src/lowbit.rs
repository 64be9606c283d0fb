//! The low-bit weight matmul: `y[M, N] = x[M, K] · dequant(W)[K, N]`.
//!
//! A [`WeightFormat`] says how the weights are quantized: the weight type (any integer type of
//! 1–8 bits, any float type of at most 8 bits, or a lookup-table type — `uN` codes that decode
//! through a [`Lut`] of 2^N values, such as GGUF's IQ4_NL or NF4), groups of `group_size`
//! consecutive rows of W along K sharing one scale per column (f16, bf16 or f32), optional
//! integer zero points and optional float offsets per group and column, and the activation
//! type (f16 or bf16). The
//! weight is `w = (q − z)·s + o`: offsets are the per-group minimums of GGUF's Q4_1, Q5_1 and
//! K-quants (whose two-level scales an import folds exactly into f32 scales and offsets). [`build_kernel`] generates the kernel in
//! the tile IR; [`QuantizedWeights`] holds the quantized values in their canonical host form
//! and packs them into the buffers the kernel reads; [`reference()`] computes the exact result
//! the kernel approximates.
//!
//! # What the kernel computes
//!
//! Each block computes a `BM × BN` tile of y (8 × 128 in the decode kernel; 16 or 64 rows by
//! 128 columns, or by 64 for formats of heavier dequantization, in the others; see
//! [`Schedule`]), looping over K in steps of `BK` = 64. Per step
//! it loads an x tile and the weight bytes of `BN / 64` packed `BK × 64` tiles, each thread
//! its own contiguous bytes of each, and views them as the weight type in
//! the layout of the tensor cores' A operands for the transposed product `yᵀ = Wᵀ·xᵀ` (the
//! packed bits of each thread's bytes *are* its weights; the packing below puts them there),
//! casts them to the
//! activation type (exact for every supported type), subtracts the zero point (exact: small
//! integers), multiplies by the group's scale (rounded to the activation type — the value an
//! MMA would consume), and accumulates `x · w` in f32 with `dot`. Formats with f32 scales or
//! with offsets form the weight in f32 instead — `(q − z)·s` rounded to f32, plus `o` rounded
//! to f32 (the order and roundings of ggml's dequantizers, so the f32 weight is GGUF's own
//! value) — and round it to the activation type once. Lookup-table formats decode the codes
//! with the IR's `lookup` instead of `cast`: `table[q]`, exactly (in the activation type when
//! every entry is one of its values, as IQ4_NL's integers are; else in f32, as NF4's are, and
//! then the weight is formed in f32 as above); they have no zero points. The result is rounded
//! to the activation type. Tiles that stick out of M, N or K are masked: they read zeros and
//! store nothing, so any M and N work; K must be a multiple of the group size.
//!
//! # How it is fast (the schedule)
//!
//! Nothing goes through shared memory. The `dot` runs swapped on the tensor cores
//! (`via mma(m16n8k16, swapped)`): W's columns fill the instruction's 16-row side and x's
//! rows its 8-wide side, so M ≤ 8 wastes no tensor-core rows on 16-row tiles and x needs no
//! register moves (ptxas wants each operand in consecutive registers; an A fragment mixes
//! rows m and m + 8, a B fragment is one row's neighbours). x is loaded in runs of up to 16
//! consecutive k per thread and row, then relabeled (a `view`, no data movement) so that each
//! thread holds the B fragments of xᵀ in the k order σ of [`k_order`]; the weights are packed
//! in the same order, so the `dot` sums the same products. Each step's loads are issued [`Schedule::prefetch`] steps
//! ahead and carried through the loop in registers. A [`Schedule`] also chooses the rows per
//! block and the unroll hint. Measured on the H100 in `BENCHMARKS.md`.
//!
//! # One module per format, a plan per launch
//!
//! [`build_module`] gives what a layer runs: matmul kernels of 8 rows per block (decode, M ≤
//! 8), 16 (small batches) and 64 (larger M), and a reduction kernel. Every matmul kernel takes the split of K
//! as a launch parameter (`splits`, the grid's third axis): with one split it writes y, with
//! more each block sums its part of K into an f32 workspace and the reduction adds the parts
//! in a fixed order. So one compiled module serves every M and every split, and
//! [`LaunchPlan::choose`] (or a tuner) picks the kernel and the split per call, when M is
//! known, without compiling anything.
//!
//! # Canonical host form and packed buffers
//!
//! [`QuantizedWeights`] keeps codes `q[k][n]` (K × N, row-major), scales `s[g][n]`, zero
//! points `z[g][n]` and offsets `o[g][n]` (K/G × N). The kernel reads:
//! - `w`: bytes, re-packed in tiles so that every thread fetches its weights of a step with
//!   one contiguous load (16 bytes for 4-bit weights) and holds them exactly where the tensor
//!   cores want them: `⌈K/64⌉ × ⌈N/64⌉` tiles of 64 × 64 codes (K steps outer), each tile a
//!   bit stream of `4·bits` bytes per thread, each thread's 32 codes in its register order
//!   (the A operands of `mma.m16n8k16` for `Wᵀ`: each warp 16 consecutive columns; pairs
//!   along k, then column n + 8, then k + 8, then the four k16 steps). [`QuantizedWeights::pack_weights`] writes it;
//!   [`QuantizedWeights::pack_rows`] writes the plain row-major stream that hand-written
//!   kernels read;
//! - `s`: scales, row-major `[K/G, N]`, in the scale type;
//! - `z`: zero points, row-major `[K/G, N]`, packed in the weight type (only with zero points);
//! - `o`: offsets, row-major `[K/G, N]`, in the scale type (only with offsets).

use anybit_ir::builder::{BuildError, KernelBuilder};
use anybit_ir::dtype::DType;
use anybit_ir::interp::{Buffer, numeric};
use anybit_ir::packing::PackedBits;
use anybit_ir::program::{Axis, BinaryOp, GridExpr, GridOp, Kernel, Module, Operand, RegisterTensorType, ValueId};
use anybit_ir::random::SplitMix64;
use anybit_layouts::RegisterLayout;

pub use crate::lut::Lut;

/// Rows of y per block of the decode kernel (the default schedule): one n8 tile of the
/// swapped product, so M ≤ 8 computes and loads no padding rows.
pub const BLOCK_M: usize = 8;
/// Columns of y per block of the decode kernel: two packed weight tiles, so that each step's
/// x fragments, addresses and bounds tests serve twice the weights.
pub const DECODE_BLOCK_N: usize = 2 * BLOCK_N;
/// Rows of y per block of the kernel for small batches (`9 ≤ M ≤` [`DECODE_MAX_M`]).
pub const MEDIUM_BLOCK_M: usize = 16;
/// Columns of y per block.
pub const BLOCK_N: usize = 64;
/// Rows of W per loop step.
pub const BLOCK_K: usize = 64;
/// Warps per block.
pub const WARPS: u32 = 4;

/// Choices that change how fast the kernel runs, never what it computes — fixed when the
/// kernel is compiled. (How many blocks share K is chosen per launch: see [`LaunchPlan`].)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Schedule {
    /// K steps whose loads are issued ahead of the step being computed (0: load and use in
    /// the same step). Each costs registers for one step's x tile, weights and group values.
    pub prefetch: usize,
    /// The K loop's unroll hint.
    pub unroll: u32,
    /// Rows of y per block: 8, 16, 32 or 64. Every block dequantizes its weight tiles once for
    /// all its rows, so larger M wants more rows per block; M ≤ 8 wants 8.
    pub block_m: usize,
    /// Columns of y per block: 64 or 128 (one or two packed weight tiles; each warp then
    /// holds 16 columns of each). With two, each step's x fragments, addresses and bounds
    /// tests serve twice the weights; the accumulators and weights take twice the registers.
    pub block_n: usize,
}

impl Default for Schedule {
    /// The decode kernel's schedule for formats of light dequantization: what
    /// [`Schedule::for_format`] gives u4 with f16 scales.
    fn default() -> Schedule {
        Schedule { prefetch: 1, unroll: 1, block_m: BLOCK_M, block_n: DECODE_BLOCK_N }
    }
}

impl Schedule {
    /// The schedule of the decode kernel ([`BLOCK_M`] rows, [`DECODE_BLOCK_N`] columns per
    /// block) for `format`: one step of prefetch (none where the dequantization itself needs
    /// many registers: widths that do not divide 32 bits with weights formed in f32) and no
    /// unrolling — with two weight tiles per step, one step prefetched keeps as many bytes in
    /// flight per thread as two steps of one tile, and the loop body is already as long as
    /// two steps of the 64-column kernel (so the JIT compiles as much: the SASS per weight is
    /// within 3% of unrolling twice with two steps prefetched, at 56 instead of 84 registers
    /// for u4).
    pub fn for_format(format: &WeightFormat) -> Schedule {
        let wide = Schedule::wide_for(format);
        Schedule { prefetch: wide.prefetch.min(1), unroll: 1, block_m: BLOCK_M, block_n: DECODE_BLOCK_N }
    }

    /// The schedule of the 64-column kernels for `format`: two steps of prefetch, with less
    /// where the dequantization itself needs many registers — one step for widths that do not
    /// divide 32 bits or weights formed in f32, none for both (deeper queues spill on sm_80
    /// there) — and the loop unrolled twice (once for widths that do not divide 32 bits).
    fn wide_for(format: &WeightFormat) -> Schedule {
        let bits = format.weight.bits();
        let (odd, wide) = (32 % bits != 0, format.dequantizes_in_f32());
        let prefetch = match (odd, wide) {
            (true, true) => 0,
            (true, false) | (false, true) => 1,
            (false, false) => 2,
        };
        // Odd widths' dequantization is long (three words per 32 codes): one copy of the loop
        // body halves what LLVM compiles (the JIT's latency) at no cost measured on the H100.
        let unroll = if odd { 1 } else { 2 };
        Schedule { prefetch, unroll, block_m: BLOCK_M, block_n: BLOCK_N }
    }

    /// The schedule of the kernel for small batches ([`MEDIUM_BLOCK_M`] rows per block): as
    /// the decode kernel's, 128 columns, for formats of light dequantization
    /// ([`WeightFormat::is_light`]: 21% fewer SASS instructions per weight for u4, at 86
    /// registers), else 64 columns with the 64-column kernels' prefetch and unrolling.
    pub fn medium_for(format: &WeightFormat) -> Schedule {
        match format.is_light() {
            true => Schedule { block_m: MEDIUM_BLOCK_M, ..Schedule::for_format(format) },
            false => Schedule { block_m: MEDIUM_BLOCK_M, ..Schedule::wide_for(format) },
        }
    }

    /// The schedule of the layer module's kernel with `block_m` rows per block (see
    /// [`build_module_for`]): [`Schedule::for_format`], [`Schedule::medium_for`] or
    /// [`Schedule::prefill_for`].
    pub fn for_rows(format: &WeightFormat, block_m: usize) -> Schedule {
        match block_m {
            BLOCK_M => Schedule::for_format(format),
            MEDIUM_BLOCK_M => Schedule::medium_for(format),
            _ => Schedule::prefill_for(format),
        }
    }

    /// The schedule of the kernel for many rows ([`PREFILL_BLOCK_M`] rows per block). For
    /// formats of light dequantization with one group row per step (groups of 64 and more)
    /// and no zero points, the decode kernel's: 128 columns, one step prefetched, no
    /// unrolling (18% fewer SASS instructions per weight for u4, at the 64-column kernel's
    /// registers; with two group rows per step, or zero points, it reaches 248–255 on
    /// sm_80). Else 64 columns with at most one step prefetched (the
    /// four-times-larger x tiles and accumulators need the registers; measured best on the
    /// H100 for u4 at M = 64 and 4096), and none for lookup tables, weights formed in f32 and
    /// widths that do not divide 32 bits, whose decode needs more registers still (one step
    /// spills at 255 registers on sm_80 or sm_90).
    pub fn prefill_for(format: &WeightFormat) -> Schedule {
        if format.is_light() && format.scale_rows() == 1 && !format.zero_point {
            return Schedule { block_m: PREFILL_BLOCK_M, ..Schedule::for_format(format) };
        }
        let wide = Schedule::wide_for(format);
        let heavy = format.lut.is_some() || format.dequantizes_in_f32() || 32 % format.weight.bits() != 0;
        let prefetch = if heavy { 0 } else { wide.prefetch.min(1) };
        Schedule { block_m: PREFILL_BLOCK_M, prefetch, ..wide }
    }

    /// A short name for kernel and benchmark names: `m16p2u2`, with the columns per block
    /// when not [`BLOCK_N`]: `m8n128p2u2`.
    pub fn tag(&self) -> String {
        match self.block_n {
            BLOCK_N => format!("m{}p{}u{}", self.block_m, self.prefetch, self.unroll),
            block_n => format!("m{}n{block_n}p{}u{}", self.block_m, self.prefetch, self.unroll),
        }
    }

    /// Reads a [`Schedule::tag`] back.
    pub fn from_tag(tag: &str) -> Option<Schedule> {
        let (rows, rest) = tag.strip_prefix('m')?.split_once('p')?;
        let (block_m, block_n) = match rows.split_once('n') {
            Some((m, n)) => (m.parse().ok()?, n.parse().ok()?),
            None => (rows.parse().ok()?, BLOCK_N),
        };
        let (prefetch, unroll) = rest.split_once('u')?;
        Some(Schedule { prefetch: prefetch.parse().ok()?, unroll: unroll.parse().ok()?, block_m, block_n })
    }

    /// Checks the schedule's ranges.
    pub fn validate(&self) -> Result<(), FormatError> {
        if self.prefetch > 8
            || !(1..=16).contains(&self.unroll)
            || ![8, 16, 32, 64].contains(&self.block_m)
            || ![BLOCK_N, 2 * BLOCK_N].contains(&self.block_n)
        {
            return Err(FormatError::Schedule(*self));
        }
        Ok(())
    }
}

/// Rows of y per block of the kernel for many rows (the second matmul kernel of
/// [`build_module_for`]).
pub const PREFILL_BLOCK_M: usize = 64;
/// The most rows [`LaunchPlan::choose`] gives the 16-row kernel; more go to the 64-row one.
pub const DECODE_MAX_M: usize = 32;
/// The most blocks that may share one output tile's K.
pub const MAX_SPLITS: usize = 64;
/// Rows of one slab of the partial-sum workspace are M rounded up to a multiple of this (the
/// largest rows per block), so that no block's rows reach into the next slab and one
/// reduction kernel serves every matmul kernel.
pub const SLAB_ALIGN_ROWS: usize = 64;

/// How one product runs, chosen per launch (M is known only then): which matmul kernel — by
/// its rows per block — and how many blocks share each output tile's K.
///
/// With `splits` = 1 the matmul writes y itself. With more, block `z` of the grid's third
/// axis sums its own part of K (whole 64-row steps) and writes f32 partial sums to slab `z`
/// of a workspace `p` of [`LaunchPlan::workspace_len`] f32 values; the reduction kernel then
/// adds the slabs in order (reproducible: no atomics) and rounds once to the activation type.
/// Few output tiles (small M with small N) leave most of the GPU idle without a split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LaunchPlan {
    /// Rows of y per block of the matmul kernel: [`BLOCK_M`], [`MEDIUM_BLOCK_M`] or
    /// [`PREFILL_BLOCK_M`].
    pub block_m: usize,
    /// Blocks sharing one output tile's K: 1 to [`MAX_SPLITS`].
    pub splits: usize,
}

impl LaunchPlan {
    /// The plan for an `m × n` output over `k` on a GPU of `multiprocessors` SMs, from what
    /// was measured on the H100 (`BENCHMARKS.md`, "Split-K by shape"):
    ///
    /// - up to [`BLOCK_M`] rows the 8-row kernel (the swapped product's n8 tile: no padding
    ///   rows), up to [`DECODE_MAX_M`] the 16-row kernel (its time was flat up to M = 16),
    ///   more rows the 64-row one (it dequantizes each weight tile once per 64 rows: 1.3× faster at
    ///   M = 64, 1.6× at 4096);
    /// - then the largest split in 1, 2, 4, 8 that keeps the grid at most 8 blocks per SM and
    ///   each block at least 8 steps of K: the winning split measured gave 500–900 blocks on
    ///   132 SMs (u4 14336 × 4096 at M = 1: 100 → 34 µs with 8; 4096 × 14336: 40 → 33 µs with
    ///   4), and grids of 896 tiles won without one.
    ///
    /// A tuned plan ([`LaunchPlan::from_tag`], the tuner) may replace it per GPU and shape.
    ///
    /// Blocks are counted with the columns of `format`'s kernels ([`Schedule::for_rows`]).
    pub fn choose(format: &WeightFormat, m: usize, n: usize, k: usize, multiprocessors: usize) -> LaunchPlan {
        let block_m = match m {
            0..=BLOCK_M => BLOCK_M,
            _ if m <= DECODE_MAX_M => MEDIUM_BLOCK_M,
            _ => PREFILL_BLOCK_M,
        };
        LaunchPlan::choose_split(format, block_m, m, n, k, multiprocessors)
    }

    /// [`LaunchPlan::choose`]'s split for a given kernel (`block_m` rows per block): for a
    /// module with the 8-row kernel only ([`build_decode_module_for`]).
    pub fn choose_split(
        format: &WeightFormat,
        block_m: usize,
        m: usize,
        n: usize,
        k: usize,
        multiprocessors: usize,
    ) -> LaunchPlan {
        let columns = Schedule::for_rows(format, block_m).block_n;
        let tiles = n.div_ceil(columns).max(1) * m.div_ceil(block_m).max(1);
        let steps = k.div_ceil(BLOCK_K);
        let most_blocks = 8 * multiprocessors.max(1);
        let mut splits = 1;
        while splits < 8 && tiles * splits * 2 <= most_blocks && steps / (splits * 2) >= 8 {
            splits *= 2;
        }
        LaunchPlan { block_m, splits }
    }

    /// f32 values of the workspace the plan needs for an `m × n` output (0 without a split):
    /// `splits` slabs of M rounded up to [`SLAB_ALIGN_ROWS`] rows, by N.
    pub fn workspace_len(&self, m: usize, n: usize) -> usize {
        if self.splits > 1 { partial_rows(m, self.splits) * n } else { 0 }
    }

    /// Checks the ranges: rows per block 8, 16, 32 or 64; 1 to [`MAX_SPLITS`] splits.
    pub fn validate(&self) -> Result<(), FormatError> {
        if ![8, 16, 32, 64].contains(&self.block_m) || !(1..=MAX_SPLITS).contains(&self.splits) {
            return Err(FormatError::Plan(*self));
        }
        Ok(())
    }

    /// A short name: `m16k4` (`m64k1` without a split).
    pub fn tag(&self) -> String {
        format!("m{}k{}", self.block_m, self.splits)
    }

    /// Reads a [`LaunchPlan::tag`] back.
    pub fn from_tag(tag: &str) -> Option<LaunchPlan> {
        let (block_m, splits) = tag.strip_prefix('m')?.split_once('k')?;
        Some(LaunchPlan { block_m: block_m.parse().ok()?, splits: splits.parse().ok()? })
    }
}

/// Why a weight format or a problem shape is not supported.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The weight type is not a 1–8-bit integer or a float of at most 8 bits.
    #[error("weight type {0} is not supported: use u1…u8, i2…i8, or a float type of at most 8 bits")]
    WeightType(DType),
    /// The scale type is not f16/bf16/f32 or the activation type not f16/bf16.
    #[error("{what} type {dtype} is not supported: use {allowed}")]
    HalfType {
        /// The types allowed.
        allowed: &'static str,
        /// Which type.
        what: &'static str,
        /// The rejected type.
        dtype: DType,
    },
    /// Zero points were asked for a float weight type.
    #[error("zero points are for integer weight types, not {0}")]
    ZeroPointForFloat(DType),
    /// A lookup table whose size does not match the code type.
    #[error(
        "the lookup table {lut} has {entries} entries, but {weight} has {codes} codes: use u{bits} codes",
        entries = lut.len(),
        codes = weight.num_codes(),
        bits = lut.bits()
    )]
    LutCodes {
        /// The table.
        lut: Lut,
        /// The weight (code) type.
        weight: DType,
    },
    /// Zero points were asked for a lookup-table format.
    #[error("zero points are not supported with a lookup table ({0})")]
    ZeroPointForLut(Lut),
    /// The group size does not tile with the kernel's K step.
    #[error(
        "group size {0} is not supported: use a power of two from 16 up (it must divide or be divided by {BLOCK_K})"
    )]
    GroupSize(usize),
    /// K is not a multiple of the group size.
    #[error("K = {k} is not a multiple of the group size {group_size}")]
    KNotMultipleOfGroup {
        /// K.
        k: usize,
        /// The group size.
        group_size: usize,
    },
    /// A dimension is zero or too large for the kernel's 32-bit index arithmetic.
    #[error("{what} = {value} is outside 1..2^31")]
    Dimension {
        /// Which dimension.
        what: &'static str,
        /// Its value.
        value: usize,
    },
    /// A schedule out of range.
    #[error("schedule {0:?} is not supported: prefetch 0…8, unroll 1…16, block_m 8, 16, 32 or 64, block_n 64 or 128")]
    Schedule(Schedule),
    /// A launch plan out of range.
    #[error("launch plan {0:?} is not supported: block_m 8, 16, 32 or 64, splits 1…{MAX_SPLITS}")]
    Plan(LaunchPlan),
    /// Host data has the wrong length or a code out of range.
    #[error("{0}")]
    Data(String),
    /// The kernel could not be built (a bug in this generator if it ever happens).
    #[error("building the kernel failed: {0}")]
    Build(#[from] BuildError),
}

/// How a weight matrix is quantized, and the activation type it is multiplied with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WeightFormat {
    /// The type of one weight code (`uN` for a lookup-table format).
    pub weight: DType,
    /// The table `uN` codes decode through (a lookup-table format), or `None`: codes are
    /// values of `weight`.
    pub lut: Option<Lut>,
    /// Rows of W (along K) sharing one scale and zero point per column.
    pub group_size: usize,
    /// The scale type (f16, bf16 or f32); offsets have it too.
    pub scale: DType,
    /// Whether each group and column has an integer zero point (in the weight type).
    pub zero_point: bool,
    /// Whether each group and column has a float offset added after scaling (in the scale
    /// type): `w = (q − z)·s + o`.
    pub offset: bool,
    /// The type of x and y (f16 or bf16).
    pub activation: DType,
}

impl WeightFormat {
    /// Whether the dequantization is light enough (1-, 2- or 4-bit codes decoded by a cast,
    /// formed in the activation type) for every kernel to take two weight tiles per block
    /// without spilling: heavier formats' 16- and 64-row kernels reach 255 registers with two.
    pub fn is_light(&self) -> bool {
        self.lut.is_none() && !self.dequantizes_in_f32() && [1, 2, 4].contains(&self.weight.bits())
    }

    /// The lookup-table format of `lut` (its `uN` codes decode through the table), without zero
    /// points or offsets.
    pub fn with_lut(lut: Lut, group_size: usize, scale: DType, activation: DType) -> WeightFormat {
        WeightFormat {
            weight: lut.storage(),
            lut: Some(lut),
            group_size,
            scale,
            zero_point: false,
            offset: false,
            activation,
        }
    }

    /// Checks that the format is supported.
    pub fn validate(&self) -> Result<(), FormatError> {
        let bits = self.weight.bits();
        let weight_ok = match self.weight {
            DType::Uint(_) | DType::Int(_) => bits <= 8,
            DType::Float(_) => bits <= 8,
        };
        if !weight_ok {
            return Err(FormatError::WeightType(self.weight));
        }
        if ![DType::F16, DType::BF16, DType::F32].contains(&self.scale) {
            return Err(FormatError::HalfType { allowed: "f16, bf16 or f32", what: "scale", dtype: self.scale });
        }
        if self.activation != DType::F16 && self.activation != DType::BF16 {
            return Err(FormatError::HalfType { allowed: "f16 or bf16", what: "activation", dtype: self.activation });
        }
        if self.zero_point && self.weight.is_float() {
            return Err(FormatError::ZeroPointForFloat(self.weight));
        }
        if let Some(lut) = self.lut {
            if self.weight != lut.storage() {
                return Err(FormatError::LutCodes { lut, weight: self.weight });
            }
            if self.zero_point {
                return Err(FormatError::ZeroPointForLut(lut));
            }
        }
        if !self.group_size.is_power_of_two() || self.group_size < 16 || self.group_size > (1 << 30) {
            return Err(FormatError::GroupSize(self.group_size));
        }
        Ok(())
    }

    /// Checks a problem shape against the format.
    pub fn validate_shape(&self, m: usize, n: usize, k: usize) -> Result<(), FormatError> {
        self.validate()?;
        for (what, value) in [("M", m), ("N", n), ("K", k)] {
            if value == 0 || value >= 1 << 31 || value.saturating_mul(self.weight.bits() as usize) >= 1 << 31 {
                return Err(FormatError::Dimension { what, value });
            }
        }
        if !k.is_multiple_of(self.group_size) {
            return Err(FormatError::KNotMultipleOfGroup { k, group_size: self.group_size });
        }
        Ok(())
    }

    /// A kernel name that says the format: `lowbit_matmul_u4_g128_sf16_xf16` (+ `_zp` with zero
    /// points, `_off` with offsets); a lookup-table format names its table instead of the code
    /// type (`lowbit_matmul_iq4nl_g32_sf16_xf16`).
    pub fn kernel_name(&self) -> String {
        let clean = |d: DType| d.to_string().replace('_', "");
        format!(
            "lowbit_matmul_{}_g{}_s{}_x{}{}{}",
            self.lut.map_or_else(|| clean(self.weight), |l| l.name()),
            self.group_size,
            self.scale,
            self.activation,
            if self.zero_point { "_zp" } else { "" },
            if self.offset { "_off" } else { "" }
        )
    }

    /// Whether the kernel forms the weight in f32 (f32 scales, offsets, or a table with entries
    /// that are not values of the activation type; see the module doc).
    pub fn dequantizes_in_f32(&self) -> bool {
        self.scale == DType::F32 || self.offset || self.lut.is_some_and(|l| !l.exact_in(self.activation))
    }

    /// Scale rows one `BLOCK_K` step reads.
    fn scale_rows(&self) -> usize {
        (BLOCK_K / self.group_size).max(1)
    }
}

fn layout(expr: &str) -> Result<RegisterLayout, FormatError> {
    Ok(KernelBuilder::layout(expr)?)
}

/// Threads per block.
const THREADS: usize = WARPS as usize * 32;

/// The register layouts the kernel uses (128 threads).
struct Layouts {
    acc: RegisterLayout,
    x_loaded: RegisterLayout,
    x: RegisterLayout,
    weight_bytes: RegisterLayout,
    weight: RegisterLayout,
    group_rows: RegisterLayout,
}

/// The weight tile's layout, written transposed (`[N, K]`, then dims exchanged): exactly the
/// A operands of `mma.m16n8k16` for the transposed product `yᵀ = Wᵀ·xᵀ` — each warp 16
/// consecutive columns of W (N), 4 k16 steps; per thread the pairs (k, k+1), then column
/// n+8, then k+8, then the k16 step. The dequantized tile goes straight into the tensor
/// cores, with no exchange through shared memory.
const WEIGHT_LAYOUT_T: &str = "spatial(4,1).local(1,4).column_local(2,2).spatial(8,4).local(1,2)";

/// A layout written for the transposed tile (`[N, ·]`), with its dims exchanged.
fn transposed_layout(expr: &str) -> Result<RegisterLayout, FormatError> {
    layout(expr)?.transpose().map_err(|e| FormatError::Data(format!("transposing `{expr}`: {e}")))
}

/// The weight tile's layout (`[K, N]`, see [`WEIGHT_LAYOUT_T`]).
fn weight_layout() -> Result<RegisterLayout, FormatError> {
    transposed_layout(WEIGHT_LAYOUT_T)
}

impl Layouts {
    fn new(format: &WeightFormat, block_m: usize, block_n: usize) -> Result<Layouts, FormatError> {
        let bits = format.weight.bits() as usize;
        let rows = format.scale_rows();
        // The rows of y (and x) come in n8 tiles of the transposed product.
        let m8 = block_m / 8;
        // Packed weight tiles per block, side by side along N: the outermost mode of every
        // layout along N (each warp holds its 16 columns of every tile).
        let tiles = block_n / BLOCK_N;
        let per_tile = |inner: String| if tiles == 1 { inner } else { format!("local({tiles},1).{inner}") };
        Ok(Layouts {
            // The accumulator: the transposed product's C fragments, written transposed — each
            // warp its 16 columns, `m8` tiles of 8 rows; per thread rows (m, m+1) of column
            // n, then column n+8, then the row tile. The `dot` runs swapped (`xᵀ` as the B
            // operands): at decode sizes the few rows of x fill 8-row tiles, not 16.
            acc: transposed_layout(&per_tile(format!(
                "spatial(4,1).local(1,{m8}).local(2,1).spatial(8,4).local(1,2)"
            )))?,
            // x as loaded: per row, runs of `4·chunk` consecutive elements (16-byte loads for
            // groups of 64 and more), the same in every warp.
            x_loaded: layout(&format!(
                "replicated(4).local({m8},{}).spatial(8,4).local(1,{})",
                4 / k_chunk(format),
                4 * k_chunk(format)
            ))?,
            // x as the tensor cores read it: the same registers relabeled (a `view`), so that
            // slot s holds B-fragment element s of `xᵀ` — in k order σ (see `k_order`), which
            // the weights are packed in too. So each B operand (two registers: k pairs, then
            // k+8) is two neighbouring registers of one load.
            x: layout(&format!("replicated(4).local({m8},8).spatial(8,4).local(1,2)"))?,
            // A tile's packed codes: each thread's 32 codes are `4·bits` consecutive bytes (see
            // `QuantizedWeights::pack_weights`), one 16-byte load for 4-bit weights.
            weight_bytes: layout(&format!("local(1,{tiles}).spatial(1,{THREADS}).local(1,{})", 4 * bits))?,
            weight: transposed_layout(&per_tile(WEIGHT_LAYOUT_T.to_string()))?,
            // Group values: each thread holds its two columns' values (n and n+8) for every
            // group row of the step (the 4 threads of a column pair replicate them).
            group_rows: layout(&format!("local({rows},{tiles}).spatial(1,4).local(1,2).spatial(1,8).replicated(4)"))?,
        })
    }
}

/// k16 steps per chunk of the k order σ: 4 (the whole 64-row step) for groups of 64 and more,
/// else the group's k16 steps, so that σ never moves a row to another group.
pub fn k_chunk(format: &WeightFormat) -> usize {
    format.group_size.min(BLOCK_K) / 16
}

/// The k order σ within a `BLOCK_K` step: the tensor cores' row `r` of a step holds x's and
/// W's row `σ(r)`. A B fragment of xᵀ holds, per thread, k = 16·kt + 8·j + 2·t + i (t the thread
/// within its quad, kt the k16 step, j and i bits); σ sends the 4·chunk values a thread holds
/// per row and chunk of `chunk` k16 steps to consecutive rows, so x loads in runs of
/// 4·chunk elements. Summing over k in another order is the same sum: x and W agree.
/// `chunk` is [`k_chunk`]; the packed weights ([`QuantizedWeights::pack_weights`]) are in
/// this order.
pub fn k_order(chunk: usize, r: usize) -> usize {
    let (kt, j, t, i) = (r / 16, (r / 8) % 2, (r / 2) % 4, r % 2);
    let (chunk_index, kl) = (kt / chunk, kt % chunk);
    16 * chunk * chunk_index + 4 * chunk * t + 4 * kl + 2 * j + i
}

/// Bytes of one packed `BLOCK_K × BLOCK_N` weight tile.
fn tile_bytes(format: &WeightFormat) -> usize {
    BLOCK_K * BLOCK_N * format.weight.bits() as usize / 8
}

/// Builds the decode matmul kernel ([`BLOCK_M`] rows per block) for `format`. Its parameters: `x: ptr act`, `w: ptr u8`,
/// `s: ptr scale`, `z: ptr weight` (with zero points), `o: ptr scale` (with offsets),
/// `y: ptr act`, `p: ptr f32` (the workspace of a split, see [`LaunchPlan`]; any buffer,
/// even empty, when `splits` = 1), `m, n, k, splits: i32`; grid
/// `(cdiv(n, 128), cdiv(m, 8), splits)`, 4 warps.
pub fn build_kernel(format: &WeightFormat) -> Result<Kernel, FormatError> {
    build_kernel_for(format, None)
}

/// The byte alignment the low-bit matmul requires of every buffer.
pub const BUFFER_ALIGN: u32 = 16;

/// [`build_kernel`], specialized for an N known when compiling: the kernel also assumes that
/// `n` is a multiple of the largest power of two (at most 64) dividing `n`, so the vectorizer
/// can prove the weight, scale and output rows aligned. Launches with another `n` are refused.
pub fn build_kernel_for(format: &WeightFormat, known_n: Option<usize>) -> Result<Kernel, FormatError> {
    build_kernel_scheduled(format, known_n, Schedule::for_format(format))
}

/// [`build_kernel_for`] with a [`Schedule`] other than the default.
pub fn build_kernel_scheduled(
    format: &WeightFormat,
    known_n: Option<usize>,
    schedule: Schedule,
) -> Result<Kernel, FormatError> {
    format.validate()?;
    schedule.validate()?;
    let block_m = schedule.block_m;
    let i32 = DType::int(32).map_err(|e| FormatError::Data(e.to_string()))?;
    let u8 = DType::uint(8).map_err(|e| FormatError::Data(e.to_string()))?;
    let act = format.activation;
    let group = format.group_size as i64;
    let rows = format.scale_rows();
    let block_n = schedule.block_n;
    let layouts = Layouts::new(format, block_m, block_n)?;

    let mut k = KernelBuilder::new(matmul_kernel_name(format, block_m), WARPS);
    // Pointers first, then m, n, k, splits: their positions, for the buffer shapes.
    let pointers = 5 + usize::from(format.zero_point) + usize::from(format.offset);
    let (pm, pn, pk) = (GridExpr::Param(pointers), GridExpr::Param(pointers + 1), GridExpr::Param(pointers + 2));
    let psplits = GridExpr::Param(pointers + 3);
    let groups_expr = GridExpr::binary(GridOp::Div, pk.clone(), GridExpr::Const(format.group_size as u64));
    let tile_bytes = tile_bytes(format);
    // The weights as a [K steps, N tiles · tile bytes] byte matrix (see the module doc).
    let k_tiles_expr = GridExpr::cdiv(pk.clone(), GridExpr::Const(BLOCK_K as u64));
    let tile_row_expr = GridExpr::binary(
        GridOp::Mul,
        GridExpr::cdiv(pn.clone(), GridExpr::Const(BLOCK_N as u64)),
        GridExpr::Const(tile_bytes as u64),
    );
    let x = k.shaped_pointer_param("x", act, vec![pm.clone(), pk.clone()])?;
    let w = k.shaped_pointer_param("w", u8, vec![k_tiles_expr, tile_row_expr])?;
    let s = k.shaped_pointer_param("s", format.scale, vec![groups_expr.clone(), pn.clone()])?;
    let z = if format.zero_point {
        Some(k.shaped_pointer_param("z", format.weight, vec![groups_expr.clone(), pn.clone()])?)
    } else {
        None
    };
    let o = if format.offset {
        Some(k.shaped_pointer_param("o", format.scale, vec![groups_expr, pn.clone()])?)
    } else {
        None
    };
    // The outputs: y, and for a split of K the f32 partial sums (see `partial_view`).
    let y = k.shaped_pointer_param("y", act, vec![pm.clone(), pn.clone()])?;
    let p = k.shaped_pointer_param("p", DType::F32, vec![partial_rows_expr(pm, psplits.clone()), pn])?;
    let m = k.scalar_param("m", i32)?;
    let n = k.scalar_param("n", i32)?;
    let kk = k.scalar_param("k", i32)?;
    let splits = k.scalar_param("splits", i32)?;
    // What the vectorizer may rely on: K is whole groups (validate_shape checks it too), and
    // every buffer starts 16-byte aligned (as allocators give), so tile rows load as 128-bit
    // vectors without a run-time test.
    k.assume_multiple(kk, format.group_size as u64)?;
    assume_known_n(&mut k, n, known_n)?;
    for param in [Some(x), Some(w), Some(s), z, o, Some(y), Some(p)].into_iter().flatten() {
        k.align_param(param, BUFFER_ALIGN)?;
    }
    let grid_n = GridExpr::cdiv(k.grid_param(n)?, GridExpr::Const(block_n as u64));
    let grid_m = GridExpr::cdiv(k.grid_param(m)?, GridExpr::Const(block_m as u64));
    k.set_grid(vec![grid_n, grid_m, k.grid_param(splits)?]);

    // Tile origins.
    let bn = k.block_index(Axis::X)?;
    k.name(bn, "bn")?;
    let bm = k.block_index(Axis::Y)?;
    k.name(bm, "bm")?;
    let n0 = k.mul(bn, block_n as i64)?;
    let m0 = k.mul(bm, block_m as i64)?;
    k.name(n0, "n0")?;
    k.name(m0, "m0")?;
    // Views of the buffers.
    let xv = k.global_view(x, &[m.into(), kk.into()], Some(&[kk.into(), 1i64.into()]))?;
    k.name(xv, "xv")?;
    let k_tiles = k.binary(BinaryOp::CeilDiv, kk, BLOCK_K as i64)?;
    k.name(k_tiles, "k_tiles")?;
    let n_tiles = k.binary(BinaryOp::CeilDiv, n, BLOCK_N as i64)?;
    k.name(n_tiles, "n_tiles")?;
    let tile_row = k.mul(n_tiles, tile_bytes as i64)?;
    k.name(tile_row, "tile_row")?;
    let wv = k.global_view(w, &[k_tiles.into(), tile_row.into()], Some(&[tile_row.into(), 1i64.into()]))?;
    k.name(wv, "wv")?;
    let groups = k.binary(BinaryOp::Div, kk, group)?;
    k.name(groups, "groups")?;
    let sv = k.global_view(s, &[groups.into(), n.into()], Some(&[n.into(), 1i64.into()]))?;
    k.name(sv, "sv")?;
    let zv = match z {
        Some(z) => {
            let zv = k.global_view(z, &[groups.into(), n.into()], Some(&[n.into(), 1i64.into()]))?;
            Some(k.name(zv, "zv")?)
        }
        None => None,
    };
    let ov = match o {
        Some(o) => {
            let ov = k.global_view(o, &[groups.into(), n.into()], Some(&[n.into(), 1i64.into()]))?;
            Some(k.name(ov, "ov")?)
        }
        None => None,
    };
    // This block's part of K (whole steps; empty past K when there are more splits than
    // steps), and where its result goes: y without a split — whose view then has all M rows,
    // and the workspace none — or its slab of the workspace with a split (and y no rows).
    // The view with no rows masks every element of its store.
    let slab = k.block_index(Axis::Z)?;
    k.name(slab, "slab")?;
    let (pv, slab_rows, is_split) = partial_view(&mut k, p, m, n, splits)?;
    let not_split = k.binary(BinaryOp::Sub, 1i64, is_split)?;
    let y_rows = k.mul(m, not_split)?;
    k.name(y_rows, "y_rows")?;
    let yv = k.global_view(y, &[y_rows.into(), n.into()], Some(&[n.into(), 1i64.into()]))?;
    k.name(yv, "yv")?;
    let slab_start = k.mul(slab, slab_rows)?;
    let out_row = k.add(slab_start, m0)?;
    k.name(out_row, "out_row")?;
    let steps = k.binary(BinaryOp::CeilDiv, k_tiles, splits)?;
    let span = k.mul(steps, BLOCK_K as i64)?;
    k.name(span, "k_span")?;
    let k_begin = k.mul(slab, span)?;
    k.name(k_begin, "k_begin")?;
    let k_stop = k.add(k_begin, span)?;
    let k_end = k.binary(BinaryOp::Min, k_stop, kk)?;
    k.name(k_end, "k_end")?;
    // The block's weight tiles are adjacent in the byte row (N tiles inner).
    let block_bytes = tile_bytes * (block_n / BLOCK_N);
    let byte_col = k.mul(bn, block_bytes as i64)?;
    k.name(byte_col, "byte_col")?;

    let tile = |dtype: DType, shape: [usize; 2], l: &RegisterLayout| {
        RegisterTensorType::new(dtype, shape.to_vec(), Some(l.clone()))
    };
    let acc0 = k.fill(0.0, tile(DType::F32, [block_m, block_n], &layouts.acc))?;
    k.name(acc0, "acc0")?;
    // A step's inputs, loaded `schedule.prefetch` steps ahead of their use and carried through
    // the loop in registers, so that several steps' loads are in flight while the tensor cores
    // work (ptxas does not hoist loads across iterations by itself). Loads past K read zeros.
    let wide = format.dequantizes_in_f32();
    // The loaded values, in order: x tile, weight bytes, scales, then zero points and offsets
    // when the format has them. `suffix` tells the copies apart in the printed kernel.
    // When K is whole steps (groups of 64 and more), the 8- and 16-row kernels' loop loads
    // inside K (`inside`: no bounds test per step, only the loop-invariant ones along M and
    // N), because it clamps the step it prefetches to the block's last (re-reading it,
    // unused, in the last iterations). The 64-row kernel, whose many x rows keep many
    // loop-invariant row tests alive, measured no better with it and keeps the tests. With
    // groups of 32, a step may be half past K, where x must read zeros.
    let loads_inside_k = format.group_size.is_multiple_of(BLOCK_K) && block_m <= MEDIUM_BLOCK_M;
    let k_last = match loads_inside_k {
        true => {
            let last = k.sub(k_end, BLOCK_K as i64)?;
            Some(k.name(last, "k_last")?)
        }
        false => None,
    };
    // `inside_k`: the step is promised inside K (its loads test no bound along K).
    let load_step = |k: &mut KernelBuilder, k0: ValueId, suffix: &str, inside_k: bool| {
        let along = |dim: usize| if inside_k { vec![dim] } else { vec![] };
        let xa = k.load_global_inside(
            xv,
            &[m0.into(), k0.into()],
            tile(act, [block_m, BLOCK_K], &layouts.x_loaded),
            &along(1),
        )?;
        k.name(xa, &format!("x_tile{suffix}"))?;
        let kt = k.binary(BinaryOp::Div, k0, BLOCK_K as i64)?;
        k.name(kt, &format!("kt{suffix}"))?;
        let bytes = k.load_global_inside(
            wv,
            &[kt.into(), byte_col.into()],
            tile(u8, [1, block_bytes], &layouts.weight_bytes),
            &along(0),
        )?;
        k.name(bytes, &format!("w_bytes{suffix}"))?;
        let g0 = k.binary(BinaryOp::Div, k0, group)?;
        k.name(g0, &format!("g{suffix}"))?;
        let mut loaded = vec![xa, bytes];
        let group_views = [
            Some((sv, format.scale, "s_row")),
            zv.map(|v| (v, format.weight, "z_row")),
            ov.map(|v| (v, format.scale, "o_row")),
        ];
        for (view, dtype, name) in group_views.into_iter().flatten() {
            let t = k.load_global_inside(
                view,
                &[g0.into(), n0.into()],
                tile(dtype, [rows, block_n], &layouts.group_rows),
                &along(0),
            )?;
            loaded.push(k.name(t, &format!("{name}{suffix}"))?);
        }
        Ok::<_, BuildError>(loaded)
    };
    // The step's arithmetic on loaded inputs: dequantize, scale, multiply-accumulate.
    let compute_step = |k: &mut KernelBuilder, acc: ValueId, inputs: &[ValueId]| -> Result<ValueId, BuildError> {
        let mut inputs = inputs.iter().copied();
        let mut next = || inputs.next().ok_or_else(|| BuildError::Invalid("a step's loaded values are missing".into()));
        let (x_loaded, bytes, s_row) = (next()?, next()?, next()?);
        let xa = k.view(x_loaded, tile(act, [block_m, BLOCK_K], &layouts.x))?;
        k.name(xa, "x_frag")?;
        let z_row = if format.zero_point { Some(next()?) } else { None };
        let o_row = if format.offset { Some(next()?) } else { None };
        let q = k.view(bytes, tile(format.weight, [BLOCK_K, block_n], &layouts.weight))?;
        k.name(q, "q")?;
        // The weight is formed in f32 for f32 scales and offsets, else in the activation type.
        let compute = if wide { DType::F32 } else { act };
        // The decode: a table lookup for lookup-table formats (exact: the entries are values
        // of `compute`), else a cast (exact for every supported type).
        let mut wf = match format.lut {
            Some(lut) => k.lookup(q, lut.literals(), compute)?,
            None => k.cast(q, compute)?,
        };
        k.name(wf, "qf")?;
        // Group values broadcast over the group's rows, in `compute`.
        let broadcast = |k: &mut KernelBuilder, row: ValueId, dtype: DType, name: &str| {
            let mut b = k.broadcast(row, tile(dtype, [BLOCK_K, block_n], &layouts.weight))?;
            if dtype != compute {
                b = k.cast(b, compute)?;
            }
            k.name(b, name)
        };
        if let Some(z_row) = z_row {
            let zf = broadcast(k, z_row, format.weight, "zf")?;
            wf = k.binary(BinaryOp::Sub, wf, zf)?;
            k.name(wf, "q_centered")?;
        }
        let sb = broadcast(k, s_row, format.scale, "scale")?;
        let mut wd = k.mul(wf, sb)?;
        if let Some(o_row) = o_row {
            k.name(wd, "w_scaled")?;
            let ob = broadcast(k, o_row, format.scale, "offset")?;
            wd = k.binary(BinaryOp::Add, wd, ob)?;
        }
        if wide {
            k.name(wd, "w_f32")?;
            wd = k.cast(wd, act)?;
        }
        k.name(wd, "w_tile")?;
        let next = k.dot(xa, wd, acc)?;
        k.name(next, "acc_out")
    };
    let mut inits = vec![Operand::Value(acc0)];
    for step in 0..schedule.prefetch {
        let k0 = k.add(k_begin, (step * BLOCK_K) as i64)?;
        k.name(k0, &format!("k_prefetch{step}"))?;
        inits.extend(load_step(&mut k, k0, &format!("_{step}"), false)?.into_iter().map(Operand::Value));
    }
    let per_step = inits.len().saturating_sub(1) / schedule.prefetch.max(1);
    let body = |k: &mut KernelBuilder, k0: ValueId, carried: &[ValueId]| {
        k.name(k0, "k0")?;
        let acc = k.name(carried[0], "acc_in")?;
        // The queue of prefetched steps: `<input>_q<j>` is step k0 + j·64's.
        let input_names = ["x_tile", "w_bytes", "s_row"]
            .into_iter()
            .chain(format.zero_point.then_some("z_row"))
            .chain(format.offset.then_some("o_row"));
        for (j, queued) in carried[1..].chunks(per_step.max(1)).enumerate() {
            for (&value, name) in queued.iter().zip(input_names.clone()) {
                k.name(value, &format!("{name}_q{j}"))?;
            }
        }
        if schedule.prefetch == 0 {
            let inputs = load_step(k, k0, "", loads_inside_k)?;
            return Ok(vec![Operand::Value(compute_step(k, acc, &inputs)?)]);
        }
        let mut ahead = k.add(k0, (schedule.prefetch * BLOCK_K) as i64)?;
        k.name(ahead, "k_ahead")?;
        if let Some(k_last) = k_last {
            // The block's last step at most (k0 is a step of the block, so that is one too).
            ahead = k.binary(BinaryOp::Min, ahead, k_last)?;
            k.name(ahead, "k_fetch")?;
        }
        let fetched = load_step(k, ahead, "_ahead", loads_inside_k)?;
        let next = compute_step(k, acc, &carried[1..1 + per_step])?;
        // The queue moves up by one step: drop the used inputs, append the fetched ones.
        let mut yields = vec![Operand::Value(next)];
        yields.extend(carried[1 + per_step..].iter().chain(&fetched).map(|&v| Operand::Value(v)));
        Ok(yields)
    };
    let results = k.for_range(k_begin, k_end, BLOCK_K as i64, Some(schedule.unroll), &inits, body)?;
    let acc = results[0];
    k.name(acc, "acc")?;
    // Partial sums stay f32 (the reduction kernel rounds their total once); y gets the
    // rounded tile. One of the two views has no rows, so one of the stores writes nothing.
    k.store_global(acc, pv, &[out_row.into(), n0.into()])?;
    let out = k.cast(acc, act)?;
    k.name(out, "y_tile")?;
    k.store_global(out, yv, &[m0.into(), n0.into()])?;
    Ok(k.finish())
}

/// The name of `format`'s matmul kernel with `block_m` rows per block: the format's
/// [`WeightFormat::kernel_name`] for [`BLOCK_M`] rows, with `_m16`, `_m32` or `_m64` appended
/// for more.
pub fn matmul_kernel_name(format: &WeightFormat, block_m: usize) -> String {
    match block_m {
        BLOCK_M => format.kernel_name(),
        _ => format!("{}_m{block_m}", format.kernel_name()),
    }
}

/// The name of `format`'s reduction kernel: `<kernel name>_reduce`.
pub fn reduce_kernel_name(format: &WeightFormat) -> String {
    format!("{}_reduce", format.kernel_name())
}

/// Rows of the partial-sum workspace `p` of a split of K in `splits`: `splits` slabs of M
/// rounded up to [`SLAB_ALIGN_ROWS`] (by N columns, f32). The kernels' view of it has no rows
/// when `splits` is 1.
pub fn partial_rows(m: usize, splits: usize) -> usize {
    m.div_ceil(SLAB_ALIGN_ROWS) * SLAB_ALIGN_ROWS * splits
}

/// The view of the partial-sum workspace `p` (the matmul and the reduction read it the same
/// way) — [`partial_rows`] rows, none without a split — the rows of one slab, and 1 for a
/// split, 0 without.
fn partial_view(
    k: &mut KernelBuilder,
    p: ValueId,
    m: ValueId,
    n: ValueId,
    splits: ValueId,
) -> Result<(ValueId, ValueId, ValueId), FormatError> {
    let m_blocks = k.binary(BinaryOp::CeilDiv, m, SLAB_ALIGN_ROWS as i64)?;
    let slab_rows = k.mul(m_blocks, SLAB_ALIGN_ROWS as i64)?;
    k.name(slab_rows, "slab_rows")?;
    let beyond_one = k.binary(BinaryOp::Sub, splits, 1i64)?;
    let is_split = k.binary(BinaryOp::Min, beyond_one, 1i64)?;
    k.name(is_split, "is_split")?;
    let slabs = k.mul(splits, is_split)?;
    let rows = k.mul(slab_rows, slabs)?;
    k.name(rows, "p_rows")?;
    let pv = k.global_view(p, &[rows.into(), n.into()], Some(&[n.into(), 1i64.into()]))?;
    k.name(pv, "pv")?;
    Ok((pv, slab_rows, is_split))
}

/// [`partial_rows`] as a grid expression of the parameters `m` and `splits` (none without a
/// split), for the manifest's shape of `p`.
fn partial_rows_expr(m: GridExpr, splits: GridExpr) -> GridExpr {
    let slab = GridExpr::binary(
        GridOp::Mul,
        GridExpr::cdiv(m, GridExpr::Const(SLAB_ALIGN_ROWS as u64)),
        GridExpr::Const(SLAB_ALIGN_ROWS as u64),
    );
    let is_split = GridExpr::binary(
        GridOp::Min,
        GridExpr::binary(GridOp::Sub, splits.clone(), GridExpr::Const(1)),
        GridExpr::Const(1),
    );
    GridExpr::binary(GridOp::Mul, slab, GridExpr::binary(GridOp::Mul, splits, is_split))
}

/// The reduction kernel of a split of K ([`LaunchPlan::splits`] > 1): `y = act(p₀ + p₁ + …)`,
/// adding the `splits` slabs of partial sums in order in f32 and rounding once. Parameters
/// `p: ptr f32`, `y: ptr act`, `m, n, splits: i32`; grid `(cdiv(n, 64), cdiv(m, 16))`,
/// 4 warps. One serves every matmul kernel of the format (slabs do not depend on the rows
/// per block).
pub fn build_reduce_kernel(format: &WeightFormat, known_n: Option<usize>) -> Result<Kernel, FormatError> {
    format.validate()?;
    let i32 = DType::int(32).map_err(|e| FormatError::Data(e.to_string()))?;
    let act = format.activation;
    let mut k = KernelBuilder::new(reduce_kernel_name(format), WARPS);
    let (pm, pn, psplits) = (GridExpr::Param(2), GridExpr::Param(3), GridExpr::Param(4));
    let p = k.shaped_pointer_param("p", DType::F32, vec![partial_rows_expr(pm.clone(), psplits), pn.clone()])?;
    let y = k.shaped_pointer_param("y", act, vec![pm, pn])?;
    let m = k.scalar_param("m", i32)?;
    let n = k.scalar_param("n", i32)?;
    let splits = k.scalar_param("splits", i32)?;
    assume_known_n(&mut k, n, known_n)?;
    k.align_param(p, BUFFER_ALIGN)?;
    k.align_param(y, BUFFER_ALIGN)?;
    let grid_n = GridExpr::cdiv(k.grid_param(n)?, GridExpr::Const(BLOCK_N as u64));
    let grid_m = GridExpr::cdiv(k.grid_param(m)?, GridExpr::Const(REDUCE_ROWS as u64));
    k.set_grid(vec![grid_n, grid_m]);
    let bn = k.block_index(Axis::X)?;
    let bm = k.block_index(Axis::Y)?;
    let n0 = k.mul(bn, BLOCK_N as i64)?;
    k.name(n0, "n0")?;
    let m0 = k.mul(bm, REDUCE_ROWS as i64)?;
    k.name(m0, "m0")?;
    let (pv, slab_rows, _) = partial_view(&mut k, p, m, n, splits)?;
    let yv = k.global_view(y, &[m.into(), n.into()], Some(&[n.into(), 1i64.into()]))?;
    k.name(yv, "yv")?;
    // Each thread adds 8 consecutive columns of one row: 32-byte runs.
    let l = layout(&format!("spatial({REDUCE_ROWS},{}).local(1,4)", THREADS / REDUCE_ROWS))?;
    let tile = RegisterTensorType::new(DType::F32, vec![REDUCE_ROWS, BLOCK_N], Some(l));
    // Blocks of `REDUCE_ROWS` rows never cross a slab: slabs are whole multiples of 64 rows.
    let first = k.load_global(pv, &[m0.into(), n0.into()], tile.clone())?;
    k.name(first, "sum0")?;
    let body = |k: &mut KernelBuilder, slab: ValueId, carried: &[ValueId]| {
        k.name(slab, "slab")?;
        let start = k.mul(slab, slab_rows)?;
        let row = k.add(start, m0)?;
        let part = k.load_global(pv, &[row.into(), n0.into()], tile.clone())?;
        k.name(part, "part")?;
        let total = k.add(carried[0], part)?;
        Ok(vec![Operand::Value(k.name(total, "sum")?)])
    };
    let total = k.for_range(1i64, splits, 1, None, &[Operand::Value(first)], body)?[0];
    k.name(total, "total")?;
    let out = k.cast(total, act)?;
    k.name(out, "y_tile")?;
    k.store_global(out, yv, &[m0.into(), n0.into()])?;
    Ok(k.finish())
}

/// Lets the vectorizer rely on N's power-of-two factor (at most 64) when N is known.
fn assume_known_n(k: &mut KernelBuilder, n: ValueId, known_n: Option<usize>) -> Result<(), FormatError> {
    if let Some(n_value) = known_n.filter(|&v| v > 0) {
        let divisor = 1u64 << n_value.trailing_zeros().min(6);
        if divisor > 1 {
            k.assume_multiple(n, divisor)?;
        }
    }
    Ok(())
}

/// Rows per block of the reduction kernel: those of the smallest matmul block, so that it
/// reads only rows some matmul block wrote (each writes all its rows, past M with zeros) —
/// the workspace comes unzeroed.
const REDUCE_ROWS: usize = BLOCK_M;

/// The module a layer of `format` runs: the 8-row matmul kernel ([`Schedule::for_format`]),
/// the 16-row one ([`Schedule::medium_for`]), the 64-row one ([`Schedule::prefill_for`]) and
/// the reduction kernel of a split of K, with the layouts named for readable printing.
/// [`LaunchPlan::choose`] picks among them per launch; [`run_plan`] runs a plan on the
/// interpreter.
pub fn build_module(format: &WeightFormat) -> Result<Module, FormatError> {
    build_module_for(format, None)
}

/// The decode part of [`build_module_for`]: the 8-row matmul kernel and the reduction — what
/// a JIT-compiled layer compiles first (the kernels for more rows would triple the compile;
/// see `LinearOptions::prefill_kernel` in the `anybit` crate). Every M runs on it, just
/// without the larger kernels' reuse of each dequantized tile.
pub fn build_decode_module_for(format: &WeightFormat, n: Option<usize>) -> Result<Module, FormatError> {
    let decode = Schedule::for_format(format);
    let kernels = vec![build_kernel_scheduled(format, n, decode)?, build_reduce_kernel(format, n)?];
    module_with_layouts(format, decode, kernels)
}

/// The rest of [`build_module_for`]: the 16- and 64-row matmul kernels (what a JIT-compiled
/// layer compiles in the background, see `LinearOptions::prefill_kernel` in the `anybit`
/// crate).
pub fn build_prefill_module_for(format: &WeightFormat, n: Option<usize>) -> Result<Module, FormatError> {
    let (medium, prefill) = (Schedule::medium_for(format), Schedule::prefill_for(format));
    let kernels = vec![build_kernel_scheduled(format, n, medium)?, build_kernel_scheduled(format, n, prefill)?];
    module_with_layouts(format, prefill, kernels)
}

/// [`build_module`] specialized for a known N (see [`build_kernel_for`]).
pub fn build_module_for(format: &WeightFormat, n: Option<usize>) -> Result<Module, FormatError> {
    let decode = Schedule::for_format(format);
    let kernels = vec![
        build_kernel_scheduled(format, n, decode)?,
        build_kernel_scheduled(format, n, Schedule::medium_for(format))?,
        build_kernel_scheduled(format, n, Schedule::prefill_for(format))?,
        build_reduce_kernel(format, n)?,
    ];
    module_with_layouts(format, decode, kernels)
}

/// A module of one matmul kernel with `schedule` and the reduction kernel (for comparing
/// schedules: run it with [`run_plan`] and a plan of the schedule's rows per block).
pub fn build_module_scheduled(
    format: &WeightFormat,
    n: Option<usize>,
    schedule: Schedule,
) -> Result<Module, FormatError> {
    let kernels = vec![build_kernel_scheduled(format, n, schedule)?, build_reduce_kernel(format, n)?];
    module_with_layouts(format, schedule, kernels)
}

/// `kernels` in a module with the layouts of the kernel of `schedule` named.
fn module_with_layouts(format: &WeightFormat, schedule: Schedule, kernels: Vec<Kernel>) -> Result<Module, FormatError> {
    use anybit_ir::program::{LayoutDef, NamedLayout};
    let layouts = Layouts::new(format, schedule.block_m, schedule.block_n)?;
    let named = [
        ("acc", layouts.acc),
        ("x_loaded", layouts.x_loaded),
        ("x_frag", layouts.x),
        ("w_bytes", layouts.weight_bytes),
        ("w_tile", layouts.weight),
        ("group_rows", layouts.group_rows),
    ];
    Ok(Module {
        layouts: named
            .into_iter()
            .map(|(name, l)| NamedLayout { name: name.into(), layout: LayoutDef::Register(l), span: None })
            .collect(),
        kernels,
    })
}

/// Runs `plan` for `y = x · dequant(W)` on the interpreter with the kernels of `module` (a
/// [`build_module`] or [`build_module_scheduled`] module, possibly after passes, or read back
/// from its printed source): the matmul kernel of the plan's rows per block, then with a
/// split the reduction. `x` is M × K activation codes; returns y (M × N).
pub fn run_plan(
    module: &Module,
    packed: &PackedWeights,
    x: &Buffer,
    m: usize,
    plan: LaunchPlan,
    options: &anybit_ir::interp::RunOptions,
) -> Result<Buffer, PlanError> {
    use anybit_ir::interp::{Arg, run_kernel};
    let format = &packed.format;
    plan.validate()?;
    format.validate_shape(m, packed.n, packed.k)?;
    let (n, k) = (packed.n, packed.k);
    if x.dtype() != format.activation || x.len() != m * k {
        return Err(FormatError::Data(format!(
            "x: {} elements of {}, expected {} of {}",
            x.len(),
            x.dtype(),
            m * k,
            format.activation
        ))
        .into());
    }
    let find = |name: String| match module.kernels.iter().find(|kernel| kernel.name == name) {
        Some(kernel) => Ok(kernel),
        None => Err(PlanError::MissingKernel(name)),
    };
    let matmul = find(matmul_kernel_name(format, plan.block_m))?;
    let data = |e: anybit_ir::packing::PackError| FormatError::Data(e.to_string());
    let y = Buffer::zeros(format.activation, m * n).map_err(data)?;
    let p = Buffer::zeros(DType::F32, plan.workspace_len(m, n)).map_err(data)?;
    let mut args = vec![Arg::Buffer(x.clone())];
    args.extend(packed.buffers().into_iter().map(|(_, b)| Arg::Buffer(b.clone())));
    args.extend([Arg::Buffer(y), Arg::Buffer(p)]);
    let sizes = [m, n, k, plan.splits].map(|v| Arg::Int(v as i64));
    args.extend(sizes);
    run_kernel(matmul, &mut args, options)?;
    // y and p follow x and the weight buffers.
    args.truncate(args.len() - 4);
    let (Some(Arg::Buffer(p)), Some(Arg::Buffer(y))) = (args.pop(), args.pop()) else {
        return Err(FormatError::Data("the matmul's outputs are missing".into()).into());
    };
    if plan.splits == 1 {
        return Ok(y);
    }
    let reduce = find(reduce_kernel_name(format))?;
    let mut args = vec![Arg::Buffer(p), Arg::Buffer(y), Arg::Int(m as i64), Arg::Int(n as i64)];
    args.push(Arg::Int(plan.splits as i64));
    run_kernel(reduce, &mut args, options)?;
    match args.swap_remove(1) {
        Arg::Buffer(y) => Ok(y),
        _ => Err(FormatError::Data("the reduction's output is missing".into()).into()),
    }
}

/// Why [`run_plan`] failed.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The format, the shape, the plan or x is not valid.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The module lacks a kernel the plan needs.
    #[error("the module has no kernel `{0}`")]
    MissingKernel(String),
    /// The interpreter failed.
    #[error(transparent)]
    Interpreter(#[from] anybit_ir::interp::InterpError),
}

/// The grid of `format`'s layer-module matmul kernel with `plan.block_m` rows per block (of
/// [`Schedule::for_rows`]'s columns) for an `m × n` output with `plan`.
pub fn grid(format: &WeightFormat, m: usize, n: usize, plan: LaunchPlan) -> [usize; 3] {
    let columns = Schedule::for_rows(format, plan.block_m).block_n;
    [n.div_ceil(columns), m.div_ceil(plan.block_m), plan.splits]
}

/// The parameter values `m, n, k, splits` as grid-expression inputs, by parameter position.
pub fn grid_inputs(kernel: &Kernel, m: usize, n: usize, k: usize, splits: usize) -> Vec<Option<i64>> {
    kernel
        .params
        .iter()
        .map(|p| match p.name.as_str() {
            "m" => Some(m as i64),
            "n" => Some(n as i64),
            "k" => Some(k as i64),
            "splits" => Some(splits as i64),
            _ => None,
        })
        .collect()
}

/// Evaluates the kernel's grid for a problem shape and split (a check that the generated grid
/// expressions mean what [`grid`] says).
pub fn eval_grid(kernel: &Kernel, m: usize, n: usize, k: usize, splits: usize) -> Option<Vec<u64>> {
    let inputs = grid_inputs(kernel, m, n, k, splits);
    kernel.grid.iter().map(|g| g.eval(&inputs).ok()).collect()
}

/// Quantized weights in canonical host form: codes `q` (K × N), scales, zero points and
/// offsets (K/G × N), all row-major; codes and zero points are codes of the weight type,
/// scales and offsets codes of the scale type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuantizedWeights {
    /// The format.
    pub format: WeightFormat,
    /// Rows of W.
    pub k: usize,
    /// Columns of W.
    pub n: usize,
    /// Weight codes, K × N.
    pub codes: Vec<u32>,
    /// Scale codes, K/G × N.
    pub scales: Vec<u32>,
    /// Zero-point codes, K/G × N (empty without zero points).
    pub zeros: Vec<u32>,
    /// Offset codes, K/G × N (empty without offsets).
    pub offsets: Vec<u32>,
}

impl QuantizedWeights {
    /// Checks lengths and code ranges (formats without offsets; see
    /// [`QuantizedWeights::with_offsets`]).
    pub fn new(
        format: WeightFormat,
        k: usize,
        n: usize,
        codes: Vec<u32>,
        scales: Vec<u32>,
        zeros: Vec<u32>,
    ) -> Result<QuantizedWeights, FormatError> {
        QuantizedWeights::with_offsets(format, k, n, codes, scales, zeros, Vec::new())
    }

    /// [`QuantizedWeights::new`] with offsets (K/G × N codes of the scale type; empty for a
    /// format without offsets).
    pub fn with_offsets(
        format: WeightFormat,
        k: usize,
        n: usize,
        codes: Vec<u32>,
        scales: Vec<u32>,
        zeros: Vec<u32>,
        offsets: Vec<u32>,
    ) -> Result<QuantizedWeights, FormatError> {
        let weights = QuantizedWeights { format, k, n, codes, scales, zeros, offsets };
        weights.validate()?;
        Ok(weights)
    }

    /// Checks the format, the shape, the lengths and the code ranges (what [`QuantizedWeights::new`]
    /// checks, for values built field by field).
    pub fn validate(&self) -> Result<(), FormatError> {
        let (format, k, n) = (self.format, self.k, self.n);
        format.validate_shape(1, n, k)?;
        let groups = k / format.group_size;
        let expect = |what: &str, got: usize, want: usize| {
            if got == want { Ok(()) } else { Err(FormatError::Data(format!("{what}: {got} values, expected {want}"))) }
        };
        expect("weight codes", self.codes.len(), k * n)?;
        expect("scales", self.scales.len(), groups * n)?;
        expect("zero points", self.zeros.len(), if format.zero_point { groups * n } else { 0 })?;
        expect("offsets", self.offsets.len(), if format.offset { groups * n } else { 0 })?;
        let limit = |d: DType| d.num_codes();
        for (what, values, dtype) in [
            ("weight code", &self.codes, format.weight),
            ("scale", &self.scales, format.scale),
            ("zero point", &self.zeros, format.weight),
            ("offset", &self.offsets, format.scale),
        ] {
            if let Some((i, c)) = values.iter().enumerate().find(|(_, c)| u64::from(**c) >= limit(dtype)) {
                return Err(FormatError::Data(format!("{what} {i} is {c:#x}, not a code of {dtype}")));
            }
        }
        Ok(())
    }

    /// Random quantized weights of `format` (for tests, examples and benchmarks): codes drawn
    /// uniformly from the weight type's finite codes (every code of a lookup-table format),
    /// scales uniform in [0.25, 1) divided by the type's (or table's) largest magnitude (so
    /// |w| ≲ 1 for every type), zero points any finite code, offsets uniform in [−0.5, 0.5).
    pub fn random(
        format: WeightFormat,
        k: usize,
        n: usize,
        rng: &mut SplitMix64,
    ) -> Result<QuantizedWeights, FormatError> {
        format.validate_shape(1, n, k)?;
        let finite: Vec<u32> = (0..format.weight.num_codes() as u32)
            .filter(|&c| format.lut.is_some() || format.weight.decode(c).is_ok_and(|v| v.finite().is_some()))
            .collect();
        let code = |rng: &mut SplitMix64| finite[rng.below(finite.len() as u64) as usize];
        let groups = k / format.group_size;
        let max = match format.lut {
            Some(lut) => lut.max_abs(),
            None => format.weight.max().to_f64().unwrap_or(1.0),
        }
        .max(1.0);
        let codes = (0..k * n).map(|_| code(rng)).collect();
        let scales = (0..groups * n).map(|_| format.scale.encode(rng.uniform(0.25, 1.0) / max)).collect();
        let zeros = if format.zero_point { (0..groups * n).map(|_| code(rng)).collect() } else { vec![] };
        let offsets = if format.offset {
            (0..groups * n).map(|_| format.scale.encode(rng.uniform(-0.5, 0.5))).collect()
        } else {
            vec![]
        };
        QuantizedWeights::with_offsets(format, k, n, codes, scales, zeros, offsets)
    }

    /// The buffers the kernel reads (`w`, `s`, and `z` with zero points), in its layout.
    pub fn pack(&self) -> Result<PackedWeights, FormatError> {
        let data = |e: anybit_ir::packing::PackError| FormatError::Data(e.to_string());
        let bytes = self.pack_weights()?;
        let w = Buffer::from_bytes(u8_type()?, bytes.len(), bytes).map_err(data)?;
        let s = Buffer::from_codes(self.format.scale, &self.scales).map_err(data)?;
        let z = match self.format.zero_point {
            true => Some(Buffer::from_codes(self.format.weight, &self.zeros).map_err(data)?),
            false => None,
        };
        let o = match self.format.offset {
            true => Some(Buffer::from_codes(self.format.scale, &self.offsets).map_err(data)?),
            false => None,
        };
        Ok(PackedWeights { format: self.format, k: self.k, n: self.n, w, s, z, o })
    }

    /// Bytes per row of the row-major packing ([`QuantizedWeights::pack_rows`]).
    pub fn row_bytes(&self) -> usize {
        (self.n * self.format.weight.bits() as usize).div_ceil(8)
    }

    /// The codes as K rows of packed bit streams, each padded to whole bytes
    /// ([`QuantizedWeights::row_bytes`]): the simplest layout, which hand-written kernels such
    /// as `examples/lowbit_matmul_u4_g128.abk` read. The generated kernel reads
    /// [`QuantizedWeights::pack_weights`] instead.
    pub fn pack_rows(&self) -> Result<Vec<u8>, FormatError> {
        let bits = self.format.weight.bits();
        let row_bytes = self.row_bytes();
        let mut bytes = Vec::with_capacity(row_bytes * self.k);
        for row in self.codes.chunks(self.n.max(1)) {
            let packed = PackedBits::from_codes(bits, row).map_err(|e| FormatError::Data(e.to_string()))?;
            let mut row_bytes_vec = packed.into_bytes();
            row_bytes_vec.resize(row_bytes, 0);
            bytes.extend(row_bytes_vec);
        }
        Ok(bytes)
    }

    /// The packed weight buffer `w` the generated kernel reads: `BLOCK_K × BLOCK_N` tiles,
    /// K steps outer and N tiles inner, each tile thread by thread and each thread's codes in
    /// the order its registers hold them (the weight layout's slots), as one bit stream. Tiles
    /// sticking out of K or N are padded with code 0 (the kernel's zero scales there make
    /// those weights 0).
    pub fn pack_weights(&self) -> Result<Vec<u8>, FormatError> {
        let (k, n) = (self.k, self.n);
        let layout = weight_layout()?;
        // Where each code of a tile comes from, in stream order: (row, column) in the tile.
        let mut order = Vec::with_capacity(BLOCK_K * BLOCK_N);
        for thread in 0..layout.num_threads() {
            for slot in 0..layout.num_slots() {
                let c = layout.map(thread, slot).map_err(|e| FormatError::Data(e.to_string()))?;
                order.push((c[0], c[1]));
            }
        }
        let chunk = k_chunk(&self.format);
        let (k_tiles, n_tiles) = (k.div_ceil(BLOCK_K), n.div_ceil(BLOCK_N));
        let mut stream = Vec::with_capacity(k_tiles * n_tiles * order.len());
        for kt in 0..k_tiles {
            for nt in 0..n_tiles {
                stream.extend(order.iter().map(|&(r, c)| {
                    let (row, col) = (kt * BLOCK_K + k_order(chunk, r), nt * BLOCK_N + c);
                    if row < k && col < n { self.codes[row * n + col] } else { 0 }
                }));
            }
        }
        let packed =
            PackedBits::from_codes(self.format.weight.bits(), &stream).map_err(|e| FormatError::Data(e.to_string()))?;
        Ok(packed.into_bytes())
    }

    /// The dequantized weight `[k][n]` exactly as the kernel forms it: `(q − z) · s` (q the
    /// table entry of the code, for a lookup-table format), with the scale first rounded to the
    /// activation type and the product rounded to it once; or, for formats that dequantize in
    /// f32, `(q − z) · s` rounded to f32, plus `o`, rounded to f32
    /// (an f32 sum computed in f64 and rounded once is the f32 sum: 53 ≥ 2·24 + 2), rounded to
    /// the activation type.
    pub fn dequantized(&self, k: usize, n: usize) -> f64 {
        let f = &self.format;
        let decode = |d: DType, c: u32| match d.float_format() {
            Some(format) => numeric::decode_float(format, c).unwrap_or(f64::NAN),
            None => d.decode_f64(c).unwrap_or(f64::NAN),
        };
        let group = k / f.group_size;
        let code = self.codes[k * self.n + n];
        let q = match f.lut {
            Some(lut) => lut.value(code).map_or(f64::NAN, f64::from),
            None => decode(f.weight, code),
        };
        let z = if f.zero_point { decode(f.weight, self.zeros[group * self.n + n]) } else { 0.0 };
        let scale = decode(f.scale, self.scales[group * self.n + n]);
        if f.dequantizes_in_f32() {
            // (q − z)·s is exact in f64: at most 9 bits (or a table's 24) times 24.
            let scaled = round_to(DType::F32, (q - z) * scale);
            let offset = if f.offset { decode(f.scale, self.offsets[group * self.n + n]) } else { 0.0 };
            return round_to(f.activation, round_to(DType::F32, scaled + offset));
        }
        let scale = round_to(f.activation, scale);
        round_to(f.activation, (q - z) * scale)
    }
}

fn u8_type() -> Result<DType, FormatError> {
    DType::uint(8).map_err(|e| FormatError::Data(e.to_string()))
}

/// Quantized weights re-packed into the buffers the kernel reads (see the module doc): `w`
/// (bytes, the 64 × 64 tiles of [`QuantizedWeights::pack_weights`]), `s` (scales, K/G × N),
/// `z` (zero points, K/G × N, with zero points only) and `o` (offsets, K/G × N, with offsets
/// only). This is what an import stores and a layer uploads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedWeights {
    /// The format.
    pub format: WeightFormat,
    /// Rows of W.
    pub k: usize,
    /// Columns of W.
    pub n: usize,
    /// The packed weight rows.
    pub w: Buffer,
    /// The scales.
    pub s: Buffer,
    /// The zero points.
    pub z: Option<Buffer>,
    /// The offsets.
    pub o: Option<Buffer>,
}

impl PackedWeights {
    /// The buffers the kernel reads, by parameter name, in launch order.
    pub fn buffers(&self) -> Vec<(&'static str, &Buffer)> {
        let mut buffers = vec![("w", &self.w), ("s", &self.s)];
        buffers.extend(self.z.iter().map(|z| ("z", z)));
        buffers.extend(self.o.iter().map(|o| ("o", o)));
        buffers
    }

    /// The element type and length each buffer must have for the format and shape, by
    /// parameter name, in launch order.
    pub fn expected_buffers(
        format: &WeightFormat,
        k: usize,
        n: usize,
    ) -> Result<Vec<(&'static str, DType, usize)>, FormatError> {
        format.validate_shape(1, n, k)?;
        let groups = k / format.group_size;
        let w_bytes = k.div_ceil(BLOCK_K) * n.div_ceil(BLOCK_N) * tile_bytes(format);
        let mut buffers = vec![("w", u8_type()?, w_bytes), ("s", format.scale, groups * n)];
        if format.zero_point {
            buffers.push(("z", format.weight, groups * n));
        }
        if format.offset {
            buffers.push(("o", format.scale, groups * n));
        }
        Ok(buffers)
    }

    /// Checks the shape against the format and every buffer's type and length.
    pub fn validate(&self) -> Result<(), FormatError> {
        let expected = PackedWeights::expected_buffers(&self.format, self.k, self.n)?;
        let buffers = self.buffers();
        if buffers.len() != expected.len() {
            return Err(FormatError::Data(format!("{} buffers, the format needs {}", buffers.len(), expected.len())));
        }
        for ((name, buffer), (_, dtype, len)) in buffers.into_iter().zip(expected) {
            if buffer.dtype() != dtype || buffer.len() != len {
                return Err(FormatError::Data(format!(
                    "buffer `{name}`: {} elements of {}, expected {len} of {dtype}",
                    buffer.len(),
                    buffer.dtype()
                )));
            }
        }
        Ok(())
    }
}

/// `value` rounded to `dtype` (nearest even), as an f64 — with the interpreter's fast codecs,
/// which its tests check against the exact ones.
pub fn round_to(dtype: DType, value: f64) -> f64 {
    match dtype.float_format() {
        Some(format) => numeric::decode_float(format, numeric::encode_float(format, value)).unwrap_or(f64::NAN),
        None => dtype.decode_f64(dtype.encode(value)).unwrap_or(f64::NAN),
    }
}

/// The exact result (in f64) and an error bound for each output element: `y[m][n]` for `x`
/// given as M × K activation codes, and the tolerance the kernel must meet.
///
/// The bound: the kernel's products are exact and its sums are f32 additions in increasing k,
/// each with relative error at most u = 2^-24, so |acc − exact| ≤ K·u·Σ|x·w| (the classic
/// recursive-summation bound, γ_K ≤ 1.01·K·u for K·u < 0.01, doubled here for margin); the
/// final rounding to the activation type adds at most half an ulp of the result.
pub fn reference(weights: &QuantizedWeights, x_codes: &[u32], m: usize) -> Result<Vec<(f64, f64)>, FormatError> {
    let (k, n) = (weights.k, weights.n);
    let act = weights.format.activation;
    if x_codes.len() != m * k {
        return Err(FormatError::Data(format!("x: {} values, expected {}", x_codes.len(), m * k)));
    }
    let x: Vec<f64> = x_codes.iter().map(|&c| act.decode_f64(c).unwrap_or(f64::NAN)).collect();
    let w: Vec<f64> = (0..k * n).map(|i| weights.dequantized(i / n, i % n)).collect();
    let unit = 2f64.powi(-24);
    let mut out = Vec::with_capacity(m * n);
    for row in 0..m {
        // Row-major over W, so the inner loop runs along contiguous memory.
        let (mut sums, mut magnitudes) = (vec![0.0f64; n], vec![0.0f64; n]);
        for kk in 0..k {
            let xv = x[row * k + kk];
            let w_row = &w[kk * n..(kk + 1) * n];
            for ((sum, magnitude), &wv) in sums.iter_mut().zip(magnitudes.iter_mut()).zip(w_row) {
                let p = xv * wv;
                *sum += p;
                *magnitude += p.abs();
            }
        }
        for (sum, magnitude) in sums.into_iter().zip(magnitudes) {
            let accumulation = 2.0 * k as f64 * unit * magnitude;
            out.push((sum, accumulation + half_ulp(act, sum)));
        }
    }
    Ok(out)
}

/// Half the spacing of `dtype`'s codes at `value` (the most that rounding `value` to `dtype`
/// changes it, overflow aside).
fn half_ulp(dtype: DType, value: f64) -> f64 {
    let Some(format) = dtype.float_format() else { return 0.5 };
    let exponent = if value == 0.0 { i32::MIN } else { value.abs().log2().floor() as i32 };
    let spacing_exponent = exponent.max(format.min_normal_exponent()) - format.mantissa_bits() as i32;
    2f64.powi(spacing_exponent - 1)
}
