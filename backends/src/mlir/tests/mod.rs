//! Tests of the MLIR backend: examples compiled for every target (PTX checked by `ptxas`),
//! kernels run on the host through the LLVM backend's harness and compared with the
//! interpreter bit for bit, golden MLIR, clear errors for what is not supported, and the
//! session's lifetimes (the `compile_fail` examples of `session.rs`).

use anybit_ir::dtype::DType;
use anybit_ir::interp::{Arg, Buffer};
use anybit_ir::program::Kernel;
use anybit_ir::random::SplitMix64;

use super::{MlirBackend, Session, lower_kernel};
use crate::llvm::emit::{Em, Platform};
use crate::llvm::tests::host::run_built;
use crate::llvm::tests::kernels::{compare_with, random_buffer};
use crate::llvm::tests::ptx::{check_ptx, example};
use crate::{Backend, BackendError, CompileOptions, Target};

/// Runs `kernel` on the host through MLIR: the host lowering, verified by MLIR, translated to
/// LLVM IR in-process and JIT-compiled by the LLVM backend's harness.
fn run_mlir_on_host(kernel: &Kernel, args: &mut [Arg]) -> Result<(), String> {
    let session = Session::new();
    let module = lower_kernel(&session, kernel, Platform::Host).map_err(|e| e.to_string())?;
    let context = inkwell::context::Context::create();
    let llvm = module.to_llvm(&context).ok_or("MLIR cannot translate the module to LLVM IR")?;
    let em = Em::with_module(&context, llvm, Platform::Host);
    run_built(&em, kernel, 0, args)
}

fn compare(kernel: &Kernel, args: Vec<Arg>) {
    compare_with(&MlirBackend, run_mlir_on_host, kernel, args, None);
}

fn parse(text: &str) -> anybit_ir::program::Module {
    anybit_ir::text::parse_module(text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn vector_add_compiles_for_every_target() {
    let module = crate::llvm::tests::selected_module(&example("vector_add.abk"));
    for target in Target::ALL {
        let options = CompileOptions { emit_mlir: true, ..CompileOptions::default() };
        let compiled = MlirBackend.compile(&module, target, &options).unwrap_or_else(|e| panic!("{target}: {e}"));
        let k = &compiled.kernels[0];
        assert!(k.ptx.contains(".entry vector_add"), "{target}: no entry:\n{}", k.ptx);
        assert!(k.mlir.as_deref().is_some_and(|m| m.contains("nvvm.read.ptx.sreg.tid.x")));
        assert_eq!(compiled.manifest.kernels.len(), 1);
        if let Some(report) = check_ptx(&k.ptx, target, "mlir_vector_add") {
            assert!(report.contains(" 0 bytes spill stores"), "{target}:\n{report}");
        }
    }
}

#[test]
fn vector_add_on_host() {
    let module = example("vector_add.abk");
    let mut rng = SplitMix64::new(1);
    let n = 1000;
    let args = vec![
        Arg::Buffer(random_buffer(DType::F32, n, 100.0, &mut rng)),
        Arg::Buffer(random_buffer(DType::F32, n, 100.0, &mut rng)),
        Arg::Buffer(Buffer::zeros(DType::F32, n).expect("zeros")),
        Arg::Int(n as i64),
    ];
    compare(&module.kernels[0], args);
}

#[test]
fn host_run_really_computes() {
    let module = example("vector_add.abk");
    let n = 600;
    let ones = Buffer::from_f64(DType::F32, &vec![1.5; n]).expect("b");
    let mut args = vec![
        Arg::Buffer(ones.clone()),
        Arg::Buffer(ones),
        Arg::Buffer(Buffer::zeros(DType::F32, n).expect("z")),
        Arg::Int(n as i64),
    ];
    run_mlir_on_host(&module.kernels[0], &mut args).expect("run");
    let Arg::Buffer(z) = &args[2] else { panic!("not a buffer") };
    let v = z.to_f64().expect("f64");
    assert!(v.iter().all(|&x| x == 3.0), "{:?}", &v[..8]);
}

/// Elementwise kernels over every supported type, 2-d views with dynamic strides, masks at
/// both edges, scalars mixed with tiles, integer shifts past the width, and computed NaNs
/// (whose bits the store canonicalizes) against loaded ones (whose bits it keeps). The
/// layouts give each thread non-adjacent elements, so the vectorizer selects `via scalar`.
#[test]
fn elementwise_kernels_on_host() {
    let source = |t: &str, op: &str| {
        format!(
            "kernel k(x: ptr {t}[m, n], y: ptr {t}[m, n], z: ptr {t}[m, n], w: ptr {t}[m, n], m: i32, n: i32, s: {t})
                 grid(cdiv(m, 8), cdiv(n, 32)) warps(2) {{
                 %gx = global_view %x [%m, %n] strides [%n, 1]
                 %gy = global_view %y [%m, %n] strides [%n, 1]
                 %gz = global_view %z [%m, %n] strides [%n, 1]
                 %gw = global_view %w [%m, %n] strides [%n, 1]
                 %bi = block_index x
                 %bj = block_index y
                 %i = mul %bi, 8
                 %j = mul %bj, 32
                 %a = load_global %gx [%i, %j] : {t}[8, 32] layout local(1, 4).spatial(8, 8)
                 %b = load_global %gy [%i, %j] : {t}[8, 32] layout local(1, 4).spatial(8, 8)
                 %c = {op} %a, %b
                 %d = mul %c, %s
                 store_global %d, %gz [%i, %j]
                 store_global %a, %gw [%i, %j]
             }}"
        )
    };
    let mut rng = SplitMix64::new(7);
    let (m, n) = (13, 45);
    for (t, ops) in [
        ("f32", &["add", "sub", "mul"][..]),
        ("f16", &["add", "sub", "mul"][..]),
        ("bf16", &["add", "sub", "mul"][..]),
        ("i32", &["add", "sub", "mul", "and", "or", "xor", "shl"][..]),
        ("u32", &["add", "xor", "shl"][..]),
    ] {
        let dtype: DType = t.parse().expect("dtype");
        for op in ops {
            let module = parse(&source(t, op));
            let mut x = random_buffer(dtype, m * n, 40.0, &mut rng);
            let y = random_buffer(dtype, m * n, 40.0, &mut rng);
            if dtype.is_float() {
                // inf − inf and inf · 0 give computed NaNs; a loaded NaN with a payload is
                // copied to `w` unchanged.
                let inf = dtype.encode(f64::INFINITY);
                let mut codes = x.codes();
                codes[3] = inf;
                let DType::Float(f) = dtype else { unreachable!("a float type") };
                codes[4] = f.nan_code().expect("nan") ^ 1;
                x = Buffer::from_codes(dtype, &codes).expect("codes");
            }
            let s = if dtype.is_float() { Arg::Float(0.5) } else { Arg::Int(3) };
            let args = vec![
                Arg::Buffer(x),
                Arg::Buffer(y),
                Arg::Buffer(Buffer::zeros(dtype, m * n).expect("z")),
                Arg::Buffer(Buffer::zeros(dtype, m * n).expect("w")),
                Arg::Int(m as i64),
                Arg::Int(n as i64),
                s,
            ];
            compare(&module.kernels[0], args);
        }
    }
}

#[test]
fn unsupported_instructions_are_named() {
    let module = crate::llvm::tests::selected_module(&example("rms_norm.abk"));
    match MlirBackend.compile(&module, Target::Sm90, &CompileOptions::default()) {
        Err(BackendError::Unsupported { kernel, what }) => {
            assert_eq!(kernel, "rms_norm");
            assert!(what.starts_with('`'), "{what}");
        }
        other => panic!("expected an unsupported error, got {:?}", other.map(|c| c.kernels.len())),
    }
    let module = parse(
        "kernel k(x: ptr f32[n], y: ptr f32[n], n: i32) grid(1) warps(1) {
             %g = global_view %x [%n] strides [1]
             %h = global_view %y [%n] strides [1]
             %a = load_global %g [0] : f32[32] layout spatial(32)
             %b = exp %a
             store_global %b, %h [0]
         }",
    );
    let err = MlirBackend.compile(&module, Target::Sm90, &CompileOptions::default()).expect_err("unsupported");
    let text = err.to_string();
    assert!(text.contains("`exp` defining %b"), "{text}");
    // A kernel that would need barriers between its accesses is refused, not miscompiled.
    let module = parse(
        "kernel k(x: ptr f32[n], n: i32) grid(1) warps(1) {
             %g = global_view %x [%n] strides [1]
             %a = load_global %g [0] : f32[32] layout spatial(32)
             store_global %a, %g [1]
         }",
    );
    let err = MlirBackend.compile(&module, Target::Sm90, &CompileOptions::default()).expect_err("unsupported");
    assert!(matches!(err, BackendError::Unsupported { .. }), "{err}");
}

#[test]
fn golden_vector_add_mlir() {
    let module = crate::llvm::tests::selected_module(&example("vector_add.abk"));
    let session = Session::new();
    let lowered = lower_kernel(&session, &module.kernels[0], Platform::Nvptx(Target::Sm90)).expect("lower");
    let text = lowered.to_mlir_text();
    insta::assert_snapshot!("vector_add_mlir", text);
    // The text parses back, in a fresh session, to a module that verifies.
    let other = Session::new();
    let parsed = other.parse(&text).expect("the MLIR text parses back");
    assert!(parsed.verify());
}
