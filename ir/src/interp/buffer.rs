//! Global-memory buffers and kernel arguments.

use crate::dtype::{CodecError, DType};
use crate::packing::{PackError, PackedBits};

use super::numeric;

/// A buffer of global memory: elements of one data type, packed as in memory (element `e`
/// at bits `[e·N, (e+1)·N)`, least significant bit first; see [`crate::packing`]).
///
/// A kernel's pointer parameter is bound to a buffer of the same element type; stores of the
/// kernel change it in place.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Buffer {
    dtype: DType,
    data: PackedBits,
}

impl Buffer {
    /// `len` elements whose codes are 0 (+0.0 for float types).
    pub fn zeros(dtype: DType, len: usize) -> Result<Buffer, PackError> {
        Ok(Buffer { dtype, data: PackedBits::zeros(dtype.bits(), len)? })
    }

    /// The elements with these codes; every code must fit the type's width.
    pub fn from_codes(dtype: DType, codes: &[u32]) -> Result<Buffer, PackError> {
        Ok(Buffer { dtype, data: PackedBits::from_codes(dtype.bits(), codes)? })
    }

    /// The values converted with the type's default conversion ([`DType::encode`]: nearest
    /// even; IEEE types overflow to ±inf, the others saturate; NaN to 0 for integers).
    pub fn from_f64(dtype: DType, values: &[f64]) -> Result<Buffer, PackError> {
        let codes: Vec<u32> = values
            .iter()
            .map(|&v| match dtype {
                // NaN keeps its sign through `DType::encode`: use the codec there.
                DType::Float(f) if !v.is_nan() => numeric::encode_float(f, v),
                _ => dtype.encode(v),
            })
            .collect();
        Buffer::from_codes(dtype, &codes)
    }

    /// `len` elements stored in `bytes` (packed; bytes past them are kept).
    pub fn from_bytes(dtype: DType, len: usize, bytes: Vec<u8>) -> Result<Buffer, PackError> {
        Ok(Buffer { dtype, data: PackedBits::from_bytes(dtype.bits(), len, bytes)? })
    }

    /// A buffer holding `data`, whose width must be the type's.
    pub fn from_packed(dtype: DType, data: PackedBits) -> Result<Buffer, PackError> {
        if data.bits() != dtype.bits() {
            return Err(PackError::Width { bits: data.bits() });
        }
        Ok(Buffer { dtype, data })
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The code of element `index`.
    pub fn get(&self, index: usize) -> Result<u32, PackError> {
        self.data.get(index)
    }

    /// Replaces the code of element `index`.
    pub fn set(&mut self, index: usize, code: u32) -> Result<(), PackError> {
        self.data.set(index, code)
    }

    /// Every element's code, in order.
    pub fn codes(&self) -> Vec<u32> {
        self.data.to_codes()
    }

    /// The packed bytes.
    pub fn bytes(&self) -> &[u8] {
        self.data.as_bytes()
    }

    /// The packed bit stream.
    pub fn packed(&self) -> &PackedBits {
        &self.data
    }

    /// The buffer's bit stream, by value.
    pub fn into_packed(self) -> PackedBits {
        self.data
    }

    /// Every element's exact value as an `f64` (NaN codes give NaN); an error for types whose
    /// values are not all exact `f64`s.
    pub fn to_f64(&self) -> Result<Vec<f64>, CodecError> {
        self.data
            .iter()
            .map(|code| match self.dtype {
                DType::Float(f) => match numeric::decode_float(f, code) {
                    Some(v) => Ok(v),
                    None => self.dtype.decode_f64(code),
                },
                _ => self.dtype.decode_f64(code),
            })
            .collect()
    }

    /// The code of element `index`, read without bounds checks beyond the slice's own (the
    /// interpreter's hot path; `None` outside the buffer).
    #[inline]
    pub(crate) fn read(&self, index: usize) -> Option<u32> {
        let bytes = self.data.as_bytes();
        match self.dtype.bits() {
            8 => bytes.get(index).map(|&b| u32::from(b)),
            16 => {
                let at = index.checked_mul(2)?;
                let pair: [u8; 2] = bytes.get(at..at.checked_add(2)?)?.try_into().ok()?;
                Some(u32::from(u16::from_le_bytes(pair)))
            }
            32 => {
                let at = index.checked_mul(4)?;
                let quad: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
                Some(u32::from_le_bytes(quad))
            }
            _ => self.data.get(index).ok(),
        }
    }
}

/// An argument of a kernel launch, bound to the parameter at the same position.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    /// An integer scalar: must lie in the range of an integer parameter's type; a float
    /// parameter gets it rounded to its type.
    Int(i64),
    /// A float scalar, for a float parameter (rounded to its type as [`DType::encode`] does).
    Float(f64),
    /// A buffer, for a pointer parameter of the same element type.
    Buffer(Buffer),
}

impl Arg {
    /// The buffer, if this is one.
    pub fn buffer(&self) -> Option<&Buffer> {
        match self {
            Arg::Buffer(b) => Some(b),
            _ => None,
        }
    }

    /// The buffer, mutably, if this is one.
    pub fn buffer_mut(&mut self) -> Option<&mut Buffer> {
        match self {
            Arg::Buffer(b) => Some(b),
            _ => None,
        }
    }

    /// The buffer, by value, if this is one.
    pub fn into_buffer(self) -> Option<Buffer> {
        match self {
            Arg::Buffer(b) => Some(b),
            _ => None,
        }
    }

    /// A short description for messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Arg::Int(v) => format!("the integer {v}"),
            Arg::Float(v) => format!("the float {v}"),
            Arg::Buffer(b) => format!("a buffer of {} {}", b.len(), b.dtype()),
        }
    }
}

impl From<Buffer> for Arg {
    fn from(b: Buffer) -> Arg {
        Arg::Buffer(b)
    }
}
