//! Typing rules: the types an instruction's results have, given its operands — or why the
//! operands do not fit the instruction.
//!
//! One set of rules serves the builder (which computes result types), the parser (which only
//! asks authors to write types that cannot be inferred) and the verifier (which checks that
//! the recorded types are the inferred ones). Rules that need the values' layouts to be known
//! (the `view` bit-count rule per thread, layouts against the block's threads) are checked
//! here only as far as the layouts present allow; the verifier checks the rest.

use super::{Kernel, Literal, Op, Operand, RegisterTensorType, Type, ValueId};
use crate::dtype::{DType, ExactValue};

/// The widest code type `lookup` takes (tables of at most 2^8 entries).
pub const MAX_LOOKUP_BITS: u32 = 8;

/// Why an instruction's operands do not fit it. The message names the operand at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TypeError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, TypeError> {
    Err(TypeError(message.into()))
}

/// The type of a value, or an error if the handle is foreign to the kernel.
pub fn value_type(kernel: &Kernel, id: ValueId) -> Result<&Type, TypeError> {
    kernel.values.get(id).map(|v| &v.ty).ok_or_else(|| TypeError(format!("value handle {id:?} does not exist")))
}

/// Whether a literal can be converted to `dtype`: integers must be in range (floats take any
/// integer and round it), floats only to float types.
pub fn check_literal(literal: Literal, dtype: DType) -> Result<(), TypeError> {
    match literal {
        Literal::Int(v) => {
            if dtype.is_integer() {
                let value = crate::dtype::Dyadic::from_i64(v);
                let (min, max) = (dtype.min(), dtype.max());
                if value.cmp_value(min).is_lt() || value.cmp_value(max).is_gt() {
                    return err(format!("literal {v} is outside the range of {dtype} ({min} to {max})"));
                }
            }
            Ok(())
        }
        Literal::Float(v) => {
            if dtype.is_integer() {
                return err(format!("float literal {} cannot be a {dtype}", Literal::Float(v)));
            }
            Ok(())
        }
    }
}

/// The value of a literal in `dtype`, exactly as the interpreter and backends use it
/// (converted with the type's default rounding).
pub fn literal_code(literal: Literal, dtype: DType) -> u32 {
    match literal {
        Literal::Int(v) => {
            dtype.encode_exact(ExactValue::Finite(crate::dtype::Dyadic::from_i64(v)), dtype.default_conversion())
        }
        Literal::Float(v) => dtype.encode(v),
    }
}

/// The type an operand has where an operand of `context` type is expected (literals take the
/// context's element type as a scalar).
fn operand_type(kernel: &Kernel, operand: Operand, context: Option<&Type>, what: &str) -> Result<Type, TypeError> {
    match operand {
        Operand::Value(v) => Ok(value_type(kernel, v)?.clone()),
        Operand::Literal(l) => match context {
            Some(t) => {
                let dtype = t.dtype();
                check_literal(l, dtype).map_err(|e| TypeError(format!("{what}: {}", e.0)))?;
                Ok(Type::Scalar(dtype))
            }
            None => err(format!("{what} is a literal, but nothing gives it a type (make it a typed `const`)")),
        },
    }
}

/// The common type of the operands of an elementwise instruction: scalars stay scalars, a
/// scalar next to a register tensor broadcasts, two register tensors must agree in shape and
/// (where both are known) layout. Element types must be equal.
fn elementwise(kernel: &Kernel, operands: &[(Operand, &str)], mnemonic: &str) -> Result<Type, TypeError> {
    // A context for literals: the first value operand's type.
    let context = operands.iter().find_map(|(o, _)| o.value()).map(|v| value_type(kernel, v)).transpose()?.cloned();
    let mut result: Option<Type> = None;
    for &(operand, what) in operands {
        let ty = operand_type(kernel, operand, context.as_ref(), &format!("`{mnemonic}` {what}"))?;
        if !matches!(ty, Type::Scalar(_) | Type::Register(_)) {
            return err(format!("`{mnemonic}` {what} is a {}; expected a scalar or a register tensor", ty.describe()));
        }
        result = Some(match (result, ty) {
            (None, t) => t,
            (Some(acc), t) if acc.dtype() != t.dtype() => {
                return err(format!(
                    "`{mnemonic}` operands have different element types: {} and {} ({what})",
                    acc.dtype(),
                    t.dtype()
                ));
            }
            (Some(Type::Scalar(_)), t) => t,
            (Some(acc @ Type::Register(_)), Type::Scalar(_)) => acc,
            (Some(Type::Register(a)), Type::Register(b)) => {
                if a.shape != b.shape {
                    return err(format!(
                        "`{mnemonic}` operand shapes differ: {:?} and {:?} ({what})",
                        a.shape, b.shape
                    ));
                }
                let layout = match (&a.layout, &b.layout) {
                    (Some(x), Some(y)) if x != y => {
                        return err(format!("`{mnemonic}` operand layouts differ: {x} and {y} ({what})"));
                    }
                    (Some(x), _) | (None, Some(x)) => Some(x.clone()),
                    (None, None) => None,
                };
                Type::Register(RegisterTensorType { layout, ..a })
            }
            (Some(other), _) => other,
        });
    }
    result.ok_or_else(|| TypeError(format!("`{mnemonic}` has no operands")))
}

fn with_dtype(ty: Type, dtype: DType) -> Type {
    match ty {
        Type::Register(t) => Type::Register(t.with_dtype(dtype)),
        _ => Type::Scalar(dtype),
    }
}

/// Checks that `operand` is an integer scalar (or an integer literal).
pub fn index_operand(kernel: &Kernel, operand: Operand, what: &str) -> Result<(), TypeError> {
    match operand {
        Operand::Literal(Literal::Int(_)) => Ok(()),
        Operand::Literal(l) => err(format!("{what} must be an integer, found {l}")),
        Operand::Value(v) => match value_type(kernel, v)? {
            Type::Scalar(d) if d.is_integer() => Ok(()),
            other => err(format!("{what} must be an integer scalar, found a {}", other.describe())),
        },
    }
}

fn register<'k>(kernel: &'k Kernel, v: ValueId, what: &str) -> Result<&'k RegisterTensorType, TypeError> {
    match value_type(kernel, v)? {
        Type::Register(t) => Ok(t),
        other => err(format!("{what} must be a register tensor, found a {}", other.describe())),
    }
}

fn shape_text(shape: &[usize]) -> String {
    format!("[{}]", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", "))
}

fn check_register_type(ty: &RegisterTensorType, what: &str) -> Result<(), TypeError> {
    if ty.shape.contains(&0) {
        return err(format!("{what} has a zero-sized dimension: {}", shape_text(&ty.shape)));
    }
    if let Some(layout) = &ty.layout
        && layout.shape() != ty.shape
    {
        return err(format!(
            "{what}: layout {layout} has shape {}, the tensor {}",
            shape_text(&layout.shape()),
            shape_text(&ty.shape)
        ));
    }
    Ok(())
}

/// The result types of `op` in `kernel`. For `if`, the results are typed by the values the
/// `then` block yields.
pub fn result_types(kernel: &Kernel, op: &Op) -> Result<Vec<Type>, TypeError> {
    let mnemonic = op.mnemonic();
    Ok(match op {
        Op::Const { value, dtype } => {
            check_literal(*value, *dtype)?;
            vec![Type::Scalar(*dtype)]
        }
        Op::BlockIndex { .. } => vec![Type::Scalar(DType::int(32).map_err(|e| TypeError(e.to_string()))?)],
        Op::Unary { op: unary, x } => {
            let ty = elementwise(kernel, &[(*x, "operand")], mnemonic)?;
            use super::UnaryOp::*;
            match unary {
                Not if !ty.dtype().is_integer() => {
                    return err(format!("`not` needs an integer type, found {}", ty.dtype()));
                }
                Exp | Exp2 | Log | Log2 | Sqrt | Rsqrt | Recip | Tanh if !ty.dtype().is_float() => {
                    return err(format!("`{mnemonic}` needs a float type, found {}", ty.dtype()));
                }
                _ => {}
            }
            vec![ty]
        }
        Op::Binary { op: binary, lhs, rhs } => {
            let ty = elementwise(kernel, &[(*lhs, "left operand"), (*rhs, "right operand")], mnemonic)?;
            use super::BinaryOp::*;
            if matches!(binary, Rem | CeilDiv | And | Or | Xor | Shl | Shr) && !ty.dtype().is_integer() {
                return err(format!("`{mnemonic}` needs an integer type, found {}", ty.dtype()));
            }
            vec![ty]
        }
        Op::Compare { lhs, rhs, .. } => {
            let ty = elementwise(kernel, &[(*lhs, "left operand"), (*rhs, "right operand")], mnemonic)?;
            vec![with_dtype(ty, DType::uint(1).map_err(|e| TypeError(e.to_string()))?)]
        }
        Op::Fma { a, b, c } => {
            let ty = elementwise(kernel, &[(*a, "multiplicand"), (*b, "multiplier"), (*c, "addend")], mnemonic)?;
            if ty.dtype() != DType::F32 {
                return err(format!("`fma` computes on f32, found {}", ty.describe()));
            }
            vec![ty]
        }
        Op::Select { cond, on_true, on_false } => {
            let ty = elementwise(kernel, &[(*on_true, "true operand"), (*on_false, "false operand")], mnemonic)?;
            let cond_ty = operand_type(kernel, *cond, None, "`select` condition")?;
            if cond_ty.dtype() != DType::uint(1).map_err(|e| TypeError(e.to_string()))? {
                return err(format!("`select` condition must be u1, found {}", cond_ty.describe()));
            }
            match (&cond_ty, &ty) {
                (Type::Register(c), Type::Register(t))
                    if c.layout.is_some() && t.layout.is_some() && c.layout != t.layout =>
                {
                    return err(format!(
                        "`select` condition layout {} differs from the operands' {}",
                        c.layout.as_ref().map(|l| l.to_string()).unwrap_or_default(),
                        t.layout.as_ref().map(|l| l.to_string()).unwrap_or_default()
                    ));
                }
                (Type::Register(c), Type::Register(t)) if c.shape != t.shape => {
                    return err(format!(
                        "`select` condition shape {} differs from the operands' {}",
                        shape_text(&c.shape),
                        shape_text(&t.shape)
                    ));
                }
                (Type::Register(c), Type::Scalar(d)) => vec![Type::Register(c.with_dtype(*d))],
                (Type::Scalar(_) | Type::Register(_), _) => vec![ty],
                _ => {
                    return err(format!(
                        "`select` condition must be a scalar or register u1, found {}",
                        cond_ty.describe()
                    ));
                }
            }
        }
        Op::Cast { x, to } => vec![with_dtype(elementwise(kernel, &[(*x, "operand")], mnemonic)?, *to)],
        Op::Lookup { x, table, to } => {
            let ty = elementwise(kernel, &[(Operand::Value(*x), "operand")], mnemonic)?;
            let codes = match ty.dtype() {
                DType::Uint(u) if u.bits() <= MAX_LOOKUP_BITS => 1usize << u.bits(),
                other => {
                    return err(format!(
                        "`lookup` codes must be an unsigned integer type of at most {MAX_LOOKUP_BITS} bits, found {other}"
                    ));
                }
            };
            if table.len() != codes {
                return err(format!(
                    "`lookup` table has {} entries, but {} codes have {codes}",
                    table.len(),
                    ty.dtype()
                ));
            }
            for (code, &entry) in table.iter().enumerate() {
                check_literal(entry, *to).map_err(|e| TypeError(format!("`lookup` table entry {code}: {}", e.0)))?;
            }
            vec![with_dtype(ty, *to)]
        }
        Op::Fill { value, ty } => {
            check_register_type(ty, "`fill` result")?;
            let value_ty = operand_type(kernel, *value, Some(&Type::Scalar(ty.dtype)), "`fill` value")?;
            if value_ty != Type::Scalar(ty.dtype) {
                return err(format!("`fill` value is a {}, expected scalar {}", value_ty.describe(), ty.dtype));
            }
            vec![Type::Register(ty.clone())]
        }
        Op::Iota { dim, ty } => {
            check_register_type(ty, "`iota` result")?;
            if *dim >= ty.shape.len() {
                return err(format!("`iota` dim {dim} is out of range for rank {}", ty.shape.len()));
            }
            if !ty.dtype.is_integer() {
                return err(format!("`iota` needs an integer element type, found {}", ty.dtype));
            }
            vec![Type::Register(ty.clone())]
        }
        Op::View { x, ty } => {
            check_register_type(ty, "`view` result")?;
            let src = register(kernel, *x, "`view` operand")?;
            let bits = |t: &RegisterTensorType| (t.num_elements() as u128) * u128::from(t.dtype.bits());
            if bits(src) != bits(ty) {
                return err(format!(
                    "`view` changes the total number of bits: {} × {} bits → {} × {} bits",
                    src.num_elements(),
                    src.dtype.bits(),
                    ty.num_elements(),
                    ty.dtype.bits()
                ));
            }
            if let (Some(a), Some(b)) = (&src.layout, &ty.layout) {
                let per_thread = |t: &RegisterTensorType, l: &anybit_layouts::RegisterLayout| {
                    l.num_slots() as u128 * u128::from(t.dtype.bits())
                };
                if a.num_threads() != b.num_threads() || per_thread(src, a) != per_thread(ty, b) {
                    return err(format!(
                        "`view` must keep the bits of every thread: {} threads × {} bits → {} threads × {} bits",
                        a.num_threads(),
                        per_thread(src, a),
                        b.num_threads(),
                        per_thread(ty, b)
                    ));
                }
            }
            vec![Type::Register(ty.clone())]
        }
        Op::Broadcast { x, ty } => {
            check_register_type(ty, "`broadcast` result")?;
            let src = register(kernel, *x, "`broadcast` operand")?;
            if src.dtype != ty.dtype {
                return err(format!("`broadcast` cannot change the element type ({} → {})", src.dtype, ty.dtype));
            }
            if src.shape.len() != ty.shape.len() || src.shape.iter().zip(&ty.shape).any(|(&a, &b)| a == 0 || b % a != 0)
            {
                return err(format!(
                    "`broadcast` from {} to {}: every dimension of the operand must divide the result's",
                    shape_text(&src.shape),
                    shape_text(&ty.shape)
                ));
            }
            vec![Type::Register(ty.clone())]
        }
        Op::Reduce { x, dims, keep_dims, layout, .. } => {
            let src = register(kernel, *x, "`reduce` operand")?;
            if dims.is_empty() || dims.windows(2).any(|w| w[0] >= w[1]) || dims.iter().any(|&d| d >= src.shape.len()) {
                return err(format!(
                    "`reduce` dims {dims:?} must be increasing, distinct and below the rank {}",
                    src.shape.len()
                ));
            }
            let shape: Vec<usize> = src
                .shape
                .iter()
                .enumerate()
                .filter_map(|(d, &s)| match (dims.contains(&d), keep_dims) {
                    (true, true) => Some(1),
                    (true, false) => None,
                    (false, _) => Some(s),
                })
                .collect();
            // The result's layout is the operand's, reduced: reduced spatial modes become
            // replicated (the threads that held a row share its result), local ones disappear.
            if let (Some(source), Some(given)) = (&src.layout, layout) {
                let derived = source
                    .reduce(dims, *keep_dims)
                    .map_err(|e| TypeError(format!("`reduce` cannot reduce the layout {source}: {e}")))?;
                if &derived != given {
                    return err(format!(
                        "`reduce` result layout {given} is not the operand's layout reduced, {derived}"
                    ));
                }
            }
            let ty = RegisterTensorType::new(src.dtype, shape, layout.clone());
            check_register_type(&ty, "`reduce` result")?;
            vec![Type::Register(ty)]
        }
        Op::Dot { a, b, c } => {
            let (ta, tb, tc) =
                (register(kernel, *a, "`dot` a")?, register(kernel, *b, "`dot` b")?, register(kernel, *c, "`dot` c")?);
            let ok_shape = ta.shape.len() == 2
                && tb.shape.len() == 2
                && tc.shape.len() == 2
                && ta.shape[1] == tb.shape[0]
                && ta.shape[0] == tc.shape[0]
                && tb.shape[1] == tc.shape[1];
            if !ok_shape {
                return err(format!(
                    "`dot` operand shapes do not agree: a {}, b {}, c {} (expected [M, K], [K, N], [M, N])",
                    shape_text(&ta.shape),
                    shape_text(&tb.shape),
                    shape_text(&tc.shape)
                ));
            }
            if ta.dtype != tb.dtype {
                return err(format!("`dot` a and b must have the same element type: {} and {}", ta.dtype, tb.dtype));
            }
            if ta.dtype.is_float() != tc.dtype.is_float() {
                return err(format!(
                    "`dot` accumulator {} does not fit {} inputs (floats accumulate in floats, integers in integers)",
                    tc.dtype, ta.dtype
                ));
            }
            vec![Type::Register(tc.clone())]
        }
        Op::GlobalView { ptr, shape, strides } => {
            let dtype = match value_type(kernel, *ptr)? {
                Type::Pointer(d) => *d,
                other => return err(format!("`global_view` needs a pointer parameter, found a {}", other.describe())),
            };
            if shape.is_empty() || shape.len() != strides.len() {
                return err(format!(
                    "`global_view` needs as many strides as dimensions (at least one): {} and {}",
                    shape.len(),
                    strides.len()
                ));
            }
            for (i, &s) in shape.iter().enumerate() {
                index_operand(kernel, s, &format!("`global_view` dimension {i}"))?;
            }
            for (i, &s) in strides.iter().enumerate() {
                index_operand(kernel, s, &format!("`global_view` stride {i}"))?;
            }
            vec![Type::Global(super::GlobalTensorType { dtype, rank: shape.len() })]
        }
        Op::LoadGlobal { src, offsets, ty, inside, .. } => {
            check_register_type(ty, "`load_global` result")?;
            let view = match value_type(kernel, *src)? {
                Type::Global(g) => g.clone(),
                other => return err(format!("`load_global` reads a global view, found a {}", other.describe())),
            };
            check_access(kernel, "load_global", view.dtype, view.rank, ty.dtype, &ty.shape, offsets)?;
            if inside.iter().any(|&d| d >= view.rank) || inside.windows(2).any(|w| w[0] >= w[1]) {
                return err(format!(
                    "`load_global`'s `inside` dims {inside:?} must be increasing dims of its rank-{} view",
                    view.rank
                ));
            }
            vec![Type::Register(ty.clone())]
        }
        Op::StoreGlobal { value, dst, offsets } => {
            let src = register(kernel, *value, "`store_global` value")?;
            let view = match value_type(kernel, *dst)? {
                Type::Global(g) => g.clone(),
                other => return err(format!("`store_global` writes a global view, found a {}", other.describe())),
            };
            check_access(kernel, "store_global", view.dtype, view.rank, src.dtype, &src.shape, offsets)?;
            vec![]
        }
        Op::AllocShared { ty } => {
            if ty.shape.is_empty() || ty.shape.contains(&0) {
                return err(format!("`alloc_shared` needs a non-empty shape, found {}", shape_text(&ty.shape)));
            }
            if let Some(layout) = &ty.layout
                && layout.shape() != ty.shape
            {
                return err(format!(
                    "`alloc_shared`: layout {layout} has shape {}, the tile {}",
                    shape_text(&layout.shape()),
                    shape_text(&ty.shape)
                ));
            }
            vec![Type::Shared(ty.clone())]
        }
        Op::FreeShared { tensor } => {
            shared(kernel, *tensor, "`free_shared` operand")?;
            vec![]
        }
        Op::LoadShared { src, offsets, ty } => {
            check_register_type(ty, "`load_shared` result")?;
            let tile = shared(kernel, *src, "`load_shared` source")?;
            check_access(kernel, "load_shared", tile.dtype, tile.shape.len(), ty.dtype, &ty.shape, offsets)?;
            check_static_fit("load_shared", &tile.shape, &ty.shape, offsets)?;
            vec![Type::Register(ty.clone())]
        }
        Op::StoreShared { value, dst, offsets } => {
            let src = register(kernel, *value, "`store_shared` value")?;
            let tile = shared(kernel, *dst, "`store_shared` destination")?;
            check_access(kernel, "store_shared", tile.dtype, tile.shape.len(), src.dtype, &src.shape, offsets)?;
            check_static_fit("store_shared", &tile.shape, &src.shape, offsets)?;
            vec![]
        }
        Op::CopyAsync { src, src_offsets, dst, dst_offsets, shape } => {
            let view = match value_type(kernel, *src)? {
                Type::Global(g) => g.clone(),
                other => {
                    return err(format!(
                        "`copy_async` copies from global memory to shared memory; its source is a {}",
                        other.describe()
                    ));
                }
            };
            let tile = shared(kernel, *dst, "`copy_async` destination (copies go global → shared)")?;
            if shape.is_empty() || shape.contains(&0) {
                return err(format!("`copy_async` needs a non-empty shape, found {}", shape_text(shape)));
            }
            check_access(kernel, "copy_async", view.dtype, view.rank, tile.dtype, shape, src_offsets)?;
            check_access(kernel, "copy_async", tile.dtype, tile.shape.len(), tile.dtype, shape, dst_offsets)?;
            check_static_fit("copy_async", &tile.shape, shape, dst_offsets)?;
            vec![]
        }
        Op::CommitGroup | Op::WaitGroup { .. } | Op::Sync => vec![],
        Op::For { start, end, step, inits, .. } => {
            let bounds = [(*start, "start"), (*end, "end"), (*step, "step")];
            let dtype = loop_index_dtype(kernel, &bounds)?;
            for (operand, what) in bounds {
                let ty = operand_type(kernel, operand, Some(&Type::Scalar(dtype)), &format!("`for` {what}"))?;
                if ty != Type::Scalar(dtype) {
                    return err(format!(
                        "`for` {what} is a {}, expected scalar {dtype} like the other bounds",
                        ty.describe()
                    ));
                }
            }
            if let Operand::Literal(Literal::Int(s)) = step
                && *s <= 0
            {
                return err(format!("`for` step {s} must be positive"));
            }
            let mut types = Vec::with_capacity(inits.len());
            for (i, &init) in inits.iter().enumerate() {
                match init {
                    Operand::Value(v) => {
                        types.push(carriable(value_type(kernel, v)?, &format!("`for` carried value {i}"))?)
                    }
                    Operand::Literal(_) => {
                        return err(format!(
                            "`for` initial value {i} is a literal; carried values need a typed value (use `const` or `fill`)"
                        ));
                    }
                }
            }
            types
        }
        Op::If { cond, then_body, .. } => {
            match operand_type(kernel, *cond, None, "`if` condition")? {
                Type::Scalar(d) if d.is_integer() => {}
                other => {
                    return err(format!(
                        "`if` condition must be an integer or u1 scalar, found a {}",
                        other.describe()
                    ));
                }
            }
            let mut types = Vec::with_capacity(then_body.yields.len());
            for (i, &y) in then_body.yields.iter().enumerate() {
                match y {
                    Operand::Value(v) => types.push(carriable(value_type(kernel, v)?, &format!("`if` yield {i}"))?),
                    Operand::Literal(_) => {
                        return err(format!("`if` yield {i} is a literal; yield a typed value (use `const`)"));
                    }
                }
            }
            types
        }
    })
}

/// Only scalars and register tensors flow through loops and branches: shared tiles, pointers
/// and global views stay where they are defined (so their lifetimes and aliases are plain).
fn carriable(ty: &Type, what: &str) -> Result<Type, TypeError> {
    match ty {
        Type::Scalar(_) | Type::Register(_) => Ok(ty.clone()),
        other => err(format!(
            "{what} is a {}; only scalars and register tensors can be carried or yielded",
            other.describe()
        )),
    }
}

/// The integer type of a loop's index: that of its first value bound, `i32` when all bounds are
/// literals.
pub fn loop_index_dtype(kernel: &Kernel, bounds: &[(Operand, &str)]) -> Result<DType, TypeError> {
    for &(operand, what) in bounds {
        if let Operand::Value(v) = operand {
            return match value_type(kernel, v)? {
                Type::Scalar(d) if d.is_integer() => Ok(*d),
                other => err(format!("`for` {what} must be an integer scalar, found a {}", other.describe())),
            };
        }
    }
    DType::int(32).map_err(|e| TypeError(e.to_string()))
}

fn shared<'k>(kernel: &'k Kernel, v: ValueId, what: &str) -> Result<&'k super::SharedTensorType, TypeError> {
    match value_type(kernel, v)? {
        Type::Shared(t) => Ok(t),
        other => err(format!("{what} must be a shared tensor, found a {}", other.describe())),
    }
}

fn check_access(
    kernel: &Kernel,
    mnemonic: &str,
    memory_dtype: DType,
    memory_rank: usize,
    tile_dtype: DType,
    tile_shape: &[usize],
    offsets: &[Operand],
) -> Result<(), TypeError> {
    if memory_dtype != tile_dtype {
        return err(format!("`{mnemonic}`: memory holds {memory_dtype}, the tile is {tile_dtype}"));
    }
    if tile_shape.len() != memory_rank || offsets.len() != memory_rank {
        return err(format!(
            "`{mnemonic}`: memory has rank {memory_rank}, the tile has rank {} and {} offsets are given",
            tile_shape.len(),
            offsets.len()
        ));
    }
    for (i, &o) in offsets.iter().enumerate() {
        index_operand(kernel, o, &format!("`{mnemonic}` offset {i}"))?;
    }
    Ok(())
}

/// Sub-tiles of shared tiles at literal offsets must fit (dynamic offsets are checked when the
/// program runs).
fn check_static_fit(mnemonic: &str, whole: &[usize], part: &[usize], offsets: &[Operand]) -> Result<(), TypeError> {
    for (d, ((&w, &p), o)) in whole.iter().zip(part).zip(offsets).enumerate() {
        let start = match o {
            Operand::Literal(Literal::Int(v)) => *v,
            _ => 0,
        };
        if start < 0 || (start as u128) + (p as u128) > w as u128 {
            return err(format!(
                "`{mnemonic}`: along dimension {d}, [{start}, {start} + {p}) does not fit in the shared tile's {w}"
            ));
        }
    }
    Ok(())
}
