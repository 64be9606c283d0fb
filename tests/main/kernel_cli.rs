//! `anybit check`, `anybit fmt` and `anybit run` on kernel files.

use super::run::{anybit, failure, success};

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn temp(name: &str) -> std::path::PathBuf {
    // Inside the target directory (cargo gives integration tests one), not the system /tmp.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("anybit-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn check_accepts_the_examples_and_reports_every_error() {
    for (name, kernels) in [
        ("vector_add.abk", "1 kernel"),
        ("rms_norm.abk", "1 kernel"),
        ("matmul_f16.abk", "1 kernel"),
        ("lowbit_matmul_u4_g128.abk", "4 kernels"),
    ] {
        let out = success(&["check", "--strict", &example(name)]);
        assert!(out.ends_with(&format!("{kernels} ok (strict: every layout present)\n")), "{out}");
    }
    let bad = temp("bad.abk");
    std::fs::write(
        &bad,
        "kernel k(x: ptr f32, n: i32) grid(n) warps(1) {\n    %a = add %n, 1.5\n    %b = mul %nope, 2\n    %c = sqrt %n\n}\n",
    )
    .unwrap();
    let message = failure(&["check", bad.to_str().unwrap()]);
    assert!(message.contains("3 errors in"), "{message}");
    assert!(message.contains("bad.abk:2:"), "{message}");
    assert!(message.contains("bad.abk:3:"), "{message}");
    assert!(message.contains("bad.abk:4:"), "{message}");
    assert!(message.contains('^'), "{message}");
    // Strict mode needs layouts.
    let lax = temp("lax.abk");
    std::fs::write(&lax, "kernel k() grid(1) warps(1) {\n    %t = fill 0.0 : f32[32]\n}\n").unwrap();
    success(&["check", lax.to_str().unwrap()]);
    let message = failure(&["check", "--strict", lax.to_str().unwrap()]);
    assert!(message.contains("layout"), "{message}");
    let message = failure(&["check", "/nonexistent/file.abk"]);
    assert!(message.contains("cannot read /nonexistent/file.abk"), "{message}");
}

#[test]
fn fmt_is_canonical_and_idempotent() {
    let text = success(&["fmt", &example("vector_add.abk")]);
    let formatted = temp("formatted.abk");
    std::fs::write(&formatted, &text).unwrap();
    assert_eq!(success(&["fmt", formatted.to_str().unwrap()]), text);
    success(&["fmt", "--check", formatted.to_str().unwrap()]);
    let message = failure(&["fmt", "--check", &example("vector_add.abk")]);
    assert!(message.contains("is not formatted canonically"), "{message}");
    // --write refuses to drop comments.
    let commented = temp("commented.abk");
    std::fs::copy(example("vector_add.abk"), &commented).unwrap();
    let message = failure(&["fmt", "--write", commented.to_str().unwrap()]);
    assert!(message.contains("has comments"), "{message}");
    let messy = temp("messy.abk");
    std::fs::write(&messy, text.replace("    ", "  ").replace(", ", " ,")).unwrap();
    success(&["fmt", "--write", messy.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&messy).unwrap(), text);
}

#[test]
fn run_reads_and_writes_npy_and_checks_arguments() {
    use anybit::npy::{NpyArray, NpyType};
    let n = 600usize;
    let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
    let y: Vec<f32> = (0..n).map(|i| 1000.0 - i as f32).collect();
    let file = |name: &str, values: &[f32]| {
        let path = temp(name);
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&path, NpyArray::new(NpyType::F32, vec![values.len()], data).unwrap().write()).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (xp, yp) = (file("x.npy", &x), file("y.npy", &y));
    let zp = temp("z.npy");
    let out = success(&[
        "run",
        &example("vector_add.abk"),
        "--interp",
        "--arg",
        &format!("x={xp}"),
        "--arg",
        &format!("y={yp}"),
        "--arg",
        "n=600",
        "--out",
        &format!("z={}", zp.display()),
    ]);
    assert!(out.contains("ran `vector_add` on the interpreter: grid [2, 1, 1], 2 blocks"), "{out}");
    let z = NpyArray::read(&std::fs::read(&zp).unwrap()).unwrap();
    assert_eq!((z.dtype, z.shape.clone()), (NpyType::F32, vec![n]));
    for i in 0..n {
        let got = f32::from_le_bytes(z.data[4 * i..4 * i + 4].try_into().unwrap());
        assert_eq!(got, x[i] + y[i]);
    }
    // Wrong length, wrong type, missing scalars, unknown names, no device: errors, no output.
    let short = file("short.npy", &x[..10]);
    let vector_add = example("vector_add.abk");
    let run = |extra: &[&str]| {
        let mut args = vec!["run", vector_add.as_str(), "--interp"];
        args.extend_from_slice(extra);
        failure(&args)
    };
    let message = run(&["--arg", &format!("x={short}"), "--arg", &format!("y={yp}"), "--arg", "n=600"]);
    assert!(message.contains("has shape [10], the parameter declares [600]"), "{message}");
    let message = run(&["--arg", "x=/nonexistent.npy", "--arg", "n=600"]);
    assert!(message.contains("cannot read /nonexistent.npy"), "{message}");
    let message = run(&["--random", "1"]);
    assert!(message.contains("missing a value for scalar parameter `n: i32`"), "{message}");
    let message = run(&["--arg", "q=1", "--arg", "n=4"]);
    assert!(message.contains("has no parameter `q`"), "{message}");
    let message = run(&["--arg", "n=4.5"]);
    assert!(message.contains("expected an integer"), "{message}");
    let message = failure(&["run", &vector_add, "--arg", "n=4"]);
    assert!(message.contains("pass --interp"), "{message}");
    // Random inputs by the declared shapes.
    let out = success(&[
        "run",
        &example("lowbit_matmul_u4_g128.abk"),
        "--kernel",
        "lowbit_matmul_u4_g128_sf16_xf16_zp",
        "--interp",
        "--random",
        "7",
        "--arg",
        "m=3",
        "--arg",
        "n=70",
        "--arg",
        "k=128",
        "--arg",
        "splits=2",
    ]);
    assert!(out.contains("ptr u4"), "{out}");
}

#[test]
fn a_kernel_error_names_the_instruction() {
    let bad = temp("oob.abk");
    std::fs::write(
        &bad,
        "layout @t = spatial(32)\n\nkernel k(x: ptr f32, n: i32) grid(1) warps(1) {\n    %g = global_view %x [%n] strides [1]\n    %v = load_global %g [0] : f32[32] layout @t\n}\n",
    )
    .unwrap();
    let data = temp("four.npy");
    let array = anybit::npy::NpyArray::new(anybit::npy::NpyType::F32, vec![4], vec![0; 16]).unwrap();
    std::fs::write(&data, array.write()).unwrap();
    let run =
        anybit(&["run", bad.to_str().unwrap(), "--interp", "--arg", &format!("x={}", data.display()), "--arg", "n=32"]);
    assert!(!run.success);
    assert!(run.stderr.contains("load_global"), "{}", run.stderr);
    assert!(run.stderr.contains("oob.abk:5:"), "{}", run.stderr);
}

#[test]
fn compile_writes_ptx_and_a_manifest() {
    let dir = temp("compiled");
    let out = success(&["compile", &example("vector_add.abk"), "--target", "sm_80", "-o", dir.to_str().unwrap()]);
    assert!(out.contains("`vector_add` for sm_80"), "{out}");
    let ptx = std::fs::read_to_string(dir.join("vector_add.ptx")).unwrap();
    assert!(ptx.contains(".target sm_80") && ptx.contains(".entry vector_add"), "{ptx}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["kernels"][0]["name"], "vector_add");
    assert_eq!(
        manifest["kernels"][0]["grid"][0],
        serde_json::json!({"op": "cdiv", "args": [{"param": 3}, {"const": 512}]})
    );
    let llvm = temp("compiled-llvm");
    success(&["compile", &example("vector_add.abk"), "--emit", "llvm", "-o", llvm.to_str().unwrap()]);
    let ir = std::fs::read_to_string(llvm.join("vector_add.ll")).unwrap();
    assert!(ir.contains("define") && ir.contains("ptx_kernel"), "{ir}");
    let message = failure(&["compile", &example("vector_add.abk"), "--target", "sm_75", "-o", dir.to_str().unwrap()]);
    assert!(message.contains("unsupported target `sm_75`"), "{message}");
    // Missing layouts are inferred by the pipeline; a pipeline without inference leaves them
    // missing, and the backend refuses the module: nothing is written.
    let lax = temp("lax-compile.abk");
    std::fs::write(
        &lax,
        "kernel k(x: ptr f32[32]) grid(1) warps(1) {\n    %g = global_view %x [32] strides [1]\n    %t = fill 0.0 : f32[32]\n    store_global %t, %g [0]\n}\n",
    )
    .unwrap();
    let inferred = temp("inferred");
    success(&["compile", lax.to_str().unwrap(), "-o", inferred.to_str().unwrap()]);
    assert!(inferred.join("k.ptx").exists());
    let nothing = temp("nothing");
    let message = failure(&["compile", lax.to_str().unwrap(), "--passes", "dce", "-o", nothing.to_str().unwrap()]);
    assert!(message.contains("layout"), "{message}");
    assert!(!nothing.join("manifest.json").exists());
    let message = failure(&["compile", lax.to_str().unwrap(), "--passes", "dce,nope", "-o", nothing.to_str().unwrap()]);
    assert!(message.contains("unknown pass `nope`"), "{message}");
    // --print-after-all prints the module after each pass, to stderr.
    let run = super::run::anybit(&[
        "compile",
        lax.to_str().unwrap(),
        "-O0",
        "--print-after-all",
        "-o",
        inferred.to_str().unwrap(),
    ]);
    assert!(
        run.success && run.stderr.contains("// ----- after infer-layouts -----") && run.stderr.contains("layout"),
        "{}",
        run.stderr
    );
}
