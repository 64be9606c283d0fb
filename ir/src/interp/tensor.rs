//! Register-tensor operations: `view`, `broadcast`, `reduce`, `dot`, `iota`.

use crate::dtype::{DType, FloatFormat};
use crate::program::ReduceOp;

use super::error::{ErrorKind, InterpError, fail};
use super::layout::LayoutTable;
use super::numeric::{self, ExactSum, wrap};
use super::values::{Codec, FloatCodec, Tile, binary};

/// Row-major strides of a shape.
pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}

/// `view`: every thread's bits, its slots' codes concatenated in slot order (slot 0 least
/// significant), re-read as the new type's slots.
pub(crate) fn view(
    src: &Tile,
    src_table: &LayoutTable,
    dst_dtype: DType,
    dst_elements: usize,
    dst_table: &LayoutTable,
    threads: usize,
) -> Result<Vec<u32>, InterpError> {
    let (src_bits, dst_bits) = (src.dtype.bits() as usize, dst_dtype.bits() as usize);
    if src_table.slots * src_bits != dst_table.slots * dst_bits {
        return fail(
            ErrorKind::InvalidView,
            format!(
                "`view` must keep every thread's bits: {} slots × {} bits → {} slots × {} bits",
                src_table.slots, src_bits, dst_table.slots, dst_bits
            ),
        );
    }
    let dst_mask = if dst_bits >= 64 { u64::MAX } else { (1u64 << dst_bits) - 1 };
    let mut out = vec![0u32; dst_elements];
    let mut filled = if dst_table.replicated { vec![false; dst_elements] } else { Vec::new() };
    for t in 0..threads {
        let src_slots = src_table.map.get(t * src_table.slots..(t + 1) * src_table.slots).unwrap_or(&[]);
        let mut dst_slots = dst_table.map.get(t * dst_table.slots..(t + 1) * dst_table.slots).unwrap_or(&[]).iter();
        let mut acc = 0u64;
        let mut have = 0usize;
        for &e in src_slots {
            acc |= u64::from(src.codes.get(e as usize).copied().unwrap_or(0)) << have;
            have += src_bits;
            while have >= dst_bits {
                let code = (acc & dst_mask) as u32;
                acc = if dst_bits >= 64 { 0 } else { acc >> dst_bits };
                have -= dst_bits;
                let Some(&e) = dst_slots.next() else {
                    return fail(ErrorKind::InvalidView, format!("`view`: thread {t} has more bits than result slots"));
                };
                let e = e as usize;
                if let Some(f) = filled.get_mut(e) {
                    if *f && out.get(e) != Some(&code) {
                        return fail(
                            ErrorKind::InvalidView,
                            format!(
                                "`view` gives element {e} of the result different bits in different threads \
                                 (thread {t} has {code:#x}); the holders of a replicated element must agree"
                            ),
                        );
                    }
                    *f = true;
                }
                if let Some(slot) = out.get_mut(e) {
                    *slot = code;
                }
            }
        }
    }
    Ok(out)
}

/// `broadcast`: `r[i] = x[i / (R_d / X_d)]` per dimension.
pub(crate) fn broadcast(src: &Tile, shape: &[usize]) -> Result<Vec<u32>, InterpError> {
    if src.shape.len() != shape.len() || src.shape.iter().zip(shape).any(|(&x, &r)| x == 0 || r < x || r % x != 0) {
        return fail(
            ErrorKind::Malformed,
            format!(
                "`broadcast` from {:?} to {shape:?}: every dimension of the operand must divide the result's",
                src.shape
            ),
        );
    }
    let n: usize = shape.iter().product();
    let src_strides = strides(&src.shape);
    let factors: Vec<usize> = src.shape.iter().zip(shape).map(|(&x, &r)| r / x).collect();
    let mut out = Vec::with_capacity(n);
    let mut coords = vec![0usize; shape.len()];
    for _ in 0..n {
        let index: usize = coords.iter().zip(&factors).zip(&src_strides).map(|((&c, &f), &s)| (c / f) * s).sum();
        out.push(src.codes.get(index).copied().unwrap_or(0));
        advance(&mut coords, shape);
    }
    Ok(out)
}

/// Steps a row-major odometer.
pub(crate) fn advance(coords: &mut [usize], shape: &[usize]) {
    for d in (0..coords.len()).rev() {
        coords[d] += 1;
        if coords[d] < shape[d] {
            return;
        }
        coords[d] = 0;
    }
}

/// `reduce`: the shape of the result and its codes. `sum` of floats is the exact sum rounded
/// once; of integers, the sum modulo 2^N. `max`/`min` of floats are NaN when any element is.
pub(crate) fn reduce(
    op: ReduceOp,
    codec: &Codec,
    src: &Tile,
    dims: &[usize],
    keep: bool,
) -> Result<(Vec<usize>, Vec<u32>), InterpError> {
    let rank = src.shape.len();
    if dims.is_empty() || dims.windows(2).any(|w| w[0] >= w[1]) || dims.iter().any(|&d| d >= rank) {
        return fail(
            ErrorKind::Malformed,
            format!("`reduce` dims {dims:?} must be increasing, distinct and below the rank {rank}"),
        );
    }
    let kept_shape: Vec<usize> = (0..rank).map(|d| if dims.contains(&d) { 1 } else { src.shape[d] }).collect();
    let out_shape: Vec<usize> = (0..rank)
        .filter_map(|d| match (dims.contains(&d), keep) {
            (true, true) => Some(1),
            (true, false) => None,
            (false, _) => Some(src.shape[d]),
        })
        .collect();
    let out_n: usize = kept_shape.iter().product();
    let out_strides = strides(&kept_shape);
    // The output element of each input element, in row-major order.
    let mut targets = Vec::with_capacity(src.codes.len());
    let mut coords = vec![0usize; rank];
    for _ in 0..src.codes.len() {
        let index: usize =
            coords.iter().zip(&kept_shape).zip(&out_strides).map(|((&c, &k), &s)| if k == 1 { 0 } else { c * s }).sum();
        targets.push(index);
        advance(&mut coords, &src.shape);
    }
    let codes = match (op, codec) {
        (ReduceOp::Sum, Codec::Int(c)) => {
            let mut acc = vec![0i64; out_n];
            for (&t, &code) in targets.iter().zip(&src.codes) {
                if let Some(a) = acc.get_mut(t) {
                    *a = a.wrapping_add(c.dec(code));
                }
            }
            acc.into_iter().map(|a| c.wrap(a)).collect()
        }
        (ReduceOp::Sum, Codec::Float(c)) => {
            if !c.fits {
                return fail(
                    ErrorKind::UnsupportedType,
                    format!("`reduce sum` on {} is not supported: its values are not all exact f64s", c.dtype),
                );
            }
            let mut sums: Vec<ExactSum> = (0..out_n).map(|_| ExactSum::new()).collect();
            for (&t, &code) in targets.iter().zip(&src.codes) {
                if let Some(s) = sums.get_mut(t) {
                    s.add(c.dec(code));
                }
            }
            sums.iter().map(|s| s.finish(c.format)).collect()
        }
        (ReduceOp::Max | ReduceOp::Min, _) => {
            let combine =
                if op == ReduceOp::Max { crate::program::BinaryOp::Max } else { crate::program::BinaryOp::Min };
            let mut acc: Vec<Option<u32>> = vec![None; out_n];
            for (&t, &code) in targets.iter().zip(&src.codes) {
                if let Some(a) = acc.get_mut(t) {
                    *a = Some(match *a {
                        None => match codec {
                            // A NaN element makes the result NaN, as `max`/`min` do.
                            Codec::Float(c) if c.is_nan(code) => c.nan(),
                            _ => code,
                        },
                        Some(prev) => {
                            let lanes = (super::values::Lane::Scalar(prev), super::values::Lane::Scalar(code));
                            binary(combine, codec, &lanes.0, &lanes.1, 1)?.first().copied().unwrap_or(prev)
                        }
                    });
                }
            }
            acc.into_iter().map(|a| a.unwrap_or(0)).collect()
        }
    };
    Ok((out_shape, codes))
}

/// Whether the product of two values of `format` is always an exact `f32` (so an `f32`
/// multiply-add is the exact product added with one rounding).
fn products_exact_in_f32(format: FloatFormat) -> bool {
    let dtype = DType::Float(format);
    let precise = 2 * (format.mantissa_bits() + 1) <= 24;
    let lowest = dtype.min_subnormal().or_else(|| dtype.min_normal()).and_then(|d| d.leading_exponent());
    let highest = dtype.max().leading_exponent();
    match (lowest, highest) {
        (Some(lo), Some(hi)) => precise && 2 * lo >= -149 && 2 * (hi + 1) <= 127,
        _ => false,
    }
}

/// `dot`: for each (m, n), from c[m, n], add a[m, k]·b[k, n] exactly for k = 0, 1, … and round
/// to c's type after each addition.
pub(crate) fn dot(a: &Tile, b: &Tile, c: &Tile, ab: &Codec, acc: &Codec) -> Result<Vec<u32>, InterpError> {
    let ok = a.shape.len() == 2
        && b.shape.len() == 2
        && c.shape.len() == 2
        && a.shape[1] == b.shape[0]
        && a.shape[0] == c.shape[0]
        && b.shape[1] == c.shape[1];
    if !ok || a.dtype != b.dtype {
        return fail(
            ErrorKind::Malformed,
            format!(
                "`dot` operands do not fit: a {}{:?}, b {}{:?}, c {}{:?}",
                a.dtype, a.shape, b.dtype, b.shape, c.dtype, c.shape
            ),
        );
    }
    let (m, k, n) = (a.shape[0], a.shape[1], b.shape[1]);
    match (ab, acc) {
        (Codec::Int(ci), Codec::Int(cc)) => {
            let av: Vec<i64> = a.codes.iter().map(|&x| ci.dec(x)).collect();
            let bv: Vec<i64> = b.codes.iter().map(|&x| ci.dec(x)).collect();
            let mut out: Vec<i64> = c.codes.iter().map(|&x| cc.dec(x)).collect();
            // Sums modulo 2^64, then modulo 2^N: the same as wrapping after every step.
            for (row, out_row) in out.chunks_mut(n).enumerate().take(m) {
                for (kk, b_row) in bv.chunks(n).enumerate().take(k) {
                    let x = av.get(row * k + kk).copied().unwrap_or(0);
                    for (o, &y) in out_row.iter_mut().zip(b_row) {
                        *o = o.wrapping_add(x.wrapping_mul(y));
                    }
                }
            }
            Ok(out.into_iter().map(|v| wrap(cc.bits, v)).collect())
        }
        (Codec::Float(fa), Codec::Float(fc)) => {
            for f in [fa, fc] {
                if !f.fits {
                    return fail(
                        ErrorKind::UnsupportedType,
                        format!("`dot` on {} is not supported: its values are not all exact f64s", f.dtype),
                    );
                }
            }
            if fc.format == FloatFormat::F32 && products_exact_in_f32(fa.format) {
                Ok(dot_f32(a, b, c, fa, m, k, n))
            } else {
                Ok(dot_generic(a, b, c, fa, fc, m, k, n))
            }
        }
        _ => fail(
            ErrorKind::Malformed,
            format!(
                "`dot` accumulator {} does not fit {} inputs (floats accumulate in floats, integers in integers)",
                c.dtype, a.dtype
            ),
        ),
    }
}

/// The fast path: every product is an exact `f32`, so `acc + a·b` in `f32` arithmetic is the
/// exact sum rounded once.
#[allow(clippy::too_many_arguments)]
fn dot_f32(a: &Tile, b: &Tile, c: &Tile, fa: &FloatCodec, m: usize, k: usize, n: usize) -> Vec<u32> {
    let av: Vec<f32> = a.codes.iter().map(|&x| fa.dec(x) as f32).collect();
    let bv: Vec<f32> = b.codes.iter().map(|&x| fa.dec(x) as f32).collect();
    let mut out: Vec<f32> = c.codes.iter().map(|&x| f32::from_bits(x)).collect();
    for (row, out_row) in out.chunks_mut(n).enumerate().take(m) {
        let a_row = av.get(row * k..(row + 1) * k).unwrap_or(&[]);
        for (&x, b_row) in a_row.iter().zip(bv.chunks(n)) {
            for (o, &y) in out_row.iter_mut().zip(b_row) {
                *o += x * y;
            }
        }
    }
    out.into_iter().map(|v| if v.is_nan() { 0x7fc0_0000 } else { v.to_bits() }).collect()
}

#[allow(clippy::too_many_arguments)]
fn dot_generic(
    a: &Tile,
    b: &Tile,
    c: &Tile,
    fa: &FloatCodec,
    fc: &FloatCodec,
    m: usize,
    k: usize,
    n: usize,
) -> Vec<u32> {
    let av: Vec<f64> = a.codes.iter().map(|&x| fa.dec(x)).collect();
    let bv: Vec<f64> = b.codes.iter().map(|&x| fa.dec(x)).collect();
    let mut out = c.codes.clone();
    for row in 0..m {
        for col in 0..n {
            let Some(slot) = out.get_mut(row * n + col) else { continue };
            let mut code = *slot;
            let mut acc = fc.dec(code);
            for kk in 0..k {
                let p = av.get(row * k + kk).copied().unwrap_or(0.0) * bv.get(kk * n + col).copied().unwrap_or(0.0);
                code = fc.add(acc, p);
                acc = fc.dec(code);
            }
            *slot = code;
        }
    }
    out
}

/// `iota`: every element's coordinate along `dim`, modulo 2^N.
pub(crate) fn iota(dim: usize, shape: &[usize], dtype: DType) -> Result<Vec<u32>, InterpError> {
    if dim >= shape.len() || !dtype.is_integer() {
        return fail(ErrorKind::Malformed, format!("`iota` along dim {dim} of a {dtype}{shape:?} tile"));
    }
    let n: usize = shape.iter().product();
    let mut coords = vec![0usize; shape.len()];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(numeric::wrap(dtype.bits(), coords[dim] as i64));
        advance(&mut coords, shape);
    }
    Ok(out)
}
