//! Reading GGUF model files (versions 2 and 3): header, metadata, tensor infos, and tensor
//! data decoded to exact values.
//!
//! # The format
//!
//! Little-endian throughout: the magic `GGUF`, a `u32` version, `u64` tensor and metadata
//! counts; the metadata as (string key, `u32` value type, value) — strings are a `u64` length
//! and UTF-8 bytes, arrays a `u32` element type, a `u64` count and the elements; then per
//! tensor its name, `u32` dimension count, `u64` dimensions (innermost first), `u32` ggml type
//! and `u64` offset. Tensor data starts at the next multiple of `general.alignment` (default
//! 32) after the tensor infos; each offset is relative to that start.
//!
//! # How it reads
//!
//! [`GgufFile::open`] reads only the header, metadata and tensor infos, with every length and
//! count checked against the bytes left in the file before anything is allocated (and every
//! tensor's size, from its type and shape, checked against the file and the next tensor), so a
//! corrupt or hostile file gets an error (naming the file, the byte offset and what was
//! wrong), never a panic or a huge allocation. The file is memory-mapped ([`crate::mapped`]):
//! tensor data is borrowed from the map on demand, one tensor at a time
//! ([`GgufFile::tensor_bytes`]), so a large model is never read into memory whole (with
//! `ANYBIT_NO_MMAP=1`, or where mapping fails, positioned reads of each tensor instead).
//!
//! # Decoding
//!
//! [`dequantize`] turns a tensor's bytes into `f32` values exactly as ggml's reference
//! dequantizers compute them (`f16` scales widened to `f32`, K-quant sub-block scales and
//! minimums formed in `f32`, one `f32` multiplication, and for the types with a minimum one
//! `f32` addition): F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K
//! and IQ4_NL. The scale-quantized types — IQ4_NL among them, a lookup-table type whose 4-bit
//! codes index ggml's 16 levels ([`crate::lut::Lut::IQ4_NL`]) — go through one block splitter
//! into anybit's canonical parts — weight codes, per-group scales and offsets
//! ([`GgmlType::scaled_layout`]) — which
//! [`linear_weights`] imports as they are, so the decoded values and the imported weights
//! cannot disagree. The other quantization types are recognized (names, block sizes) and
//! reported as not yet decodable.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::mapped::{Access, MapError, MappedFile};

/// A read error of the mapped file as a GGUF error (a range past the end is a malformed file).
fn map_error(error: MapError) -> GgufError {
    match error {
        MapError::Io { path, source } => GgufError::Io { path, source },
        MapError::OutOfRange { ref path, offset, .. } => {
            GgufError::Malformed { path: path.clone(), offset, what: error.to_string() }
        }
    }
}

/// Why a GGUF file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a valid GGUF file.
    #[error("{path}: at byte {offset}: {what}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Where.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A tensor that cannot be decoded (yet).
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

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    /// Unsigned integers (`u8` … `u64`).
    Uint(u64),
    /// Signed integers (`i8` … `i64`).
    Int(i64),
    /// `f32` or `f64`.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A string.
    String(String),
    /// An array (of one element type).
    Array(Vec<MetaValue>),
}

/// A ggml tensor type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GgmlType(pub u32);

impl GgmlType {
    /// F32.
    pub const F32: GgmlType = GgmlType(0);
    /// F16.
    pub const F16: GgmlType = GgmlType(1);
    /// Q4_0.
    pub const Q4_0: GgmlType = GgmlType(2);
    /// Q4_1.
    pub const Q4_1: GgmlType = GgmlType(3);
    /// Q5_0.
    pub const Q5_0: GgmlType = GgmlType(6);
    /// Q5_1.
    pub const Q5_1: GgmlType = GgmlType(7);
    /// Q8_0.
    pub const Q8_0: GgmlType = GgmlType(8);
    /// Q2_K: 2-bit codes, a 4-bit scale and minimum per 16, f16 super-scales per 256.
    pub const Q2_K: GgmlType = GgmlType(10);
    /// Q3_K: signed 3-bit codes, a 6-bit scale per 16, an f16 super-scale per 256.
    pub const Q3_K: GgmlType = GgmlType(11);
    /// Q4_K: 4-bit codes, a 6-bit scale and minimum per 32, f16 super-scales per 256.
    pub const Q4_K: GgmlType = GgmlType(12);
    /// Q5_K: 5-bit codes, a 6-bit scale and minimum per 32, f16 super-scales per 256.
    pub const Q5_K: GgmlType = GgmlType(13);
    /// Q6_K: 6-bit codes (offset 32), an 8-bit scale per 16, an f16 super-scale per 256.
    pub const Q6_K: GgmlType = GgmlType(14);
    /// IQ4_NL: 4-bit indices into a fixed 16-entry table of int8 levels, one f16 scale per 32.
    pub const IQ4_NL: GgmlType = GgmlType(20);
    /// BF16.
    pub const BF16: GgmlType = GgmlType(30);

    /// (name, elements per block, bytes per block) of the known types.
    fn info(self) -> Option<(&'static str, u64, u64)> {
        Some(match self.0 {
            0 => ("F32", 1, 4),
            1 => ("F16", 1, 2),
            2 => ("Q4_0", 32, 18),
            3 => ("Q4_1", 32, 20),
            6 => ("Q5_0", 32, 22),
            7 => ("Q5_1", 32, 24),
            8 => ("Q8_0", 32, 34),
            9 => ("Q8_1", 32, 40),
            10 => ("Q2_K", 256, 84),
            11 => ("Q3_K", 256, 110),
            12 => ("Q4_K", 256, 144),
            13 => ("Q5_K", 256, 176),
            14 => ("Q6_K", 256, 210),
            15 => ("Q8_K", 256, 292),
            16 => ("IQ2_XXS", 256, 66),
            17 => ("IQ2_XS", 256, 74),
            18 => ("IQ3_XXS", 256, 98),
            19 => ("IQ1_S", 256, 50),
            20 => ("IQ4_NL", 32, 18),
            21 => ("IQ3_S", 256, 110),
            22 => ("IQ2_S", 256, 82),
            23 => ("IQ4_XS", 256, 136),
            24 => ("I8", 1, 1),
            25 => ("I16", 1, 2),
            26 => ("I32", 1, 4),
            27 => ("I64", 1, 8),
            28 => ("F64", 1, 8),
            29 => ("IQ1_M", 256, 56),
            30 => ("BF16", 1, 2),
            _ => return None,
        })
    }

    /// Its ggml name (`Q4_0`), or `type N` for an unknown one.
    pub fn name(self) -> String {
        self.info().map_or_else(|| format!("type {}", self.0), |(n, _, _)| n.to_string())
    }

    /// Elements per block and bytes per block, for known types.
    pub fn block(self) -> Option<(u64, u64)> {
        self.info().map(|(_, e, b)| (e, b))
    }
}

/// One tensor's description.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// Its name.
    pub name: String,
    /// Dimensions, innermost (contiguous) first, as GGUF stores them.
    pub dims: Vec<u64>,
    /// Its type.
    pub ggml_type: GgmlType,
    /// Byte offset of its data in the file.
    pub offset: u64,
    /// Bytes of data.
    pub bytes: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// An open GGUF file: its metadata and tensor infos; data is read on demand.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    file: MappedFile,
    /// The format version (2 or 3).
    pub version: u32,
    /// Metadata, by key.
    pub metadata: BTreeMap<String, MetaValue>,
    /// Tensors, in file order.
    pub tensors: Vec<TensorInfo>,
}

/// A cursor over the header bytes, checking every read against the file's length.
struct Reader<'a> {
    path: &'a Path,
    file: &'a MappedFile,
    len: u64,
    at: u64,
}

impl Reader<'_> {
    fn malformed(&self, what: impl Into<String>) -> GgufError {
        GgufError::Malformed { path: self.path.to_path_buf(), offset: self.at, what: what.into() }
    }

    fn bytes(&mut self, n: u64, what: &str) -> Result<Vec<u8>, GgufError> {
        if n > self.len.saturating_sub(self.at) {
            return Err(self.malformed(format!("{what}: {n} bytes needed, {} left", self.len.saturating_sub(self.at))));
        }
        let buf = self.file.bytes(self.at, n).map_err(map_error)?.into_owned();
        self.at += n;
        Ok(buf)
    }

    fn fixed<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let v = self.bytes(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(&v);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.fixed(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.fixed(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let n = self.u64(what)?;
        let start = self.at;
        let bytes = self.bytes(n, what)?;
        String::from_utf8(bytes).map_err(|_| GgufError::Malformed {
            path: self.path.to_path_buf(),
            offset: start,
            what: format!("{what}: not UTF-8"),
        })
    }

    /// The smallest encoding of a value of metadata type `t`, to bound array counts.
    fn min_size(t: u32) -> u64 {
        match t {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            8 => 8,
            9 => 12,
            _ => 8,
        }
    }

    fn value(&mut self, t: u32, what: &str, depth: u32) -> Result<MetaValue, GgufError> {
        Ok(match t {
            0 => MetaValue::Uint(u64::from(self.fixed::<1>(what)?[0])),
            1 => MetaValue::Int(i64::from(self.fixed::<1>(what)?[0] as i8)),
            2 => MetaValue::Uint(u64::from(u16::from_le_bytes(self.fixed(what)?))),
            3 => MetaValue::Int(i64::from(i16::from_le_bytes(self.fixed(what)?))),
            4 => MetaValue::Uint(u64::from(self.u32(what)?)),
            5 => MetaValue::Int(i64::from(i32::from_le_bytes(self.fixed(what)?))),
            6 => MetaValue::Float(f64::from(f32::from_le_bytes(self.fixed(what)?))),
            7 => match self.fixed::<1>(what)?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => return Err(self.malformed(format!("{what}: boolean byte {b}"))),
            },
            8 => MetaValue::String(self.string(what)?),
            9 => {
                if depth > 4 {
                    return Err(self.malformed(format!("{what}: arrays nested too deeply")));
                }
                let element = self.u32(what)?;
                let count = self.u64(what)?;
                if count.saturating_mul(Self::min_size(element)) > self.len.saturating_sub(self.at) {
                    return Err(self.malformed(format!("{what}: array of {count} elements does not fit the file")));
                }
                let mut items = Vec::with_capacity(count.min(1 << 20) as usize);
                for _ in 0..count {
                    items.push(self.value(element, what, depth + 1)?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::Uint(self.u64(what)?),
            11 => MetaValue::Int(i64::from_le_bytes(self.fixed(what)?)),
            12 => MetaValue::Float(f64::from_le_bytes(self.fixed(what)?)),
            other => return Err(self.malformed(format!("{what}: unknown metadata value type {other}"))),
        })
    }
}

impl GgufFile {
    /// Opens a GGUF file and reads its header, metadata and tensor infos (not the data).
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        GgufFile::open_with(path, Access::from_env())
    }

    /// [`GgufFile::open`], mapping the file or not as `access` says.
    pub fn open_with(path: impl AsRef<Path>, access: Access) -> Result<GgufFile, GgufError> {
        let path = path.as_ref();
        let file = MappedFile::open_with(path, access).map_err(map_error)?;
        let len = file.len();
        let mut r = Reader { path, file: &file, len, at: 0 };
        let magic = r.fixed::<4>("magic")?;
        if &magic != b"GGUF" {
            return Err(GgufError::Malformed {
                path: path.to_path_buf(),
                offset: 0,
                what: "not a GGUF file (no `GGUF` magic)".into(),
            });
        }
        let version = r.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(r.malformed(format!("GGUF version {version} is not supported (2 or 3)")));
        }
        let tensor_count = r.u64("tensor count")?;
        let kv_count = r.u64("metadata count")?;
        // Every entry takes at least 8 + 4 + 1 bytes (metadata) or 8 + 4 + 4 + 8 (tensor).
        if kv_count.saturating_mul(13).saturating_add(tensor_count.saturating_mul(24)) > len {
            return Err(
                r.malformed(format!("{kv_count} metadata entries and {tensor_count} tensors do not fit the file"))
            );
        }
        let mut metadata = BTreeMap::new();
        for _ in 0..kv_count {
            let key = r.string("metadata key")?;
            let t = r.u32("metadata value type")?;
            let value = r.value(t, &format!("metadata `{key}`"), 0)?;
            metadata.insert(key, value);
        }
        let alignment = match metadata.get("general.alignment") {
            None => 32,
            Some(MetaValue::Uint(a)) if *a > 0 && a.is_power_of_two() && *a <= 1 << 20 => *a,
            Some(other) => return Err(r.malformed(format!("general.alignment {other:?} is not a power of two"))),
        };
        let mut infos = Vec::with_capacity(tensor_count as usize);
        for _ in 0..tensor_count {
            let name = r.string("tensor name")?;
            let what = format!("tensor `{name}`");
            let n_dims = r.u32(&what)?;
            if n_dims == 0 || n_dims > 8 {
                return Err(r.malformed(format!("{what}: {n_dims} dimensions")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(r.u64(&what)?);
            }
            let ggml_type = GgmlType(r.u32(&what)?);
            let offset = r.u64(&what)?;
            infos.push((name, dims, ggml_type, offset));
        }
        let data_start = r.at.div_ceil(alignment) * alignment;
        let mut tensors = Vec::with_capacity(infos.len());
        for (name, dims, ggml_type, offset) in infos {
            let malformed = |what: String| GgufError::Tensor { path: path.to_path_buf(), tensor: name.clone(), what };
            let elements = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
            let Some(elements) = elements else { return Err(malformed(format!("dimensions {dims:?} overflow"))) };
            let bytes = match ggml_type.block() {
                Some((per, size)) => {
                    let inner = dims.first().copied().unwrap_or(1);
                    if !inner.is_multiple_of(per) {
                        return Err(malformed(format!(
                            "{} blocks hold {per} elements, but rows have {inner}",
                            ggml_type.name()
                        )));
                    }
                    (elements / per).checked_mul(size)
                }
                None => return Err(malformed(format!("unknown ggml type {}", ggml_type.0))),
            };
            let start = data_start.checked_add(offset);
            match (bytes, start) {
                (Some(bytes), Some(start)) if start.checked_add(bytes).is_some_and(|end| end <= len) => {
                    if !offset.is_multiple_of(alignment) {
                        return Err(malformed(format!(
                            "offset {offset} is not a multiple of the alignment {alignment}"
                        )));
                    }
                    tensors.push(TensorInfo { name, dims, ggml_type, offset: start, bytes });
                }
                _ => {
                    return Err(malformed(format!(
                        "data at offset {offset} ({} bytes) lies outside the file ({len} bytes)",
                        bytes.map_or("too many".to_string(), |b| b.to_string())
                    )));
                }
            }
        }
        // Each tensor's type and shape give its size: data that runs into the next tensor's
        // means they disagree with the file's layout.
        let mut by_offset: Vec<&TensorInfo> = tensors.iter().collect();
        by_offset.sort_by_key(|t| t.offset);
        for pair in by_offset.windows(2) {
            if pair[0].offset + pair[0].bytes > pair[1].offset {
                return Err(GgufError::Tensor {
                    path: path.to_path_buf(),
                    tensor: pair[0].name.clone(),
                    what: format!(
                        "{} {:?} takes {} bytes from offset {}, running into tensor `{}` at {}",
                        pair[0].ggml_type.name(),
                        pair[0].dims,
                        pair[0].bytes,
                        pair[0].offset - data_start,
                        pair[1].name,
                        pair[1].offset - data_start
                    ),
                });
            }
        }
        Ok(GgufFile { path: path.to_path_buf(), file, version, metadata, tensors })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// A tensor's raw bytes: borrowed from the memory map, or one positioned read where the
    /// file is not mapped (see [`crate::mapped`]).
    pub fn tensor_bytes(&self, tensor: &TensorInfo) -> Result<Cow<'_, [u8]>, GgufError> {
        self.file.bytes(tensor.offset, tensor.bytes).map_err(map_error)
    }

    /// Whether tensor data comes from a memory map (else from positioned reads).
    pub fn is_mapped(&self) -> bool {
        self.file.is_mapped()
    }

    /// A tensor's values, decoded to `f32` (see [`dequantize`]).
    pub fn tensor_f32(&self, tensor: &TensorInfo) -> Result<Vec<f32>, GgufError> {
        let bytes = self.tensor_bytes(tensor)?;
        dequantize(tensor.ggml_type, &bytes).map_err(|what| GgufError::Tensor {
            path: self.path.clone(),
            tensor: tensor.name.clone(),
            what,
        })
    }
}

fn f16_bits(b: &[u8], at: usize) -> u32 {
    u32::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    anybit_ir::DType::F16.decode_f64(f16_bits(b, at)).unwrap_or(f64::NAN) as f32
}

/// How a scale-quantized ggml type maps onto anybit's canonical weight form: every weight is
/// `(q − z)·s + o` with a code q of `weight` (or, for a lookup-table type, `lut[q]` for a `uN`
/// code: IQ4_NL), a constant zero point z, and per group of `group`
/// weights a scale s and (for `offset` types) an offset o, both of type `scale` — f16 where the
/// file stores them, f32 where an import folds two-level K-quant scales (`d·sc`, `−dmin·m`: an
/// f16 times a 6- or 8-bit integer, exact in f32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScaledLayout {
    /// The type of a weight code.
    pub weight: anybit_ir::DType,
    /// The table codes decode through (IQ4_NL), or `None`: codes are values of `weight`.
    pub lut: Option<crate::lut::Lut>,
    /// The zero point, a code of `weight` (`None`: no zero point).
    pub zero: Option<u32>,
    /// Weights per scale along a row.
    pub group: usize,
    /// The type of scales and offsets (f16 or f32).
    pub scale: anybit_ir::DType,
    /// Whether each group has an offset.
    pub offset: bool,
}

impl GgmlType {
    /// The canonical layout of a scale-quantized type (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K,
    /// Q3_K, Q4_K, Q5_K, Q6_K, and the lookup-table type IQ4_NL); `None` for the others.
    pub fn scaled_layout(self) -> Option<ScaledLayout> {
        use anybit_ir::DType;
        if self == GgmlType::IQ4_NL {
            let lut = crate::lut::Lut::IQ4_NL;
            let layout = ScaledLayout {
                weight: lut.storage(),
                lut: Some(lut),
                zero: None,
                group: 32,
                scale: DType::F16,
                offset: false,
            };
            return Some(layout);
        }
        let (weight, zero, group, scale, offset) = match self {
            GgmlType::Q4_0 => (DType::uint(4), Some(8), 32, DType::F16, false),
            GgmlType::Q4_1 => (DType::uint(4), None, 32, DType::F16, true),
            GgmlType::Q5_0 => (DType::uint(5), Some(16), 32, DType::F16, false),
            GgmlType::Q5_1 => (DType::uint(5), None, 32, DType::F16, true),
            GgmlType::Q8_0 => (DType::int(8), None, 32, DType::F16, false),
            GgmlType::Q2_K => (DType::uint(2), None, 16, DType::F32, true),
            GgmlType::Q3_K => (DType::int(3), None, 16, DType::F32, false),
            GgmlType::Q4_K => (DType::uint(4), None, 32, DType::F32, true),
            GgmlType::Q5_K => (DType::uint(5), None, 32, DType::F32, true),
            GgmlType::Q6_K => (DType::uint(6), Some(32), 16, DType::F32, false),
            _ => return None,
        };
        Some(ScaledLayout { weight: weight.ok()?, lut: None, zero, group, scale, offset })
    }
}

/// The 6-bit scale and minimum of sub-block `j` of Q4_K/Q5_K (12 packed bytes).
fn k_scale_min(scales: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 0x3F, scales[j + 4] & 0x3F)
    } else {
        let (d, m, md) = (scales[j - 4], scales[j], scales[j + 4]);
        ((md & 0x0F) | ((d >> 2) & 0x30), (md >> 4) | ((m >> 2) & 0x30))
    }
}

/// The signed 6-bit scale of sub-block `j` of Q3_K (12 packed bytes), as `sc − 32`.
fn q3_k_scale(scales: &[u8], j: usize) -> i8 {
    let low = if j < 8 { scales[j] & 0x0F } else { scales[j - 8] >> 4 };
    let high = (scales[8 + j % 4] >> (2 * (j / 4))) & 0x03;
    (low | (high << 4)) as i8 - 32
}

/// One block of a scale-quantized type split into its canonical parts: the weight codes
/// (`codes`, one per element), and per group the scale and offset codes (of the layout's scale
/// type) appended to `scales` and `offsets`. The bit layouts are ggml's (`ggml-common.h`).
fn split_block(t: GgmlType, block: &[u8], codes: &mut [u32], scales: &mut Vec<u32>, offsets: &mut Vec<u32>) {
    // A nibble of a 32-weight block: low nibbles first, then high nibbles.
    let nibble = |qs: &[u8], j: usize| u32::from(if j < 16 { qs[j] & 0xF } else { qs[j - 16] >> 4 });
    // 2 bits of the 128-weight halves of Q2_K/Q3_K: byte l of 32, shifted by 2·(j/32).
    let crumb = |qs: &[u8], e: usize| {
        let (half, j) = (e / 128, e % 128);
        u32::from((qs[half * 32 + j % 32] >> (2 * (j / 32))) & 3)
    };
    let f32_code = |v: f32| v.to_bits();
    match t {
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::IQ4_NL => {
            // IQ4_NL's block is Q4_0's: an f16 scale and 16 bytes of 4-bit codes (table indices).
            let at = if t == GgmlType::Q4_1 { 4 } else { 2 };
            scales.push(f16_bits(block, 0));
            if t == GgmlType::Q4_1 {
                offsets.push(f16_bits(block, 2));
            }
            for (j, c) in codes.iter_mut().enumerate() {
                *c = nibble(&block[at..at + 16], j);
            }
        }
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            let at = if t == GgmlType::Q5_1 { 4 } else { 2 };
            scales.push(f16_bits(block, 0));
            if t == GgmlType::Q5_1 {
                offsets.push(f16_bits(block, 2));
            }
            let qh = u32::from_le_bytes([block[at], block[at + 1], block[at + 2], block[at + 3]]);
            for (j, c) in codes.iter_mut().enumerate() {
                *c = nibble(&block[at + 4..at + 20], j) | (((qh >> j) & 1) << 4);
            }
        }
        GgmlType::Q8_0 => {
            scales.push(f16_bits(block, 0));
            for (c, &b) in codes.iter_mut().zip(&block[2..34]) {
                *c = u32::from(b); // an i8 code: the byte itself (two's complement)
            }
        }
        GgmlType::Q2_K => {
            let (sc, qs) = (&block[0..16], &block[16..80]);
            let (d, dmin) = (f16_at(block, 80), f16_at(block, 82));
            for &s in sc {
                scales.push(f32_code(d * f32::from(s & 0xF)));
                offsets.push(f32_code(-(dmin * f32::from(s >> 4))));
            }
            for (e, c) in codes.iter_mut().enumerate() {
                *c = crumb(qs, e);
            }
        }
        GgmlType::Q3_K => {
            let (hmask, qs, sc) = (&block[0..32], &block[32..96], &block[96..108]);
            let d = f16_at(block, 108);
            for j in 0..16 {
                scales.push(f32_code(d * f32::from(q3_k_scale(sc, j))));
            }
            for (e, c) in codes.iter_mut().enumerate() {
                // 4 is subtracted where the high bit is clear: q in −4..=3, an i3 code.
                let high = (hmask[e % 32] >> (e / 32)) & 1;
                let q = crumb(qs, e) as i32 - if high == 0 { 4 } else { 0 };
                *c = (q as u32) & 0x7;
            }
        }
        GgmlType::Q4_K | GgmlType::Q5_K => {
            let (d, dmin, sc) = (f16_at(block, 0), f16_at(block, 2), &block[4..16]);
            for j in 0..8 {
                let (s, m) = k_scale_min(sc, j);
                scales.push(f32_code(d * f32::from(s)));
                offsets.push(f32_code(-(dmin * f32::from(m))));
            }
            let (qh, qs) =
                if t == GgmlType::Q5_K { (Some(&block[16..48]), &block[48..176]) } else { (None, &block[16..144]) };
            for (e, c) in codes.iter_mut().enumerate() {
                let (chunk, half, l) = (e / 64, (e % 64) / 32, e % 32);
                let low = u32::from((qs[chunk * 32 + l] >> (4 * half)) & 0xF);
                let high = qh.map_or(0, |qh| u32::from((qh[l] >> (e / 32)) & 1));
                *c = low | (high << 4);
            }
        }
        GgmlType::Q6_K => {
            let (ql, qh, sc) = (&block[0..128], &block[128..192], &block[192..208]);
            let d = f16_at(block, 208);
            for &s in sc {
                scales.push(f32_code(d * f32::from(s as i8)));
            }
            for (e, c) in codes.iter_mut().enumerate() {
                let (half, j) = (e / 128, e % 128);
                let low = (ql[half * 64 + j % 64] >> (4 * (j / 64))) & 0xF;
                let high = (qh[half * 32 + j % 32] >> (2 * (j / 32))) & 0x3;
                *c = u32::from(low | (high << 4));
            }
        }
        // Callers split only types with a scaled layout.
        _ => {}
    }
}

/// Decodes `bytes` of ggml type `t` to `f32`, bit for bit as ggml's reference dequantizers:
/// for the scale-quantized types `(q − z)·s`, rounded to f32, plus `o` where there is one,
/// rounded to f32 — ggml's own operations, with K-quant scales `d·sc` and minimums `dmin·m`
/// formed in f32 first as ggml forms them.
pub fn dequantize(t: GgmlType, bytes: &[u8]) -> Result<Vec<f32>, String> {
    let Some((per, size)) = t.block() else { return Err(format!("unknown ggml type {}", t.0)) };
    let (per, size) = (per as usize, size as usize);
    if !bytes.len().is_multiple_of(size) {
        return Err(format!("{} bytes are not whole {} blocks of {size} bytes", bytes.len(), t.name()));
    }
    let mut out = Vec::with_capacity(bytes.len() / size * per);
    if let Some(layout) = t.scaled_layout() {
        let value = |dtype: anybit_ir::DType, code: u32| dtype.decode_f64(code).unwrap_or(f64::NAN) as f32;
        // A code's value: the table entry for IQ4_NL (ggml's `kvalues_iq4nl[q]`), else the code's.
        let level = |code: u32| match layout.lut {
            Some(lut) => lut.value(code).unwrap_or(f32::NAN),
            None => value(layout.weight, code),
        };
        let zero = layout.zero.map_or(0.0, |z| value(layout.weight, z));
        let (mut codes, mut scales, mut offsets) = (vec![0u32; per], Vec::new(), Vec::new());
        for block in bytes.chunks_exact(size) {
            scales.clear();
            offsets.clear();
            split_block(t, block, &mut codes, &mut scales, &mut offsets);
            for (j, &code) in codes.iter().enumerate() {
                let g = j / layout.group;
                let scaled = (level(code) - zero) * value(layout.scale, scales[g]);
                out.push(if layout.offset { scaled + value(layout.scale, offsets[g]) } else { scaled });
            }
        }
        return Ok(out);
    }
    for block in bytes.chunks_exact(size) {
        match t {
            GgmlType::F32 => out.push(f32::from_le_bytes([block[0], block[1], block[2], block[3]])),
            GgmlType::F16 => out.push(f16_at(block, 0)),
            GgmlType::BF16 => out.push(f32::from_bits(u32::from(u16::from_le_bytes([block[0], block[1]])) << 16)),
            other => return Err(format!("decoding {} tensors is not supported yet", other.name())),
        }
    }
    Ok(out)
}

/// The weight format a layer of ggml type `t` imports as, with `activation` x and y (`None`:
/// the type does not import as a linear layer yet).
pub fn linear_format(t: GgmlType, activation: anybit_ir::DType) -> Option<crate::lowbit::WeightFormat> {
    let layout = t.scaled_layout()?;
    Some(crate::lowbit::WeightFormat {
        weight: layout.weight,
        lut: layout.lut,
        group_size: layout.group,
        scale: layout.scale,
        zero_point: layout.zero.is_some(),
        offset: layout.offset,
        activation,
    })
}

/// The canonical quantized weights ([`crate::lowbit::QuantizedWeights`]) of a 2-D linear
/// layer's tensor, for the scale-quantized GGUF types (see [`GgmlType::scaled_layout`]): Q4_0
/// (u4 codes, zero point 8), Q5_0 (u5, zero point 16), Q8_0 (i8), each with an f16 scale per
/// 32; Q4_1 and Q5_1 (u4/u5 with an f16 scale and minimum per 32); and the K-quants with their
/// two-level scales folded exactly into an f32 scale (and offset) per sub-block: Q2_K (u2,
/// offset, per 16), Q3_K (i3, per 16), Q4_K and Q5_K (u4/u5, offset, per 32), Q6_K (u6, zero
/// point 32, per 16); and IQ4_NL, a lookup-table format (u4 codes decoding through
/// [`crate::lut::Lut::IQ4_NL`], an f16 scale per 32). The f32 weight `(q − z)·s + o` is
/// exactly ggml's dequantized value. GGUF stores the layer as N rows of K (K innermost); the
/// canonical form is K × N, so the codes are transposed. `activation` is the kernel's x/y type.
///
/// Other types are refused with a clear error (the other IQ types, Q8_1 and Q8_K are not
/// imported yet).
pub fn linear_weights(
    file: &GgufFile,
    tensor: &TensorInfo,
    activation: anybit_ir::DType,
) -> Result<crate::lowbit::QuantizedWeights, GgufError> {
    use crate::lowbit::QuantizedWeights;
    let refuse = |what: String| GgufError::Tensor { path: file.path.clone(), tensor: tensor.name.clone(), what };
    let t = tensor.ggml_type;
    let (Some(layout), Some(format)) = (t.scaled_layout(), linear_format(t, activation)) else {
        return Err(refuse(format!("{} weights cannot be imported as a linear layer yet", t.name())));
    };
    let [k, n] = tensor.dims[..] else {
        return Err(refuse(format!("a linear layer has 2 dimensions, not {}", tensor.dims.len())));
    };
    let (k, n) = (
        usize::try_from(k).map_err(|e| refuse(e.to_string()))?,
        usize::try_from(n).map_err(|e| refuse(e.to_string()))?,
    );
    format.validate_shape(1, n, k).map_err(|e| refuse(e.to_string()))?;
    let bytes = file.tensor_bytes(tensor)?;
    let (per, size) = t.block().map_or((1, 1), |(e, b)| (e as usize, b as usize));
    let groups = k / layout.group;
    let mut codes = vec![0u32; k * n];
    let mut scales = vec![0u32; groups * n];
    let mut offsets = vec![0u32; if layout.offset { groups * n } else { 0 }];
    let (mut block_codes, mut block_scales, mut block_offsets) = (vec![0u32; per], Vec::new(), Vec::new());
    for (b, block) in bytes.chunks_exact(size).enumerate() {
        // Block b covers row b / blocks_per_row (an output feature), columns from k0.
        let (row, k0) = (b * per / k, b * per % k);
        block_scales.clear();
        block_offsets.clear();
        split_block(t, block, &mut block_codes, &mut block_scales, &mut block_offsets);
        for (j, &code) in block_codes.iter().enumerate() {
            codes[(k0 + j) * n + row] = code;
        }
        let g0 = k0 / layout.group;
        for (g, &scale) in block_scales.iter().enumerate() {
            scales[(g0 + g) * n + row] = scale;
        }
        for (g, &offset) in block_offsets.iter().enumerate() {
            offsets[(g0 + g) * n + row] = offset;
        }
    }
    let zeros = layout.zero.map_or_else(Vec::new, |z| vec![z; groups * n]);
    QuantizedWeights::with_offsets(format, k, n, codes, scales, zeros, offsets).map_err(|e| refuse(e.to_string()))
}
