//! `anybit tune DIR --layer NAME [--ms 1,4,16] [--runs 20] [--table FILE]`: measures an
//! imported layer's launch plans on GPU 0 and records the fastest per M in a tuning table
//! (by default `tuning.json` in the compile cache's directory), which `anybit linear` and
//! `QuantizedLinear` (with `LinearOptions::tuning`) then use.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anybit::import::ImportedModel;
use anybit::linear::Device;
use anybit::runtime::Gpu;
use anybit::tune::{TuneOptions, TuningTable};
use anyhow::{Context, Result, anyhow, bail};

/// What `anybit tune` was asked to do.
#[derive(Debug)]
pub struct TuneRequest<'a> {
    /// The import directory.
    pub dir: &'a Path,
    /// The layer's name.
    pub layer: &'a str,
    /// The rows to tune for, comma-separated.
    pub ms: &'a str,
    /// Timed launches per plan.
    pub runs: usize,
    /// The tuning table to update.
    pub table: Option<&'a Path>,
}

/// The rows of `--ms`: positive integers, comma-separated.
pub fn parse_ms(text: &str) -> Result<Vec<usize>> {
    let ms: Vec<usize> = text
        .split(',')
        .map(|v| {
            v.trim()
                .parse::<usize>()
                .ok()
                .filter(|&m| m > 0)
                .ok_or_else(|| anyhow!("--ms: `{v}` is not a row count ≥ 1"))
        })
        .collect::<Result<_>>()?;
    if ms.is_empty() {
        bail!("--ms: no row counts");
    }
    Ok(ms)
}

/// The table file: `--table`, else the default.
pub fn table_path(table: Option<&Path>) -> Result<PathBuf> {
    match table {
        Some(path) => Ok(path.to_path_buf()),
        None => TuningTable::default_path()
            .ok_or_else(|| anyhow!("no cache directory to keep the tuning table in: pass --table FILE")),
    }
}

/// Tunes the layer and updates the table.
pub fn run(request: &TuneRequest<'_>, out: &mut dyn Write) -> Result<()> {
    let ms = parse_ms(request.ms)?;
    if request.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let path = table_path(request.table)?;
    let mut table = TuningTable::load(&path)?;
    let model = ImportedModel::open(request.dir)?;
    let record = model.layer(request.layer)?;
    let gpu = Arc::new(Gpu::new(0).context("tuning measures on a GPU, and none is usable")?);
    let layer = model.load_layer(request.layer, &Device::Gpu(gpu.clone()))?;
    let options = TuneOptions { ms, runs: request.runs, ..TuneOptions::default() };
    let report = layer.tune(&options).with_context(|| format!("tuning layer `{}`", request.layer))?;
    writeln!(
        out,
        "{} `{}` ({} {}×{}) on {}:",
        request.dir.display(),
        record.name,
        record.kernel,
        record.k,
        record.n,
        gpu.name()
    )?;
    writeln!(out, "{:>6}  {:>8}  {:>10}", "M", "plan", "µs")?;
    for measured in &report.measurements {
        let best = report.winners.iter().any(|w| w.m == measured.m && w.plan == measured.plan);
        let mark = if best { "  ← fastest" } else { "" };
        writeln!(out, "{:>6}  {:>8}  {:>10.1}{mark}", measured.m, measured.plan.tag(), measured.micros)?;
    }
    table.record(gpu.name(), &record.kernel, record.k, record.n, &report);
    table.save(&path)?;
    writeln!(
        out,
        "tuned {} plans in {:.2} s; {} winners recorded in {}",
        report.measurements.len(),
        report.seconds,
        report.winners.len(),
        path.display()
    )?;
    Ok(())
}
