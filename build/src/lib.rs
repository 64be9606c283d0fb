//! # anybit-build: kernel files compiled to PTX when the crate builds
//!
//! A crate that launches anybit kernels can compile them ahead of time, in its `build.rs`, in
//! the way `cc` compiles C files: [`Builder`] takes a folder of `.abk` kernel files and a list
//! of GPU targets, parses and verifies every file (a mistake fails the build with the
//! diagnostic's `file:line:col`), runs the optimization passes and the LLVM backend for each
//! target, and writes the PTX and the manifest of every module into `OUT_DIR`. It also writes
//! one Rust file, `anybit_kernels.rs`, which the crate includes:
//!
//! ```text
//! // build.rs
//! fn main() {
//!     anybit_build::Builder::new("kernels").target(anybit_build::Target::Sm80).build();
//! }
//!
//! // src/main.rs
//! mod kernels {
//!     include!(concat!(env!("OUT_DIR"), "/anybit_kernels.rs"));
//! }
//! // kernels::vector_add::VectorAdd.launch(&exec, &x, &y, &mut z, n)?
//! ```
//!
//! The generated file holds one Rust module per kernel file (`kernels/vector_add.abk` →
//! `vector_add`), each an `anybit::kernel!` invocation naming the file and the compiled forms.
//! So the crate gets the same typed handles as from writing `kernel!` itself, with the PTX of
//! every target embedded (`include_str!`) next to the source. At run time the executor hands
//! the PTX of the newest target the device runs to the CUDA driver: the final binary needs the
//! runtime only, never LLVM — which links into the build script alone.
//!
//! Cargo re-runs the build script when the folder or any kernel file in it changes (the builder
//! prints `cargo:rerun-if-changed` for each), and rebuilds the crate when a generated file
//! changes.

#![warn(missing_docs)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anybit_backends::llvm::LlvmBackend;
use anybit_backends::{Backend, BackendError, CompileOptions};
use anybit_ir::diag::SourceFile;
use anybit_ir::text::parse_module;
use anybit_ir::verify::{VerifyOptions, verify_module};
use anybit_passes::{PassError, PassManager};

pub use anybit_backends::{LlvmOptimization, Target};
pub use anybit_passes::OptLevel;

/// Why the kernels could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A file or folder could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file or folder.
        path: String,
        /// What failed.
        error: std::io::Error,
    },
    /// A kernel file does not parse or verify: every diagnostic, with file:line:col.
    #[error("{0}")]
    Kernel(String),
    /// The passes failed on a module.
    #[error("{file}: optimizing for {target} failed: {error}")]
    Passes {
        /// The kernel file.
        file: String,
        /// The target.
        target: Target,
        /// What failed.
        error: PassError,
    },
    /// The backend failed on a module.
    #[error("{file}: compiling for {target} failed: {error}")]
    Backend {
        /// The kernel file.
        file: String,
        /// The target.
        target: Target,
        /// What failed.
        error: BackendError,
    },
    /// A configuration problem: no targets, no `OUT_DIR`, a file name that is no Rust name.
    #[error("{0}")]
    Config(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |error| BuildError::Io { path: path.display().to_string(), error }
}

/// Compiles a folder of kernel files for a list of targets (see the crate doc).
#[derive(Clone, Debug)]
pub struct Builder {
    dir: PathBuf,
    targets: Vec<Target>,
    opt_level: OptLevel,
    llvm: LlvmOptimization,
    macros: String,
    runtime: String,
    out_dir: Option<PathBuf>,
    manifest_dir: Option<PathBuf>,
    cargo_messages: bool,
}

/// What a build wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generated {
    /// The Rust file to `include!`.
    pub rust_file: PathBuf,
    /// The kernel files compiled, in name order.
    pub kernel_files: Vec<PathBuf>,
    /// Every PTX file written.
    pub ptx_files: Vec<PathBuf>,
}

impl Builder {
    /// Kernel files in `dir` (every `*.abk` directly in it), relative to the crate's
    /// `CARGO_MANIFEST_DIR`; no targets yet, `-O2`, LLVM's full pipeline, the generated code
    /// naming the facade (`::anybit::kernel!`, `::anybit::runtime`).
    pub fn new(dir: impl Into<PathBuf>) -> Builder {
        Builder {
            dir: dir.into(),
            targets: Vec::new(),
            opt_level: OptLevel::O2,
            llvm: LlvmOptimization::Full,
            macros: "::anybit".into(),
            runtime: "::anybit::runtime".into(),
            out_dir: None,
            manifest_dir: None,
            cargo_messages: true,
        }
    }

    /// Adds a target to compile for.
    pub fn target(mut self, target: Target) -> Builder {
        if !self.targets.contains(&target) {
            self.targets.push(target);
        }
        self
    }

    /// Adds targets to compile for.
    pub fn targets(self, targets: impl IntoIterator<Item = Target>) -> Builder {
        targets.into_iter().fold(self, Builder::target)
    }

    /// The pass pipeline (default `-O2`).
    pub fn opt_level(mut self, level: OptLevel) -> Builder {
        self.opt_level = level;
        self
    }

    /// LLVM's pipeline (default full: a build can afford it).
    pub fn llvm(mut self, llvm: LlvmOptimization) -> Builder {
        self.llvm = llvm;
        self
    }

    /// The paths the generated code uses for the crate exporting `kernel!` and for the runtime:
    /// by default the facade (`::anybit`, `::anybit::runtime`); `("::anybit_macros",
    /// "::anybit_runtime")` for a crate that depends on those two alone.
    pub fn crate_paths(mut self, macros: &str, runtime: &str) -> Builder {
        self.macros = macros.into();
        self.runtime = runtime.into();
        self
    }

    /// Where to write (default `$OUT_DIR`).
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Builder {
        self.out_dir = Some(dir.into());
        self
    }

    /// What relative kernel folders are relative to (default `$CARGO_MANIFEST_DIR`, else the
    /// working directory).
    pub fn manifest_dir(mut self, dir: impl Into<PathBuf>) -> Builder {
        self.manifest_dir = Some(dir.into());
        self
    }

    /// Whether to print `cargo:rerun-if-changed` lines (default on; off outside build scripts).
    pub fn cargo_messages(mut self, on: bool) -> Builder {
        self.cargo_messages = on;
        self
    }

    /// [`Builder::compile`] for a build script: on an error, prints it to stderr (cargo shows
    /// it) and exits with status 1, which fails the build.
    pub fn build(&self) -> Generated {
        self.compile().unwrap_or_else(|error| {
            eprintln!("error: {error}");
            std::process::exit(1)
        })
    }

    /// Compiles every kernel file for every target and writes the PTX, the manifests and
    /// `anybit_kernels.rs` (see the crate doc).
    pub fn compile(&self) -> Result<Generated, BuildError> {
        if self.targets.is_empty() {
            return Err(BuildError::Config("no targets: add one with Builder::target (e.g. Target::Sm80)".into()));
        }
        let manifest_dir = match &self.manifest_dir {
            Some(dir) => dir.clone(),
            None => std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_default(),
        };
        let out_dir = match &self.out_dir {
            Some(dir) => dir.clone(),
            None => std::env::var_os("OUT_DIR").map(PathBuf::from).ok_or_else(|| {
                BuildError::Config("OUT_DIR is not set: run from a build script, or set Builder::out_dir".into())
            })?,
        };
        let dir = manifest_dir.join(&self.dir);
        if self.cargo_messages {
            println!("cargo:rerun-if-changed={}", dir.display());
        }
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let path = entry.map_err(io(&dir))?.path();
            if path.extension().is_some_and(|e| e == "abk") && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        let mut generated =
            Generated { rust_file: out_dir.join("anybit_kernels.rs"), kernel_files: Vec::new(), ptx_files: Vec::new() };
        let mut rust = String::from("// Generated by anybit-build from the kernel files of ");
        let _ = writeln!(rust, "{}: do not edit.", self.dir.display());
        let mut modules: Vec<String> = Vec::new();
        for file in &files {
            if self.cargo_messages {
                println!("cargo:rerun-if-changed={}", file.display());
            }
            let module_name = rust_module_name(file)?;
            if modules.contains(&module_name) {
                return Err(BuildError::Config(format!("two kernel files become the Rust module `{module_name}`")));
            }
            let shown = file.strip_prefix(&manifest_dir).unwrap_or(file).to_path_buf();
            let forms = self.compile_file(file, &shown, &out_dir.join("anybit").join(&module_name), &mut generated)?;
            let _ = write!(
                rust,
                "\n/// The kernels of `{}`, compiled for {}.\npub mod r#{module_name} {{\n    {}::kernel!(\n        file = {:?},\n        runtime = {},\n        targets = [\n{forms}        ],\n    );\n}}\n",
                shown.display(),
                self.targets.iter().map(|t| t.name()).collect::<Vec<_>>().join(", "),
                self.macros,
                shown.display().to_string(),
                self.runtime,
            );
            modules.push(module_name);
            generated.kernel_files.push(file.clone());
        }
        write_if_changed(&generated.rust_file, &rust)?;
        Ok(generated)
    }

    /// Compiles one file for every target into `out`; returns the `targets = [...]` entries.
    fn compile_file(
        &self,
        file: &Path,
        shown: &Path,
        out: &Path,
        generated: &mut Generated,
    ) -> Result<String, BuildError> {
        let text = std::fs::read_to_string(file).map_err(io(file))?;
        let name = shown.display().to_string();
        let report = |d: anybit_ir::diag::Diagnostics| BuildError::Kernel(SourceFile::new(&name, &text).report(d.0));
        let module = parse_module(&text).map_err(report)?;
        verify_module(&module, &VerifyOptions::strict()).map_err(report)?;
        let mut forms = String::new();
        for &target in &self.targets {
            let mut optimized = module.clone();
            PassManager::for_level(self.opt_level).run(&mut optimized).map_err(|error| BuildError::Passes {
                file: name.clone(),
                target,
                error,
            })?;
            let options = CompileOptions { llvm: self.llvm, ..CompileOptions::default() };
            let compiled = LlvmBackend.compile(&optimized, target, &options).map_err(|error| BuildError::Backend {
                file: name.clone(),
                target,
                error,
            })?;
            let dir = out.join(target.name());
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            let mut ptx = Vec::new();
            for (kernel, entry) in compiled.kernels.iter().zip(&compiled.manifest.kernels) {
                let path = dir.join(&entry.ptx_file);
                write_if_changed(&path, &kernel.ptx)?;
                ptx.push(format!("::core::include_str!({:?})", path.display().to_string()));
                generated.ptx_files.push(path);
            }
            let manifest = dir.join("manifest.json");
            write_if_changed(&manifest, &(compiled.manifest.to_json() + "\n"))?;
            let _ = writeln!(
                forms,
                "            ({:?}, ::core::include_str!({:?}), [{}]),",
                target.name(),
                manifest.display().to_string(),
                ptx.join(", ")
            );
        }
        Ok(forms)
    }
}

/// `kernels/vector_add.abk` → `vector_add`: the file stem with every character that cannot be
/// in a Rust name replaced by `_` (the generated code writes it raw, `r#`, so that a keyword
/// works too).
fn rust_module_name(file: &Path) -> Result<String, BuildError> {
    let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mut name: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert_str(0, "kernels_");
    }
    match name.as_str() {
        "_" | "self" | "Self" | "super" | "crate" => {
            Err(BuildError::Config(format!("{}: `{name}` cannot name a Rust module; rename the file", file.display())))
        }
        _ => Ok(name),
    }
}

/// Writes `text` unless the file already holds it, so that an unchanged kernel does not
/// rebuild the crate that embeds it.
fn write_if_changed(path: &Path, text: &str) -> Result<(), BuildError> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    std::fs::write(path, text).map_err(io(path))
}
