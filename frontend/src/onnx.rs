//! Reading ONNX models and importing their `com.microsoft::MatMulNBits` layers.
//!
//! # The reader
//!
//! An ONNX model is a protobuf `ModelProto`. The messages are decoded with `prost` from
//! hand-written structs carrying the field numbers of `onnx.proto` for the few messages and
//! fields an importer needs (model → graph → nodes, attributes and initializers); every other
//! field is skipped as unknown. `prost-build` would generate all of ONNX's messages but needs
//! `protoc` at build time, which a plain `cargo build` must not; the hand-written structs are a
//! page, and `prost` does the wire decoding — checked lengths, varint limits, a recursion
//! limit — so a corrupt file is a decode error, never a panic or an unbounded allocation.
//!
//! The file is read whole (protobuf has no index to seek by). Initializer data may lie in the
//! message (`raw_data`, or the typed `float_data`/`int32_data` fields) or in an external file
//! beside the model (`data_location = EXTERNAL` with `location`, `offset`, `length`): external
//! data is read with one positioned read (the importer copies it once anyway, so a map would
//! save nothing), its location checked to stay inside the model's directory and its extent
//! against the file.
//!
//! # MatMulNBits
//!
//! The contrib operator computes `Y = A · dequant(B)ᵀ (+ bias)` with attributes `K`, `N`,
//! `bits` (2, 4 or 8 here; default 4) and `block_size` (a power of two ≥ 16) and inputs
//! - `B`: uint8 `[N, k_blocks, blob]`, `blob = block_size · bits / 8`: for each output feature n
//!   and block of K, the block's codes as a little-endian bit stream (code j at bits
//!   `[j·bits, (j+1)·bits)`, least significant bit first);
//! - `scales`: float, float16 or bfloat16, `N · k_blocks` values (n-major);
//! - `zero_points` (optional): uint8, per n the k_blocks codes packed the same way into
//!   `⌈k_blocks · bits / 8⌉` bytes; absent, every zero point is `2^(bits−1)`;
//! - `g_idx` (optional, deprecated) and `bias` (optional, `N` values of the scales' type).
//!
//! Each layer maps to [`lowbit::QuantizedWeights`](crate::lowbit::QuantizedWeights) exactly:
//! codes `u{bits}` transposed to K × N, one scale and zero point per block and column, group
//! size `block_size`; `w = (q − z)·s`. The bias is carried beside the weights ([`OnnxLinear`]).
//! Refused with an error naming the file, the node and the tensor: other bit widths, K not a
//! multiple of `block_size`, float zero points, `g_idx`, shapes or types that disagree with
//! the attributes, and data that is missing or cut short.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};

use anybit_ir::DType;
use prost::Message;

use crate::lowbit::{QuantizedWeights, WeightFormat};
use crate::stream_code;

/// Why an ONNX model could not be read or one of its layers not imported.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not an ONNX model.
    #[error("{path}: not a valid ONNX model: {what}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A node or one of its tensors that cannot be imported.
    #[error("{path}: node `{node}`{}: {what}", tensor.as_ref().map(|t| format!(", tensor `{t}`")).unwrap_or_default())]
    Node {
        /// The file.
        path: PathBuf,
        /// The node.
        node: String,
        /// The tensor, where one is at fault.
        tensor: Option<String>,
        /// What is wrong.
        what: String,
    },
}

/// The parts of `onnx.proto` the reader decodes (field numbers as there).
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelProto {
        #[prost(int64, tag = "1")]
        pub ir_version: i64,
        #[prost(string, tag = "2")]
        pub producer_name: String,
        #[prost(message, optional, tag = "7")]
        pub graph: Option<GraphProto>,
        #[prost(message, repeated, tag = "8")]
        pub opset_import: Vec<OperatorSetIdProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct OperatorSetIdProto {
        #[prost(string, tag = "1")]
        pub domain: String,
        #[prost(int64, tag = "2")]
        pub version: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GraphProto {
        #[prost(message, repeated, tag = "1")]
        pub node: Vec<NodeProto>,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(message, repeated, tag = "5")]
        pub initializer: Vec<TensorProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NodeProto {
        #[prost(string, repeated, tag = "1")]
        pub input: Vec<String>,
        #[prost(string, repeated, tag = "2")]
        pub output: Vec<String>,
        #[prost(string, tag = "3")]
        pub name: String,
        #[prost(string, tag = "4")]
        pub op_type: String,
        #[prost(message, repeated, tag = "5")]
        pub attribute: Vec<AttributeProto>,
        #[prost(string, tag = "7")]
        pub domain: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AttributeProto {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(float, tag = "2")]
        pub f: f32,
        #[prost(int64, tag = "3")]
        pub i: i64,
        #[prost(bytes = "vec", tag = "4")]
        pub s: Vec<u8>,
        #[prost(int32, tag = "20")]
        pub r#type: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StringStringEntryProto {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorProto {
        #[prost(int64, repeated, tag = "1")]
        pub dims: Vec<i64>,
        #[prost(int32, tag = "2")]
        pub data_type: i32,
        #[prost(float, repeated, tag = "4")]
        pub float_data: Vec<f32>,
        #[prost(int32, repeated, tag = "5")]
        pub int32_data: Vec<i32>,
        #[prost(int64, repeated, tag = "7")]
        pub int64_data: Vec<i64>,
        #[prost(string, tag = "8")]
        pub name: String,
        #[prost(bytes = "vec", tag = "9")]
        pub raw_data: Vec<u8>,
        #[prost(message, repeated, tag = "13")]
        pub external_data: Vec<StringStringEntryProto>,
        #[prost(int32, tag = "14")]
        pub data_location: i32,
    }
}

/// ONNX tensor element types the importer reads (`TensorProto.DataType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElementType {
    /// FLOAT (1).
    F32,
    /// UINT8 (2).
    U8,
    /// INT32 (6).
    I32,
    /// INT64 (7).
    I64,
    /// FLOAT16 (10).
    F16,
    /// BFLOAT16 (16).
    BF16,
    /// Any other, by number.
    Other(i32),
}

impl ElementType {
    fn from_proto(t: i32) -> ElementType {
        match t {
            1 => ElementType::F32,
            2 => ElementType::U8,
            6 => ElementType::I32,
            7 => ElementType::I64,
            10 => ElementType::F16,
            16 => ElementType::BF16,
            other => ElementType::Other(other),
        }
    }

    /// Bytes per element (`None` for types the reader does not size).
    pub fn size(self) -> Option<usize> {
        match self {
            ElementType::U8 => Some(1),
            ElementType::F16 | ElementType::BF16 => Some(2),
            ElementType::F32 | ElementType::I32 => Some(4),
            ElementType::I64 => Some(8),
            ElementType::Other(_) => None,
        }
    }

    /// ONNX's name of the type (`float16`).
    pub fn name(self) -> String {
        match self {
            ElementType::F32 => "float".into(),
            ElementType::U8 => "uint8".into(),
            ElementType::I32 => "int32".into(),
            ElementType::I64 => "int64".into(),
            ElementType::F16 => "float16".into(),
            ElementType::BF16 => "bfloat16".into(),
            ElementType::Other(t) => format!("data type {t}"),
        }
    }

    /// The anybit type of a float element type (scales, bias).
    fn float_dtype(self) -> Option<DType> {
        match self {
            ElementType::F32 => Some(DType::F32),
            ElementType::F16 => Some(DType::F16),
            ElementType::BF16 => Some(DType::BF16),
            _ => None,
        }
    }
}

/// An initializer's description (its data stays in the model until asked for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Its name.
    pub name: String,
    /// Its dimensions.
    pub dims: Vec<u64>,
    /// Its element type.
    pub element: ElementType,
    /// Whether its data lies in an external file.
    pub external: bool,
}

impl TensorInfo {
    /// The number of elements (`None` on overflow).
    pub fn elements(&self) -> Option<u64> {
        self.dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d))
    }
}

/// An open ONNX model: its graph's nodes and initializers.
#[derive(Debug)]
pub struct OnnxModel {
    path: PathBuf,
    /// The IR version.
    pub ir_version: i64,
    /// The producer's name.
    pub producer: String,
    /// The operator sets it imports (domain, version).
    pub opsets: Vec<(String, i64)>,
    /// The graph's name.
    pub graph_name: String,
    nodes: Vec<proto::NodeProto>,
    initializers: Vec<proto::TensorProto>,
    by_name: HashMap<String, usize>,
}

/// The `MatMulNBits` operator's domain and name.
pub const MATMUL_NBITS: (&str, &str) = ("com.microsoft", "MatMulNBits");

/// One `MatMulNBits` node, described from its attributes and initializers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatMulNBits {
    /// The layer's name: the node's name, or its output's where the name is empty or taken.
    pub name: String,
    /// The node's index in the graph.
    pub node: usize,
    /// Input features.
    pub k: usize,
    /// Output features.
    pub n: usize,
    /// Bits per code.
    pub bits: u32,
    /// Weights per block along K (one scale and zero point each).
    pub block_size: usize,
    /// The quantized weight initializer `B`.
    pub b: String,
    /// The scales initializer.
    pub scales: String,
    /// The scales' type.
    pub scale: DType,
    /// The packed zero-point initializer, if any.
    pub zero_points: Option<String>,
    /// The bias initializer, if any.
    pub bias: Option<String>,
    /// Bytes of B, scales, zero points and bias.
    pub bytes: u64,
}

impl MatMulNBits {
    /// The anybit weight format of the layer, with `activation` x and y.
    pub fn format(&self, activation: DType) -> Result<WeightFormat, String> {
        let weight = DType::uint(self.bits).map_err(|e| e.to_string())?;
        let format = WeightFormat {
            weight,
            lut: None,
            group_size: self.block_size,
            scale: self.scale,
            zero_point: true,
            offset: false,
            activation,
        };
        format.validate_shape(1, self.n, self.k).map_err(|e| e.to_string())?;
        Ok(format)
    }

    /// What the layer is in the model: `MatMulNBits(4b, block 32)`.
    pub fn source_type(&self) -> String {
        format!("MatMulNBits({}b, block {})", self.bits, self.block_size)
    }

    /// Blocks along K.
    fn k_blocks(&self) -> usize {
        self.k.div_ceil(self.block_size)
    }
}

/// A `MatMulNBits` layer in anybit's canonical form: the weights, and the bias (as f32
/// values, exact for every bias type ONNX gives) when the node has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnnxLinear {
    /// The weights.
    pub weights: QuantizedWeights,
    /// The bias, N values as f32 bits.
    pub bias: Option<Vec<u32>>,
}

impl OnnxModel {
    /// Reads and decodes the model (its graph; initializer data in the message is kept, data
    /// in external files is read when asked for).
    pub fn open(path: impl AsRef<Path>) -> Result<OnnxModel, OnnxError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| OnnxError::Io { path: path.to_path_buf(), source })?;
        OnnxModel::from_bytes(path, &bytes)
    }

    /// Decodes a model from its bytes; `path` names it in errors and locates external data.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<OnnxModel, OnnxError> {
        let malformed = |what: String| OnnxError::Malformed { path: path.to_path_buf(), what };
        let model = proto::ModelProto::decode(bytes).map_err(|e| malformed(e.to_string()))?;
        let Some(graph) = model.graph else {
            return Err(malformed("the model has no graph".into()));
        };
        if model.ir_version <= 0 {
            return Err(malformed(format!("IR version {} (an ONNX model states a positive one)", model.ir_version)));
        }
        let mut by_name = HashMap::new();
        for (i, t) in graph.initializer.iter().enumerate() {
            if by_name.insert(t.name.clone(), i).is_some() {
                return Err(malformed(format!("two initializers are named `{}`", t.name)));
            }
        }
        Ok(OnnxModel {
            path: path.to_path_buf(),
            ir_version: model.ir_version,
            producer: model.producer_name,
            opsets: model.opset_import.into_iter().map(|o| (o.domain, o.version)).collect(),
            graph_name: graph.name,
            nodes: graph.node,
            initializers: graph.initializer,
            by_name,
        })
    }

    /// The model file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The graph's nodes as (name, domain, op type).
    pub fn nodes(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.nodes.iter().map(|n| (n.name.as_str(), n.domain.as_str(), n.op_type.as_str()))
    }

    /// The initializers' descriptions.
    pub fn initializers(&self) -> Vec<TensorInfo> {
        self.initializers.iter().map(info).collect()
    }

    fn node_error(&self, node: &str, tensor: Option<&str>, what: impl Into<String>) -> OnnxError {
        OnnxError::Node {
            path: self.path.clone(),
            node: node.to_string(),
            tensor: tensor.map(str::to_string),
            what: what.into(),
        }
    }

    /// Every `MatMulNBits` node of the graph, described and checked against its initializers
    /// (types, shapes, sizes, and the extent of external data in its file; no data is read).
    pub fn matmul_nbits(&self) -> Result<Vec<MatMulNBits>, OnnxError> {
        let is_layer = |n: &proto::NodeProto| n.domain == MATMUL_NBITS.0 && n.op_type == MATMUL_NBITS.1;
        let mut count: HashMap<&str, usize> = HashMap::new();
        for node in self.nodes.iter().filter(|n| is_layer(n)) {
            *count.entry(node.name.as_str()).or_default() += 1;
        }
        let mut layers = Vec::new();
        for (i, node) in self.nodes.iter().enumerate().filter(|(_, n)| is_layer(n)) {
            let unique = !node.name.is_empty() && count.get(node.name.as_str()) == Some(&1);
            let name = match (unique, node.output.first()) {
                (true, _) => node.name.clone(),
                (false, Some(output)) if !output.is_empty() => output.clone(),
                _ => format!("MatMulNBits#{i}"),
            };
            layers.push(self.describe(i, name)?);
        }
        Ok(layers)
    }

    fn describe(&self, index: usize, name: String) -> Result<MatMulNBits, OnnxError> {
        let node = &self.nodes[index];
        let err = |tensor: Option<&str>, what: String| self.node_error(&name, tensor, what);
        let attribute = |key: &str| node.attribute.iter().find(|a| a.name == key).map(|a| a.i);
        let required = |key: &str| attribute(key).ok_or_else(|| err(None, format!("attribute `{key}` is missing")));
        let positive = |key: &str, v: i64| {
            usize::try_from(v)
                .ok()
                .filter(|&v| v > 0 && v < 1 << 31)
                .ok_or_else(|| err(None, format!("attribute `{key}` is {v}: a positive size below 2^31")))
        };
        let k = positive("K", required("K")?)?;
        let n = positive("N", required("N")?)?;
        let block_size = positive("block_size", required("block_size")?)?;
        let bits = attribute("bits").unwrap_or(4);
        let bits = match bits {
            2 | 4 | 8 => bits as u32,
            other => return Err(err(None, format!("bits = {other}: MatMulNBits imports with 2, 4 or 8 bits"))),
        };
        if !block_size.is_power_of_two() || block_size < 16 {
            return Err(err(None, format!("block_size = {block_size}: MatMulNBits needs a power of two from 16")));
        }
        let input = |i: usize| node.input.get(i).filter(|s| !s.is_empty()).map(String::as_str);
        let initializer = |i: usize, role: &str| -> Result<Option<&proto::TensorProto>, OnnxError> {
            match input(i) {
                None => Ok(None),
                Some(t) => match self.by_name.get(t) {
                    Some(&at) => Ok(Some(&self.initializers[at])),
                    None => Err(err(Some(t), format!("the {role} are computed by the graph, not an initializer"))),
                },
            }
        };
        let Some(b) = initializer(1, "quantized weights")? else {
            return Err(err(None, "input B (the quantized weights) is missing".into()));
        };
        let Some(scales) = initializer(2, "scales")? else {
            return Err(err(None, "input `scales` is missing".into()));
        };
        let zeros = initializer(3, "zero points")?;
        if let Some(t) = input(4) {
            return Err(err(Some(t), "g_idx (a reordering of K) is not supported".into()));
        }
        let bias = initializer(5, "bias")?;

        let layer_blocks = k.div_ceil(block_size);
        let blob = block_size * bits as usize / 8;
        let mut bytes = 0u64;
        let mut check =
            |t: &proto::TensorProto, want: &[ElementType], elements: Option<usize>, dims: Option<&[u64]>| {
                let Some(elements) = elements else {
                    return Err(err(Some(&t.name), format!("K = {k} and N = {n} need too many values")));
                };
                let info = info(t);
                if !want.contains(&info.element) {
                    let names: Vec<String> = want.iter().map(|e| e.name()).collect();
                    return Err(err(
                        Some(&t.name),
                        format!("element type {}, expected {}", info.element.name(), names.join(" or ")),
                    ));
                }
                if info.dims.len() != t.dims.len() {
                    return Err(err(Some(&t.name), format!("negative dimension in {:?}", t.dims)));
                }
                if let Some(dims) = dims.filter(|d| info.dims != *d) {
                    return Err(err(
                        Some(&t.name),
                        format!(
                            "shape {:?} disagrees with K = {k}, N = {n}, bits and block_size: expected {dims:?}",
                            info.dims
                        ),
                    ));
                }
                if info.elements() != Some(elements as u64) {
                    return Err(err(
                        Some(&t.name),
                        format!(
                            "shape {:?} holds {:?} values, K = {k} and N = {n} need {elements}",
                            info.dims,
                            info.elements()
                        ),
                    ));
                }
                let size = (elements as u64).saturating_mul(info.element.size().unwrap_or(0) as u64);
                if info.external {
                    self.external_extent(t, size).map_err(|what| err(Some(&t.name), what))?;
                }
                bytes = bytes.saturating_add(size);
                Ok(info.element)
            };
        let b_dims = [n as u64, layer_blocks as u64, blob as u64];
        let b_elements = n.checked_mul(layer_blocks).and_then(|v| v.checked_mul(blob));
        check(b, &[ElementType::U8], b_elements, Some(&b_dims))?;
        let floats = [ElementType::F32, ElementType::F16, ElementType::BF16];
        let scale_type = check(scales, &floats, n.checked_mul(layer_blocks), None)?;
        if let Some(z) = zeros {
            if floats.contains(&ElementType::from_proto(z.data_type)) {
                return Err(err(Some(&z.name), "float zero points are not supported (uint8 codes are)".into()));
            }
            let row_bytes = (layer_blocks * bits as usize).div_ceil(8);
            check(z, &[ElementType::U8], n.checked_mul(row_bytes), None)?;
        }
        if let Some(bias) = bias {
            let t = check(bias, &floats, Some(n), None)?;
            if t != scale_type {
                let what = format!("bias of type {}, the scales are {}", t.name(), scale_type.name());
                return Err(err(Some(&bias.name), what));
            }
        }
        Ok(MatMulNBits {
            name,
            node: index,
            k,
            n,
            bits,
            block_size,
            b: b.name.clone(),
            scales: scales.name.clone(),
            scale: scale_type.float_dtype().unwrap_or(DType::F32),
            zero_points: zeros.map(|z| z.name.clone()),
            bias: bias.map(|b| b.name.clone()),
            bytes,
        })
    }

    /// An initializer's data as little-endian bytes of its element type: `raw_data`, the
    /// typed fields, or the external file's bytes, checked to hold exactly its elements.
    pub fn tensor_bytes(&self, name: &str, node: &str) -> Result<Vec<u8>, OnnxError> {
        let err = |what: String| self.node_error(node, Some(name), what);
        let Some(&at) = self.by_name.get(name) else { return Err(err("no such initializer".into())) };
        let t = &self.initializers[at];
        let info = info(t);
        let size = info.element.size().ok_or_else(|| err(format!("{} data cannot be read", info.element.name())))?;
        let want = info.elements().and_then(|e| e.checked_mul(size as u64)).ok_or_else(|| err("too large".into()))?;
        let bytes = if t.data_location == 1 {
            self.external(t, want).map_err(err)?
        } else if !t.raw_data.is_empty() || want == 0 {
            t.raw_data.clone()
        } else {
            match info.element {
                ElementType::F32 => t.float_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ElementType::U8 => t.int32_data.iter().map(|&v| v as u8).collect(),
                ElementType::F16 | ElementType::BF16 => {
                    t.int32_data.iter().flat_map(|&v| (v as u16).to_le_bytes()).collect()
                }
                ElementType::I32 => t.int32_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ElementType::I64 => t.int64_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ElementType::Other(_) => Vec::new(),
            }
        };
        if bytes.len() as u64 != want {
            return Err(err(format!(
                "{} bytes of data, its shape {:?} of {} needs {want}",
                bytes.len(),
                info.dims,
                info.element.name()
            )));
        }
        Ok(bytes)
    }

    /// Where an initializer stored in an external file lies: the file and the byte offset,
    /// checked to hold `want` bytes there.
    fn external_extent(&self, t: &proto::TensorProto, want: u64) -> Result<(PathBuf, u64), String> {
        let entry = |key: &str| t.external_data.iter().find(|e| e.key == key).map(|e| e.value.as_str());
        let location = entry("location").ok_or("external data without a `location`")?;
        let relative = Path::new(location);
        if relative.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(format!("external data location `{location}` leaves the model's directory"));
        }
        let number = |key: &str| -> Result<Option<u64>, String> {
            entry(key).map(|v| v.parse::<u64>().map_err(|_| format!("external data `{key}` = `{v}`"))).transpose()
        };
        let offset = number("offset")?.unwrap_or(0);
        let length = number("length")?.unwrap_or(want);
        if length != want {
            return Err(format!("external data of {length} bytes, its shape needs {want}"));
        }
        let file_path = self.path.parent().unwrap_or(Path::new(".")).join(relative);
        let len = std::fs::metadata(&file_path).map_err(|e| format!("{}: {e}", file_path.display()))?.len();
        if offset.checked_add(length).is_none_or(|end| end > len) {
            return Err(format!(
                "external data at {offset}..{} lies outside {} ({len} bytes)",
                offset.saturating_add(length),
                file_path.display()
            ));
        }
        Ok((file_path, offset))
    }

    /// The bytes of an initializer stored in an external file beside the model.
    fn external(&self, t: &proto::TensorProto, want: u64) -> Result<Vec<u8>, String> {
        let (file_path, offset) = self.external_extent(t, want)?;
        let file = File::open(&file_path).map_err(|e| format!("{}: {e}", file_path.display()))?;
        let mut buf = vec![0u8; want as usize];
        file.read_exact_at(&mut buf, offset).map_err(|e| format!("{}: {e}", file_path.display()))?;
        Ok(buf)
    }

    /// The layer in anybit's canonical form (see the module doc), with `activation` x and y.
    pub fn linear_weights(&self, layer: &MatMulNBits, activation: DType) -> Result<OnnxLinear, OnnxError> {
        let err = |tensor: Option<&str>, what: String| self.node_error(&layer.name, tensor, what);
        let format = layer.format(activation).map_err(|e| err(None, e))?;
        let (k, n, bits) = (layer.k, layer.n, layer.bits);
        if !k.is_multiple_of(layer.block_size) {
            return Err(err(None, format!("K = {k} is not a multiple of block_size {}", layer.block_size)));
        }
        let blocks = layer.k_blocks();
        let blob = layer.block_size * bits as usize / 8;
        let b = self.tensor_bytes(&layer.b, &layer.name)?;
        let mut codes = vec![0u32; k * n];
        for (row, column) in b.chunks_exact(blocks * blob).enumerate() {
            for kk in 0..k {
                codes[kk * n + row] = stream_code(column, kk, bits);
            }
        }
        let scale_bytes = self.tensor_bytes(&layer.scales, &layer.name)?;
        let word = |bytes: &[u8], i: usize, width: usize| {
            let mut v = 0u32;
            for (j, &byte) in bytes[i * width..(i + 1) * width].iter().enumerate() {
                v |= u32::from(byte) << (8 * j);
            }
            v
        };
        let width = (layer.scale.bits() / 8) as usize;
        let mut scales = vec![0u32; blocks * n];
        let mut zeros = vec![1u32 << (bits - 1); blocks * n];
        for row in 0..n {
            for g in 0..blocks {
                scales[g * n + row] = word(&scale_bytes, row * blocks + g, width);
            }
        }
        if let Some(z) = &layer.zero_points {
            let packed = self.tensor_bytes(z, &layer.name)?;
            let row_bytes = (blocks * bits as usize).div_ceil(8);
            for (row, bytes) in packed.chunks_exact(row_bytes).enumerate() {
                for g in 0..blocks {
                    zeros[g * n + row] = stream_code(bytes, g, bits);
                }
            }
        }
        let weights = QuantizedWeights::new(format, k, n, codes, scales, zeros)
            .map_err(|e| err(Some(&layer.b), e.to_string()))?;
        let bias = match &layer.bias {
            None => None,
            Some(name) => {
                let bytes = self.tensor_bytes(name, &layer.name)?;
                let values = (0..n).map(|i| {
                    let code = word(&bytes, i, width);
                    let value = layer.scale.decode_f64(code).unwrap_or(f64::NAN) as f32;
                    value.to_bits()
                });
                Some(values.collect())
            }
        };
        Ok(OnnxLinear { weights, bias })
    }
}

fn info(t: &proto::TensorProto) -> TensorInfo {
    TensorInfo {
        name: t.name.clone(),
        dims: t.dims.iter().filter_map(|&d| u64::try_from(d).ok()).collect(),
        element: ElementType::from_proto(t.data_type),
        external: t.data_location == 1,
    }
}
