//! `anybit compile FILE --target sm_90 -o DIR [--emit ptx|llvm|mlir] [--backend llvm|mlir]`:
//! one `.ptx` (or `.ll`, `.mlir`) file per kernel and `manifest.json`. The MLIR backend and
//! `--emit mlir` exist when the crate is built with the `mlir` feature.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anybit::backends::llvm::LlvmBackend;
use anybit::backends::{Backend, CompileOptions, LlvmOptimization, Target};
use anyhow::{Context, Result, bail};

/// What to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Emit {
    /// PTX text, one file per kernel (`<kernel>.ptx`).
    Ptx,
    /// LLVM IR after optimization, one file per kernel (`<kernel>.ll`).
    Llvm,
    /// MLIR in the `llvm` and `nvvm` dialects, one file per kernel (`<kernel>.mlir`; needs
    /// `--backend mlir`).
    #[cfg(feature = "mlir")]
    Mlir,
}

/// Which code generator runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// LLVM IR through inkwell (the default).
    #[default]
    Llvm,
    /// MLIR's `llvm`/`nvvm` dialects through melior, translated to LLVM IR in-process (the
    /// same lowering as the LLVM backend's, so the same kernels and PTX).
    #[cfg(feature = "mlir")]
    Mlir,
}

/// Which passes run before code generation.
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// 0, 1 or 2.
    pub opt_level: u8,
    /// Explicit pass names, replacing the level's pipeline.
    pub passes: Option<Vec<String>>,
    /// Print the module after every pass (to stderr).
    pub print_after_all: bool,
    /// LLVM's pipeline, by name (`full` or `fast`).
    pub llvm: String,
    /// The code generator.
    pub backend: BackendChoice,
}

/// Runs the pipeline on `module`.
pub fn run_passes(module: &mut anybit::ir::program::Module, pipeline: &Pipeline) -> Result<()> {
    use anybit::passes::{OptLevel, PassManager};
    let manager = match &pipeline.passes {
        Some(names) => {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            PassManager::from_names(&names)?
        }
        None => PassManager::for_level(match pipeline.opt_level {
            0 => OptLevel::O0,
            1 => OptLevel::O1,
            _ => OptLevel::O2,
        }),
    };
    let mut manager = manager.verify_each(Some(anybit::ir::verify::VerifyOptions::default()));
    if pipeline.print_after_all {
        manager = manager.after_each(Box::new(|pass, module| {
            eprintln!("// ----- after {pass} -----\n{}", anybit::ir::text::print_module(module));
        }));
    }
    manager.run(module)?;
    Ok(())
}

/// Compiles `file` for `target` into `out_dir`. Every file is written to a temporary name first
/// and renamed when all are ready, so a failure leaves no partial output.
pub fn compile(
    file: &Path,
    target: &str,
    out_dir: &Path,
    emit: Emit,
    pipeline: &Pipeline,
    out: &mut dyn Write,
) -> Result<()> {
    let target: Target = target.parse()?;
    let llvm: LlvmOptimization = pipeline.llvm.parse().map_err(anyhow::Error::msg)?;
    // Layouts may be missing here: the pipeline infers them, the backend then checks strictly.
    let mut module = super::source::load(file, false)?;
    let start = Instant::now();
    run_passes(&mut module, pipeline).with_context(|| format!("cannot optimize {}", file.display()))?;
    #[cfg(feature = "mlir")]
    if emit == Emit::Mlir && pipeline.backend != BackendChoice::Mlir {
        bail!("--emit mlir needs --backend mlir");
    }
    #[cfg(feature = "mlir")]
    let emit_mlir = emit == Emit::Mlir;
    #[cfg(not(feature = "mlir"))]
    let emit_mlir = false;
    let options = CompileOptions { emit_llvm_ir: emit == Emit::Llvm, emit_mlir, llvm };
    let backend: &dyn Backend = match pipeline.backend {
        BackendChoice::Llvm => &LlvmBackend,
        #[cfg(feature = "mlir")]
        BackendChoice::Mlir => &anybit::backends::mlir::MlirBackend,
    };
    let compiled = backend
        .compile(&module, target, &options)
        .with_context(|| format!("cannot compile {} for {target}", file.display()))?;
    let elapsed = start.elapsed();
    std::fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    for kernel in &compiled.kernels {
        let (name, text) = match emit {
            Emit::Ptx => (format!("{}.ptx", kernel.name), kernel.ptx.clone()),
            Emit::Llvm => match &kernel.llvm_ir {
                Some(ir) => (format!("{}.ll", kernel.name), ir.clone()),
                None => bail!("the backend returned no LLVM IR for `{}`", kernel.name),
            },
            #[cfg(feature = "mlir")]
            Emit::Mlir => match &kernel.mlir {
                Some(text) => (format!("{}.mlir", kernel.name), text.clone()),
                None => bail!("the backend returned no MLIR for `{}`", kernel.name),
            },
        };
        files.push((out_dir.join(name), text));
    }
    files.push((out_dir.join("manifest.json"), compiled.manifest.to_json() + "\n"));
    let mut staged = Vec::new();
    for (path, text) in &files {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        staged.push((tmp, path));
    }
    for (tmp, path) in staged {
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    }
    for kernel in &compiled.kernels {
        writeln!(
            out,
            "{}: `{}` for {target}, {} bytes of shared memory",
            out_dir.display(),
            kernel.name,
            kernel.shared_memory_bytes
        )?;
    }
    writeln!(out, "compiled {} kernel(s) in {:.0} ms", compiled.kernels.len(), elapsed.as_secs_f64() * 1e3)?;
    Ok(())
}
