//! NumPy `.npy` files: read and write, for kernel inputs and outputs.
//!
//! The format (versions 1.0, 2.0 and 3.0): the magic `\x93NUMPY`, a version, the header length
//! (2 bytes in 1.0, 4 bytes later), a header that is a Python dict literal
//! `{'descr': '<f2', 'fortran_order': False, 'shape': (16, 4096), }` padded with spaces, then
//! the elements in C order. Only what kernels exchange is supported: little- or big-endian
//! (converted on read) booleans, integers and floats of 1–8 bytes, and raw 1- or 2-byte
//! records (`|V1`, `<V2`) — which is how `ml_dtypes` saves float8 and bfloat16 arrays.
//! Reading never panics: a malformed file is an [`NpyError`] saying what is wrong.

use thiserror::Error;

/// The element type of an array, as its `descr` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NpyType {
    /// `|b1`
    Bool,
    /// `|u1`
    U8,
    /// `|i1`
    I8,
    /// `<u2`
    U16,
    /// `<i2`
    I16,
    /// `<u4`
    U32,
    /// `<i4`
    I32,
    /// `<u8`
    U64,
    /// `<i8`
    I64,
    /// `<f2`
    F16,
    /// `<f4`
    F32,
    /// `<f8`
    F64,
    /// `|V1`: one raw byte per element (ml_dtypes' float8 types).
    Raw8,
    /// `<V2`: two raw bytes per element (ml_dtypes' bfloat16).
    Raw16,
}

impl NpyType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            NpyType::Bool | NpyType::U8 | NpyType::I8 | NpyType::Raw8 => 1,
            NpyType::U16 | NpyType::I16 | NpyType::F16 | NpyType::Raw16 => 2,
            NpyType::U32 | NpyType::I32 | NpyType::F32 => 4,
            NpyType::U64 | NpyType::I64 | NpyType::F64 => 8,
        }
    }

    /// The little-endian `descr` string.
    pub fn descr(self) -> &'static str {
        match self {
            NpyType::Bool => "|b1",
            NpyType::U8 => "|u1",
            NpyType::I8 => "|i1",
            NpyType::U16 => "<u2",
            NpyType::I16 => "<i2",
            NpyType::U32 => "<u4",
            NpyType::I32 => "<i4",
            NpyType::U64 => "<u8",
            NpyType::I64 => "<i8",
            NpyType::F16 => "<f2",
            NpyType::F32 => "<f4",
            NpyType::F64 => "<f8",
            NpyType::Raw8 => "|V1",
            NpyType::Raw16 => "<V2",
        }
    }

    /// The type and whether it is big-endian, from a `descr`.
    fn parse(descr: &str) -> Option<(NpyType, bool)> {
        let (order, code) = descr.split_at_checked(1)?;
        let big = match order {
            "<" | "|" | "=" => false,
            ">" => true,
            _ => return None,
        };
        let t = match code {
            "b1" => NpyType::Bool,
            "u1" => NpyType::U8,
            "i1" => NpyType::I8,
            "u2" => NpyType::U16,
            "i2" => NpyType::I16,
            "u4" => NpyType::U32,
            "i4" => NpyType::I32,
            "u8" => NpyType::U64,
            "i8" => NpyType::I64,
            "f2" => NpyType::F16,
            "f4" => NpyType::F32,
            "f8" => NpyType::F64,
            "V1" => NpyType::Raw8,
            "V2" => NpyType::Raw16,
            _ => return None,
        };
        Some((t, big))
    }
}

/// An array read from or written to a `.npy` file: C-ordered little-endian element bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyArray {
    /// Element type.
    pub dtype: NpyType,
    /// Shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// `shape.product() × dtype.size()` bytes, little-endian, C order.
    pub data: Vec<u8>,
}

/// Why a `.npy` file could not be read.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum NpyError {
    /// Not an `.npy` file.
    #[error("not a .npy file: {0}")]
    Format(String),
    /// A header entry is malformed or missing.
    #[error("malformed .npy header: {0}")]
    Header(String),
    /// The element type is not supported.
    #[error("unsupported .npy element type `{0}` (supported: b1, u1–u8, i1–i8, f2, f4, f8, V1, V2)")]
    Type(String),
    /// Fortran-ordered data.
    #[error("Fortran-ordered arrays are not supported; save with numpy.ascontiguousarray(a)")]
    FortranOrder,
    /// The data is shorter or longer than the shape says.
    #[error("the header says {expected} data bytes, the file has {found}")]
    Length {
        /// Bytes the shape and type need.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
}

const MAGIC: &[u8] = b"\x93NUMPY";

impl NpyArray {
    /// An array of `dtype` and `shape` over `data` (checked for length).
    pub fn new(dtype: NpyType, shape: Vec<usize>, data: Vec<u8>) -> Result<NpyArray, NpyError> {
        let expected = shape
            .iter()
            .try_fold(dtype.size(), |n, &d| n.checked_mul(d))
            .ok_or_else(|| NpyError::Header("the shape overflows".into()))?;
        if data.len() != expected {
            return Err(NpyError::Length { expected, found: data.len() });
        }
        Ok(NpyArray { dtype, shape, data })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len() / self.dtype.size()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Reads a whole `.npy` file.
    pub fn read(bytes: &[u8]) -> Result<NpyArray, NpyError> {
        let rest = bytes.strip_prefix(MAGIC).ok_or_else(|| NpyError::Format("missing the \\x93NUMPY magic".into()))?;
        let (&[major, _minor], rest) =
            rest.split_first_chunk::<2>().ok_or_else(|| NpyError::Format("truncated".into()))?;
        let (header_len, rest) = match major {
            1 => {
                let (len, rest) = rest.split_first_chunk::<2>().ok_or_else(|| NpyError::Format("truncated".into()))?;
                (usize::from(u16::from_le_bytes(*len)), rest)
            }
            2 | 3 => {
                let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(|| NpyError::Format("truncated".into()))?;
                (u32::from_le_bytes(*len) as usize, rest)
            }
            v => return Err(NpyError::Format(format!("unknown version {v}"))),
        };
        let header = rest.get(..header_len).ok_or_else(|| NpyError::Format("truncated header".into()))?;
        let data = &rest[header_len..];
        let header = std::str::from_utf8(header).map_err(|_| NpyError::Header("not UTF-8".into()))?;
        let (dtype, big_endian, shape) = parse_header(header)?;
        let expected = shape
            .iter()
            .try_fold(dtype.size(), |n, &d| n.checked_mul(d))
            .ok_or_else(|| NpyError::Header("the shape overflows".into()))?;
        if data.len() != expected {
            return Err(NpyError::Length { expected, found: data.len() });
        }
        let mut data = data.to_vec();
        if big_endian && dtype.size() > 1 && !matches!(dtype, NpyType::Raw16) {
            for element in data.chunks_exact_mut(dtype.size()) {
                element.reverse();
            }
        }
        Ok(NpyArray { dtype, shape, data })
    }

    /// The file bytes (version 1.0, or 2.0 for a header over 64 KiB).
    pub fn write(&self) -> Vec<u8> {
        let shape = match self.shape.as_slice() {
            [] => "()".to_owned(),
            [d] => format!("({d},)"),
            dims => format!("({})", dims.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
        };
        let mut header = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}", self.dtype.descr());
        // Pad so that the data starts at a multiple of 64 bytes, header ending in '\n'.
        let fixed = MAGIC.len() + 2 + 2;
        let wide = header.len() + fixed + 1 > u16::MAX as usize;
        let prefix = if wide { fixed + 2 } else { fixed };
        let total = (prefix + header.len() + 1).next_multiple_of(64);
        header.push_str(&" ".repeat(total - prefix - header.len() - 1));
        header.push('\n');
        let mut out = Vec::with_capacity(total + self.data.len());
        out.extend_from_slice(MAGIC);
        if wide {
            out.extend_from_slice(&[2, 0]);
            out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        } else {
            out.extend_from_slice(&[1, 0]);
            out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        }
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&self.data);
        out
    }
}

/// Parses `{'descr': '<f2', 'fortran_order': False, 'shape': (2, 3), }` in any key order.
fn parse_header(header: &str) -> Result<(NpyType, bool, Vec<usize>), NpyError> {
    let body = header
        .trim()
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .ok_or_else(|| NpyError::Header("expected a {...} dict".into()))?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    let mut rest = body.trim_start();
    while !rest.is_empty() {
        let (key, after) =
            quoted(rest).ok_or_else(|| NpyError::Header(format!("expected a quoted key at `{}`", excerpt(rest))))?;
        let after = after
            .trim_start()
            .strip_prefix(':')
            .ok_or_else(|| NpyError::Header(format!("expected ':' after '{key}'")))?;
        let after = after.trim_start();
        rest = match key {
            "descr" => {
                let (value, after) = quoted(after).ok_or_else(|| NpyError::Header("descr must be a string".into()))?;
                descr = Some(value);
                after
            }
            "fortran_order" => {
                let (value, after) = if let Some(a) = after.strip_prefix("False") {
                    (false, a)
                } else if let Some(a) = after.strip_prefix("True") {
                    (true, a)
                } else {
                    return Err(NpyError::Header("fortran_order must be True or False".into()));
                };
                fortran = Some(value);
                after
            }
            "shape" => {
                let inner = after.strip_prefix('(').ok_or_else(|| NpyError::Header("shape must be a tuple".into()))?;
                let close = inner.find(')').ok_or_else(|| NpyError::Header("unclosed shape tuple".into()))?;
                let dims = inner[..close]
                    .split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(|d| d.strip_suffix('L').unwrap_or(d).parse::<usize>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| NpyError::Header(format!("bad shape ({})", excerpt(&inner[..close]))))?;
                shape = Some(dims);
                &inner[close + 1..]
            }
            other => return Err(NpyError::Header(format!("unknown key '{other}'"))),
        };
        rest = rest.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    let descr = descr.ok_or_else(|| NpyError::Header("no 'descr'".into()))?;
    if fortran.ok_or_else(|| NpyError::Header("no 'fortran_order'".into()))? {
        return Err(NpyError::FortranOrder);
    }
    let shape = shape.ok_or_else(|| NpyError::Header("no 'shape'".into()))?;
    let (dtype, big) = NpyType::parse(descr).ok_or_else(|| NpyError::Type(descr.to_owned()))?;
    Ok((dtype, big, shape))
}

/// A `'…'` or `"…"` string at the start of `s`, and what follows it.
fn quoted(s: &str) -> Option<(&str, &str)> {
    let quote = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let inner = &s[1..];
    let end = inner.find(quote)?;
    Some((&inner[..end], &inner[end + 1..]))
}

fn excerpt(s: &str) -> String {
    s.chars().take(20).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_numpy_headers() {
        let array = NpyArray::new(NpyType::F16, vec![2, 3], vec![0; 12]).unwrap();
        let bytes = array.write();
        assert_eq!((bytes.len() - 12) % 64, 0, "the data starts on a 64-byte boundary");
        assert_eq!(&bytes[..10], b"\x93NUMPY\x01\x00v\x00");
        assert_eq!(NpyArray::read(&bytes), Ok(array));
        // numpy's own header for a 1-D bfloat16 array (ml_dtypes).
        let mut file = b"\x93NUMPY\x01\x00v\x00{'descr': '<V2', 'fortran_order': False, 'shape': (3,), }".to_vec();
        file.resize(128 - 1, b' ');
        file.push(b'\n');
        file.extend([0u8; 6]);
        let read = NpyArray::read(&file).unwrap();
        assert_eq!((read.dtype, read.shape), (NpyType::Raw16, vec![3]));
    }

    #[test]
    fn big_endian_is_converted() {
        let header = "{'descr': '>u2', 'fortran_order': False, 'shape': (1,), }\n";
        let mut file = b"\x93NUMPY\x01\x00".to_vec();
        file.extend((header.len() as u16).to_le_bytes());
        file.extend(header.as_bytes());
        file.extend([0x12, 0x34]);
        assert_eq!(NpyArray::read(&file).unwrap().data, vec![0x34, 0x12]);
    }

    #[test]
    fn malformed_files_are_errors() {
        assert!(matches!(NpyArray::read(b"hello"), Err(NpyError::Format(_))));
        let header = |h: &str| {
            let mut file = b"\x93NUMPY\x01\x00".to_vec();
            file.extend((h.len() as u16).to_le_bytes());
            file.extend(h.as_bytes());
            file
        };
        assert_eq!(
            NpyArray::read(&header("{'descr': '<c8', 'fortran_order': False, 'shape': (), }")),
            Err(NpyError::Type("<c8".into()))
        );
        assert_eq!(
            NpyArray::read(&header("{'descr': '<f4', 'fortran_order': True, 'shape': (), }")),
            Err(NpyError::FortranOrder)
        );
        assert!(matches!(
            NpyArray::read(&header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }")),
            Err(NpyError::Length { expected: 8, found: 0 })
        ));
        assert!(matches!(
            NpyArray::read(&header("{'descr': '<f4', 'shape': (99999999999999999999,), }")),
            Err(NpyError::Header(_))
        ));
    }
}

/// Converting between `.npy` arrays and kernel buffers.
pub mod buffers {
    use anybit_ir::DType;
    use anybit_ir::interp::Buffer;

    use super::{NpyArray, NpyType};

    /// How a buffer of `dtype` is stored in a `.npy` file: its numpy type, and whether the
    /// array holds packed bytes (types whose width is not 8, 16 or 32 bits, e.g. `u4`, `u3`,
    /// `f6e3m2`) rather than one element per array element.
    pub fn npy_type(dtype: DType) -> (NpyType, bool) {
        match dtype {
            DType::F16 => (NpyType::F16, false),
            DType::F32 => (NpyType::F32, false),
            DType::BF16 => (NpyType::Raw16, false),
            DType::Uint(_) | DType::Int(_) => match (dtype.bits(), dtype.is_signed()) {
                (8, false) => (NpyType::U8, false),
                (8, true) => (NpyType::I8, false),
                (16, false) => (NpyType::U16, false),
                (16, true) => (NpyType::I16, false),
                (32, false) => (NpyType::U32, false),
                (32, true) => (NpyType::I32, false),
                _ => (NpyType::U8, true),
            },
            DType::Float(_) => match dtype.bits() {
                8 => (NpyType::Raw8, false),
                16 => (NpyType::Raw16, false),
                _ => (NpyType::U8, true),
            },
        }
    }

    /// Whether `found` may stand for `wanted`: raw records and unsigned integers of the same
    /// width carry the same bits.
    fn compatible(wanted: NpyType, found: NpyType) -> bool {
        wanted == found
            || matches!(
                (wanted, found),
                (NpyType::Raw16, NpyType::U16)
                    | (NpyType::Raw8, NpyType::U8)
                    | (NpyType::U8, NpyType::Raw8)
                    | (NpyType::U8, NpyType::Bool)
            )
    }

    /// The buffer of `dtype` an array holds. `expected` is the declared shape of the parameter
    /// (evaluated), if any: an unpacked array must have exactly that shape, a packed one exactly
    /// the bytes that many elements need.
    pub fn buffer_from_npy(array: &NpyArray, dtype: DType, expected: Option<&[u64]>) -> Result<Buffer, String> {
        let (wanted, packed) = npy_type(dtype);
        if !compatible(wanted, array.dtype) {
            return Err(format!(
                "holds `{}` elements, but the parameter is {dtype}, which .npy files store as `{}`{}",
                array.dtype.descr(),
                wanted.descr(),
                if packed { " (packed bytes, element i at bits [i·N, (i+1)·N))" } else { "" }
            ));
        }
        let expected_len = expected.map(|s| s.iter().try_fold(1u64, |n, &d| n.checked_mul(d)));
        let expected_len = match expected_len {
            Some(None) => return Err("the declared shape overflows".into()),
            Some(Some(n)) => Some(n),
            None => None,
        };
        let len = if packed {
            let bits = u64::from(dtype.bits());
            let len = expected_len.unwrap_or(array.len() as u64 * 8 / bits);
            let bytes = (len * bits).div_ceil(8);
            if array.len() as u64 != bytes {
                return Err(format!("has {} bytes; {len} packed {dtype} elements take {bytes} bytes", array.len()));
            }
            len
        } else {
            if let Some(shape) = expected {
                let found: Vec<u64> = array.shape.iter().map(|&d| d as u64).collect();
                if found != shape {
                    return Err(format!("has shape {:?}, the parameter declares {shape:?}", array.shape));
                }
            }
            array.len() as u64
        };
        let len = usize::try_from(len).map_err(|_| "too large".to_string())?;
        if packed {
            Buffer::from_bytes(dtype, len, array.data.clone()).map_err(|e| e.to_string())
        } else {
            let size = array.dtype.size();
            let codes: Vec<u32> = array
                .data
                .chunks_exact(size)
                .map(|c| c.iter().rev().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
                .collect();
            let codes: Vec<u32> =
                if array.dtype == NpyType::Bool { codes.iter().map(|&c| u32::from(c != 0)).collect() } else { codes };
            Buffer::from_codes(dtype, &codes).map_err(|e| e.to_string())
        }
    }

    /// The `.npy` array of a buffer: unpacked with `shape` (when its product is the buffer's
    /// length), or the packed bytes as a 1-D `uint8` array for sub-byte and odd-width types.
    pub fn npy_from_buffer(buffer: &Buffer, shape: Option<&[u64]>) -> NpyArray {
        let (npy, packed) = npy_type(buffer.dtype());
        if packed {
            let bytes = buffer.bytes().to_vec();
            return NpyArray { dtype: NpyType::U8, shape: vec![bytes.len()], data: bytes };
        }
        let size = npy.size();
        let data: Vec<u8> = buffer.codes().iter().flat_map(|c| c.to_le_bytes().into_iter().take(size)).collect();
        let shape = match shape {
            Some(s) if s.iter().product::<u64>() == buffer.len() as u64 => s.iter().map(|&d| d as usize).collect(),
            _ => vec![buffer.len()],
        };
        NpyArray { dtype: npy, shape, data }
    }
}
