//! Shared-memory layouts: strided modes per dim, and an optional XOR swizzle on byte
//! addresses.

use crate::error::{LayoutError, Result, checked_product, overflow};
use crate::linear::LinearLayout;

/// A CuTe-style XOR swizzle on byte offsets: bits `[base + shift, base + shift + bits)` of
/// the offset are XORed into bits `[base, base + bits)`.
///
/// Written `Swizzle<B, M, S>` in CuTe, with `bits = B`, `base = M`, `shift = S`. The
/// swizzle permutes chunks of `2^base` bytes. [`Swizzle::new`] requires `shift >= bits`:
/// then the source bits lie above the target bits and are not changed, so the swizzle is
/// an involution (its own inverse), hence a bijection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Swizzle {
    bits: u32,
    base: u32,
    shift: u32,
}

impl Swizzle {
    /// A swizzle with `bits` XORed bits, target base `base` and distance `shift`. Errors if
    /// `shift < bits` (the map would not be a bijection) or `base + shift + bits > 64`.
    pub fn new(bits: u32, base: u32, shift: u32) -> Result<Swizzle> {
        let invalid = |reason: &str| LayoutError::InvalidSwizzle { bits, base, shift, reason: reason.to_string() };
        if shift < bits {
            return Err(invalid("the shift must be at least the number of bits, or source and target overlap"));
        }
        let top = base
            .checked_add(shift)
            .and_then(|x| x.checked_add(bits))
            .ok_or_else(|| invalid("base + shift + bits overflows"))?;
        if top > 64 {
            return Err(invalid("base + shift + bits exceeds 64 address bits"));
        }
        Ok(Swizzle { bits, base, shift })
    }

    /// Number of XORed bits (CuTe's B).
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Lowest target bit (CuTe's M): the swizzle moves chunks of `2^base` bytes.
    pub fn base(&self) -> u32 {
        self.base
    }

    /// Distance from the target bits up to the source bits (CuTe's S).
    pub fn shift(&self) -> u32 {
        self.shift
    }

    /// One past the highest address bit that the swizzle reads: `base + shift + bits`.
    pub fn top_bit(&self) -> u32 {
        self.base + self.shift + self.bits
    }

    fn source_mask(&self) -> u64 {
        if self.bits == 0 {
            0
        } else {
            // bits >= 1 and top_bit <= 64, so the shifts are below 64.
            ((1u64 << self.bits) - 1) << (self.base + self.shift)
        }
    }

    /// The swizzled byte offset: `offset ^ ((offset & source_mask) >> shift)`.
    pub fn apply(&self, byte_offset: u64) -> u64 {
        // `shift` can be 64 only when `bits` is 0 (then the mask is 0 and so is the XOR).
        byte_offset ^ (byte_offset & self.source_mask()).checked_shr(self.shift).unwrap_or(0)
    }

    /// The inverse of [`apply`](Self::apply). Because the source bits are left unchanged,
    /// this is `apply` itself.
    pub fn inverse(&self, swizzled_offset: u64) -> u64 {
        self.apply(swizzled_offset)
    }

    /// The swizzle as a GF(2) matrix on the low `address_bits` bits of a byte offset: one
    /// input dim and one output dim, both of `address_bits` bits. Errors if `address_bits`
    /// is below [`top_bit`](Self::top_bit) or above 64.
    pub fn as_linear(&self, address_bits: u32) -> Result<LinearLayout> {
        if address_bits < self.top_bit() || address_bits > 64 {
            return Err(LayoutError::InvalidLinear {
                reason: format!(
                    "a swizzle reading bits below {} needs between {} and 64 address bits, \
                     not {address_bits}",
                    self.top_bit(),
                    self.top_bit()
                ),
            });
        }
        let columns = (0..address_bits).map(|b| self.apply(1u64 << b)).collect();
        LinearLayout::new(vec![address_bits], vec![address_bits], columns)
    }
}

/// The address of an element in shared memory: the byte holding its first bit, and the
/// position of that bit in the byte (0 = least significant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BitAddress {
    /// Byte offset from the start of the buffer, after the swizzle.
    pub byte: u64,
    /// Bit of that byte where the element starts (0..8).
    pub bit: u32,
}

/// One mode of a shared layout: `size` digits, each step `stride` elements apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StridedMode {
    /// Number of values of the digit (at least 1).
    pub size: usize,
    /// Distance in elements between consecutive digit values.
    pub stride: usize,
}

/// A shared-memory layout: per dim a list of strided modes (outer to inner; the dim's
/// coordinate is the mixed-radix number of their digits), plus an optional [`Swizzle`]
/// applied to byte addresses.
///
/// The element offset of `coords` is `Σ digit * stride` over all modes. The byte address
/// of an element of `N` bits is the swizzle applied to `offset * N / 8`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SharedLayout {
    modes: Vec<Vec<StridedMode>>,
    swizzle: Option<Swizzle>,
}

fn row_major_strides(shape: &[usize]) -> Result<Vec<usize>> {
    let mut strides = vec![0; shape.len()];
    let mut stride = 1usize;
    for d in (0..shape.len()).rev() {
        strides[d] = stride;
        stride = stride.checked_mul(shape[d]).ok_or_else(|| overflow("row-major strides"))?;
    }
    Ok(strides)
}

fn column_major_strides(shape: &[usize]) -> Result<Vec<usize>> {
    let mut strides = vec![0; shape.len()];
    let mut stride = 1usize;
    for d in 0..shape.len() {
        strides[d] = stride;
        stride = stride.checked_mul(shape[d]).ok_or_else(|| overflow("column-major strides"))?;
    }
    Ok(strides)
}

impl SharedLayout {
    /// The general constructor: per dim, its modes outer to inner. Errors on a size 0 or
    /// when the element count or the largest offset overflows. No swizzle.
    pub fn from_modes(modes: Vec<Vec<StridedMode>>) -> Result<SharedLayout> {
        let mut largest = 0usize;
        let mut count = 1usize;
        for (d, dim) in modes.iter().enumerate() {
            for (j, mode) in dim.iter().enumerate() {
                if mode.size == 0 {
                    return Err(LayoutError::ZeroSize { what: format!("mode {j} of dim {d}") });
                }
                let reach = (mode.size - 1).checked_mul(mode.stride).ok_or_else(|| overflow("the largest offset"))?;
                largest = largest.checked_add(reach).ok_or_else(|| overflow("the largest offset"))?;
                count = count.checked_mul(mode.size).ok_or_else(|| overflow("the number of elements"))?;
            }
        }
        largest.checked_add(1).ok_or_else(|| overflow("the largest offset"))?;
        Ok(SharedLayout { modes, swizzle: None })
    }

    /// One mode per dim with the given sizes and strides (in elements). Errors if the
    /// lengths differ, on a size 0, or on overflow.
    pub fn strided(shape: &[usize], strides: &[usize]) -> Result<SharedLayout> {
        if shape.len() != strides.len() {
            return Err(LayoutError::RankMismatch { left: shape.len(), right: strides.len() });
        }
        SharedLayout::from_modes(
            shape.iter().zip(strides).map(|(&size, &stride)| vec![StridedMode { size, stride }]).collect(),
        )
    }

    /// Dense row-major layout (last dim contiguous).
    pub fn row_major(shape: &[usize]) -> Result<SharedLayout> {
        SharedLayout::strided(shape, &row_major_strides(shape)?)
    }

    /// Dense column-major layout (first dim contiguous).
    pub fn column_major(shape: &[usize]) -> Result<SharedLayout> {
        SharedLayout::strided(shape, &column_major_strides(shape)?)
    }

    /// The same layout with `swizzle` applied to byte addresses (replacing any previous one).
    pub fn with_swizzle(mut self, swizzle: Swizzle) -> SharedLayout {
        self.swizzle = Some(swizzle);
        self
    }

    /// The same layout without a swizzle.
    pub fn without_swizzle(mut self) -> SharedLayout {
        self.swizzle = None;
        self
    }

    /// The modes per dim, outer to inner.
    pub fn modes(&self) -> &[Vec<StridedMode>] {
        &self.modes
    }

    /// The swizzle, if any.
    pub fn swizzle(&self) -> Option<Swizzle> {
        self.swizzle
    }

    /// Number of dims.
    pub fn rank(&self) -> usize {
        self.modes.len()
    }

    /// Per dim, the product of its mode sizes.
    pub fn shape(&self) -> Vec<usize> {
        self.modes.iter().map(|dim| dim.iter().map(|m| m.size).product()).collect()
    }

    /// Number of elements (product of the shape).
    pub fn size_in_elements(&self) -> usize {
        self.modes.iter().flatten().map(|m| m.size).product()
    }

    /// One past the largest element offset (before the swizzle): the number of elements of
    /// storage the layout spans.
    pub fn cosize(&self) -> usize {
        // Checked in the constructor.
        self.modes.iter().flatten().map(|m| (m.size - 1) * m.stride).sum::<usize>() + 1
    }

    /// Whether no two coordinates share an offset (checked exhaustively; the layout should
    /// be small). Errors only if the element count overflows.
    pub fn is_injective(&self) -> Result<bool> {
        let count = checked_product(self.shape().iter(), "the number of elements")?;
        let mut seen = std::collections::HashSet::with_capacity(count.min(1 << 16));
        let shape = self.shape();
        for index in 0..count {
            let mut coords = vec![0; shape.len()];
            let mut rest = index;
            for d in (0..shape.len()).rev() {
                coords[d] = rest % shape[d];
                rest /= shape[d];
            }
            if !seen.insert(self.offset(&coords)?) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The element offset of `coords`, before the swizzle. Errors on a rank mismatch or a
    /// coordinate out of range.
    pub fn offset(&self, coords: &[usize]) -> Result<usize> {
        if coords.len() != self.rank() {
            return Err(LayoutError::RankMismatch { left: self.rank(), right: coords.len() });
        }
        let mut offset = 0usize;
        for (d, (&c, dim)) in coords.iter().zip(&self.modes).enumerate() {
            let size: usize = dim.iter().map(|m| m.size).product();
            if c >= size {
                return Err(LayoutError::CoordinateOutOfRange { dim: d, coord: c, size });
            }
            let mut rest = c;
            for mode in dim.iter().rev() {
                // Bounded by cosize, which fits.
                offset += (rest % mode.size) * mode.stride;
                rest /= mode.size;
            }
        }
        Ok(offset)
    }

    /// The address of the element at `coords` for elements of `elem_bits` bits (1..=64),
    /// swizzle included: the unswizzled bit offset is `offset(coords) * elem_bits`; its byte
    /// is swizzled, its bit within the byte kept.
    ///
    /// Errors on bad coordinates, an element width outside 1..=64, overflow, and when the
    /// layout has a swizzle whose `2^base`-byte chunks would split an element (the width
    /// divides neither 8 nor `8 * 2^base`).
    pub fn address(&self, coords: &[usize], elem_bits: u32) -> Result<BitAddress> {
        if !(1..=64).contains(&elem_bits) {
            return Err(LayoutError::InvalidElementBits { bits: elem_bits });
        }
        if let Some(swizzle) = self.swizzle {
            let chunk_bits = 8u128 << swizzle.base;
            if 8 % elem_bits != 0 && !chunk_bits.is_multiple_of(u128::from(elem_bits)) {
                return Err(LayoutError::SwizzleSplitsElement { elem_bits, base: swizzle.base });
            }
        }
        let offset = self.offset(coords)?;
        let bit_offset = u64::try_from(offset)
            .ok()
            .and_then(|o| o.checked_mul(u64::from(elem_bits)))
            .ok_or_else(|| overflow("the bit offset"))?;
        let byte = bit_offset / 8;
        let bit = (bit_offset % 8) as u32;
        let byte = match self.swizzle {
            Some(swizzle) => swizzle.apply(byte),
            None => byte,
        };
        Ok(BitAddress { byte, bit })
    }
}
