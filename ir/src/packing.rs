//! Packed bit streams: how values of an N-bit type lie in memory.
//!
//! Element `i` of an N-bit stream occupies bits `[i·N, (i+1)·N)` of the byte buffer, counting
//! bits from the least significant bit of byte 0 (little-endian bit order). There is no padding:
//! elements straddle byte boundaries when N does not divide 8 (three `u3` … `u7` codes share
//! bytes freely), and the bits after the last element in the final byte are zero when packed.
//!
//! [`PackedBits`] owns such a buffer; [`pack`] and [`unpack`] convert whole slices of codes.

use thiserror::Error;

/// Why packing or unpacking failed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PackError {
    /// The element width is outside 1..=32.
    #[error("element width {bits} is outside 1..=32 bits")]
    Width {
        /// The rejected width.
        bits: u32,
    },
    /// A code has bits set above the element width.
    #[error("code {code:#x} at index {index} does not fit in {bits} bits")]
    CodeTooWide {
        /// Position of the code.
        index: usize,
        /// The code.
        code: u32,
        /// The element width.
        bits: u32,
    },
    /// The buffer holds fewer bits than the elements need.
    #[error("{len} elements of {bits} bits need {needed} bytes, the buffer has {available}")]
    BufferTooShort {
        /// Elements asked for.
        len: usize,
        /// Element width.
        bits: u32,
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        available: usize,
    },
    /// An element index is past the end.
    #[error("index {index} is out of bounds for {len} elements")]
    IndexOutOfBounds {
        /// The index.
        index: usize,
        /// The number of elements.
        len: usize,
    },
    /// The stream would not fit in the address space.
    #[error("{len} elements of {bits} bits overflow the address space")]
    TooLarge {
        /// Elements asked for.
        len: usize,
        /// Element width.
        bits: u32,
    },
}

/// Bytes needed by `len` elements of `bits` bits: ⌈len·bits / 8⌉.
pub fn packed_len(bits: u32, len: usize) -> Result<usize, PackError> {
    check_width(bits)?;
    len.checked_mul(bits as usize)
        .and_then(|total| total.checked_add(7))
        .map(|total| total / 8)
        .ok_or(PackError::TooLarge { len, bits })
}

fn check_width(bits: u32) -> Result<(), PackError> {
    if (1..=32).contains(&bits) { Ok(()) } else { Err(PackError::Width { bits }) }
}

fn mask(bits: u32) -> u64 {
    (1u64 << bits) - 1
}

/// Reads the element at `index` (bounds already checked): at most 32 + 7 bits starting inside
/// one byte, so a 5-byte little-endian window always holds it.
fn read(bytes: &[u8], bits: u32, index: usize) -> u32 {
    let bit = index * bits as usize;
    let (first, offset) = (bit / 8, bit % 8);
    let last = (bit + bits as usize).div_ceil(8);
    let mut window = 0u64;
    for (k, byte) in bytes[first..last].iter().enumerate() {
        window |= u64::from(*byte) << (8 * k);
    }
    ((window >> offset) & mask(bits)) as u32
}

/// Writes `code` (already checked to fit) at `index`, leaving the neighbours' bits alone.
fn write(bytes: &mut [u8], bits: u32, index: usize, code: u32) {
    let bit = index * bits as usize;
    let (first, offset) = (bit / 8, bit % 8);
    let last = (bit + bits as usize).div_ceil(8);
    let field = mask(bits) << offset;
    let value = u64::from(code) << offset;
    for (k, byte) in bytes[first..last].iter_mut().enumerate() {
        let keep = !(field >> (8 * k)) as u8;
        *byte = (*byte & keep) | (value >> (8 * k)) as u8;
    }
}

/// Packs `codes` of `bits` bits each into a fresh buffer.
pub fn pack(bits: u32, codes: &[u32]) -> Result<Vec<u8>, PackError> {
    Ok(PackedBits::from_codes(bits, codes)?.into_bytes())
}

/// Reads `len` codes of `bits` bits each from `bytes`.
pub fn unpack(bits: u32, bytes: &[u8], len: usize) -> Result<Vec<u32>, PackError> {
    let needed = packed_len(bits, len)?;
    if bytes.len() < needed {
        return Err(PackError::BufferTooShort { len, bits, needed, available: bytes.len() });
    }
    Ok((0..len).map(|i| read(bytes, bits, i)).collect())
}

/// A packed stream of `len` elements of `bits` bits each, owning its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PackedBits {
    bits: u32,
    len: usize,
    bytes: Vec<u8>,
}

impl PackedBits {
    /// `len` zero elements of `bits` bits.
    pub fn zeros(bits: u32, len: usize) -> Result<PackedBits, PackError> {
        Ok(PackedBits { bits, len, bytes: vec![0; packed_len(bits, len)?] })
    }

    /// Packs `codes`; every code must fit in `bits` bits.
    pub fn from_codes(bits: u32, codes: &[u32]) -> Result<PackedBits, PackError> {
        let mut packed = PackedBits::zeros(bits, codes.len())?;
        for (index, &code) in codes.iter().enumerate() {
            packed.set(index, code)?;
        }
        Ok(packed)
    }

    /// Wraps a buffer holding `len` elements; bytes past them are kept as they are.
    pub fn from_bytes(bits: u32, len: usize, bytes: Vec<u8>) -> Result<PackedBits, PackError> {
        let needed = packed_len(bits, len)?;
        if bytes.len() < needed {
            return Err(PackError::BufferTooShort { len, bits, needed, available: bytes.len() });
        }
        Ok(PackedBits { bits, len, bytes })
    }

    /// Element width in bits.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The element at `index`.
    pub fn get(&self, index: usize) -> Result<u32, PackError> {
        if index >= self.len {
            return Err(PackError::IndexOutOfBounds { index, len: self.len });
        }
        Ok(read(&self.bytes, self.bits, index))
    }

    /// Replaces the element at `index`.
    pub fn set(&mut self, index: usize, code: u32) -> Result<(), PackError> {
        if index >= self.len {
            return Err(PackError::IndexOutOfBounds { index, len: self.len });
        }
        if u64::from(code) > mask(self.bits) {
            return Err(PackError::CodeTooWide { index, code, bits: self.bits });
        }
        write(&mut self.bytes, self.bits, index, code);
        Ok(())
    }

    /// All elements in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = u32> + '_ {
        (0..self.len).map(|i| read(&self.bytes, self.bits, i))
    }

    /// All elements, unpacked.
    pub fn to_codes(&self) -> Vec<u32> {
        self.iter().collect()
    }

    /// The packed bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The packed bytes, by value.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_lsb_first_and_straddles_bytes() {
        // u3 codes 1..=6: bits 001 010 011 100 101 110 → 18 bits, LSB first.
        let bytes = pack(3, &[1, 2, 3, 4, 5, 6]).unwrap();
        // Byte 1 holds code 2's top bit (0), codes 3 and 4, and code 5's low bit (0); byte 2 the
        // top two bits of code 5 = 0b110, then zero padding.
        #[allow(clippy::unusual_byte_groupings)] // grouped by element, not by nibble
        let expected = vec![0b11_010_001, 0b0_101_100_0, 0b0000_0011];
        assert_eq!(bytes, expected);
        assert_eq!(unpack(3, &bytes, 6).unwrap(), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(pack(4, &[0x1, 0x2]).unwrap(), vec![0x21]);
        assert_eq!(pack(32, &[0xdead_beef]).unwrap(), vec![0xef, 0xbe, 0xad, 0xde]);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(pack(0, &[]), Err(PackError::Width { bits: 0 }));
        assert_eq!(pack(33, &[]), Err(PackError::Width { bits: 33 }));
        assert_eq!(pack(2, &[1, 4]), Err(PackError::CodeTooWide { index: 1, code: 4, bits: 2 }));
        assert!(matches!(unpack(5, &[0], 2), Err(PackError::BufferTooShort { needed: 2, .. })));
        assert!(matches!(packed_len(32, usize::MAX), Err(PackError::TooLarge { .. })));
        let packed = PackedBits::zeros(3, 2).unwrap();
        assert_eq!(packed.get(2), Err(PackError::IndexOutOfBounds { index: 2, len: 2 }));
    }
}
