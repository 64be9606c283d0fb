//! `anybit import MODEL -o DIR --target sm_90`: every quantized linear layer of a model file to
//! a compiled kernel, re-packed weights and a manifest (see [`anybit::import`]); progress on
//! stderr, a summary on stdout.

use std::io::Write;
use std::path::Path;

use anybit::backends::{LlvmOptimization, Target};
use anybit::import::{ImportOptions, import_model};
use anybit::ir::DType;
use anyhow::{Context, Result};

/// What `anybit import` was asked to do.
#[derive(Debug)]
pub struct ImportRequest<'a> {
    /// The model file.
    pub model: &'a Path,
    /// The output directory.
    pub out_dir: &'a Path,
    /// The GPU target's name.
    pub target: &'a str,
    /// The activation type's name.
    pub activation: &'a str,
    /// LLVM's pipeline, by name.
    pub llvm: &'a str,
    /// Replace an existing output directory.
    pub force: bool,
}

/// Runs the import.
pub fn run(request: &ImportRequest<'_>, out: &mut dyn Write) -> Result<()> {
    let target: Target = request.target.parse()?;
    let activation: DType = request.activation.parse()?;
    let llvm: LlvmOptimization = request.llvm.parse().map_err(anyhow::Error::msg)?;
    let options = ImportOptions { target, activation, llvm, overwrite: request.force, ..ImportOptions::default() };
    let mut progress = |line: &str| eprintln!("{line}");
    let summary = import_model(request.model, request.out_dir, &options, &mut progress).context("import failed")?;
    let manifest = &summary.manifest;
    writeln!(
        out,
        "{}: {} layers, {} kernel{} for {}, {:.2} MiB of weights, in {:.2} s ({:.2} s compiling)",
        request.out_dir.display(),
        manifest.layers.len(),
        manifest.kernels.len(),
        if manifest.kernels.len() == 1 { "" } else { "s" },
        manifest.target,
        summary.weight_bytes as f64 / (1 << 20) as f64,
        summary.total_seconds,
        summary.compile_seconds
    )?;
    for (name, why) in &summary.skipped {
        writeln!(out, "  left out {name}: {why}")?;
    }
    Ok(())
}
