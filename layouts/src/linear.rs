//! The GF(2) view: layouts whose sizes are all powers of two are linear maps from input
//! bits to output bits, XOR being addition.

use crate::error::{LayoutError, Result};
use crate::register::{RegisterLayout, ThreadAxis};

/// A linear map over GF(2) from input bits to output bits.
///
/// The input is a list of dims (for a register layout: the thread index, then the slot
/// index), each of some number of bits; the output is another list of dims (for a register
/// layout: the coordinate of each logical dim). The matrix is stored by columns, one per
/// input bit: input dim 0's bits from least significant up, then input dim 1's, and so
/// on. A column is a bitmask over the packed output: output dim 0 in the lowest bits,
/// then output dim 1 above it, and so on (at most 64 output bits in all). Applying the
/// map XORs the columns of the input bits that are set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LinearLayout {
    in_dims: Vec<u32>,
    out_dims: Vec<u32>,
    columns: Vec<u64>,
}

fn invalid(reason: String) -> LayoutError {
    LayoutError::InvalidLinear { reason }
}

fn log2_exact(size: usize, what: &str) -> Result<u32> {
    if size.is_power_of_two() {
        Ok(size.trailing_zeros())
    } else {
        Err(LayoutError::NotPowerOfTwo { what: what.to_string(), size })
    }
}

fn low_mask(bits: u32) -> u64 {
    if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 }
}

impl LinearLayout {
    /// A linear layout from its parts. `in_dims` and `out_dims` give the number of bits of
    /// each input and output dim; `columns` has one entry per input bit (see the type
    /// docs for the packing). Errors if an input dim has more than 64 bits, the output has
    /// more than 64 bits in all, the number of columns is not the number of input bits, or
    /// a column sets a bit beyond the output.
    pub fn new(in_dims: Vec<u32>, out_dims: Vec<u32>, columns: Vec<u64>) -> Result<LinearLayout> {
        if let Some(&b) = in_dims.iter().find(|&&b| b > 64) {
            return Err(invalid(format!("an input dim has {b} bits, more than 64")));
        }
        let out_bits = out_dims
            .iter()
            .try_fold(0u32, |acc, &b| acc.checked_add(b))
            .filter(|&total| total <= 64)
            .ok_or_else(|| invalid("the output has more than 64 bits".to_string()))?;
        let in_bits: usize = in_dims.iter().map(|&b| b as usize).sum();
        if columns.len() != in_bits {
            return Err(invalid(format!("{} columns given for {in_bits} input bits", columns.len())));
        }
        if let Some(c) = columns.iter().find(|&&c| c & !low_mask(out_bits) != 0) {
            return Err(invalid(format!("column {c:#x} sets a bit beyond the {out_bits} output bits")));
        }
        Ok(LinearLayout { in_dims, out_dims, columns })
    }

    /// Bits of each input dim.
    pub fn in_dims(&self) -> &[u32] {
        &self.in_dims
    }

    /// Bits of each output dim.
    pub fn out_dims(&self) -> &[u32] {
        &self.out_dims
    }

    /// The columns, one per input bit (see the type docs for the packing).
    pub fn columns(&self) -> &[u64] {
        &self.columns
    }

    fn out_offsets(&self) -> Vec<u32> {
        let mut offsets = Vec::with_capacity(self.out_dims.len());
        let mut acc = 0;
        for &b in &self.out_dims {
            offsets.push(acc);
            acc += b;
        }
        offsets
    }

    /// Applies the map to one value per input dim; returns one value per output dim.
    /// Errors if the number of inputs is wrong or an input does not fit in its dim's bits.
    pub fn apply_dims(&self, inputs: &[u64]) -> Result<Vec<u64>> {
        if inputs.len() != self.in_dims.len() {
            return Err(LayoutError::RankMismatch { left: self.in_dims.len(), right: inputs.len() });
        }
        let mut packed = 0u64;
        let mut column = 0usize;
        for (k, (&value, &bits)) in inputs.iter().zip(&self.in_dims).enumerate() {
            if value & !low_mask(bits) != 0 {
                return Err(invalid(format!("input {value} does not fit in the {bits} bits of input dim {k}")));
            }
            for b in 0..bits {
                if value >> b & 1 == 1 {
                    packed ^= self.columns[column + b as usize];
                }
            }
            column += bits as usize;
        }
        Ok(self
            .out_offsets()
            .iter()
            .zip(&self.out_dims)
            .map(|(&offset, &bits)| if bits == 0 { 0 } else { (packed >> offset) & low_mask(bits) })
            .collect())
    }

    /// For a layout with two input dims (thread, slot), the output coordinates of
    /// `(thread, slot)`. Errors if there are not two input dims or an input is too large.
    pub fn apply(&self, thread: usize, slot: usize) -> Result<Vec<usize>> {
        if self.in_dims.len() != 2 {
            return Err(invalid(format!(
                "apply(thread, slot) needs 2 input dims, the layout has {}",
                self.in_dims.len()
            )));
        }
        let out = self.apply_dims(&[thread as u64, slot as u64])?;
        // Each output dim has at most 64 bits and came from a usize-sized shape.
        Ok(out.into_iter().map(|x| x as usize).collect())
    }

    /// The GF(2) matrix of a register layout whose mode sizes and replicated axes are all
    /// powers of two: input dims (thread bits, slot bits), output dims the coordinate bits
    /// of each logical dim. Mode digits map bit for bit to coordinate bits; replicated
    /// axes give zero columns. Errors with [`LayoutError::NotPowerOfTwo`] otherwise.
    pub fn from_register(layout: &RegisterLayout) -> Result<LinearLayout> {
        let layout = layout.canonicalize();
        // Output bit of each mode's least significant digit bit, and its bit count.
        let mut mode_out = Vec::with_capacity(layout.num_modes());
        let mut out_dims = Vec::with_capacity(layout.rank());
        let mut offset = 0u32;
        for (d, dim) in layout.dims().iter().enumerate() {
            let mut bits = Vec::with_capacity(dim.len());
            let mut inner = 0u32;
            for &size in dim.iter().rev() {
                let b = log2_exact(size, &format!("a mode of dim {d}"))?;
                bits.push((offset + inner, b));
                inner += b;
            }
            bits.reverse();
            mode_out.extend(bits);
            out_dims.push(inner);
            offset += inner;
        }
        let mut columns = Vec::new();
        for axis in layout.threads().iter().rev() {
            match *axis {
                ThreadAxis::Mode(m) => {
                    let (out, b) = mode_out[m];
                    columns.extend((0..b).map(|j| 1u64 << (out + j)));
                }
                ThreadAxis::Replicated(n) => {
                    let b = log2_exact(n, "a replicated axis")?;
                    columns.extend((0..b).map(|_| 0));
                }
            }
        }
        let thread_bits = columns.len() as u32;
        for &m in layout.slots().iter().rev() {
            let (out, b) = mode_out[m];
            columns.extend((0..b).map(|j| 1u64 << (out + j)));
        }
        let slot_bits = columns.len() as u32 - thread_bits;
        LinearLayout::new(vec![thread_bits, slot_bits], out_dims, columns)
    }

    /// The product matching [`RegisterLayout::compose`]: `self` outer, `inner` inner. Per
    /// input dim, `inner`'s bits come first (low) and `self`'s above them; per output dim,
    /// likewise. So for register layouts,
    /// `from_register(f.compose(g)) == from_register(f).compose(from_register(g))`. A
    /// layout with no output dims is lifted to the other's output rank. Errors if the
    /// numbers of input dims differ, the output ranks differ (neither being 0), or the
    /// result would exceed the bit limits.
    pub fn compose(&self, inner: &LinearLayout) -> Result<LinearLayout> {
        if self.in_dims.len() != inner.in_dims.len() {
            return Err(invalid(format!(
                "compose needs equal numbers of input dims, not {} and {}",
                self.in_dims.len(),
                inner.in_dims.len()
            )));
        }
        let rank = match (self.out_dims.len(), inner.out_dims.len()) {
            (a, b) if a == b => a,
            (0, b) => b,
            (a, 0) => a,
            (a, b) => return Err(LayoutError::RankMismatch { left: a, right: b }),
        };
        let lift = |dims: &[u32]| -> Vec<u32> { if dims.is_empty() { vec![0; rank] } else { dims.to_vec() } };
        let (f_out, g_out) = (lift(&self.out_dims), lift(&inner.out_dims));
        let out_dims: Vec<u32> = f_out.iter().zip(&g_out).map(|(a, b)| a + b).collect();
        let in_dims: Vec<u32> = self.in_dims.iter().zip(&inner.in_dims).map(|(a, b)| a + b).collect();
        if out_dims.iter().sum::<u32>() > 64 || in_dims.iter().any(|&b| b > 64) {
            return Err(invalid("the product has too many bits".to_string()));
        }
        let mut new_offsets = Vec::with_capacity(rank);
        let mut acc = 0;
        for &b in &out_dims {
            new_offsets.push(acc);
            acc += b;
        }
        // Moves a packed column of `dims` into the new packing, each dim's field shifted up
        // by `raise[d]`.
        let repack = |column: u64, dims: &[u32], raise: &[u32]| -> u64 {
            let mut out = 0u64;
            let mut offset = 0;
            for (d, &bits) in dims.iter().enumerate() {
                if bits > 0 {
                    let field = (column >> offset) & low_mask(bits);
                    out |= field << (new_offsets[d] + raise[d]);
                }
                offset += bits;
            }
            out
        };
        let zero = vec![0u32; rank];
        let mut columns = Vec::new();
        let (mut f_col, mut g_col) = (0usize, 0usize);
        for k in 0..in_dims.len() {
            for _ in 0..inner.in_dims[k] {
                columns.push(repack(inner.columns[g_col], &g_out, &zero));
                g_col += 1;
            }
            for _ in 0..self.in_dims[k] {
                columns.push(repack(self.columns[f_col], &f_out, &g_out));
                f_col += 1;
            }
        }
        LinearLayout::new(in_dims, out_dims, columns)
    }

    /// Converts back to a register layout when the matrix is mode-like: two input dims
    /// (thread, slot), every column has at most one bit set, every output bit is set by
    /// exactly one column, and no slot column is zero. Each input bit becomes a mode of
    /// size 2 (a zero thread column a replicated axis of size 2); the result is canonical.
    /// Errors with [`LayoutError::NotModeLike`] otherwise.
    pub fn to_register(&self) -> Result<RegisterLayout> {
        let not_mode_like = |reason: String| LayoutError::NotModeLike { reason };
        if self.in_dims.len() != 2 {
            return Err(not_mode_like(format!(
                "a register layout needs 2 input dims, this has {}",
                self.in_dims.len()
            )));
        }
        let out_bits: u32 = self.out_dims.iter().sum();
        let mut hits = vec![0usize; out_bits as usize];
        for (k, &c) in self.columns.iter().enumerate() {
            if c.count_ones() > 1 {
                return Err(not_mode_like(format!("input bit {k} maps to {} output bits", c.count_ones())));
            }
            if c != 0 {
                hits[c.trailing_zeros() as usize] += 1;
            }
        }
        if let Some(b) = hits.iter().position(|&h| h != 1) {
            return Err(not_mode_like(format!("output bit {b} is hit by {} input bits, not exactly one", hits[b])));
        }
        let thread_bits = self.in_dims[0] as usize;
        if let Some(k) = self.columns[thread_bits..].iter().position(|&c| c == 0) {
            return Err(not_mode_like(format!("slot bit {k} maps to no output bit")));
        }
        // Modes: one per output bit, numbered in flattened order (each dim's highest bit
        // first). Output bit `b` of dim `d` (packed position p) gets number `mode_of[p]`.
        let mut dims = Vec::with_capacity(self.out_dims.len());
        let mut mode_of = vec![0usize; out_bits as usize];
        let mut offset = 0usize;
        let mut next = 0usize;
        for &bits in &self.out_dims {
            dims.push(vec![2usize; bits as usize]);
            for b in (0..bits as usize).rev() {
                mode_of[offset + b] = next;
                next += 1;
            }
            offset += bits as usize;
        }
        let axis_of = |c: u64| -> ThreadAxis {
            if c == 0 { ThreadAxis::Replicated(2) } else { ThreadAxis::Mode(mode_of[c.trailing_zeros() as usize]) }
        };
        let threads = self.columns[..thread_bits].iter().rev().map(|&c| axis_of(c)).collect();
        let slots = self.columns[thread_bits..].iter().rev().map(|&c| mode_of[c.trailing_zeros() as usize]).collect();
        Ok(RegisterLayout::from_parts(dims, threads, slots)?.canonicalize())
    }
}
