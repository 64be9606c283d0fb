//! `anybit linear DIR --layer NAME --input x.npy --output y.npy [--device auto|gpu|interp]`:
//! one imported layer on a batch of activations (x's columns gathered in the layer's input
//! order and its bias added, where it has them).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anybit::import::ImportedModel;
use anybit::ir::DType;
use anybit::linear::Device;
use anybit::npy::{NpyArray, NpyType};
use anybit::runtime::Gpu;
use anyhow::{Context, Result, anyhow, bail};

/// Where the layer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// GPU 0 when there is one, else the interpreter.
    Auto,
    /// GPU 0 (an error without one).
    Gpu,
    /// The CPU interpreter.
    Interp,
}

/// What `anybit linear` was asked to do.
#[derive(Debug)]
pub struct LinearRequest<'a> {
    /// The import directory.
    pub dir: &'a Path,
    /// The layer's name.
    pub layer: &'a str,
    /// x: an f16 or f32 `.npy` file of shape [M, K].
    pub input: &'a Path,
    /// y: written as an `.npy` file of x's element type, shape [M, N].
    pub output: &'a Path,
    /// Where to run.
    pub device: DeviceChoice,
}

/// Reads x, runs the layer, writes y (to a temporary file renamed into place).
pub fn run(request: &LinearRequest<'_>, out: &mut dyn Write) -> Result<()> {
    let model = ImportedModel::open(request.dir)?;
    let record = model.layer(request.layer)?;
    let (k, n) = (record.k, record.n);
    let input = request.input;
    let bytes = std::fs::read(input).with_context(|| format!("cannot read {}", input.display()))?;
    let x = NpyArray::read(&bytes).with_context(|| format!("cannot read {}", input.display()))?;
    let [m, x_k] = x.shape[..] else {
        bail!("{}: x has shape {:?}; layer `{}` needs [M, {k}]", input.display(), x.shape, request.layer);
    };
    if x_k != k || m == 0 {
        bail!("{}: x has shape [{m}, {x_k}]; layer `{}` needs [M, {k}] with M ≥ 1", input.display(), request.layer);
    }
    let values: Vec<f64> = match x.dtype {
        NpyType::F16 => x
            .data
            .chunks_exact(2)
            .map(|c| DType::F16.decode_f64(u32::from(u16::from_le_bytes([c[0], c[1]]))).unwrap_or(f64::NAN))
            .collect(),
        NpyType::F32 => {
            x.data.chunks_exact(4).map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect()
        }
        other => bail!("{}: x holds `{}` elements; use float16 or float32", input.display(), other.descr()),
    };
    // An input order (act-order GPTQ) gathers x's columns as the kernel's rows of W expect.
    let values = match model.input_order(record)? {
        Some(order) => values.chunks_exact(k).flat_map(|row| order.iter().map(|&i| row[i])).collect(),
        None => values,
    };
    let device = match request.device {
        DeviceChoice::Auto => Device::Auto,
        DeviceChoice::Interp => Device::Interpreter,
        DeviceChoice::Gpu => Device::Gpu(Arc::new(Gpu::new(0).context("--device gpu")?)),
    };
    let start = Instant::now();
    let layer = model.load_layer(request.layer, &device)?;
    // Plans `anybit tune` measured for this GPU, kernel and shape (none on the interpreter).
    let mut tuned = 0;
    if layer.is_gpu()
        && let Some(path) = anybit::tune::TuningTable::default_path()
    {
        tuned = layer.use_tuning(&anybit::tune::TuningTable::load(&path)?)?;
    }
    let loaded = start.elapsed();
    let act = layer.format().activation;
    let x_codes: Vec<u16> = values.iter().map(|&v| act.encode(v) as u16).collect();
    let start = Instant::now();
    let y = layer.forward(&x_codes).with_context(|| format!("layer `{}`", request.layer))?;
    let ran = start.elapsed();
    // The bias (a model's, e.g. ONNX MatMulNBits's) is added on the host to the kernel's y,
    // in f64, then rounded once to y's element type.
    let bias = model.bias(record)?;
    let y_values = y.iter().enumerate().map(|(i, &c)| {
        let value = act.decode_f64(u32::from(c)).unwrap_or(f64::NAN);
        value + bias.as_ref().map_or(0.0, |b| f64::from(b[i % n]))
    });
    // y in x's element type: exact for f32 (without a bias), and for f16 when the activations
    // are f16.
    let data: Vec<u8> = match x.dtype {
        NpyType::F16 => y_values.flat_map(|v| (DType::F16.encode(v) as u16).to_le_bytes()).collect(),
        _ => y_values.flat_map(|v| (v as f32).to_le_bytes()).collect(),
    };
    let array = NpyArray::new(x.dtype, vec![m, n], data).map_err(|e| anyhow!("y: {e}"))?;
    let output = request.output;
    let tmp = output.with_extension("npy.tmp");
    std::fs::write(&tmp, array.write()).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, output).with_context(|| format!("cannot write {}", output.display()))?;
    writeln!(
        out,
        "{}: `{}` ({} {k}×{n}, {}{}) on {}{}, M = {m}: loaded in {:.1} ms, ran in {:.1} ms; wrote {}",
        request.dir.display(),
        record.name,
        record.source_type,
        record.kernel,
        if bias.is_some() { " + bias" } else { "" },
        layer.device_name(),
        if tuned > 0 { format!(" ({tuned} tuned plans, {})", layer.plan_for(m).tag()) } else { String::new() },
        loaded.as_secs_f64() * 1e3,
        ran.as_secs_f64() * 1e3,
        output.display()
    )?;
    Ok(())
}
