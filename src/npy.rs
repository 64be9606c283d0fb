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
        assert_eq!(bytes.len() % 64, 12 % 64);
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
