//! Tests of the MLIR backend. Every host-run test of the LLVM backend (`crate::llvm::tests`:
//! examples, every operation on many types, tensors, the low-bit matmul of every weight type)
//! also runs through this backend — its `compare` and `assemble` helpers take both backends
//! when the feature is on, with [`run_mlir_on_host`] as this one's host runner — and every
//! example compiles for every target (`ptx.rs` there). Here: the MLIR-specific checks —
//! golden MLIR of small kernels that `mlir-opt-22` parses back, errors naming what is not
//! supported, and the session's lifetimes (the `compile_fail` examples of `session.rs`).

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
pub(crate) fn run_mlir_on_host(kernel: &Kernel, args: &mut [Arg]) -> Result<(), String> {
    let session = Session::new();
    let (module, shared_bytes) = lower_kernel(&session, kernel, Platform::Host).map_err(|e| e.to_string())?;
    let context = inkwell::context::Context::create();
    let llvm = module.to_llvm(&context).ok_or("MLIR cannot translate the module to LLVM IR")?;
    let em = Em::with_module(&context, llvm, Platform::Host);
    run_built(&em, kernel, shared_bytes, args)
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
    // Arithmetic on a float type whose values do not fit f64 (both backends refuse it).
    let module = parse(
        "kernel k(x: ptr f15e11m3[n], n: i32) grid(1) warps(1) {
             %g = global_view %x [%n] strides [1]
             %a = load_global %g [0] : f15e11m3[32] layout spatial(32)
             %b = add %a, %a
             store_global %b, %g [0]
         }",
    );
    let err = MlirBackend.compile(&module, Target::Sm90, &CompileOptions::default()).expect_err("unsupported");
    assert!(matches!(err, BackendError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("`add` defining %b"), "{err}");
}

/// Checks that `mlir-opt-22` (MLIR's own tool, when installed) parses and verifies `text`.
fn mlir_opt_accepts(text: &str, what: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let Ok(mut child) =
        Command::new("mlir-opt-22").stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn()
    else {
        eprintln!("mlir-opt-22 is not installed: {what} not checked by it");
        return;
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).expect("write to mlir-opt-22");
    }
    let out = child.wait_with_output().expect("mlir-opt-22");
    assert!(out.status.success(), "mlir-opt-22 rejects {what}:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// Small kernels whose MLIR is kept as golden text (their PTX is, in the integration tests): a
/// scaled copy through a scalar parameter, and a dequantizing cast (`view` + `cast via
/// dequant`).
const GOLDEN: [(&str, &str); 2] = [
    ("scale", include_str!("../../../tests/kernels/scale.abk")),
    ("unpack", include_str!("../../../tests/kernels/unpack.abk")),
];

#[test]
fn golden_mlir_of_small_kernels() {
    let mut modules = vec![("vector_add".to_string(), crate::llvm::tests::selected_module(&example("vector_add.abk")))];
    for (name, source) in GOLDEN {
        modules.push((name.to_string(), crate::llvm::tests::selected_module(&parse(source))));
    }
    for (name, module) in modules {
        let session = Session::new();
        let (lowered, _) = lower_kernel(&session, &module.kernels[0], Platform::Nvptx(Target::Sm90)).expect("lower");
        let text = lowered.to_mlir_text();
        insta::assert_snapshot!(format!("{name}_mlir"), text);
        // The text parses back, in a fresh session, to a module that verifies; MLIR's own
        // tool accepts it too.
        let other = Session::new();
        let parsed = other.parse(&text).expect("the MLIR text parses back");
        assert!(parsed.verify());
        mlir_opt_accepts(&text, &name);
    }
}

/// The MLIR of every example parses back with `mlir-opt-22`.
#[test]
fn examples_mlir_parses_with_mlir_opt() {
    for name in ["vector_add", "rms_norm", "matmul_f16", "lowbit_matmul_u4_g128"] {
        let module = crate::llvm::tests::selected_module(&example(&format!("{name}.abk")));
        let options = CompileOptions { emit_mlir: true, ..CompileOptions::default() };
        let compiled = MlirBackend.compile(&module, Target::Sm90, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = compiled.kernels[0].mlir.as_deref().expect("MLIR text");
        mlir_opt_accepts(text, name);
    }
}

/// Compiles `module` with both backends for `target` and checks that the PTX is the same text.
fn assert_same_ptx(what: &str, module: &anybit_ir::program::Module, target: Target) {
    let ptx = |backend: &dyn Backend| {
        let compiled = backend.compile(module, target, &CompileOptions::default());
        compiled.unwrap_or_else(|e| panic!("{what} ({}): {e}", backend.name())).kernels[0].ptx.clone()
    };
    let (llvm, mlir) = (ptx(&crate::llvm::LlvmBackend), ptx(&MlirBackend));
    if llvm != mlir {
        let at = llvm.lines().zip(mlir.lines()).position(|(a, b)| a != b).unwrap_or(0);
        let line = |t: &str| t.lines().nth(at).unwrap_or("").to_string();
        panic!("{what} {target}: PTX differs at line {at}:\nllvm: {}\nmlir: {}", line(&llvm), line(&mlir));
    }
}

/// The two backends share one lowering and one LLVM pipeline: the PTX of every example, and of
/// the low-bit matmul of every weight type (zero points; f32 scales with offsets; specialized
/// for N), is the same text whichever route it took.
#[test]
fn both_backends_emit_the_same_ptx() {
    use anybit_frontend::lowbit::{WeightFormat, build_module_for};
    for name in ["vector_add", "rms_norm", "matmul_f16", "lowbit_matmul_u4_g128"] {
        let module = crate::llvm::tests::selected_module(&example(&format!("{name}.abk")));
        for target in [Target::Sm80, Target::Sm90] {
            assert_same_ptx(name, &module, target);
        }
    }
    for (i, weight) in crate::llvm::tests::lowbit::weight_types().into_iter().enumerate() {
        let format = WeightFormat {
            weight,
            lut: None,
            group_size: if i % 2 == 0 { 32 } else { 128 },
            scale: [DType::F16, DType::BF16, DType::F32][i % 3],
            zero_point: weight.is_integer() && i % 2 == 1,
            offset: i % 3 == 2,
            activation: if i % 4 == 1 { DType::BF16 } else { DType::F16 },
        };
        let n = (i % 2 == 0).then_some(4096);
        let module = build_module_for(&format, n).unwrap_or_else(|e| panic!("{format:?}: {e}"));
        let module = crate::llvm::tests::selected_module(&module);
        let target = if i % 2 == 0 { Target::Sm90 } else { Target::Sm80 };
        assert_same_ptx(&format.kernel_name(), &module, target);
    }
}
