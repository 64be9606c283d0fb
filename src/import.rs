//! Model import: every quantized linear layer of a model file becomes a compiled kernel plus
//! its weights re-packed into that kernel's layout, described by a manifest
//! ([`import_model`]); an imported layer is then loaded and run without compiling anything
//! ([`ImportedModel`]).
//!
//! # What an import directory holds
//!
//! ```text
//! DIR/manifest.json                 the import manifest (ImportManifest, JSON)
//! DIR/weights.bin                   every layer's buffers, each at a multiple of 256 bytes
//! DIR/kernels/<kernel>/manifest.json   the runtime's launch manifest of the kernel
//! DIR/kernels/<kernel>/<kernel>.ptx    its PTX for the import's target
//! DIR/kernels/<kernel>/<kernel>.abk    its source in the kernel language (the interpreter runs it)
//! ```
//!
//! Each layer is mapped to a [`WeightFormat`]; one kernel is compiled per distinct format and
//! target. The generated kernel takes M, N and K as launch arguments, so layers of one format
//! share it whatever their shapes (the manifest lists the shapes each kernel serves). A layer's
//! entry names its kernel, its shape, its source type, and where each of its buffers (`w`,
//! `s`, `z`: see [`PackedWeights`]) lies in `weights.bin`.
//!
//! # Failure leaves nothing behind
//!
//! Everything is written into a temporary directory beside DIR, which is renamed into place
//! only when the whole import succeeded; on any error it is removed. Before anything is
//! compiled, every tensor is checked, so an unsupported layer fails the import at once.
//!
//! # Which tensors are layers
//!
//! From a GGUF file: every tensor of a quantized ggml type. Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, the
//! K-quants Q2_K … Q6_K (their two-level scales folded exactly into f32 scales and offsets) and
//! IQ4_NL (a lookup-table format: u4 codes through ggml's 16 levels, the table recorded in the
//! manifest's format) import today (see [`anybit_frontend::gguf::linear_weights`]); any other
//! quantized type (the other IQ types) fails the import with an error naming the file and the
//! tensor. Unquantized tensors (F32, F16, BF16: norms,
//! biases, unquantized matrices) are not layers of a low-bit kernel and are left out.
//!
//! From an ONNX model (`.onnx`): every `com.microsoft::MatMulNBits` node (2, 4 or 8 bits, see
//! [`anybit_frontend::onnx`]); other nodes are left out. From a Hugging Face checkpoint (a
//! directory with `config.json` and `*.safetensors`): every GPTQ, AWQ or compressed-tensors
//! quantized linear layer (see [`anybit_frontend::hf`]); other tensors are left out.
//! [`ModelSource`] opens any of the three and plans each layer before anything is compiled.
//!
//! # What the host adds around the kernel
//!
//! A layer may carry a **bias** (ONNX MatMulNBits, GPTQ/AWQ/compressed-tensors checkpoints:
//! N f32 values, buffer `bias` in the layer's `bias` entry) and an **input order** (act-order
//! GPTQ: K u32 indices, the layer's `input_order` entry): the kernel's W rows are sorted so
//! groups are contiguous, and x's columns must be gathered in the same order
//! (`x'[m][i] = x[m][order[i]]`). `anybit linear` does both — gathers x before the kernel and
//! adds the bias to y in f64, rounded once to y's element type — and
//! [`ImportedModel::bias`] and [`ImportedModel::input_order`] give them to other hosts
//! ([`ImportedModel::load_layer`]'s `QuantizedLinear` runs the kernel alone). Import format 2
//! added these entries; format 1 directories still load.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anybit_backends::{LlvmOptimization, Target};
use anybit_frontend::gguf::{GgmlType, GgufError, GgufFile, TensorInfo, linear_format, linear_weights};
use anybit_frontend::hf::{HfError, HfLayer, HfModel};
use anybit_frontend::lowbit::{PackedWeights, QuantizedWeights, WeightFormat, build_module_for};
use anybit_frontend::lut::Lut;
use anybit_frontend::onnx::{MatMulNBits, OnnxError, OnnxModel};
use anybit_ir::DType;
use anybit_ir::access::gcd;
use anybit_ir::interp::Buffer;
use anybit_ir::manifest::Manifest;
use anybit_passes::{OptLevel, PassManager};
use anybit_runtime::cache::{CacheConfig, CompileCache};
use serde::{Deserialize, Serialize};

use crate::jit::{JitError, JitOptions, compile_lowbit_layer_for};
use crate::linear::{Device, LinearError, QuantizedLinear};

/// The version of the import directory's layout this build writes and reads. Version 4: the
/// weights are packed as the A operands of the transposed product (each warp 16 consecutive
/// columns); 3 packed them as B operands. Version 3 introduced the layer module (matmul
/// kernels taking a split of K at launch, and the reduction); 1 and 2 had one kernel of
/// another calling convention.
pub const FORMAT_VERSION: u32 = 4;

/// Buffers in `weights.bin` start at multiples of this (a GPU's widest loads, and pages of a
/// memory map, stay aligned).
pub const WEIGHT_ALIGNMENT: u64 = 256;

/// Why an import, or loading an imported layer, failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The model file is of a kind that cannot be imported (yet).
    #[error("{path}: {what}")]
    Model {
        /// The model.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The GGUF file could not be read, or one of its tensors not imported.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// The ONNX model could not be read, or one of its layers not imported.
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    /// The Hugging Face checkpoint could not be read, or one of its layers not imported.
    #[error(transparent)]
    Hf(#[from] HfError),
    /// A layer's weights could not be imported.
    #[error("{path}: tensor `{tensor}`: {what}")]
    Tensor {
        /// The model.
        path: PathBuf,
        /// The tensor (or layer).
        tensor: String,
        /// What is wrong.
        what: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The output directory exists.
    #[error("{0} exists: remove it or import into another directory (or overwrite it)")]
    Exists(PathBuf),
    /// A kernel could not be compiled.
    #[error("compiling `{kernel}` failed: {source}")]
    Compile {
        /// The kernel.
        kernel: String,
        /// Why.
        source: JitError,
    },
    /// An import directory's manifest or weights are not what this build reads.
    #[error("{path}: {what}")]
    Manifest {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// No layer of that name.
    #[error("{dir}: no layer `{layer}` (the manifest lists {count} layers; `anybit inspect` shows them)")]
    NoLayer {
        /// The import directory.
        dir: PathBuf,
        /// The name asked for.
        layer: String,
        /// How many layers there are.
        count: usize,
    },
    /// A layer could not be built.
    #[error("layer `{layer}`: {source}")]
    Layer {
        /// The layer.
        layer: String,
        /// Why.
        source: LinearError,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ImportError + '_ {
    move |source| ImportError::Io { path: path.to_path_buf(), source }
}

/// How to import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportOptions {
    /// The GPU target of the kernels.
    pub target: Target,
    /// The activation type of x and y (f16 or bf16).
    pub activation: DType,
    /// The pass pipeline.
    pub opt_level: OptLevel,
    /// LLVM's pipeline: `Full` by default (an import is compiled once, ahead of time).
    pub llvm: LlvmOptimization,
    /// Replace an existing output directory (only once the new one is complete).
    pub overwrite: bool,
}

impl Default for ImportOptions {
    /// `sm_90`, f16 activations, `-O2`, LLVM's full pipeline, no overwriting.
    fn default() -> ImportOptions {
        ImportOptions {
            target: Target::Sm90,
            activation: DType::F16,
            opt_level: OptLevel::O2,
            llvm: LlvmOptimization::Full,
            overwrite: false,
        }
    }
}

/// A weight format as the manifest writes it (types by name).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormatRecord {
    /// The weight type (`u4`; the code type of a lookup-table format).
    pub weight: String,
    /// The table of a lookup-table format (IQ4_NL, NF4); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lut: Option<LutRecord>,
    /// Rows of W along K sharing a scale.
    pub group_size: usize,
    /// The scale type.
    pub scale: String,
    /// Whether there are zero points.
    pub zero_point: bool,
    /// Whether there are offsets.
    #[serde(default)]
    pub offset: bool,
    /// The activation type.
    pub activation: String,
}

/// The table of a lookup-table format as the manifest writes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LutRecord {
    /// Its name (`iq4nl`, `nf4`, or `lut4x…` for another table): a check on the values.
    pub name: String,
    /// The value of each code, in code order (2, 4, 8 or 16 `f32`s).
    pub values: Vec<f32>,
}

// Entries are finite (a `Lut` refuses others), so equality is an equivalence.
impl Eq for LutRecord {}

impl LutRecord {
    /// The table it records, checked against its name.
    pub fn lut(&self) -> Result<Lut, String> {
        let lut = Lut::new(&self.values).map_err(|e| format!("lookup table `{}`: {e}", self.name))?;
        if lut.name() != self.name {
            return Err(format!(
                "lookup table `{}`: its {} values are not that table's (they are table `{}`)",
                self.name,
                self.values.len(),
                lut.name()
            ));
        }
        Ok(lut)
    }
}

impl FormatRecord {
    /// The record of `format`.
    pub fn new(format: &WeightFormat) -> FormatRecord {
        FormatRecord {
            weight: format.weight.to_string(),
            lut: format.lut.map(|lut| LutRecord { name: lut.name(), values: lut.values() }),
            group_size: format.group_size,
            scale: format.scale.to_string(),
            zero_point: format.zero_point,
            offset: format.offset,
            activation: format.activation.to_string(),
        }
    }

    /// The format it records (checked).
    pub fn format(&self) -> Result<WeightFormat, String> {
        let dtype = |name: &str| name.parse::<DType>().map_err(|e| format!("type `{name}`: {e}"));
        let format = WeightFormat {
            weight: dtype(&self.weight)?,
            lut: self.lut.as_ref().map(LutRecord::lut).transpose()?,
            group_size: self.group_size,
            scale: dtype(&self.scale)?,
            zero_point: self.zero_point,
            offset: self.offset,
            activation: dtype(&self.activation)?,
        };
        format.validate().map_err(|e| e.to_string())?;
        Ok(format)
    }
}

/// One compiled kernel of an import.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelRecord {
    /// Its name (also its PTX entry point).
    pub name: String,
    /// Its directory, relative to the import directory: the runtime's `manifest.json`, the PTX
    /// and the kernel-language source.
    pub dir: String,
    /// The kernel-language source, relative to `dir`.
    pub source: String,
    /// The format it computes.
    pub format: FormatRecord,
    /// The (K, N) shapes of the layers it serves.
    pub shapes: Vec<[usize; 2]>,
}

/// One buffer of a layer in the weights file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferRecord {
    /// The kernel parameter it binds (`w`, `s`, `z`).
    pub name: String,
    /// Its element type.
    pub dtype: String,
    /// Its number of elements.
    pub len: usize,
    /// Its byte offset in the weights file.
    pub offset: u64,
    /// Its size in bytes (the packed elements).
    pub bytes: u64,
}

/// One imported layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Its name in the model.
    pub name: String,
    /// Its type in the model (`Q4_0`).
    pub source_type: String,
    /// Input features.
    pub k: usize,
    /// Output features.
    pub n: usize,
    /// The kernel that computes it.
    pub kernel: String,
    /// Its weight format.
    pub format: FormatRecord,
    /// Its buffers, in launch order.
    pub buffers: Vec<BufferRecord>,
    /// Its bias (N f32 values in the weights file), added to y on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias: Option<BufferRecord>,
    /// Its input order (K u32 indices in the weights file): the kernel's x column i is the
    /// model's input feature `order[i]` (act-order GPTQ), gathered on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_order: Option<BufferRecord>,
}

/// The manifest of an import directory (`manifest.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportManifest {
    /// [`FORMAT_VERSION`] of the build that wrote it.
    pub format_version: u32,
    /// The anybit version that wrote it.
    pub anybit_version: String,
    /// The model file it was imported from.
    pub source: String,
    /// The GPU target of its kernels.
    pub target: String,
    /// The weights file, relative to the directory.
    pub weights_file: String,
    /// The kernels.
    pub kernels: Vec<KernelRecord>,
    /// The layers, in model order.
    pub layers: Vec<LayerRecord>,
}

/// What an import did.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportSummary {
    /// The manifest written.
    pub manifest: ImportManifest,
    /// Tensors left out (name and why).
    pub skipped: Vec<(String, String)>,
    /// Bytes of `weights.bin`.
    pub weight_bytes: u64,
    /// Seconds spent compiling kernels.
    pub compile_seconds: f64,
    /// Seconds for the whole import.
    pub total_seconds: f64,
}

/// A temporary directory removed on drop unless [`Staging::commit`] renamed it into place.
struct Staging {
    dir: PathBuf,
    committed: bool,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Staging {
    fn new(out: &Path) -> Result<Staging, ImportError> {
        let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "import".into());
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(io_error(&parent))?;
        let dir = parent.join(format!(".{name}.importing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).map_err(io_error(&dir))?;
        Ok(Staging { dir, committed: false })
    }

    /// Moves the finished directory to `out` (replacing it when `overwrite`).
    fn commit(mut self, out: &Path, overwrite: bool) -> Result<(), ImportError> {
        if out.exists() {
            if !overwrite {
                return Err(ImportError::Exists(out.to_path_buf()));
            }
            let old = self.dir.with_extension("old");
            std::fs::rename(out, &old).map_err(io_error(out))?;
            std::fs::rename(&self.dir, out).map_err(io_error(out))?;
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&self.dir, out).map_err(io_error(out))?;
        }
        self.committed = true;
        Ok(())
    }
}

/// A file written whole, to be renamed into place by its directory's commit.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ImportError> {
    std::fs::write(path, bytes).map_err(io_error(path))
}

/// How a model tensor takes part in an import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TensorPlan {
    /// A quantized linear layer, imported in this format.
    Layer(WeightFormat),
    /// Left out (not a quantized matrix), with the reason.
    Skip(String),
    /// A quantized tensor that cannot be imported (yet), with the reason: fails an import.
    Unsupported(String),
}

/// What importing a GGUF tensor with `activation` x/y would do.
pub fn gguf_tensor_plan(tensor: &TensorInfo, activation: DType) -> TensorPlan {
    let t = tensor.ggml_type;
    let unquantized = [GgmlType::F32, GgmlType::F16, GgmlType::BF16];
    let integer = (24..=28).contains(&t.0); // I8, I16, I32, I64, F64
    if unquantized.contains(&t) || integer {
        return TensorPlan::Skip(format!("{} (not quantized)", t.name()));
    }
    let Some(format) = linear_format(t, activation) else {
        return TensorPlan::Unsupported(format!(
            "{} weights cannot be imported yet (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K … Q6_K and IQ4_NL can)",
            t.name()
        ));
    };
    let [k, n] = tensor.dims[..] else {
        return TensorPlan::Unsupported(format!("a linear layer has 2 dimensions, not {}", tensor.dims.len()));
    };
    let dim = |d: u64| usize::try_from(d).unwrap_or(usize::MAX);
    if let Err(e) = format.validate_shape(1, dim(n), dim(k)) {
        return TensorPlan::Unsupported(format!("shape [{n}, {k}]: {e}"));
    }
    TensorPlan::Layer(format)
}

/// One layer (or left-out tensor) of a model, as an import plans it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelLayer {
    /// Its name in the model (a tensor's or a node's).
    pub name: String,
    /// What it is in the model (`Q4_0`, `MatMulNBits(4b, block 32)`, `Relu`).
    pub source_type: String,
    /// Its shape as the model states it, outermost first.
    pub shape: Vec<u64>,
    /// Bytes of its data in the model.
    pub bytes: u64,
    /// What an import does with it.
    pub plan: TensorPlan,
}

impl ModelLayer {
    /// A linear layer of K inputs and N outputs, imported in `format` (or unsupported for the
    /// reason).
    fn linear(
        name: &str,
        source_type: String,
        [k, n]: [usize; 2],
        bytes: u64,
        format: Result<WeightFormat, String>,
    ) -> ModelLayer {
        ModelLayer {
            name: name.to_string(),
            source_type,
            shape: vec![n as u64, k as u64],
            bytes,
            plan: format.map_or_else(TensorPlan::Unsupported, TensorPlan::Layer),
        }
    }
}

/// A layer's weights in canonical form, and what the host does around the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerWeights {
    /// The weights.
    pub weights: QuantizedWeights,
    /// The bias, N values as f32 bits, added to y (after the kernel's rounding).
    pub bias: Option<Vec<u32>>,
    /// The input order, K indices: x's columns are gathered in this order before the kernel.
    pub input_order: Option<Vec<u32>>,
}

/// A model opened for import: a GGUF file, an ONNX model or a Hugging Face checkpoint.
#[derive(Debug)]
pub enum ModelSource {
    /// A GGUF file.
    Gguf(GgufFile),
    /// An ONNX model and its MatMulNBits layers.
    Onnx(OnnxModel, Vec<MatMulNBits>),
    /// A Hugging Face checkpoint directory and its quantized linear layers.
    Hf(HfModel, Vec<HfLayer>),
}

impl ModelSource {
    /// Opens `model` by its kind: a `.gguf` file, an `.onnx` model or a Hugging Face
    /// checkpoint directory (headers and layer descriptions checked; weight data read layer by
    /// layer later).
    pub fn open(model: &Path) -> Result<ModelSource, ImportError> {
        let refuse = |what: &str| Err(ImportError::Model { path: model.to_path_buf(), what: what.into() });
        if model.is_dir() {
            let hf = HfModel::open(model)?;
            let layers = hf.layers()?;
            return Ok(ModelSource::Hf(hf, layers));
        }
        match model.extension().and_then(|e| e.to_str()) {
            Some("gguf") => Ok(ModelSource::Gguf(GgufFile::open(model)?)),
            Some("onnx") => {
                let onnx = OnnxModel::open(model)?;
                let layers = onnx.matmul_nbits()?;
                Ok(ModelSource::Onnx(onnx, layers))
            }
            _ => refuse("not a model anybit imports (a .gguf file, an .onnx model or a Hugging Face directory)"),
        }
    }

    /// The model's path.
    pub fn path(&self) -> &Path {
        match self {
            ModelSource::Gguf(file) => file.path(),
            ModelSource::Onnx(model, _) => model.path(),
            ModelSource::Hf(model, _) => model.dir(),
        }
    }

    /// Every tensor (GGUF) or node (ONNX) and what importing it with `activation` x/y does.
    pub fn layers(&self, activation: DType) -> Vec<ModelLayer> {
        match self {
            ModelSource::Gguf(file) => file
                .tensors
                .iter()
                .map(|t| ModelLayer {
                    name: t.name.clone(),
                    source_type: t.ggml_type.name(),
                    shape: t.dims.iter().rev().copied().collect(),
                    bytes: t.bytes,
                    plan: gguf_tensor_plan(t, activation),
                })
                .collect(),
            ModelSource::Onnx(model, layers) => {
                let mut out: Vec<ModelLayer> = layers
                    .iter()
                    .map(|l| ModelLayer::linear(&l.name, l.source_type(), [l.k, l.n], l.bytes, l.format(activation)))
                    .collect();
                let is_layer = |i: usize| layers.iter().any(|l| l.node == i);
                for (i, (name, domain, op)) in model.nodes().enumerate().filter(|(i, _)| !is_layer(*i)) {
                    let op = if domain.is_empty() { op.to_string() } else { format!("{domain}::{op}") };
                    let name = if name.is_empty() { format!("node {i}") } else { name.to_string() };
                    let plan = TensorPlan::Skip(format!("{op} (not a quantized linear layer)"));
                    out.push(ModelLayer { name, source_type: op, shape: Vec::new(), bytes: 0, plan });
                }
                out
            }
            ModelSource::Hf(model, layers) => {
                let source_type = model.quantization.describe();
                let mut out: Vec<ModelLayer> = layers
                    .iter()
                    .map(|l| {
                        let format = model.format(l, activation);
                        ModelLayer::linear(&l.name, source_type.clone(), [l.k, l.n], l.bytes, format)
                    })
                    .collect();
                let claimed: std::collections::HashSet<&str> =
                    layers.iter().flat_map(|l| l.tensors.iter().map(String::as_str)).collect();
                for t in model.tensors().filter(|t| !claimed.contains(t.name.as_str())) {
                    out.push(ModelLayer {
                        name: t.name.clone(),
                        source_type: format!("{:?}", t.dtype),
                        shape: t.shape.iter().map(|&d| d as u64).collect(),
                        bytes: t.bytes,
                        plan: TensorPlan::Skip(format!("{:?} (not a quantized linear layer)", t.dtype)),
                    });
                }
                out
            }
        }
    }

    /// The weights of the layer called `name`, in canonical form for `activation` x/y.
    pub fn layer_weights(&self, name: &str, activation: DType) -> Result<LayerWeights, ImportError> {
        let missing = || ImportError::Tensor {
            path: self.path().to_path_buf(),
            tensor: name.to_string(),
            what: "no such layer".into(),
        };
        match self {
            ModelSource::Gguf(file) => {
                let tensor = file.tensor(name).ok_or_else(missing)?;
                Ok(LayerWeights { weights: linear_weights(file, tensor, activation)?, bias: None, input_order: None })
            }
            ModelSource::Onnx(model, layers) => {
                let layer = layers.iter().find(|l| l.name == name).ok_or_else(missing)?;
                let linear = model.linear_weights(layer, activation)?;
                Ok(LayerWeights { weights: linear.weights, bias: linear.bias, input_order: None })
            }
            ModelSource::Hf(model, layers) => {
                let layer = layers.iter().find(|l| l.name == name).ok_or_else(missing)?;
                let linear = model.linear_weights(layer, activation)?;
                Ok(LayerWeights { weights: linear.weights, bias: linear.bias, input_order: linear.input_order })
            }
        }
    }
}

/// Imports `model` into the directory `out` (see the module doc); `progress` receives one
/// line per step (for a terminal: what is being compiled or packed, and how far along).
pub fn import_model(
    model: &Path,
    out: &Path,
    options: &ImportOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<ImportSummary, ImportError> {
    let start = Instant::now();
    if out.exists() && !options.overwrite {
        return Err(ImportError::Exists(out.to_path_buf()));
    }
    if options.activation != DType::F16 && options.activation != DType::BF16 {
        return Err(ImportError::Model {
            path: model.to_path_buf(),
            what: format!("activation type {} is not supported: use f16 or bf16", options.activation),
        });
    }
    let source = ModelSource::open(model)?;

    // Plan: every layer's role, before anything is compiled or written.
    let mut layers = Vec::new();
    let mut skipped = Vec::new();
    let all = source.layers(options.activation);
    let count = all.len();
    for layer in all {
        match layer.plan {
            TensorPlan::Layer(format) => {
                let dim = |d: Option<&u64>| d.map_or(0, |&d| d as usize);
                let shape = [dim(layer.shape.get(1)), dim(layer.shape.first())];
                layers.push((layer.name, layer.source_type, shape, format));
            }
            TensorPlan::Skip(why) => skipped.push((layer.name, why)),
            TensorPlan::Unsupported(what) => {
                return Err(ImportError::Tensor { path: source.path().to_path_buf(), tensor: layer.name, what });
            }
        }
    }
    if layers.is_empty() {
        return Err(ImportError::Model {
            path: model.to_path_buf(),
            what: format!("no quantized linear layers among its {count} tensors and nodes"),
        });
    }
    let mut kernels: Vec<KernelRecord> = Vec::new();
    let mut formats: Vec<WeightFormat> = Vec::new();
    for (_, _, shape, format) in &layers {
        let shape = *shape;
        match formats.iter().position(|f| f == format) {
            Some(i) if kernels[i].shapes.contains(&shape) => {}
            Some(i) => kernels[i].shapes.push(shape),
            None => {
                let name = format.kernel_name();
                kernels.push(KernelRecord {
                    dir: format!("kernels/{name}"),
                    source: format!("{name}.abk"),
                    name,
                    format: FormatRecord::new(format),
                    shapes: vec![shape],
                });
                formats.push(*format);
            }
        }
    }
    progress(&format!(
        "{}: {} quantized layers, {} kernel{} for {}, {} tensors left out",
        model.display(),
        layers.len(),
        kernels.len(),
        if kernels.len() == 1 { "" } else { "s" },
        options.target,
        skipped.len()
    ));

    let staging = Staging::new(out)?;
    // Kernels: compiled once each, through a cache of this import only.
    let compile_start = Instant::now();
    let cache = CompileCache::new(CacheConfig::memory_only());
    let jit = JitOptions { target: options.target, opt_level: options.opt_level, llvm: options.llvm };
    for (i, (record, format)) in kernels.iter().zip(&formats).enumerate() {
        let kernel_start = Instant::now();
        let compile_error = |source: JitError| ImportError::Compile { kernel: record.name.clone(), source };
        // Specialized for what every N it serves shares (the vectorizer proves the weight,
        // scale and output rows aligned from it).
        let common_n = record.shapes.iter().fold(0usize, |g, &[_, n]| gcd(g, n));
        let common_n = (common_n > 0).then_some(common_n);
        let compiled = compile_lowbit_layer_for(format, common_n, &jit, &cache).map_err(compile_error)?;
        let dir = staging.dir.join(&record.dir);
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let manifest = &compiled.module.manifest;
        for (kernel, ptx) in manifest.kernels.iter().zip(&compiled.module.ptx) {
            write_file(&dir.join(plain_file_name(&kernel.ptx_file, &dir)?), ptx.as_bytes())?;
        }
        write_file(&dir.join("manifest.json"), (manifest.to_json() + "\n").as_bytes())?;
        // The source after the passes, as compiled: the interpreter then runs what the GPU
        // runs, selections included (and checks the vectorizer's alignment proofs).
        let mut module = build_module_for(format, common_n).map_err(|e| compile_error(e.into()))?;
        PassManager::for_level(options.opt_level).run(&mut module).map_err(|e| compile_error(e.into()))?;
        write_file(&dir.join(&record.source), anybit_ir::text::print_module(&module).as_bytes())?;
        progress(&format!(
            "[kernel {}/{}] {} ({} ms)",
            i + 1,
            kernels.len(),
            record.name,
            kernel_start.elapsed().as_millis()
        ));
    }
    let compile_seconds = compile_start.elapsed().as_secs_f64();

    // Weights: one layer at a time, read, re-packed and appended.
    let weights_path = staging.dir.join("weights.bin");
    let weights_file = File::create(&weights_path).map_err(io_error(&weights_path))?;
    let mut writer = BufWriter::new(weights_file);
    let mut at = 0u64;
    let mut records = Vec::with_capacity(layers.len());
    for (i, (name, source_type, _, format)) in layers.iter().enumerate() {
        let LayerWeights { weights, bias, input_order } = source.layer_weights(name, options.activation)?;
        let tensor_error =
            |what: String| ImportError::Tensor { path: source.path().to_path_buf(), tensor: name.clone(), what };
        if weights.format != *format {
            return Err(tensor_error(format!("imported as {:?}, planned as {format:?}", weights.format)));
        }
        let packed = weights.pack().map_err(|e| tensor_error(e.to_string()))?;
        let mut write_buffer = |name: &str, buffer: &Buffer| -> Result<BufferRecord, ImportError> {
            let padding = at.next_multiple_of(WEIGHT_ALIGNMENT) - at;
            writer.write_all(&vec![0u8; padding as usize]).map_err(io_error(&weights_path))?;
            at += padding;
            let bytes = buffer.bytes();
            writer.write_all(bytes).map_err(io_error(&weights_path))?;
            let record = BufferRecord {
                name: name.into(),
                dtype: buffer.dtype().to_string(),
                len: buffer.len(),
                offset: at,
                bytes: bytes.len() as u64,
            };
            at += bytes.len() as u64;
            Ok(record)
        };
        let mut buffers = Vec::new();
        for (name, buffer) in packed.buffers() {
            buffers.push(write_buffer(name, buffer)?);
        }
        let bias = match bias {
            Some(bias) if bias.len() == weights.n => {
                let buffer = Buffer::from_codes(DType::F32, &bias).map_err(|e| tensor_error(e.to_string()))?;
                Some(write_buffer("bias", &buffer)?)
            }
            Some(bias) => return Err(tensor_error(format!("{} bias values for N = {}", bias.len(), weights.n))),
            None => None,
        };
        let input_order = match input_order {
            Some(order) if order.len() == weights.k && order.iter().all(|&i| (i as usize) < weights.k) => {
                let u32_type = DType::uint(32).map_err(|e| tensor_error(e.to_string()))?;
                let buffer = Buffer::from_codes(u32_type, &order).map_err(|e| tensor_error(e.to_string()))?;
                Some(write_buffer("input_order", &buffer)?)
            }
            Some(_) => return Err(tensor_error(format!("the input order is not {} indices below K", weights.k))),
            None => None,
        };
        progress(&format!(
            "[layer {}/{}] {name} {source_type} {}×{} → {}{}{} ({:.1} KiB)",
            i + 1,
            layers.len(),
            weights.k,
            weights.n,
            format.kernel_name(),
            if input_order.is_some() { " + input order" } else { "" },
            if bias.is_some() { " + bias" } else { "" },
            buffers.iter().chain(&bias).chain(&input_order).map(|b| b.bytes).sum::<u64>() as f64 / 1024.0
        ));
        records.push(LayerRecord {
            name: name.clone(),
            source_type: source_type.clone(),
            k: weights.k,
            n: weights.n,
            kernel: format.kernel_name(),
            format: FormatRecord::new(format),
            buffers,
            bias,
            input_order,
        });
    }
    writer
        .into_inner()
        .map_err(|e| ImportError::Io { path: weights_path.clone(), source: e.into_error() })?
        .sync_all()
        .map_err(io_error(&weights_path))?;
    let manifest = ImportManifest {
        format_version: FORMAT_VERSION,
        anybit_version: env!("CARGO_PKG_VERSION").into(),
        source: model.display().to_string(),
        target: options.target.name().into(),
        weights_file: "weights.bin".into(),
        kernels,
        layers: records,
    };
    let json = serde_json::to_string_pretty(&manifest)
        .map_err(|e| ImportError::Manifest { path: staging.dir.join("manifest.json"), what: e.to_string() })?;
    write_file(&staging.dir.join("manifest.json"), (json + "\n").as_bytes())?;
    staging.commit(out, options.overwrite)?;
    Ok(ImportSummary {
        manifest,
        skipped,
        weight_bytes: at,
        compile_seconds,
        total_seconds: start.elapsed().as_secs_f64(),
    })
}

/// `name` when it is a plain file name (no separators, not `..`): names from a manifest never
/// reach outside their directory.
fn plain_file_name<'a>(name: &'a str, dir: &Path) -> Result<&'a str, ImportError> {
    let plain = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\']);
    if plain {
        Ok(name)
    } else {
        Err(ImportError::Manifest { path: dir.to_path_buf(), what: format!("`{name}` is not a plain file name") })
    }
}

/// A relative path from a manifest, checked to stay inside the directory.
fn inside(dir: &Path, relative: &str, manifest: &Path) -> Result<PathBuf, ImportError> {
    let mut path = dir.to_path_buf();
    for part in relative.split('/') {
        path.push(plain_file_name(part, manifest)?);
    }
    Ok(path)
}

/// An import directory, opened: its manifest (checked), weights read on demand.
#[derive(Debug)]
pub struct ImportedModel {
    dir: PathBuf,
    /// The manifest.
    pub manifest: ImportManifest,
}

impl ImportedModel {
    /// Reads and checks `DIR/manifest.json`.
    pub fn open(dir: impl AsRef<Path>) -> Result<ImportedModel, ImportError> {
        let dir = dir.as_ref();
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
        let bad = |what: String| ImportError::Manifest { path: path.clone(), what };
        let manifest: ImportManifest = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(bad(format!(
                "written in import format {}, this build reads {FORMAT_VERSION}: import the model again",
                manifest.format_version
            )));
        }
        Ok(ImportedModel { dir: dir.to_path_buf(), manifest })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The layer called `name`.
    pub fn layer(&self, name: &str) -> Result<&LayerRecord, ImportError> {
        self.manifest.layers.iter().find(|l| l.name == name).ok_or_else(|| ImportError::NoLayer {
            dir: self.dir.clone(),
            layer: name.into(),
            count: self.manifest.layers.len(),
        })
    }

    fn kernel(&self, layer: &LayerRecord) -> Result<&KernelRecord, ImportError> {
        self.manifest.kernels.iter().find(|k| k.name == layer.kernel).ok_or_else(|| ImportError::Manifest {
            path: self.dir.join("manifest.json"),
            what: format!("layer `{}` names kernel `{}`, which is not listed", layer.name, layer.kernel),
        })
    }

    /// A layer's buffers, read from the weights file and checked against its format.
    pub fn packed_weights(&self, layer: &LayerRecord) -> Result<PackedWeights, ImportError> {
        let manifest_path = self.dir.join("manifest.json");
        let bad = |what: String| ImportError::Manifest { path: manifest_path.clone(), what };
        let format = layer.format.format().map_err(|e| bad(format!("layer `{}`: {e}", layer.name)))?;
        let expected = PackedWeights::expected_buffers(&format, layer.k, layer.n)
            .map_err(|e| bad(format!("layer `{}`: {e}", layer.name)))?;
        let names: Vec<&str> = layer.buffers.iter().map(|b| b.name.as_str()).collect();
        let want: Vec<&str> = expected.iter().map(|b| b.0).collect();
        if names != want {
            return Err(bad(format!("layer `{}` has buffers {names:?}, its format needs {want:?}", layer.name)));
        }
        let mut buffers = Vec::with_capacity(expected.len());
        for (record, (name, dtype, len)) in layer.buffers.iter().zip(expected) {
            buffers.push(self.read_buffer(layer, record, name, dtype, len)?);
        }
        // The names were checked against the format's: w, s, then z and o where it has them.
        let mut buffers = buffers.into_iter();
        let (Some(w), Some(s)) = (buffers.next(), buffers.next()) else {
            return Err(bad(format!("layer `{}`: missing buffers", layer.name)));
        };
        let z = if format.zero_point { buffers.next() } else { None };
        let o = if format.offset { buffers.next() } else { None };
        Ok(PackedWeights { format, k: layer.k, n: layer.n, w, s, z, o })
    }

    /// One buffer of `layer` from the weights file, checked to be `len` elements of `dtype`.
    fn read_buffer(
        &self,
        layer: &LayerRecord,
        record: &BufferRecord,
        name: &str,
        dtype: DType,
        len: usize,
    ) -> Result<Buffer, ImportError> {
        let manifest_path = self.dir.join("manifest.json");
        let what = |w: String| ImportError::Manifest {
            path: manifest_path.clone(),
            what: format!("layer `{}`, buffer `{name}`: {w}", layer.name),
        };
        let path = inside(&self.dir, &self.manifest.weights_file, &manifest_path)?;
        let file = File::open(&path).map_err(io_error(&path))?;
        let file_len = file.metadata().map_err(io_error(&path))?.len();
        let bytes = (len as u64 * u64::from(dtype.bits())).div_ceil(8);
        if record.dtype != dtype.to_string() || record.len != len || record.bytes != bytes {
            return Err(what(format!(
                "{} elements of {} in {} bytes, the format needs {len} of {dtype} in {bytes}",
                record.len, record.dtype, record.bytes
            )));
        }
        if record.offset.checked_add(bytes).is_none_or(|end| end > file_len) {
            return Err(ImportError::Manifest {
                path: path.clone(),
                what: format!(
                    "layer `{}`, buffer `{name}`: bytes {}..{} lie outside the file ({file_len} bytes)",
                    layer.name,
                    record.offset,
                    record.offset.saturating_add(bytes)
                ),
            });
        }
        let mut data = vec![0u8; bytes as usize];
        file.read_exact_at(&mut data, record.offset).map_err(io_error(&path))?;
        Buffer::from_bytes(dtype, len, data).map_err(|e| what(e.to_string()))
    }

    /// A layer's bias (N values), if it has one: the host adds it to y after the kernel.
    pub fn bias(&self, layer: &LayerRecord) -> Result<Option<Vec<f32>>, ImportError> {
        let Some(record) = &layer.bias else { return Ok(None) };
        let buffer = self.read_buffer(layer, record, "bias", DType::F32, layer.n)?;
        Ok(Some(buffer.codes().into_iter().map(f32::from_bits).collect()))
    }

    /// A layer's input order (K indices), if it has one: the host gathers x's columns in this
    /// order before the kernel.
    pub fn input_order(&self, layer: &LayerRecord) -> Result<Option<Vec<usize>>, ImportError> {
        let Some(record) = &layer.input_order else { return Ok(None) };
        let u32_type = DType::uint(32)
            .map_err(|e| ImportError::Manifest { path: self.dir.join("manifest.json"), what: e.to_string() })?;
        let order = self.read_buffer(layer, record, "input_order", u32_type, layer.k)?.codes();
        if let Some(bad) = order.iter().find(|&&i| i as usize >= layer.k) {
            return Err(ImportError::Manifest {
                path: self.dir.join(&self.manifest.weights_file),
                what: format!("layer `{}`: input order index {bad} is not below K = {}", layer.name, layer.k),
            });
        }
        Ok(Some(order.into_iter().map(|i| i as usize).collect()))
    }

    /// A layer ready to run on `device` with the kernel the import compiled: on a GPU its PTX
    /// is loaded through the runtime (nothing is compiled), on the interpreter its kernel-
    /// language source is parsed and verified.
    pub fn load_layer(&self, name: &str, device: &Device) -> Result<QuantizedLinear, ImportError> {
        let layer = self.layer(name)?;
        let kernel = self.kernel(layer)?;
        let packed = self.packed_weights(layer)?;
        let manifest_path = self.dir.join("manifest.json");
        let kernel_dir = inside(&self.dir, &kernel.dir, &manifest_path)?;
        let layer_error = |source: LinearError| ImportError::Layer { layer: layer.name.clone(), source };
        let device = match device {
            Device::Auto => Device::detect(),
            other => other.clone(),
        };
        match device {
            Device::Gpu(gpu) => self.gpu_layer(layer, packed, gpu, &kernel_dir),
            _ => {
                let path = kernel_dir.join(plain_file_name(&kernel.source, &manifest_path)?);
                let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
                let bad = |what: String| ImportError::Manifest { path: path.clone(), what };
                let module = anybit_ir::text::parse_module(&text).map_err(|d| bad(d.to_string()))?;
                anybit_ir::verify::verify_module(&module, &anybit_ir::verify::VerifyOptions::default())
                    .map_err(|d| bad(d.to_string()))?;
                if !module.kernels.iter().any(|k| k.name == kernel.name) {
                    return Err(bad(format!("no kernel `{}`", kernel.name)));
                }
                QuantizedLinear::from_module(packed, module).map_err(layer_error)
            }
        }
    }

    /// The layer on `gpu`, from the PTX files in `kernel_dir`.
    fn gpu_layer(
        &self,
        layer: &LayerRecord,
        packed: PackedWeights,
        gpu: Arc<anybit_runtime::Gpu>,
        kernel_dir: &Path,
    ) -> Result<QuantizedLinear, ImportError> {
        let path = kernel_dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
        let manifest = Manifest::from_json(&text)
            .map_err(|e| ImportError::Manifest { path: path.clone(), what: e.to_string() })?;
        let mut ptx = Vec::with_capacity(manifest.kernels.len());
        for kernel in &manifest.kernels {
            let file = kernel_dir.join(plain_file_name(&kernel.ptx_file, &path)?);
            ptx.push(std::fs::read_to_string(&file).map_err(io_error(&file))?);
        }
        QuantizedLinear::from_ptx(packed, gpu, &manifest, &ptx)
            .map_err(|source| ImportError::Layer { layer: layer.name.clone(), source })
    }
}
