//! `dce`: unused pure instructions disappear, everything else stays, the result verifies.

use anybit_ir::DType;
use anybit_ir::builder::KernelBuilder;
use anybit_ir::program::{Module, Operand};
use anybit_ir::verify::{VerifyOptions, verify_module};
use anybit_passes::PassManager;

#[test]
fn removes_unused_pure_instructions_only() {
    let i32 = DType::int(32).unwrap();
    let mut k = KernelBuilder::new("k", 1);
    let x = k.shaped_pointer_param("x", i32, vec![anybit_ir::program::GridExpr::Const(32)]).unwrap();
    let n = k.scalar_param("n", i32).unwrap();
    let unused = k.mul(n, 3).unwrap();
    k.add(unused, 1).unwrap();
    let used = k.add(n, 2).unwrap();
    let view = k.global_view(x, &[32.into()], None).unwrap();
    let tile = anybit_ir::program::RegisterTensorType::new(i32, vec![32], Some("spatial(32)".parse().unwrap()));
    let t = k.fill(used, tile).unwrap();
    k.store_global(t, view, &[0.into()]).unwrap();
    // A loop whose body computes something unused: the loop stays, its dead body instruction goes.
    k.for_range(0, n, 1, None, &[], |k, i, _| {
        k.mul(i, 7)?;
        Ok(vec![])
    })
    .unwrap();
    let _ = Operand::from(used);
    let mut module = Module { layouts: vec![], kernels: vec![k.finish()] };
    let before = module.kernels[0].insts.len();
    PassManager::from_names(&["dce"]).unwrap().verify_each(Some(VerifyOptions::strict())).run(&mut module).unwrap();
    let kernel = &module.kernels[0];
    assert_eq!(kernel.insts.len(), before - 3);
    verify_module(&module, &VerifyOptions::strict()).unwrap();
    let text = anybit_ir::text::print_module(&module);
    assert!(!text.contains("mul %n, 3") && text.contains("add %n, 2") && text.contains("for "), "{text}");
}

#[test]
fn unknown_passes_are_errors() {
    let error = PassManager::from_names(&["dce", "frobnicate"]).unwrap_err().to_string();
    assert!(error.starts_with("unknown pass `frobnicate` (known: dce"), "{error}");
}
