//! Reading the kernel source, parsing and verifying it, and reporting its problems where they
//! are in the user's files.

use std::path::PathBuf;

use anybit_ir::diag::{Diagnostic, SourceFile, Span};
use anybit_ir::program::Module;
use anybit_ir::text::parse_module;
use anybit_ir::verify::{VerifyOptions, verify_module};
use syn::LitStr;

use crate::input::{KernelInput, SourceInput};

/// A parsed and verified module and where it came from.
pub struct Loaded {
    pub module: Module,
    /// The file's absolute path, for the expansion's `include_str!` (file input only).
    pub file: Option<PathBuf>,
    /// The file name as given, or `inline`, for the embedded module's name.
    pub name: String,
}

/// How a kernel source's offsets map to the file diagnostics name: the file's name and the
/// text that precedes the kernel in it (blank lines and spaces standing for the Rust code
/// before an inline literal's contents, so that line and column come out right).
struct Origin {
    name: String,
    padding: String,
}

pub fn load(input: &KernelInput) -> syn::Result<Loaded> {
    match &input.source {
        SourceInput::Inline(literal) => {
            let text = literal.value();
            let origin = inline_origin(literal, &text);
            let module = check(&text, &origin, literal)?;
            Ok(Loaded { module, file: None, name: "inline".into() })
        }
        SourceInput::File(literal) => {
            let given = literal.value();
            let dir = std::env::var_os("CARGO_MANIFEST_DIR").ok_or_else(|| {
                syn::Error::new(literal.span(), "CARGO_MANIFEST_DIR is not set: kernel files are found relative to it")
            })?;
            let path = PathBuf::from(dir).join(&given);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                syn::Error::new(literal.span(), format!("cannot read kernel file {}: {e}", path.display()))
            })?;
            let origin = Origin { name: given.clone(), padding: String::new() };
            let module = check(&text, &origin, literal)?;
            Ok(Loaded { module, file: Some(path), name: given })
        }
    }
}

/// Where an inline literal's contents start in the Rust file, when that can be told: the
/// compiler knows the literal's line and column, and the contents map one to one onto the
/// literal's text when it has no escapes (always for raw strings).
fn inline_origin(literal: &LitStr, value: &str) -> Origin {
    let fallback = Origin { name: "<inline kernel>".into(), padding: String::new() };
    if !proc_macro::is_available() {
        return fallback;
    }
    let token = literal.token().to_string();
    let Some(open) = token.find('"') else { return fallback };
    let hashes = open.saturating_sub(1);
    let close = token.len().saturating_sub(1 + hashes);
    if token.get(open + 1..close) != Some(value) {
        return fallback;
    }
    let span = literal.span().unwrap();
    let (line, column) = (span.line(), span.column());
    let prefix_chars = token[..=open].chars().count();
    let padding = "\n".repeat(line.saturating_sub(1)) + &" ".repeat(column.saturating_sub(1) + prefix_chars);
    Origin { name: span.file(), padding }
}

fn check(text: &str, origin: &Origin, literal: &LitStr) -> syn::Result<Module> {
    let report = |diagnostics: Vec<Diagnostic>| syn::Error::new(literal.span(), render(text, origin, diagnostics));
    let module = parse_module(text).map_err(|d| report(d.0))?;
    // Strict: every layout present, which the interpreter needs (the compile passes could
    // infer missing ones, the interpreter cannot).
    verify_module(&module, &VerifyOptions::strict()).map_err(|d| report(d.0))?;
    if module.kernels.is_empty() {
        return Err(syn::Error::new(literal.span(), format!("{}: the module has no kernel", origin.name)));
    }
    Ok(module)
}

/// Every diagnostic rendered against the origin's file (see [`SourceFile::report`]), spans
/// moved past the padding.
fn render(text: &str, origin: &Origin, mut diagnostics: Vec<Diagnostic>) -> String {
    let shift = origin.padding.len();
    for d in &mut diagnostics {
        d.span = d.span.map(|s| Span::new(s.start as usize + shift, s.end as usize + shift));
    }
    let padded = format!("{}{text}", origin.padding);
    SourceFile::new(&origin.name, &padded).report(diagnostics)
}
