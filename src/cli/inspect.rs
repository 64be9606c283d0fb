//! `anybit inspect MODEL`: a model file's tensors (GGUF) or layers (ONNX MatMulNBits nodes,
//! a Hugging Face checkpoint's GPTQ/AWQ/compressed-tensors layers),
//! how each would import, formats and sizes, from its header and layer descriptions alone
//! (nothing is imported); or an import directory's layers and kernels.

use std::io::Write;
use std::path::Path;

use anybit::frontend::gguf::{GgufFile, MetaValue};
use anybit::import::{ImportedModel, ModelSource, TensorPlan, gguf_tensor_plan};
use anybit::ir::DType;
use anyhow::{Result, bail};

/// Prints the tensors (name, ggml type, shape outermost first, bytes, what an import does with
/// it) and the metadata keys; for an import directory, its layers and kernels.
pub fn run(model: &Path, out: &mut dyn Write) -> Result<()> {
    if model.is_dir() && model.join("manifest.json").is_file() {
        return imported(model, out);
    }
    if model.is_dir() {
        return layers(model, out);
    }
    match model.extension().and_then(|e| e.to_str()) {
        Some("gguf") => {}
        Some("onnx") => return layers(model, out),
        _ => bail!(
            "{}: only GGUF files (.gguf), ONNX models (.onnx) and Hugging Face directories can be inspected",
            model.display()
        ),
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
        let plan = match gguf_tensor_plan(t, DType::F16) {
            TensorPlan::Layer(format) => format!("→ {}", format.kernel_name()),
            TensorPlan::Skip(_) => "left out".into(),
            TensorPlan::Unsupported(why) => format!("cannot import: {why}"),
        };
        let shape = format!("[{}]", shape.join(", "));
        writeln!(out, "  {:<40} {:<8} {shape} {} bytes  {plan}", t.name, t.ggml_type.name(), t.bytes)?;
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

/// A model other than GGUF (ONNX, a Hugging Face directory): what it is, then per layer (or other node) its name, type in the
/// model, shape (outermost first), bytes and what an import does with it.
fn layers(model: &Path, out: &mut dyn Write) -> Result<()> {
    let source = ModelSource::open(model)?;
    let layers = source.layers(DType::F16);
    let quantized = layers.iter().filter(|l| !matches!(l.plan, TensorPlan::Skip(_))).count();
    let bytes: u64 = layers.iter().map(|l| l.bytes).sum();
    let kind = match &source {
        ModelSource::Onnx(onnx, _) => {
            let producer = if onnx.producer.is_empty() { String::new() } else { format!(" from {}", onnx.producer) };
            format!("ONNX IR v{}{producer}, {} nodes", onnx.ir_version, onnx.nodes().count())
        }
        ModelSource::Gguf(file) => format!("GGUF v{}, {} tensors", file.version, file.tensors.len()),
        ModelSource::Hf(hf, _) => format!(
            "Hugging Face checkpoint, {} in {} safetensors file{}, {} tensors",
            hf.quantization.describe(),
            hf.files.len(),
            if hf.files.len() == 1 { "" } else { "s" },
            hf.tensors().count()
        ),
    };
    writeln!(
        out,
        "{}: {kind}, {quantized} quantized linear layers ({:.1} MiB)",
        model.display(),
        bytes as f64 / (1 << 20) as f64
    )?;
    for layer in &layers {
        let shape: Vec<String> = layer.shape.iter().map(u64::to_string).collect();
        let shape = format!("[{}]", shape.join(", "));
        let plan = match &layer.plan {
            TensorPlan::Layer(format) => format!("→ {}", format.kernel_name()),
            TensorPlan::Skip(_) => "left out".into(),
            TensorPlan::Unsupported(why) => format!("cannot import: {why}"),
        };
        writeln!(out, "  {:<40} {:<26} {shape} {} bytes  {plan}", layer.name, layer.source_type, layer.bytes)?;
    }
    Ok(())
}

/// An import directory: its layers (name, source type, K × N, kernel, bytes) and kernels.
fn imported(dir: &Path, out: &mut dyn Write) -> Result<()> {
    let model = ImportedModel::open(dir)?;
    let manifest = &model.manifest;
    writeln!(
        out,
        "{}: imported from {} for {}, {} layers, {} kernels",
        dir.display(),
        manifest.source,
        manifest.target,
        manifest.layers.len(),
        manifest.kernels.len()
    )?;
    for layer in &manifest.layers {
        let bytes: u64 = layer.buffers.iter().map(|b| b.bytes).sum();
        let shape = format!("{}×{}", layer.k, layer.n);
        let bias = match (&layer.input_order, &layer.bias) {
            (Some(_), Some(_)) => " + input order + bias",
            (Some(_), None) => " + input order",
            (None, Some(_)) => " + bias",
            (None, None) => "",
        };
        writeln!(
            out,
            "  {:<40} {:<8} {shape:<12} {}{bias} {bytes} bytes",
            layer.name, layer.source_type, layer.kernel
        )?;
    }
    for kernel in &manifest.kernels {
        writeln!(out, "  kernel {} ({} shapes)", kernel.name, kernel.shapes.len())?;
    }
    Ok(())
}
