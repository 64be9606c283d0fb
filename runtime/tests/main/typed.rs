//! Typed kernels without a code generator: an embedded module run on the interpreter through
//! the executor, element markers against the types they name, the choice of embedded PTX per
//! device, and the errors for buffers of the wrong type or place.

use anybit_ir::DType;
use anybit_ir::interp::Buffer;
use anybit_runtime::typed::{
    Element, EmbeddedModule, EmbeddedTarget, ExecError, Executor, F16, F32, FINITE, Float, IEEE, Int, KernelArg, NAN,
    TypedBuffer, Uint,
};

const SCALE_SOURCE: &str = "\
layout @row = spatial(32)

kernel scale(x: ptr f32[n], y: ptr f32[n], n: i32, factor: f32) grid(cdiv(n, 32)) warps(1) {
    %gx = global_view %x [%n] strides [1]
    %gy = global_view %y [%n] strides [1]
    %b = block_index x
    %o = mul %b, 32
    %v = load_global %gx [%o] : f32[32] layout @row
    %w = mul %v, %factor
    store_global %w, %gy [%o]
}
";

static SCALE: EmbeddedModule = EmbeddedModule::new("scale", SCALE_SOURCE, &[]);

#[test]
fn an_embedded_module_runs_on_the_interpreter() {
    let exec = Executor::interpreter();
    assert!(!exec.is_gpu());
    let values: Vec<f64> = (0..70).map(f64::from).collect();
    let x = exec.upload::<F32>(&values).unwrap();
    let mut y = exec.zeros::<F32>(70).unwrap();
    let mut args = [x.arg(), y.arg_mut(), KernelArg::int(70), KernelArg::float(0.5)];
    exec.launch(&SCALE, "scale", &mut args).unwrap();
    exec.synchronize().unwrap();
    let y = exec.download_f64(&y).unwrap();
    assert_eq!(y, values.iter().map(|v| v * 0.5).collect::<Vec<_>>());
}

#[test]
fn interpreter_errors_name_the_kernel() {
    let exec = Executor::interpreter();
    let x = exec.zeros::<F32>(10).unwrap();
    let mut y = exec.zeros::<F32>(10).unwrap();
    // The declared shape says 64 elements.
    let mut args = [x.arg(), y.arg_mut(), KernelArg::int(64), KernelArg::float(1.0)];
    let error = exec.launch(&SCALE, "scale", &mut args).unwrap_err().to_string();
    assert!(error.starts_with("kernel `scale` on the interpreter:"), "{error}");
    let mut args = [x.arg(), y.arg_mut(), KernelArg::int(10), KernelArg::float(1.0)];
    let error = exec.launch(&SCALE, "shift", &mut args).unwrap_err();
    assert!(matches!(error, ExecError::NoKernel { .. }), "{error}");
}

#[test]
fn markers_name_their_types() {
    let t = |name: &str| name.parse::<DType>().unwrap();
    assert_eq!(F16::dtype().unwrap(), DType::F16);
    assert_eq!(F32::dtype().unwrap(), DType::F32);
    assert_eq!(Uint::<3>::dtype().unwrap(), t("u3"));
    assert_eq!(Int::<5>::dtype().unwrap(), t("i5"));
    assert_eq!(Float::<2, 1, FINITE>::dtype().unwrap(), t("f4e2m1"));
    assert_eq!(Float::<4, 3, NAN>::dtype().unwrap(), t("f8e4m3"));
    assert_eq!(Float::<5, 2, IEEE>::dtype().unwrap(), t("f8e5m2"));
    assert!(Uint::<40>::dtype().is_err());
    assert!(Float::<0, 3, FINITE>::dtype().is_err());
    assert!(Float::<2, 1, 7>::dtype().is_err());
}

#[test]
fn typed_buffers_refuse_other_element_types() {
    let buffer = Buffer::zeros(DType::F16, 4).unwrap();
    let error = TypedBuffer::<F32>::from_host(buffer.clone()).unwrap_err().to_string();
    assert_eq!(error, "a buffer of 4 f16 cannot be a TypedBuffer of f32");
    let typed = TypedBuffer::<F16>::from_host(buffer).unwrap();
    assert_eq!((typed.len(), typed.is_on_device(), typed.device().is_none()), (4, false, true));
    assert_eq!(format!("{typed:?}"), "TypedBuffer<f16>(4 elements in host memory)");
}

static MULTI: EmbeddedModule = EmbeddedModule::new(
    "multi",
    "",
    &[
        EmbeddedTarget { target: "sm_80", manifest: "{}", ptx: &[] },
        EmbeddedTarget { target: "sm_90a", manifest: "{}", ptx: &[] },
        EmbeddedTarget { target: "sm_90", manifest: "{}", ptx: &[] },
        EmbeddedTarget { target: "sm_100a", manifest: "{}", ptx: &[] },
    ],
);

#[test]
fn the_newest_embedded_target_a_device_runs_is_chosen() {
    let best = |major, minor| MULTI.best_target(major, minor).map(|t| t.target);
    assert_eq!(best(9, 0), Some("sm_90"));
    assert_eq!(best(8, 9), Some("sm_80"));
    assert_eq!(best(10, 0), Some("sm_100a"));
    assert_eq!(best(12, 0), Some("sm_90"));
    assert_eq!(best(7, 5), None);
    let error = MULTI.module().map(|m| m.kernels.len());
    assert_eq!(error.ok(), Some(0), "an empty source is an empty module");
}

#[test]
fn detect_falls_back_to_the_interpreter_without_a_gpu() {
    let exec = Executor::detect();
    if anybit_runtime::gpu_available() {
        assert!(exec.is_gpu());
        println!("GPU present: {}", exec.device_name());
    } else {
        assert!(!exec.is_gpu() && exec.stream().is_none());
        assert_eq!(exec.device_name(), "the interpreter");
    }
}
