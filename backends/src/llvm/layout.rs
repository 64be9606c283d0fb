//! Register layouts as code: which element each slot of the running thread holds.
//!
//! For a layout in mode form, the coordinate along dim `d` of the element in slot `i` of
//! thread `t` is `Σ digit·weight` over the dim's modes, where a spatial mode's digit is a digit
//! of `t` (mixed radix over the thread axes) and a local mode's digit a digit of `i` (mixed
//! radix over the slot modes), and a mode's weight is the product of the sizes of the modes
//! inside it in its dim. So every coordinate splits into a **dynamic base** per dim — a
//! function of `tid.x` alone (divisions and remainders by constants: shifts and masks for
//! powers of two), computed once per layout in the kernel's prologue — plus a **static
//! offset** per slot and dim. Memory addresses and masks are then `f(base) + g(offset)` with
//! the slot part folded into constants.

use super::emit::{LResult, internal};
use super::emitter::Emit;
use anybit_ir::access::modes;
pub(crate) use anybit_ir::access::{slot_offsets, thread_axes};
use anybit_layouts::{RegisterLayout, ThreadAxis};

/// The elements a thread's slots hold: per dim a dynamic base, per slot static offsets.
#[derive(Clone, Debug)]
pub(crate) struct Coords<V> {
    /// Per dim, the coordinate of the thread's slot-0-digits element (`i32`).
    pub base: Vec<V>,
    /// Per slot, per dim, what the slot adds to the base.
    pub offsets: Vec<Vec<i64>>,
}

/// The digit of thread axis `k` of the running thread (`i32`), computed in the prologue.
pub(crate) fn thread_digit<E: Emit>(em: &mut E, layout: &RegisterLayout, k: usize) -> LResult<E::V> {
    let axes = thread_axes(layout);
    let Some(&(_, size, stride)) = axes.get(k) else { return internal("thread axis out of range") };
    let most_significant = k == 0;
    let key = format!("digit:{size}:{stride}:{most_significant}");
    if let Some(v) = em.cache().get(&key).and_then(|v| v.first()) {
        return Ok(*v);
    }
    let v = em.in_prologue(|em| {
        let t = em.tid()?;
        let q = if stride == 1 { t } else { em.udiv(t, em.c32(stride as i64)?)? };
        if most_significant { Ok(q) } else { em.urem(q, em.c32(size as i64)?) }
    })?;
    em.cache().insert(key, vec![v]);
    Ok(v)
}

/// The coordinates of a layout's slots for the running thread. The dynamic bases are
/// computed in the prologue, once per layout.
pub(crate) fn coords<E: Emit>(em: &mut E, layout: &RegisterLayout) -> LResult<Coords<E::V>> {
    let key = format!("coords:{layout}");
    let offsets = slot_offsets(layout);
    if let Some(base) = em.cache().get(&key) {
        return Ok(Coords { base: base.clone(), offsets });
    }
    let modes = modes(layout);
    let rank = layout.rank();
    let axes = thread_axes(layout);
    let mut digits = Vec::new();
    for (k, (axis, _, _)) in axes.iter().enumerate() {
        if let ThreadAxis::Mode(m) = axis {
            digits.push((*m, thread_digit(em, layout, k)?));
        }
    }
    let base = em.in_prologue(|em| {
        let mut base = vec![em.c32(0)?; rank];
        for &(m, digit) in &digits {
            let Some(mode) = modes.get(m) else { return internal("mode out of range") };
            let term = if mode.weight == 1 { digit } else { em.mul(digit, em.c32(mode.weight as i64)?)? };
            base[mode.dim] = em.add(base[mode.dim], term)?;
        }
        Ok(base)
    })?;
    em.cache().insert(key, base.clone());
    Ok(Coords { base, offsets })
}

/// The coordinates of a layout's slots for lane 0 of the running thread's warp (its dynamic
/// bases from `tid & ~31`), computed in the prologue.
pub(crate) fn warp_coords<E: Emit>(em: &mut E, layout: &RegisterLayout) -> LResult<Coords<E::V>> {
    let key = format!("warpcoords:{layout}");
    let offsets = slot_offsets(layout);
    if let Some(base) = em.cache().get(&key) {
        return Ok(Coords { base: base.clone(), offsets });
    }
    let modes = modes(layout);
    let rank = layout.rank();
    let axes = thread_axes(layout);
    let base = em.in_prologue(|em| {
        let t = em.and(em.tid()?, em.c32(!31)?)?;
        let mut base = vec![em.c32(0)?; rank];
        for (k, &(axis, size, stride)) in axes.iter().enumerate() {
            let ThreadAxis::Mode(m) = axis else { continue };
            let q = if stride == 1 { t } else { em.udiv(t, em.c32(stride as i64)?)? };
            let digit = if k == 0 { q } else { em.urem(q, em.c32(size as i64)?)? };
            let Some(mode) = modes.get(m) else { return internal("mode out of range") };
            let term = if mode.weight == 1 { digit } else { em.mul(digit, em.c32(mode.weight as i64)?)? };
            base[mode.dim] = em.add(base[mode.dim], term)?;
        }
        Ok(base)
    })?;
    em.cache().insert(key, base.clone());
    Ok(Coords { base, offsets })
}

/// Whether the running thread is the first holder of its elements (every replicated digit
/// is 0): the one thread of each group of replicas that performs a side effect once.
pub(crate) fn is_first_holder<E: Emit>(em: &mut E, layout: &RegisterLayout) -> LResult<E::V> {
    let key = format!("first:{layout}");
    if let Some(v) = em.cache().get(&key).and_then(|v| v.first()) {
        return Ok(*v);
    }
    let axes = thread_axes(layout);
    let mut digits = Vec::new();
    for (k, (axis, size, _)) in axes.iter().enumerate() {
        if matches!(axis, ThreadAxis::Replicated(_)) && *size > 1 {
            digits.push(thread_digit(em, layout, k)?);
        }
    }
    let v = em.in_prologue(|em| {
        let mut acc = em.ctrue()?;
        for (i, &d) in digits.iter().enumerate() {
            let z = em.eq(d, em.c32(0)?)?;
            acc = if i == 0 { z } else { em.and(acc, z)? };
        }
        Ok(acc)
    })?;
    em.cache().insert(key, vec![v]);
    Ok(v)
}

/// Row-major strides of a shape.
pub(crate) fn row_major_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}

/// For every slot of `dst`, the slot of `src` holding the element `f(dst coordinates)` in the
/// same thread — the same slot for every thread — or `None` when some thread would need
/// another thread's element.
pub(crate) fn thread_local_map(
    src: &RegisterLayout,
    dst: &RegisterLayout,
    f: &dyn Fn(&[usize]) -> Vec<usize>,
) -> Option<Vec<usize>> {
    if src.num_threads() != dst.num_threads() {
        return None;
    }
    let mut map: Vec<Option<usize>> = vec![None; dst.num_slots()];
    for t in 0..dst.num_threads() {
        for (i, slot) in map.iter_mut().enumerate() {
            let coords = dst.map(t, i).ok()?;
            let wanted = f(&coords);
            let holders = src.holders(&wanted).ok()?;
            let mine: Vec<usize> = holders.iter().filter(|(th, _)| *th == t).map(|&(_, s)| s).collect();
            match (*slot, mine.first()) {
                (_, None) => return None,
                (None, Some(&s)) => *slot = Some(s),
                (Some(prev), Some(_)) if mine.contains(&prev) => {}
                (Some(_), Some(_)) => return None,
            }
        }
    }
    map.into_iter().collect()
}
