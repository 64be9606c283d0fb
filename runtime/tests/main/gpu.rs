//! The GPU paths of the runtime, with hand-written PTX (no compiler needed): loading, checked
//! launches on a caller's stream, the JIT's log, refusing PTX for a newer target, and a failing
//! kernel named at the next synchronization. Without a CUDA driver or device each test checks
//! the typed error instead and prints why the GPU part is skipped.

use anybit_ir::DType;
use anybit_ir::interp::Buffer;
use anybit_ir::manifest::Manifest;
use anybit_runtime::{DeviceBuffer, Gpu, LaunchArg, RuntimeError, gpu_available};

const ADD_PTX: &str = r#".version 7.8
.target sm_80
.address_size 64

// y[i] = x[i] + b for i < n: x, y: ptr i32[n]; n, b: i32.
.visible .entry add_scalar(
    .param .u64 add_scalar_param_0,
    .param .u64 add_scalar_param_1,
    .param .u32 add_scalar_param_2,
    .param .u32 add_scalar_param_3
)
{
    .reg .pred %p<2>;
    .reg .b32 %r<9>;
    .reg .b64 %rd<8>;

    ld.param.u64 %rd1, [add_scalar_param_0];
    ld.param.u64 %rd2, [add_scalar_param_1];
    ld.param.u32 %r1, [add_scalar_param_2];
    ld.param.u32 %r8, [add_scalar_param_3];
    mov.u32 %r2, %ctaid.x;
    mov.u32 %r3, %ntid.x;
    mov.u32 %r4, %tid.x;
    mad.lo.s32 %r5, %r2, %r3, %r4;
    setp.ge.s32 %p1, %r5, %r1;
    @%p1 bra DONE;
    cvta.to.global.u64 %rd3, %rd1;
    cvta.to.global.u64 %rd4, %rd2;
    mul.wide.s32 %rd5, %r5, 4;
    add.s64 %rd6, %rd3, %rd5;
    add.s64 %rd7, %rd4, %rd5;
    ld.global.u32 %r6, [%rd6];
    add.s32 %r7, %r6, %r8;
    st.global.u32 [%rd7], %r7;
DONE:
    ret;
}
"#;

const ADD_MANIFEST: &str = r#"{"anybit_version": "0.1.0", "target": "sm_80", "ptx_version": "7.8", "kernels": [{
    "name": "add_scalar", "ptx_file": "add_scalar.ptx",
    "params": [
        {"name": "x", "kind": "pointer", "dtype": "i32", "bits": 32, "shape": [{"param": 2}], "written": false},
        {"name": "y", "kind": "pointer", "dtype": "i32", "bits": 32, "shape": [{"param": 2}], "written": true},
        {"name": "n", "kind": "scalar", "dtype": "i32", "bits": 32, "shape": []},
        {"name": "b", "kind": "scalar", "dtype": "i32", "bits": 32, "shape": []}],
    "grid": [{"op": "cdiv", "args": [{"param": 2}, {"const": 128}]}], "grid_text": ["cdiv(n, 128)"],
    "threads_per_block": 128, "shared_memory_bytes": 0, "needs_shared_memory_opt_in": false}]}"#;

const TRAP_PTX: &str =
    ".version 7.8\n.target sm_80\n.address_size 64\n\n.visible .entry always_traps()\n{\n    trap;\n    ret;\n}\n";

fn manifest(json: &str) -> Manifest {
    Manifest::from_json(json).unwrap()
}

fn trap_manifest() -> Manifest {
    let mut m = manifest(ADD_MANIFEST);
    let kernel = &mut m.kernels[0];
    kernel.name = "always_traps".into();
    kernel.params.clear();
    kernel.grid = vec![anybit_ir::manifest::Expr::Const { value: 1 }];
    kernel.grid_text = vec!["1".into()];
    m
}

/// The GPU, or `None` after printing why the test's GPU part is skipped.
fn gpu(test: &str) -> Option<Gpu> {
    match Gpu::new(0) {
        Ok(gpu) => Some(gpu),
        Err(e @ (RuntimeError::NoDriver | RuntimeError::NoDevice { .. })) => {
            // Straight to stderr: the test harness captures `println!`, not this.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "{test}: skipped: no CUDA driver/GPU ({e})");
            None
        }
        Err(e) => panic!("{test}: the GPU is present but unusable: {e}"),
    }
}

fn i32s(values: &[i32]) -> Buffer {
    let codes: Vec<u32> = values.iter().map(|&v| v as u32).collect();
    Buffer::from_codes("i32".parse().unwrap(), &codes).unwrap()
}

#[test]
fn without_a_driver_every_entry_point_says_so() {
    match Gpu::new(0) {
        Err(RuntimeError::NoDriver) => {
            assert!(!gpu_available());
            assert!(matches!(anybit_runtime::gpu::device_count(), Err(RuntimeError::NoDriver)));
            let message = RuntimeError::NoDriver.to_string();
            assert!(message.starts_with("no CUDA driver"), "{message}");
        }
        Err(RuntimeError::NoDevice { count, .. }) => assert_eq!(count, 0),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(gpu) => {
            assert!(gpu_available());
            println!("a GPU is present ({}): the no-driver errors are not exercised here", gpu.name());
        }
    }
}

#[test]
fn checked_launches_run_on_the_callers_stream() {
    let Some(gpu) = gpu("checked_launches_run_on_the_callers_stream") else { return };
    let module = gpu.load_module(&manifest(ADD_MANIFEST), &[ADD_PTX]).unwrap();
    let again = gpu.load_module(&manifest(ADD_MANIFEST), &[ADD_PTX]).unwrap();
    assert!(std::sync::Arc::ptr_eq(&module, &again), "one module per manifest and PTX");
    let kernel = module.kernel("add_scalar").unwrap();
    let stream = gpu.new_stream().unwrap();
    let n = 1000;
    let values: Vec<i32> = (0..n).map(|i| i * 7 - 3000).collect();
    let x = DeviceBuffer::upload(&stream, &i32s(&values)).unwrap();
    let mut y = DeviceBuffer::zeros(&stream, "i32".parse().unwrap(), n as usize).unwrap();
    kernel
        .launch(
            &stream,
            &mut [LaunchArg::Buffer(&x), LaunchArg::Output(&mut y), LaunchArg::Int(n.into()), LaunchArg::Int(-5)],
        )
        .unwrap();
    let got = y.download(&stream).unwrap().codes();
    let expected: Vec<u32> = values.iter().map(|&v| (v - 5) as u32).collect();
    assert_eq!(got, expected);

    // Arguments are checked before anything is launched.
    let f32s = DeviceBuffer::zeros(&stream, DType::F32, n as usize).unwrap();
    let wrong = kernel
        .launch(
            &stream,
            &mut [LaunchArg::Buffer(&f32s), LaunchArg::Output(&mut y), LaunchArg::Int(n.into()), LaunchArg::Int(0)],
        )
        .unwrap_err();
    assert_eq!(wrong.to_string(), "kernel `add_scalar`: parameter `x`: expected a buffer of i32, got a buffer of f32");
    let small = kernel
        .launch(
            &stream,
            &mut [LaunchArg::Buffer(&x), LaunchArg::Output(&mut y), LaunchArg::Int(1001), LaunchArg::Int(0)],
        )
        .unwrap_err();
    assert!(small.to_string().contains("needs 1001"), "{small}");
    let read_only = kernel
        .launch(&stream, &mut [LaunchArg::Buffer(&x), LaunchArg::Buffer(&f32s), LaunchArg::Int(1), LaunchArg::Int(0)])
        .unwrap_err();
    assert!(matches!(read_only, RuntimeError::Argument { .. }), "{read_only}");
    stream.synchronize().unwrap();
}

#[test]
fn the_jit_log_and_newer_targets_are_reported() {
    let Some(gpu) = gpu("the_jit_log_and_newer_targets_are_reported") else { return };
    let broken = ADD_PTX.replace("add.s32 %r7, %r6, %r8;", "add.s32 %r7, %r6, %undefined;");
    let error = gpu.load_module(&manifest(ADD_MANIFEST), &[broken]).unwrap_err();
    println!("{error}");
    match &error {
        RuntimeError::Jit { kernel, log, .. } => {
            assert_eq!(kernel, "add_scalar");
            assert!(!log.is_empty(), "the JIT's log is missing: {error}");
        }
        other => panic!("expected a JIT error, got: {other}"),
    }
    let (major, minor) = gpu.compute_capability();
    let newer = if (major, minor) == (10, 0) { "sm_90a" } else { "sm_100a" };
    let error = gpu.load_module(&manifest(ADD_MANIFEST), &[ADD_PTX.replace("sm_80", newer)]).unwrap_err();
    println!("{error}");
    assert!(matches!(error, RuntimeError::Target { .. }), "{error}");
    assert!(error.to_string().contains(newer));
}

/// The variable that makes [`child_kernel_failure_is_named`] run (it poisons its context).
const CHILD: &str = "ANYBIT_RUNTIME_TEST_TRAP_CHILD";

#[test]
fn child_kernel_failure_is_named() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let gpu = Gpu::new(0).unwrap();
    let module = gpu.load_module(&trap_manifest(), &[TRAP_PTX]).unwrap();
    let stream = gpu.new_stream().unwrap();
    module.kernel("always_traps").unwrap().launch(&stream, &mut []).unwrap();
    let error = stream.synchronize().unwrap_err();
    println!("{error}");
    assert!(matches!(error, RuntimeError::KernelFailed { .. }), "{error}");
    assert!(error.to_string().contains("`always_traps`"), "{error}");
}

#[test]
fn a_failing_kernel_is_named_at_the_next_synchronization() {
    if gpu("a_failing_kernel_is_named_at_the_next_synchronization").is_none() {
        return;
    }
    // In a child process: a trap poisons the context for the rest of the process.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "main::gpu::child_kernel_failure_is_named", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    println!("{text}");
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
}
