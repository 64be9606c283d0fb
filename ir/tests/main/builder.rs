//! The kernel builder: result types are inferred, type errors surface at the call that makes
//! them, names stay unique, loops and branches are well formed.

use anybit_ir::DType;
use anybit_ir::builder::{BuildError, KernelBuilder};
use anybit_ir::program::{Op, Operand, RegisterTensorType, Type, ValueDef};

fn i32() -> DType {
    DType::int(32).unwrap()
}

fn tile(dtype: DType, shape: &[usize], layout: &str) -> RegisterTensorType {
    RegisterTensorType::new(dtype, shape.to_vec(), Some(layout.parse().unwrap()))
}

#[test]
fn infers_result_types() {
    let mut k = KernelBuilder::new("k", 1);
    let n = k.scalar_param("n", i32()).unwrap();
    let twice = k.mul(n, 2).unwrap();
    assert_eq!(k.type_of(twice).unwrap(), &Type::Scalar(i32()));
    let t = k.fill(1.5, tile(DType::F16, &[4, 8], "spatial(4,8)")).unwrap();
    let u = k.add(t, 0.25).unwrap();
    assert_eq!(k.type_of(u).unwrap(), &Type::Register(tile(DType::F16, &[4, 8], "spatial(4,8)")));
    let m = k.compare(anybit_ir::program::CompareOp::Lt, u, 2.0).unwrap();
    assert_eq!(k.type_of(m).unwrap().dtype(), DType::uint(1).unwrap());
    let c = k.cast(u, DType::F32).unwrap();
    assert_eq!(k.type_of(c).unwrap().dtype(), DType::F32);
}

#[test]
fn type_errors_surface_at_the_call() {
    let mut k = KernelBuilder::new("k", 1);
    let n = k.scalar_param("n", i32()).unwrap();
    let f = k.constant(1.0, DType::F32).unwrap();
    let err = k.add(n, f).unwrap_err().to_string();
    assert!(err.contains("different element types: i32 and f32"), "{err}");
    let err = k.mul(n, 1.5).unwrap_err().to_string();
    assert!(err.contains("float literal 1.5 cannot be a i32"), "{err}");
    let err = k.constant(300, DType::uint(8).unwrap()).unwrap_err().to_string();
    assert!(err.contains("outside the range of u8"), "{err}");
    let a = k.fill(0.0, tile(DType::F16, &[16, 16], "spatial(4,8).local(4,2)")).unwrap();
    let b = k.fill(0.0, tile(DType::F16, &[8, 8], "spatial(8,4).local(1,2)")).unwrap();
    let c = k.fill(0.0, tile(DType::F32, &[16, 8], "spatial(8,4).local(2,2)")).unwrap();
    let err = k.dot(a, b, c).unwrap_err().to_string();
    assert!(err.contains("`dot` operand shapes do not agree"), "{err}");
    // The failed instructions left nothing behind.
    assert_eq!(k.kernel().body.insts.len(), 4);
}

#[test]
fn names_are_unique_and_valid() {
    let mut k = KernelBuilder::new("k", 1);
    let n = k.scalar_param("n", i32()).unwrap();
    assert_eq!(k.scalar_param("n", i32()), Err(BuildError::DuplicateName("n".into())));
    let v = k.add(n, 1).unwrap();
    assert_eq!(k.kernel().value(v).name, "v0");
    k.name(v, "v1").unwrap();
    let w = k.add(v, 1).unwrap();
    // The generator skips names already taken.
    assert_eq!(k.kernel().value(w).name, "v2");
    assert_eq!(k.name(w, "n"), Err(BuildError::DuplicateName("n".into())));
    assert_eq!(k.name(w, "2x"), Err(BuildError::InvalidName("2x".into())));
}

#[test]
fn loops_and_branches_are_well_formed() {
    let mut k = KernelBuilder::new("k", 1);
    let n = k.scalar_param("n", i32()).unwrap();
    let zero = k.constant(0, i32()).unwrap();
    let sums = k
        .for_range(0, n, 1, Some(4), &[zero.into()], |k, i, carried| {
            let next = k.add(carried[0], i)?;
            Ok(vec![Operand::Value(next)])
        })
        .unwrap();
    let kernel = k.kernel();
    let for_id = kernel.body.insts.last().copied().unwrap();
    let Op::For { index, carried, body, .. } = &kernel.inst(for_id).op else { panic!("not a loop") };
    assert_eq!(kernel.value(*index).def, ValueDef::LoopIndex(for_id));
    assert_eq!(kernel.value(carried[0]).def, ValueDef::LoopCarried(for_id, 0));
    assert_eq!(body.insts.len(), 1);
    assert_eq!(kernel.value(sums[0]).def, ValueDef::Result(for_id, 0));
    // Yields must match the carried types.
    let err = k
        .for_range(0, n, 1, None, &[zero.into()], |k, _, _| Ok(vec![Operand::Value(k.constant(1.0, DType::F32)?)]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("yield 0 is a scalar f32, expected a scalar i32"), "{err}");
    let cond = k.compare(anybit_ir::program::CompareOp::Gt, n, 0).unwrap();
    let picked = k.if_else(cond, |k| Ok(vec![k.add(n, 1)?.into()]), |k| Ok(vec![k.sub(n, 1)?.into()])).unwrap();
    assert_eq!(k.type_of(picked[0]).unwrap(), &Type::Scalar(i32()));
    let err = k.if_else(cond, |_| Ok(vec![n.into()]), |_| Ok(vec![])).unwrap_err().to_string();
    assert!(err.contains("else branch yields 0 values, expected 1"), "{err}");
}

#[test]
fn row_major_strides_are_computed() {
    let mut k = KernelBuilder::new("k", 1);
    let p = k.pointer_param("p", DType::F16).unwrap();
    let a = k.scalar_param("a", i32()).unwrap();
    let b = k.scalar_param("b", i32()).unwrap();
    let view = k.global_view(p, &[a.into(), b.into(), 8.into()], None).unwrap();
    let kernel = k.kernel();
    let Op::GlobalView { strides, .. } = &kernel.inst(*kernel.body.insts.last().unwrap()).op else { panic!() };
    // [b·8, 8, 1]: one multiplication, the rest literal.
    assert_eq!(strides[1], Operand::from(8i64));
    assert_eq!(strides[2], Operand::from(1i64));
    assert!(matches!(strides[0], Operand::Value(_)));
    assert_eq!(k.type_of(view).unwrap().as_global().map(|g| g.rank), Some(3));
}

#[test]
fn walk_visits_in_program_order_once() {
    let mut k = KernelBuilder::new("k", 1);
    let n = k.scalar_param("n", i32()).unwrap();
    let a = k.add(n, 1).unwrap();
    k.for_range(0, n, 1, None, &[], |k, i, _| {
        k.add(i, a)?;
        Ok(vec![])
    })
    .unwrap();
    k.sub(n, 1).unwrap();
    let mut kernel = k.finish();
    let mut order = Vec::new();
    kernel.walk(|_, inst| order.push(inst.op.mnemonic()));
    assert_eq!(order, ["add", "for", "add", "sub"]);
    // A malformed kernel whose loop lists itself in its body is walked once per instruction.
    let loop_id = kernel.body.insts[1];
    if let Op::For { body, .. } = &mut kernel.insts[loop_id].op {
        body.insts.push(loop_id);
    }
    let mut count = 0;
    kernel.walk(|_, _| count += 1);
    assert_eq!(count, 4);
}
