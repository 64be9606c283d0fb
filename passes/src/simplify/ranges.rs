//! Facts about parameters and block indices that hold whenever a kernel runs at all.
//!
//! Every host (the interpreter, the runtime, `anybit run`) evaluates the grid and the
//! declared buffer shapes before launching, and refuses the launch when a grid axis is not in
//! `0..2^31` or a buffer dimension is negative. So, inside the kernel:
//!
//! - a scalar parameter that a grid axis or a declared dimension needs to be nonnegative is
//!   bounded below (`y: ptr f16[m, n]` gives `m ≥ 0` and `n ≥ 0`; `grid(cdiv(n, 64))` gives
//!   `n > −64`), when [`super::SimplifyIndices::trust_declared_shapes`] is on;
//! - `block_index` along an axis lies in `0..g` where `g` is the largest value the axis
//!   expression can take over the parameters' intervals (and `0..2^31 − 1` at most); along an
//!   axis the grid does not have, it is 0.

use anybit_ir::program::{GridExpr, GridOp, Kernel, ParamType};

use super::lang::{IntTy, Range};

/// What `e ≥ bound` (true for every launch) says of the parameters: raises `lower[p]`.
fn require_at_least(e: &GridExpr, bound: i128, lower: &mut [i128]) {
    let constant = |e: &GridExpr| match e {
        GridExpr::Const(c) => Some(i128::from(*c)),
        _ => None,
    };
    match e {
        GridExpr::Const(_) => {}
        GridExpr::Param(p) => {
            if let Some(l) = lower.get_mut(*p) {
                *l = (*l).max(bound);
            }
        }
        GridExpr::Binary(op, a, b) => match (op, constant(a), constant(b)) {
            // a·c ≥ L with c > 0 ⇔ a ≥ ⌈L/c⌉.
            (GridOp::Mul, None, Some(c)) if c > 0 => require_at_least(a, -((-bound).div_euclid(c)), lower),
            (GridOp::Mul, Some(c), None) if c > 0 => require_at_least(b, -((-bound).div_euclid(c)), lower),
            // ⌊a/c⌋ ≥ L ⇔ a ≥ L·c.
            (GridOp::Div, None, Some(c)) if c > 0 => require_at_least(a, bound * c, lower),
            // ⌈a/c⌉ ≥ L ⇔ a > (L − 1)·c.
            (GridOp::CeilDiv, None, Some(c)) if c > 0 => require_at_least(a, (bound - 1) * c + 1, lower),
            (GridOp::Add, None, Some(c)) => require_at_least(a, bound - c, lower),
            (GridOp::Add, Some(c), None) => require_at_least(b, bound - c, lower),
            (GridOp::Sub, None, Some(c)) => require_at_least(a, bound + c, lower),
            (GridOp::Min, _, _) => {
                require_at_least(a, bound, lower);
                require_at_least(b, bound, lower);
            }
            _ => {}
        },
    }
}

/// The intervals of the kernel's integer scalar parameters (by position; `None` for other
/// parameters).
pub fn param_ranges(kernel: &Kernel, trust_shapes: bool) -> Vec<Option<Range>> {
    let mut lower = vec![i128::MIN; kernel.params.len()];
    if trust_shapes {
        for param in &kernel.params {
            for dim in &param.shape {
                require_at_least(dim, 0, &mut lower);
            }
        }
        for axis in &kernel.grid {
            require_at_least(axis, 0, &mut lower);
        }
    }
    kernel
        .params
        .iter()
        .zip(lower)
        .map(|(p, l)| match p.ty {
            ParamType::Scalar(d) => IntTy::from_dtype(d).map(|ty| {
                let lo = i128::from(ty.min()).max(l).min(i128::from(ty.max())) as i64;
                Range::new(lo, ty.max())
            }),
            ParamType::Pointer(_) => None,
        })
        .collect()
}

/// The interval of a grid expression over the parameters' intervals (exact integers, as the
/// host computes it); `None` when unknown.
fn grid_range(e: &GridExpr, params: &[Option<Range>]) -> Option<(i128, i128)> {
    match e {
        GridExpr::Const(c) => Some((i128::from(*c), i128::from(*c))),
        GridExpr::Param(p) => params.get(*p).copied().flatten().map(|r| (i128::from(r.lo), i128::from(r.hi))),
        GridExpr::Binary(op, a, b) => {
            let (a, b) = (grid_range(a, params)?, grid_range(b, params)?);
            let corners = |f: &dyn Fn(i128, i128) -> Option<i128>| -> Option<(i128, i128)> {
                let v = [f(a.0, b.0)?, f(a.0, b.1)?, f(a.1, b.0)?, f(a.1, b.1)?];
                Some((*v.iter().min()?, *v.iter().max()?))
            };
            match op {
                GridOp::Add => Some((a.0.checked_add(b.0)?, a.1.checked_add(b.1)?)),
                GridOp::Sub => Some((a.0.checked_sub(b.1)?, a.1.checked_sub(b.0)?)),
                GridOp::Mul => corners(&|x, y| x.checked_mul(y)),
                GridOp::Div | GridOp::CeilDiv if b.0 <= 0 && b.1 >= 0 => None,
                // Exactly as `GridExpr::eval` computes them; both are monotone in each
                // operand for a divisor of one sign, so the extremes are at the corners.
                GridOp::Div => corners(&|x, y| Some(x.div_euclid(y))),
                GridOp::CeilDiv => corners(&|x, y| Some(-((-x).div_euclid(y)))),
                GridOp::Min => Some((a.0.min(b.0), a.1.min(b.1))),
                GridOp::Max => Some((a.0.max(b.0), a.1.max(b.1))),
            }
        }
    }
}

/// The interval of `block_index` along each axis.
pub fn block_ranges(kernel: &Kernel, params: &[Option<Range>]) -> [Range; 3] {
    const LIMIT: i128 = (1 << 31) - 1;
    let mut out = [Range::point(0); 3];
    for (axis, slot) in out.iter_mut().enumerate() {
        let Some(expr) = kernel.grid.get(axis) else { continue };
        // Blocks along the axis: at most the largest size the expression takes, and below 2^31.
        let size = grid_range(expr, params).map_or(LIMIT, |(_, hi)| hi.min(LIMIT));
        *slot = Range::new(0, (size - 1).max(0) as i64);
    }
    out
}
