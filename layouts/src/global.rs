//! Global-memory layouts: a shape, signed strides and a base offset, in elements.

use crate::error::{LayoutError, Result, overflow};

/// A global-memory layout: the element at `coords` lives at
/// `base_offset + Σ coords[d] * strides[d]` (in elements). Strides may be 0 (broadcast)
/// or negative.
///
/// The constructors check that every offset of the tile fits in `i64`, so
/// [`offset`](Self::offset) cannot overflow for coordinates in range.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GlobalLayout {
    shape: Vec<usize>,
    strides: Vec<i64>,
    base_offset: i64,
}

fn to_i64(x: usize, what: &str) -> Result<i64> {
    i64::try_from(x).map_err(|_| overflow(what))
}

impl GlobalLayout {
    /// A layout with the given shape, strides and base offset. Errors if the lengths
    /// differ, on a size 0, or if some offset of the tile does not fit in `i64`.
    pub fn new(shape: &[usize], strides: &[i64], base_offset: i64) -> Result<GlobalLayout> {
        if shape.len() != strides.len() {
            return Err(LayoutError::RankMismatch { left: shape.len(), right: strides.len() });
        }
        let mut low = i128::from(base_offset);
        let mut high = i128::from(base_offset);
        let mut count = 1usize;
        for (d, (&size, &stride)) in shape.iter().zip(strides).enumerate() {
            if size == 0 {
                return Err(LayoutError::ZeroSize { what: format!("dim {d} of the shape") });
            }
            count = count.checked_mul(size).ok_or_else(|| overflow("the number of elements"))?;
            let reach = i128::try_from(size - 1)
                .ok()
                .and_then(|s| s.checked_mul(i128::from(stride)))
                .ok_or_else(|| overflow("the offset range"))?;
            if reach < 0 {
                low += reach;
            } else {
                high += reach;
            }
            if i64::try_from(low).is_err() || i64::try_from(high).is_err() {
                return Err(overflow("the offset range"));
            }
        }
        Ok(GlobalLayout { shape: shape.to_vec(), strides: strides.to_vec(), base_offset })
    }

    /// Dense row-major layout (last dim contiguous), base offset 0.
    pub fn row_major(shape: &[usize]) -> Result<GlobalLayout> {
        let mut strides = vec![0i64; shape.len()];
        let mut stride = 1usize;
        for d in (0..shape.len()).rev() {
            strides[d] = to_i64(stride, "row-major strides")?;
            stride = stride.checked_mul(shape[d]).ok_or_else(|| overflow("row-major strides"))?;
        }
        GlobalLayout::new(shape, &strides, 0)
    }

    /// Dense column-major layout (first dim contiguous), base offset 0.
    pub fn column_major(shape: &[usize]) -> Result<GlobalLayout> {
        let mut strides = vec![0i64; shape.len()];
        let mut stride = 1usize;
        for d in 0..shape.len() {
            strides[d] = to_i64(stride, "column-major strides")?;
            stride = stride.checked_mul(shape[d]).ok_or_else(|| overflow("column-major strides"))?;
        }
        GlobalLayout::new(shape, &strides, 0)
    }

    /// The same layout with another base offset. Errors if an offset no longer fits.
    pub fn with_base_offset(&self, base_offset: i64) -> Result<GlobalLayout> {
        GlobalLayout::new(&self.shape, &self.strides, base_offset)
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The strides, in elements.
    pub fn strides(&self) -> &[i64] {
        &self.strides
    }

    /// The offset of coordinates all 0, in elements.
    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// Number of dims.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements (product of the shape).
    pub fn num_elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// The element offset of `coords`. Errors on a rank mismatch or a coordinate out of
    /// range.
    pub fn offset(&self, coords: &[usize]) -> Result<i64> {
        if coords.len() != self.rank() {
            return Err(LayoutError::RankMismatch { left: self.rank(), right: coords.len() });
        }
        let mut offset = self.base_offset;
        for (d, (&c, (&size, &stride))) in coords.iter().zip(self.shape.iter().zip(&self.strides)).enumerate() {
            if c >= size {
                return Err(LayoutError::CoordinateOutOfRange { dim: d, coord: c, size });
            }
            let step = to_i64(c, "an offset")?.checked_mul(stride).ok_or_else(|| overflow("an offset"))?;
            offset = offset.checked_add(step).ok_or_else(|| overflow("an offset"))?;
        }
        Ok(offset)
    }

    /// The smallest and largest offsets of the tile (inclusive).
    pub fn offset_range(&self) -> (i64, i64) {
        let mut low = i128::from(self.base_offset);
        let mut high = i128::from(self.base_offset);
        for (&size, &stride) in self.shape.iter().zip(&self.strides) {
            // usize -> i128 is lossless; the products were checked in the constructor.
            let reach = (size as i128 - 1) * i128::from(stride);
            if reach < 0 {
                low += reach;
            } else {
                high += reach;
            }
        }
        // Both fit in i64: checked in the constructor.
        (i64::try_from(low).unwrap_or(i64::MIN), i64::try_from(high).unwrap_or(i64::MAX))
    }

    fn matches_strides(&self, dense: Result<GlobalLayout>) -> bool {
        dense.is_ok_and(|dense| {
            self.shape.iter().zip(self.strides.iter().zip(&dense.strides)).all(|(&size, (a, b))| size == 1 || a == b)
        })
    }

    /// Whether the tile is dense in row-major order: each dim's stride is the product of
    /// the sizes after it (dims of size 1 may have any stride). The base offset is not
    /// considered.
    pub fn is_contiguous_row_major(&self) -> bool {
        self.matches_strides(GlobalLayout::row_major(&self.shape))
    }

    /// Whether the tile is dense in column-major order (dims of size 1 may have any stride).
    pub fn is_contiguous_column_major(&self) -> bool {
        self.matches_strides(GlobalLayout::column_major(&self.shape))
    }
}
