//! Reading Hugging Face checkpoints — a directory with `config.json` and `*.safetensors`
//! files — quantized with GPTQ, AWQ or compressed-tensors, and importing their linear layers.
//!
//! # safetensors
//!
//! A safetensors file is an 8-byte little-endian header length, a JSON header (per tensor its
//! dtype, shape and `[start, end)` data offsets, plus an optional `__metadata__` map) and the
//! data. The header is parsed and validated by the `safetensors` crate (`Metadata`: offsets
//! contiguous from 0, each tensor's byte size equal to its dtype × shape), and the data length
//! it describes is checked against the file's. The file is memory-mapped ([`crate::mapped`]):
//! tensors are borrowed from the map on demand, one layer at a time, never the file whole
//! (positioned reads with `ANYBIT_NO_MMAP=1` or where mapping fails).
//!
//! # The quantization formats (from `config.json`'s `quantization_config`)
//!
//! - **GPTQ** (`quant_method: gptq`; AutoGPTQ / GPTQModel): per layer `qweight` int32
//!   `[K·bits/32, N]` — each column's K codes a little-endian bit stream over its words,
//!   least significant bits first (3-bit codes straddle words) —, `qzeros` int32
//!   `[K/G, N·bits/32]` packed the same way along N, `scales` `[K/G, N]`, `g_idx` int32 `[K]`
//!   (each input channel's group) and an optional `bias`. Bits 2, 3, 4, 8; `group_size` −1 is
//!   one group per column. The v1 format (`checkpoint_format: gptq`, the default) stores each
//!   zero point minus one, `gptq_v2` stores it as it is; `sym` only says how they were chosen.
//!   `w = (q − z)·s` with the group `g_idx[k]`. With `desc_act` the groups are a permutation of
//!   K: the import sorts W's rows by group (stable), so groups are contiguous again, and records
//!   that order — the **input order** — by which x's columns are gathered at run time.
//! - **AWQ** (`quant_method: awq`, `version: gemm`; AutoAWQ): `qweight` int32 `[K, N/8]`, eight
//!   4-bit codes per word along N, output column `8c + [0, 2, 4, 6, 1, 3, 5, 7][i]` in nibble
//!   i; `qzeros` int32 `[K/G, N/8]` packed alike (zero points as they are); `scales` `[K/G, N]`.
//! - **compressed-tensors** `pack-quantized` (int weights, group or channel strategy):
//!   `weight_packed` int32 `[N, ⌈K·bits/32⌉]`, each row's K codes a dense little-endian bit
//!   stream, every code stored as the signed value plus `2^(bits−1)`; `weight_scale`
//!   `[N, K/G]` (`[N, 1]` per channel); `weight_shape` int64 `[N, K]`; for asymmetric
//!   schemes `weight_zero_point` int32 `[⌈N·bits/32⌉, K/G]`, each column's N zero points
//!   packed along N the same way (also offset by `2^(bits−1)`). `w = (q − z)·s` in signed
//!   values is `(u − u_z)·s` in the stored unsigned codes, with `u_z = 2^(bits−1)` when
//!   symmetric: the canonical form keeps the stored codes as `u{bits}` with that zero point.
//!
//! Each layer maps exactly to [`lowbit::QuantizedWeights`](crate::lowbit::QuantizedWeights)
//! (`u{bits}` codes K × N, per-group scales and integer zero points), its bias and input order
//! carried beside ([`HfLinear`]). Other tensors (embeddings, norms, unquantized matrices) are
//! not layers. Refused with an error naming the file and the tensor: a missing `config.json`
//! or `quantization_config`, unknown methods, versions and bit widths, shapes that disagree
//! with each other or with the config, a v1 zero point of 0 (stored as −1), a `g_idx` whose
//! groups are not all of the group size, and truncated files.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anybit_ir::DType;
use safetensors::Dtype;
use serde_json::Value;

use crate::lowbit::{QuantizedWeights, WeightFormat};
use crate::mapped::{MapError, MappedFile};
use crate::{packed_code, stream_code};

/// A read error of a mapped checkpoint file (a range past its end is a malformed file).
fn map_error(error: MapError) -> HfError {
    match error {
        MapError::Io { path, source } => HfError::Io { path, source },
        MapError::OutOfRange { ref path, .. } => HfError::Malformed { path: path.clone(), what: error.to_string() },
    }
}

/// Why a checkpoint could not be read or one of its layers not imported.
#[derive(Debug, thiserror::Error)]
pub enum HfError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A safetensors file is not valid.
    #[error("{path}: not a valid safetensors file: {what}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// `config.json` is missing or its quantization is not one anybit imports.
    #[error("{path}: {what}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A tensor that cannot be imported.
    #[error("{path}: tensor `{tensor}`: {what}")]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// What is wrong.
        what: String,
    },
}

/// One tensor of a safetensors file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafeTensor {
    /// Its name.
    pub name: String,
    /// Its element type.
    pub dtype: Dtype,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Byte offset of its data in the file.
    pub offset: u64,
    /// Bytes of data.
    pub bytes: u64,
}

/// An open safetensors file: its header, data read on demand.
#[derive(Debug)]
pub struct SafetensorsFile {
    path: PathBuf,
    file: MappedFile,
    /// The tensors, in data order.
    pub tensors: Vec<SafeTensor>,
}

/// Headers above this are refused (the `safetensors` crate's own limit).
const MAX_HEADER: u64 = 100_000_000;

impl SafetensorsFile {
    /// Opens a file and reads and validates its header.
    pub fn open(path: impl AsRef<Path>) -> Result<SafetensorsFile, HfError> {
        let path = path.as_ref();
        let malformed = |what: String| HfError::Malformed { path: path.to_path_buf(), what };
        let file = MappedFile::open(path).map_err(map_error)?;
        let len = file.len();
        if len < 8 {
            return Err(malformed(format!("{len} bytes: no header length")));
        }
        let mut size = [0u8; 8];
        size.copy_from_slice(&file.bytes(0, 8).map_err(map_error)?);
        let n = u64::from_le_bytes(size);
        if n > MAX_HEADER || n > len - 8 {
            return Err(malformed(format!("a header of {n} bytes does not fit the file ({len} bytes)")));
        }
        let header = file.bytes(8, n).map_err(map_error)?;
        let metadata: safetensors::tensor::Metadata =
            serde_json::from_slice(&header).map_err(|e| malformed(format!("header: {e}")))?;
        let data_start = 8 + n;
        let data = metadata.data_len() as u64;
        if data_start + data != len {
            return Err(malformed(format!(
                "the header describes {data} bytes of tensor data, the file holds {}",
                len - data_start
            )));
        }
        let tensors = metadata
            .offset_keys()
            .into_iter()
            .filter_map(|name| {
                let info = metadata.info(&name)?;
                let (start, end) = info.data_offsets;
                Some(SafeTensor {
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    offset: data_start + start as u64,
                    bytes: (end - start) as u64,
                    name,
                })
            })
            .collect();
        Ok(SafetensorsFile { path: path.to_path_buf(), file, tensors })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A tensor's bytes: borrowed from the memory map, or one positioned read where the file is
    /// not mapped (see [`crate::mapped`]).
    pub fn read(&self, tensor: &SafeTensor) -> Result<Cow<'_, [u8]>, HfError> {
        self.file.bytes(tensor.offset, tensor.bytes).map_err(map_error)
    }
}

/// How compressed-tensors groups a layer's weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Groups of this many weights along K.
    Group(usize),
    /// One group per output channel (all of K).
    Channel,
}

/// A checkpoint's quantization, from `config.json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Quantization {
    /// GPTQ.
    Gptq {
        /// Bits per code (2, 3, 4, 8).
        bits: u32,
        /// Weights per group along K (`None`: one group per column).
        group_size: Option<usize>,
        /// Act-order: groups in a permuted order of K.
        desc_act: bool,
        /// Symmetric zero points.
        sym: bool,
        /// The `gptq_v2` checkpoint format (zero points stored as they are).
        v2: bool,
    },
    /// AWQ (GEMM packing).
    Awq {
        /// Weights per group along K.
        group_size: usize,
    },
    /// compressed-tensors `pack-quantized`.
    CompressedTensors {
        /// Bits per code.
        bits: u32,
        /// Group or channel.
        strategy: Strategy,
        /// Symmetric (no stored zero points).
        symmetric: bool,
    },
}

impl Quantization {
    /// Reads the quantization of a `config.json`'s `quantization_config` (or of a GPTQ
    /// `quantize_config.json`, `legacy_gptq`).
    pub fn from_config(q: &Value, legacy_gptq: bool) -> Result<Quantization, String> {
        let method = match q.get("quant_method").and_then(Value::as_str) {
            Some(m) => m.to_ascii_lowercase(),
            None if legacy_gptq => "gptq".into(),
            None => return Err("quantization_config has no `quant_method`".into()),
        };
        let int = |key: &str| q.get(key).and_then(Value::as_i64);
        let flag = |key: &str, default: bool| q.get(key).and_then(Value::as_bool).unwrap_or(default);
        let group = |v: Option<i64>| match v {
            Some(g) if g > 0 => Ok(g as usize),
            other => Err(format!("group size {other:?}: a positive number")),
        };
        match method.as_str() {
            "gptq" => {
                let bits = match int("bits") {
                    Some(b @ (2 | 3 | 4 | 8)) => b as u32,
                    other => return Err(format!("GPTQ bits {other:?}: 2, 3, 4 or 8 import")),
                };
                let group_size = match int("group_size") {
                    Some(-1) => None,
                    other => Some(group(other)?),
                };
                let v2 = match q.get("checkpoint_format").and_then(Value::as_str).unwrap_or("gptq") {
                    "gptq" => false,
                    "gptq_v2" => true,
                    other => return Err(format!("GPTQ checkpoint format `{other}`: `gptq` or `gptq_v2` import")),
                };
                Ok(Quantization::Gptq {
                    bits,
                    group_size,
                    desc_act: flag("desc_act", false),
                    sym: flag("sym", true),
                    v2,
                })
            }
            "awq" => {
                let bits = int("bits").or_else(|| int("w_bit"));
                if bits != Some(4) {
                    return Err(format!("AWQ bits {bits:?}: 4 imports"));
                }
                let version = q.get("version").and_then(Value::as_str).unwrap_or("gemm").to_ascii_lowercase();
                if version != "gemm" {
                    return Err(format!("AWQ version `{version}`: only GEMM packing imports"));
                }
                if !flag("zero_point", true) {
                    return Err("AWQ without zero points does not import".into());
                }
                Ok(Quantization::Awq { group_size: group(int("group_size").or_else(|| int("q_group_size")))? })
            }
            "compressed-tensors" => Quantization::compressed_tensors(q),
            other => Err(format!("quantization method `{other}`: gptq, awq and compressed-tensors import")),
        }
    }

    fn compressed_tensors(q: &Value) -> Result<Quantization, String> {
        let format = q.get("format").and_then(Value::as_str).unwrap_or("");
        let Some(groups) = q.get("config_groups").and_then(Value::as_object).filter(|g| !g.is_empty()) else {
            return Err("compressed-tensors config without `config_groups`".into());
        };
        let mut found: Option<Quantization> = None;
        for (name, group) in groups {
            let group_format = group.get("format").and_then(Value::as_str).unwrap_or(format);
            if group_format != "pack-quantized" {
                return Err(format!("config group `{name}`: format `{group_format}`: only pack-quantized imports"));
            }
            if group.get("input_activations").is_some_and(|a| !a.is_null()) {
                return Err(format!("config group `{name}`: quantized activations do not import"));
            }
            let Some(w) = group.get("weights").filter(|w| !w.is_null()) else {
                return Err(format!("config group `{name}` has no `weights`"));
            };
            let bits = match w.get("num_bits").and_then(Value::as_u64) {
                Some(b @ 2..=8) => b as u32,
                other => return Err(format!("config group `{name}`: num_bits {other:?}: 2 to 8 import")),
            };
            if w.get("type").and_then(Value::as_str) != Some("int") {
                return Err(format!("config group `{name}`: weight type {:?}: int imports", w.get("type")));
            }
            let strategy = match w.get("strategy").and_then(Value::as_str) {
                Some("channel") => Strategy::Channel,
                Some("group") => match w.get("group_size").and_then(Value::as_u64) {
                    Some(g) if g > 0 => Strategy::Group(g as usize),
                    other => return Err(format!("config group `{name}`: group size {other:?}")),
                },
                other => return Err(format!("config group `{name}`: strategy {other:?}: group or channel import")),
            };
            let symmetric = w.get("symmetric").and_then(Value::as_bool).unwrap_or(true);
            let this = Quantization::CompressedTensors { bits, strategy, symmetric };
            if found.as_ref().is_some_and(|f| *f != this) {
                return Err("config groups with different weight schemes do not import yet".into());
            }
            found = Some(this);
        }
        found.ok_or_else(|| "no config groups".into())
    }

    /// A short description: `GPTQ 4b g128 (v1, sym)`.
    pub fn describe(&self) -> String {
        match self {
            Quantization::Gptq { bits, group_size, desc_act, sym, v2 } => format!(
                "GPTQ {bits}b {} ({}, {}{})",
                group_size.map_or("per-channel".into(), |g| format!("g{g}")),
                if *v2 { "v2" } else { "v1" },
                if *sym { "sym" } else { "asym" },
                if *desc_act { ", act-order" } else { "" }
            ),
            Quantization::Awq { group_size } => format!("AWQ 4b g{group_size} (GEMM)"),
            Quantization::CompressedTensors { bits, strategy, symmetric } => format!(
                "compressed-tensors int{bits} {} ({})",
                match strategy {
                    Strategy::Group(g) => format!("g{g}"),
                    Strategy::Channel => "per-channel".into(),
                },
                if *symmetric { "sym" } else { "asym" }
            ),
        }
    }

    fn bits(&self) -> u32 {
        match self {
            Quantization::Gptq { bits, .. } | Quantization::CompressedTensors { bits, .. } => *bits,
            Quantization::Awq { .. } => 4,
        }
    }
}

/// One quantized linear layer of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HfLayer {
    /// Its name: the tensors' common prefix (`model.layers.0.self_attn.q_proj`).
    pub name: String,
    /// Input features.
    pub k: usize,
    /// Output features.
    pub n: usize,
    /// Weights per group along K.
    pub group_size: usize,
    /// The scales' type.
    pub scale: DType,
    /// The bias tensor, if any.
    pub bias: Option<String>,
    /// The tensors it is made of (bias included).
    pub tensors: Vec<String>,
    /// Bytes of its tensors.
    pub bytes: u64,
}

/// A layer in canonical form: the weights, the bias (N values as f32 bits) and the input
/// order (K indices: the canonical row i is the checkpoint's input channel `order[i]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HfLinear {
    /// The weights.
    pub weights: QuantizedWeights,
    /// The bias.
    pub bias: Option<Vec<u32>>,
    /// The input order (act-order GPTQ).
    pub input_order: Option<Vec<u32>>,
}

/// A Hugging Face checkpoint directory, opened: its quantization and tensors.
#[derive(Debug)]
pub struct HfModel {
    dir: PathBuf,
    config: PathBuf,
    /// The quantization.
    pub quantization: Quantization,
    /// The safetensors files, by name.
    pub files: Vec<SafetensorsFile>,
    index: HashMap<String, (usize, usize)>,
}

/// The AWQ GEMM nibble of output column `c mod 8` (the inverse of [0, 2, 4, 6, 1, 3, 5, 7]).
const AWQ_NIBBLE: [u32; 8] = [0, 4, 1, 5, 2, 6, 3, 7];

fn float_dtype(d: Dtype) -> Option<DType> {
    match d {
        Dtype::F16 => Some(DType::F16),
        Dtype::BF16 => Some(DType::BF16),
        Dtype::F32 => Some(DType::F32),
        _ => None,
    }
}

/// The `i`-th little-endian value of `width` bytes.
fn word(bytes: &[u8], i: usize, width: usize) -> u32 {
    bytes[i * width..(i + 1) * width].iter().enumerate().fold(0u32, |v, (j, &b)| v | (u32::from(b) << (8 * j)))
}

impl HfModel {
    /// Opens a checkpoint directory: `config.json` (its `quantization_config`, or a GPTQ
    /// `quantize_config.json` beside it) and every `*.safetensors` file's header.
    pub fn open(dir: impl AsRef<Path>) -> Result<HfModel, HfError> {
        let dir = dir.as_ref();
        let config = dir.join("config.json");
        let config_error = |path: &Path, what: String| HfError::Config { path: path.to_path_buf(), what };
        if !config.is_file() {
            return Err(config_error(&config, "missing: a Hugging Face model directory needs its config.json".into()));
        }
        let read_json = |path: &Path| -> Result<Value, HfError> {
            let text =
                std::fs::read_to_string(path).map_err(|source| HfError::Io { path: path.to_path_buf(), source })?;
            serde_json::from_str(&text).map_err(|e| config_error(path, format!("not valid JSON: {e}")))
        };
        let json = read_json(&config)?;
        let legacy = dir.join("quantize_config.json");
        let (quantization, source) = match json.get("quantization_config") {
            Some(q) => (Quantization::from_config(q, false), config.clone()),
            None if legacy.is_file() => (Quantization::from_config(&read_json(&legacy)?, true), legacy),
            None => {
                return Err(config_error(&config, "no `quantization_config`: the model is not quantized".into()));
            }
        };
        let quantization = quantization.map_err(|what| config_error(&source, what))?;
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| HfError::Io { path: dir.to_path_buf(), source })?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        names.sort();
        if names.is_empty() {
            return Err(config_error(dir, "no .safetensors files".into()));
        }
        let mut files = Vec::with_capacity(names.len());
        let mut index = HashMap::new();
        for path in names {
            let file = SafetensorsFile::open(&path)?;
            for (i, t) in file.tensors.iter().enumerate() {
                if let Some((other, _)) = index.insert(t.name.clone(), (files.len(), i)) {
                    let other: &SafetensorsFile = &files[other];
                    let what = format!("also in {}", other.path.display());
                    return Err(HfError::Tensor { path, tensor: t.name.clone(), what });
                }
            }
            files.push(file);
        }
        Ok(HfModel { dir: dir.to_path_buf(), config, quantization, files, index })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `config.json`.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Every tensor, file by file.
    pub fn tensors(&self) -> impl Iterator<Item = &SafeTensor> {
        self.files.iter().flat_map(|f| f.tensors.iter())
    }

    fn get(&self, name: &str) -> Option<(&SafetensorsFile, &SafeTensor)> {
        let &(f, t) = self.index.get(name)?;
        let file = &self.files[f];
        Some((file, &file.tensors[t]))
    }

    fn tensor_error(&self, name: &str, what: impl Into<String>) -> HfError {
        let path = self.get(name).map_or_else(|| self.dir.clone(), |(f, _)| f.path.clone());
        HfError::Tensor { path, tensor: name.to_string(), what: what.into() }
    }

    /// The tensor `name`, checked to be of one of `dtypes` and of `shape` (`None`: any size).
    fn expect(&self, name: &str, dtypes: &[Dtype], shape: &[Option<usize>]) -> Result<&SafeTensor, HfError> {
        let Some((_, t)) = self.get(name) else { return Err(self.tensor_error(name, "missing")) };
        if !dtypes.contains(&t.dtype) {
            return Err(self.tensor_error(name, format!("dtype {:?}, expected one of {dtypes:?}", t.dtype)));
        }
        let fits = t.shape.len() == shape.len() && t.shape.iter().zip(shape).all(|(&d, s)| s.is_none_or(|s| s == d));
        if !fits {
            let want: Vec<String> = shape.iter().map(|s| s.map_or("_".into(), |s| s.to_string())).collect();
            return Err(self.tensor_error(
                name,
                format!("shape {:?} disagrees with the layer and the config: expected [{}]", t.shape, want.join(", ")),
            ));
        }
        Ok(t)
    }

    fn read(&self, name: &str) -> Result<Cow<'_, [u8]>, HfError> {
        let (file, t) = self.get(name).ok_or_else(|| self.tensor_error(name, "missing"))?;
        file.read(t)
    }

    /// Every quantized linear layer, described and checked (dtypes and shapes against each
    /// other and the config; compressed-tensors' small `weight_shape` is read).
    pub fn layers(&self) -> Result<Vec<HfLayer>, HfError> {
        let marker = match self.quantization {
            Quantization::CompressedTensors { .. } => ".weight_packed",
            _ => ".qweight",
        };
        let mut names: Vec<&str> = self.tensors().filter_map(|t| t.name.strip_suffix(marker)).collect();
        names.sort_unstable();
        names.into_iter().map(|prefix| self.describe(prefix)).collect()
    }

    fn describe(&self, prefix: &str) -> Result<HfLayer, HfError> {
        let bits = self.quantization.bits() as usize;
        let floats = [Dtype::F16, Dtype::BF16, Dtype::F32];
        let t = |part: &str| format!("{prefix}.{part}");
        let mut tensors = Vec::new();
        let (k, n, group_size, scale) = match &self.quantization {
            Quantization::Gptq { group_size, .. } => {
                let q = self.expect(&t("qweight"), &[Dtype::I32], &[None, None])?;
                let (k, n) = (q.shape[0] * 32 / bits, q.shape[1]);
                if q.shape[0] * 32 % bits != 0 {
                    return Err(self.tensor_error(&t("qweight"), format!("{} rows of {bits}-bit codes", q.shape[0])));
                }
                let g = group_size.unwrap_or(k);
                let groups = k / g.max(1);
                let s = self.expect(&t("scales"), &floats, &[Some(groups), Some(n)])?;
                self.expect(&t("qzeros"), &[Dtype::I32], &[Some(groups), Some((n * bits).div_ceil(32))])?;
                tensors.extend([t("qweight"), t("qzeros"), t("scales")]);
                if self.get(&t("g_idx")).is_some() {
                    self.expect(&t("g_idx"), &[Dtype::I32], &[Some(k)])?;
                    tensors.push(t("g_idx"));
                }
                (k, n, g, s.dtype)
            }
            Quantization::Awq { group_size } => {
                let q = self.expect(&t("qweight"), &[Dtype::I32], &[None, None])?;
                let (k, n) = (q.shape[0], q.shape[1] * 8);
                let groups = k / group_size;
                let s = self.expect(&t("scales"), &floats, &[Some(groups), Some(n)])?;
                self.expect(&t("qzeros"), &[Dtype::I32], &[Some(groups), Some(n / 8)])?;
                tensors.extend([t("qweight"), t("qzeros"), t("scales")]);
                (k, n, *group_size, s.dtype)
            }
            Quantization::CompressedTensors { strategy, symmetric, .. } => {
                self.expect(&t("weight_shape"), &[Dtype::I64, Dtype::I32], &[Some(2)])?;
                let shape = self.read(&t("weight_shape"))?;
                let width = shape.len() / 2;
                let dim = |i: usize| {
                    let v =
                        shape[i * width..(i + 1) * width].iter().rev().fold(0i128, |v, &b| (v << 8) | i128::from(b));
                    usize::try_from(v).ok().filter(|&v| v > 0 && v < 1 << 31)
                };
                let (Some(n), Some(k)) = (dim(0), dim(1)) else {
                    return Err(self.tensor_error(&t("weight_shape"), "not two positive sizes below 2^31"));
                };
                let g = match strategy {
                    Strategy::Group(g) => *g,
                    Strategy::Channel => k,
                };
                let groups = k / g.max(1);
                self.expect(&t("weight_packed"), &[Dtype::I32], &[Some(n), Some((k * bits).div_ceil(32))])?;
                let s = self.expect(&t("weight_scale"), &floats, &[Some(n), Some(groups)])?;
                tensors.extend([t("weight_packed"), t("weight_scale"), t("weight_shape")]);
                if !symmetric {
                    let zp = [Some((n * bits).div_ceil(32)), Some(groups)];
                    self.expect(&t("weight_zero_point"), &[Dtype::I32], &zp)?;
                    tensors.push(t("weight_zero_point"));
                }
                (k, n, g, s.dtype)
            }
        };
        let bias = if self.get(&t("bias")).is_some() {
            self.expect(&t("bias"), &floats, &[Some(n)])?;
            tensors.push(t("bias"));
            Some(t("bias"))
        } else {
            None
        };
        let bytes = tensors.iter().filter_map(|name| self.get(name)).map(|(_, t)| t.bytes).sum();
        let scale = float_dtype(scale).unwrap_or(DType::F16);
        Ok(HfLayer { name: prefix.to_string(), k, n, group_size, scale, bias, tensors, bytes })
    }

    /// The layer's weight format with `activation` x and y (or why it has none).
    pub fn format(&self, layer: &HfLayer, activation: DType) -> Result<WeightFormat, String> {
        let weight = DType::uint(self.quantization.bits()).map_err(|e| e.to_string())?;
        let format = WeightFormat {
            weight,
            lut: None,
            group_size: layer.group_size,
            scale: layer.scale,
            zero_point: true,
            offset: false,
            activation,
        };
        format.validate_shape(1, layer.n, layer.k).map_err(|e| e.to_string())?;
        Ok(format)
    }

    /// The layer in canonical form (see the module doc).
    pub fn linear_weights(&self, layer: &HfLayer, activation: DType) -> Result<HfLinear, HfError> {
        let format = self.format(layer, activation).map_err(|e| self.tensor_error(&layer.tensors[0], e))?;
        let (k, n, g) = (layer.k, layer.n, layer.group_size);
        let bits = self.quantization.bits();
        let groups = k / g;
        let t = |part: &str| format!("{}.{part}", layer.name);
        let mut codes = vec![0u32; k * n];
        let mut scales = vec![0u32; groups * n];
        let mut zeros = vec![1u32 << (bits - 1); groups * n];
        let mut input_order = None;
        let scale_width = (layer.scale.bits() / 8) as usize;
        match &self.quantization {
            Quantization::Gptq { v2, .. } => {
                let q = self.read(&t("qweight"))?;
                let z = self.read(&t("qzeros"))?;
                let s = self.read(&t("scales"))?;
                let z_words = (n * bits as usize).div_ceil(32);
                for g in 0..groups {
                    for col in 0..n {
                        let stored = packed_code(&z[g * z_words * 4..(g + 1) * z_words * 4], 1, 0, col, bits);
                        let zero = if *v2 { stored } else { stored + 1 };
                        if zero >= 1 << bits {
                            return Err(self.tensor_error(
                                &t("qzeros"),
                                format!("group {g}, column {col}: a v1 zero point stored as {stored} is {zero}, beyond {bits} bits"),
                            ));
                        }
                        zeros[g * n + col] = zero;
                        scales[g * n + col] = word(&s, g * n + col, scale_width);
                    }
                }
                // g_idx: each input channel's group; rows sorted by group where it is not k / G.
                let order: Vec<usize> = match self.get(&t("g_idx")) {
                    None => (0..k).collect(),
                    Some(_) => {
                        let raw = self.read(&t("g_idx"))?;
                        let g_idx: Vec<i64> = (0..k).map(|i| i64::from(word(&raw, i, 4) as i32)).collect();
                        if let Some((i, v)) = g_idx.iter().enumerate().find(|(_, v)| !(0..groups as i64).contains(v)) {
                            return Err(self.tensor_error(&t("g_idx"), format!("g_idx[{i}] = {v}: {groups} groups")));
                        }
                        let mut order: Vec<usize> = (0..k).collect();
                        order.sort_by_key(|&i| g_idx[i]);
                        if let Some(i) = (0..k).find(|&i| g_idx[order[i]] != (i / g) as i64) {
                            return Err(self.tensor_error(
                                &t("g_idx"),
                                format!("group {} does not hold exactly {g} input channels", i / g),
                            ));
                        }
                        order
                    }
                };
                for (row, &source) in order.iter().enumerate() {
                    for col in 0..n {
                        codes[row * n + col] = packed_code(&q, n, col, source, bits);
                    }
                }
                if order.iter().enumerate().any(|(i, &o)| i != o) {
                    input_order = Some(order.iter().map(|&o| o as u32).collect());
                }
            }
            Quantization::Awq { .. } => {
                let q = self.read(&t("qweight"))?;
                let z = self.read(&t("qzeros"))?;
                let s = self.read(&t("scales"))?;
                let nibble = |words: &[u8], row: usize, col: usize| {
                    (word(words, row * (n / 8) + col / 8, 4) >> (4 * AWQ_NIBBLE[col % 8])) & 0xF
                };
                for row in 0..k {
                    for col in 0..n {
                        codes[row * n + col] = nibble(&q, row, col);
                    }
                }
                for g in 0..groups {
                    for col in 0..n {
                        zeros[g * n + col] = nibble(&z, g, col);
                        scales[g * n + col] = word(&s, g * n + col, scale_width);
                    }
                }
            }
            Quantization::CompressedTensors { symmetric, .. } => {
                let q = self.read(&t("weight_packed"))?;
                let s = self.read(&t("weight_scale"))?;
                let row_bytes = (k * bits as usize).div_ceil(32) * 4;
                for (col, row) in q.chunks_exact(row_bytes).enumerate() {
                    for kk in 0..k {
                        codes[kk * n + col] = stream_code(row, kk, bits);
                    }
                    for g in 0..groups {
                        scales[g * n + col] = word(&s, col * groups + g, scale_width);
                    }
                }
                if !symmetric {
                    let z = self.read(&t("weight_zero_point"))?;
                    for g in 0..groups {
                        for col in 0..n {
                            zeros[g * n + col] = packed_code(&z, groups, g, col, bits);
                        }
                    }
                }
            }
        }
        let weights = QuantizedWeights::new(format, k, n, codes, scales, zeros)
            .map_err(|e| self.tensor_error(&layer.tensors[0], e.to_string()))?;
        let bias = match &layer.bias {
            None => None,
            Some(name) => {
                let (_, tensor) = self.get(name).ok_or_else(|| self.tensor_error(name, "missing"))?;
                let dtype = float_dtype(tensor.dtype).unwrap_or(DType::F32);
                let raw = self.read(name)?;
                let width = (dtype.bits() / 8) as usize;
                let values =
                    (0..n).map(|i| (dtype.decode_f64(word(&raw, i, width)).unwrap_or(f64::NAN) as f32).to_bits());
                Some(values.collect())
            }
        };
        Ok(HfLinear { weights, bias, input_order })
    }
}
