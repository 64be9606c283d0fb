//! `anybit inspect MODEL`: a model file's tensors and metadata, from its header alone.

use std::io::Write;
use std::path::Path;

use anybit::frontend::gguf::{GgufFile, MetaValue};
use anyhow::{Result, bail};

/// Prints the tensors (name, ggml type, shape outermost first, bytes) and the metadata keys.
pub fn run(model: &Path, out: &mut dyn Write) -> Result<()> {
    if model.extension().and_then(|e| e.to_str()) != Some("gguf") {
        bail!("{}: only GGUF files (.gguf) can be inspected so far", model.display());
    }
    let file = GgufFile::open(model)?;
    let total: u64 = file.tensors.iter().map(|t| t.bytes).sum();
    writeln!(
        out,
        "{}: GGUF v{}, {} tensors ({:.1} MiB), {} metadata entries",
        model.display(),
        file.version,
        file.tensors.len(),
        total as f64 / (1 << 20) as f64,
        file.metadata.len()
    )?;
    for t in &file.tensors {
        let shape: Vec<String> = t.dims.iter().rev().map(u64::to_string).collect();
        writeln!(out, "  {:<40} {:<8} [{}] {} bytes", t.name, t.ggml_type.name(), shape.join(", "), t.bytes)?;
    }
    for (key, value) in &file.metadata {
        let shown = match value {
            MetaValue::Array(items) => format!("[{} items]", items.len()),
            MetaValue::String(s) if s.len() > 60 => {
                format!("{:?}…", &s[..s.char_indices().nth(60).map_or(s.len(), |(i, _)| i)])
            }
            other => format!("{other:?}"),
        };
        writeln!(out, "  {key} = {shown}")?;
    }
    Ok(())
}
