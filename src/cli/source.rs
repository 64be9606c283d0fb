//! `anybit check` and `anybit fmt`, and loading kernel files for the other commands.

use std::io::Write;
use std::path::Path;

use anybit::ir::diag::{Diagnostic, SourceFile};
use anybit::ir::program::Module;
use anybit::ir::text::{parse_module, print_module};
use anybit::ir::verify::{VerifyOptions, verify_module};
use anyhow::{Context, Result, anyhow, bail};

/// A kernel file's text, read with a clear error.
pub fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Diagnostics rendered against their file, sorted by position, counted.
fn report(path: &Path, text: &str, diagnostics: Vec<Diagnostic>) -> anyhow::Error {
    let name = path.display().to_string();
    anyhow!("{}", SourceFile::new(&name, text).report(diagnostics))
}

/// Parses and verifies a kernel file; `strict` asks for every layout (what running needs).
pub fn load(path: &Path, strict: bool) -> Result<Module> {
    let text = read(path)?;
    let module = parse_module(&text).map_err(|d| report(path, &text, d.0))?;
    let options = VerifyOptions::default().with_require_layouts(strict);
    verify_module(&module, &options).map_err(|d| report(path, &text, d.0))?;
    Ok(module)
}

/// `anybit check FILE [--strict]`.
pub fn check(path: &Path, strict: bool, out: &mut dyn Write) -> Result<()> {
    let module = load(path, strict)?;
    let kernels = module.kernels.len();
    writeln!(
        out,
        "{}: {kernels} kernel{} ok{}",
        path.display(),
        if kernels == 1 { "" } else { "s" },
        if strict { " (strict: every layout present)" } else { "" }
    )?;
    Ok(())
}

/// `anybit fmt FILE [--check | --write]`.
pub fn fmt(path: &Path, mode: FmtMode, out: &mut dyn Write) -> Result<()> {
    let text = read(path)?;
    let module = parse_module(&text).map_err(|d| report(path, &text, d.0))?;
    let printed = print_module(&module);
    match mode {
        FmtMode::Print => out.write_all(printed.as_bytes())?,
        FmtMode::Check => {
            if printed != text {
                bail!("{} is not formatted canonically (run `anybit fmt --write {}`)", path.display(), path.display());
            }
        }
        FmtMode::Write => {
            if printed != text {
                // Comments are not part of the module: refuse to drop them silently.
                if text.lines().any(|l| l.trim_start().starts_with("//") || l.contains(" //")) {
                    bail!(
                        "{} has comments, which formatting would drop; print with `anybit fmt` and merge by hand",
                        path.display()
                    );
                }
                let tmp = path.with_extension("abk.fmt-tmp");
                std::fs::write(&tmp, &printed).with_context(|| format!("cannot write {}", tmp.display()))?;
                std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
            }
        }
    }
    Ok(())
}

/// What `anybit fmt` does with the canonical text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FmtMode {
    /// Print it.
    Print,
    /// Fail when the file differs from it.
    Check,
    /// Replace the file with it.
    Write,
}
