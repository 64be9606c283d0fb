//! Tuning a layer's launch plans on its GPU, and keeping the winners.
//!
//! The search space is what a layer's module runs without compiling anything (see
//! [`anybit_frontend::lowbit::LaunchPlan`]): for each M, the 8-, 16- and 64-row matmul
//! kernels, each with K split in 1, 2, 4, … — [`candidates`]. [`tune_with`] walks the space with
//! any measurement and picks the fastest plan per M; [`crate::linear::QuantizedLinear::tune`]
//! measures on the layer's GPU (L2 flushed before every launch, median of several) and keeps
//! the winners in the layer, so its later calls of up to that many rows run them.
//!
//! A [`TuningTable`] keeps winners per GPU (by name), kernel (which names the format), K and N
//! in a JSON file — by default `tuning.json` in the compile cache's directory — so that later
//! processes start tuned ([`crate::linear::LinearOptions::tuning`]). Writing replaces the file
//! atomically (a temporary file renamed into place).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anybit_frontend::lowbit::{
    BLOCK_K, BLOCK_M, LaunchPlan, MAX_SPLITS, MEDIUM_BLOCK_M, PREFILL_BLOCK_M, Schedule, WeightFormat,
};
use anybit_runtime::cache::CacheConfig;
use serde::{Deserialize, Serialize};

/// What [`crate::linear::QuantizedLinear::tune`] measures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TuneOptions {
    /// The rows M to tune for (each tuned plan serves calls of up to its M rows, down to the
    /// next smaller tuned M).
    pub ms: Vec<usize>,
    /// Timed launches per plan (the median counts).
    pub runs: usize,
    /// Bytes written before each timed launch to flush the L2 cache (256 MiB: 5× an H100's).
    pub flush_bytes: usize,
}

impl Default for TuneOptions {
    fn default() -> TuneOptions {
        TuneOptions { ms: vec![1, 4, 16, 64, 256], runs: 20, flush_bytes: 256 << 20 }
    }
}

/// One plan's time for one M.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measurement {
    /// Rows.
    pub m: usize,
    /// The plan.
    pub plan: LaunchPlan,
    /// Its median time, in microseconds.
    pub micros: f64,
}

/// What a tuning measured and chose.
#[derive(Clone, Debug, PartialEq)]
pub struct TuneReport {
    /// Every plan measured, by M then plan.
    pub measurements: Vec<Measurement>,
    /// The fastest plan per M, by increasing M.
    pub winners: Vec<Measurement>,
    /// How long the tuning took (compiling nothing: the module has every kernel).
    pub seconds: f64,
}

/// The plans tried for `m` rows of an `n`-column output over `k` on `multiprocessors` SMs, for
/// a layer of `format` (whose kernels' columns per block count the blocks):
/// the 8-row kernel (and for more than 8 rows the 16- and 64-row ones, when the layer has
/// them: `prefill`), each with K split in every
/// power of two up to [`MAX_SPLITS`] that leaves each block at least two 64-row steps of K
/// and the grid at most 16 blocks per SM (beyond either, the reduction and the idle blocks
/// only cost). Never empty: one split is always a candidate.
pub fn candidates(
    format: &WeightFormat,
    m: usize,
    n: usize,
    k: usize,
    multiprocessors: usize,
    prefill: bool,
) -> Vec<LaunchPlan> {
    let kernels: &[usize] =
        if m > BLOCK_M && prefill { &[BLOCK_M, MEDIUM_BLOCK_M, PREFILL_BLOCK_M] } else { &[BLOCK_M] };
    let steps = k.div_ceil(BLOCK_K).max(1);
    let most_blocks = 16 * multiprocessors.max(1);
    let mut plans = Vec::new();
    for &block_m in kernels {
        let columns = Schedule::for_rows(format, block_m).block_n;
        let tiles = n.div_ceil(columns).max(1) * m.div_ceil(block_m).max(1);
        let mut splits = 1;
        loop {
            plans.push(LaunchPlan { block_m, splits });
            splits *= 2;
            if splits > MAX_SPLITS || steps / splits < 2 || tiles * splits > most_blocks {
                break;
            }
        }
    }
    plans
}

/// Measures every candidate plan for each M of `ms` with `measure(m, plan)` (microseconds)
/// and picks the fastest per M (the first of equal times). Stops at the first error.
pub fn tune_with<E>(
    format: &WeightFormat,
    ms: &[usize],
    n: usize,
    k: usize,
    multiprocessors: usize,
    prefill: bool,
    mut measure: impl FnMut(usize, LaunchPlan) -> Result<f64, E>,
) -> Result<TuneReport, E> {
    let start = Instant::now();
    let mut ms: Vec<usize> = ms.iter().copied().filter(|&m| m > 0).collect();
    ms.sort_unstable();
    ms.dedup();
    let mut measurements = Vec::new();
    let mut winners = Vec::new();
    for m in ms {
        let mut best: Option<Measurement> = None;
        for plan in candidates(format, m, n, k, multiprocessors, prefill) {
            let micros = measure(m, plan)?;
            let measured = Measurement { m, plan, micros };
            measurements.push(measured);
            if best.is_none_or(|b| micros < b.micros) {
                best = Some(measured);
            }
        }
        winners.extend(best);
    }
    Ok(TuneReport { measurements, winners, seconds: start.elapsed().as_secs_f64() })
}

/// Why a tuning table could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a tuning table of this version.
    #[error("{path}: not a tuning table of version {TABLE_VERSION}: {what}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

/// The version of [`TuningTable`]'s file this build reads and writes.
pub const TABLE_VERSION: u32 = 1;

/// Tuned plans per GPU, kernel and shape (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TuningTable {
    /// [`TABLE_VERSION`].
    pub version: u32,
    /// One entry per GPU, kernel and shape.
    pub shapes: Vec<TunedShape>,
}

/// The tuned plans of one kernel and shape on one GPU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TunedShape {
    /// The GPU's name (`NVIDIA H100 80GB HBM3`).
    pub device: String,
    /// The kernel's name (it names the weight format).
    pub kernel: String,
    /// Rows of W.
    pub k: usize,
    /// Columns of W.
    pub n: usize,
    /// The winners by increasing M.
    pub plans: Vec<TunedPlan>,
}

/// A tuned plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TunedPlan {
    /// Rows it was tuned for.
    pub m: usize,
    /// The plan's tag (`m16k4`).
    pub plan: String,
    /// Its measured time, in microseconds.
    pub micros: f64,
}

impl TuningTable {
    /// `tuning.json` in the compile cache's directory (`ANYBIT_CACHE_DIR`, else the per-user
    /// cache directory); `None` when there is none.
    pub fn default_path() -> Option<PathBuf> {
        CacheConfig::from_env().dir.map(|dir| dir.join("tuning.json"))
    }

    /// Reads `path`; a missing file is an empty table.
    pub fn load(path: &Path) -> Result<TuningTable, TuneError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(TuningTable { version: TABLE_VERSION, shapes: Vec::new() });
            }
            Err(source) => return Err(TuneError::Io { path: path.to_path_buf(), source }),
        };
        let malformed = |what: String| TuneError::Malformed { path: path.to_path_buf(), what };
        let table: TuningTable = serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
        if table.version != TABLE_VERSION {
            return Err(malformed(format!("version {}", table.version)));
        }
        for shape in &table.shapes {
            if let Some(bad) =
                shape.plans.iter().find(|p| LaunchPlan::from_tag(&p.plan).is_none_or(|l| l.validate().is_err()))
            {
                return Err(malformed(format!(
                    "`{}` is not a launch plan ({} {}×{})",
                    bad.plan, shape.kernel, shape.k, shape.n
                )));
            }
        }
        Ok(table)
    }

    /// Writes the table to `path` (creating its directory), replacing it atomically.
    pub fn save(&self, path: &Path) -> Result<(), TuneError> {
        let io = |source| TuneError::Io { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text = serde_json::to_string_pretty(self).map_err(|e| io(std::io::Error::other(e)))? + "\n";
        let temporary = path.with_extension(format!("json.{}.tmp", std::process::id()));
        std::fs::write(&temporary, text).map_err(io)?;
        std::fs::rename(&temporary, path).map_err(|e| {
            let _ = std::fs::remove_file(&temporary);
            io(e)
        })
    }

    /// Records the winners of `report` for a kernel and shape on `device`, replacing what the
    /// table held for the same M.
    pub fn record(&mut self, device: &str, kernel: &str, k: usize, n: usize, report: &TuneReport) {
        self.version = TABLE_VERSION;
        let at = match self.shapes.iter().position(|s| s.device == device && s.kernel == kernel && s.k == k && s.n == n)
        {
            Some(at) => at,
            None => {
                let shape = TunedShape { device: device.into(), kernel: kernel.into(), k, n, plans: Vec::new() };
                self.shapes.push(shape);
                self.shapes.len() - 1
            }
        };
        let plans = &mut self.shapes[at].plans;
        for winner in &report.winners {
            plans.retain(|p| p.m != winner.m);
            plans.push(TunedPlan { m: winner.m, plan: winner.plan.tag(), micros: winner.micros });
        }
        plans.sort_by_key(|p| p.m);
    }

    /// The plans recorded for a kernel and shape on `device`, by increasing M.
    pub fn plans(&self, device: &str, kernel: &str, k: usize, n: usize) -> Vec<(usize, LaunchPlan)> {
        self.shapes
            .iter()
            .filter(|s| s.device == device && s.kernel == kernel && s.k == k && s.n == n)
            .flat_map(|s| &s.plans)
            .filter_map(|p| Some((p.m, LaunchPlan::from_tag(&p.plan)?)))
            .collect()
    }
}
