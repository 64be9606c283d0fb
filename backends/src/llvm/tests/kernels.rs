//! Whole kernels run on the host (the same lowering, JIT-compiled) against the interpreter.

use anybit_ir::dtype::DType;
use anybit_ir::interp::{Arg, Buffer, RunOptions, run_kernel};
use anybit_ir::program::{Kernel, ParamType};
use anybit_ir::random::SplitMix64;

use super::host::run_on_host;
use super::ptx::example;

/// Random finite codes of `dtype` with values in about [−range, range].
pub(crate) fn random_buffer(dtype: DType, len: usize, range: f64, rng: &mut SplitMix64) -> Buffer {
    let values: Vec<f64> = (0..len)
        .map(|_| {
            if dtype.is_float() {
                rng.uniform(-range, range)
            } else {
                let lo = dtype.min().to_f64().unwrap_or(0.0).max(-range);
                let hi = dtype.max().to_f64().unwrap_or(0.0).min(range);
                (lo + rng.unit() * (hi - lo + 1.0)).floor().min(hi)
            }
        })
        .collect();
    Buffer::from_f64(dtype, &values).expect("buffer")
}

/// Runs the kernel in the interpreter and on the host with the same arguments; the buffers
/// must agree bit for bit (or within `tolerance`, relative to the magnitude, when given).
/// With the `mlir` feature, the MLIR backend's lowering runs and is compared too.
pub(crate) fn compare(kernel: &Kernel, args: Vec<Arg>, tolerance: Option<f64>) {
    for (backend, run) in super::backends().into_iter().zip(super::host_runners()) {
        compare_with(backend, run, kernel, args.clone(), tolerance);
    }
}

/// Runs a kernel on the host like the GPU would (stores land in the argument buffers).
pub(crate) type HostRunner = fn(&Kernel, &mut [Arg]) -> Result<(), String>;

/// [`compare`] for another backend: `backend` compiles the kernel for a GPU target (checked by
/// `ptxas`), `run` runs its host lowering.
pub(crate) fn compare_with(
    backend: &dyn crate::Backend,
    run: HostRunner,
    kernel: &Kernel,
    args: Vec<Arg>,
    tolerance: Option<f64>,
) {
    let kernel = &super::selected(kernel);
    assemble_with(backend, kernel);
    let mut expected = args.clone();
    let options = RunOptions { check_block_conflicts: false, ..RunOptions::default() };
    run_kernel(kernel, &mut expected, &options).unwrap_or_else(|e| panic!("interpreter: {e}"));
    let mut actual = args;
    run(kernel, &mut actual).unwrap_or_else(|e| panic!("host run of {}: {e}", kernel.name));
    for ((p, e), a) in kernel.params.iter().zip(&expected).zip(&actual) {
        let (Arg::Buffer(e), Arg::Buffer(a)) = (e, a) else { continue };
        let ParamType::Pointer(dtype) = p.ty else { continue };
        let (ec, ac) = (e.codes(), a.codes());
        let mut bad = 0;
        for (i, (&x, &y)) in ec.iter().zip(&ac).enumerate() {
            let ok = match tolerance {
                Some(tol) if dtype.is_float() => {
                    let (xv, yv) = (dtype.decode_f64(x).unwrap_or(f64::NAN), dtype.decode_f64(y).unwrap_or(f64::NAN));
                    x == y || (xv - yv).abs() <= tol * xv.abs().max(1e-30) || (xv.is_nan() && yv.is_nan())
                }
                _ => x == y,
            };
            if !ok {
                if bad < 10 {
                    eprintln!(
                        "{}: `{}`[{i}]: interpreter {x:#x} ({}), host {y:#x} ({})",
                        kernel.name,
                        p.name,
                        dtype.decode(x).map(|v| v.to_string()).unwrap_or_default(),
                        dtype.decode(y).map(|v| v.to_string()).unwrap_or_default()
                    );
                }
                bad += 1;
            }
        }
        assert_eq!(bad, 0, "{}: {bad} of {} elements of `{}` differ", kernel.name, ec.len(), p.name);
    }
}

/// Compiles the kernel for a GPU target (alternating between sm_80 and sm_90) and checks
/// that `ptxas` accepts it without spilling: the NVPTX-only paths (predicated accesses,
/// `cp.async`, `ldmatrix`, `mma`) of every host-tested kernel get assembled too.
pub(crate) fn assemble(kernel: &Kernel) {
    for backend in super::backends() {
        assemble_with(backend, kernel);
    }
}

/// [`assemble`] with another backend.
pub(crate) fn assemble_with(backend: &dyn crate::Backend, kernel: &Kernel) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let target =
        if COUNT.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) { crate::Target::Sm80 } else { crate::Target::Sm90 };
    let module = anybit_ir::program::Module { layouts: vec![], kernels: vec![kernel.clone()] };
    let compiled = backend
        .compile(&module, target, &crate::CompileOptions::default())
        .unwrap_or_else(|e| panic!("{} for {target}: {e}", kernel.name));
    if let Some(report) = super::ptx::check_ptx(&compiled.kernels[0].ptx, target, &kernel.name) {
        assert!(report.contains(" 0 bytes spill stores"), "{} spills on {target}:\n{report}", kernel.name);
    }
}

#[test]
fn vector_add_on_host() {
    let module = example("vector_add.abk");
    let kernel = &module.kernels[0];
    let mut rng = SplitMix64::new(1);
    let n = 1000;
    let args = vec![
        Arg::Buffer(random_buffer(DType::F32, n, 100.0, &mut rng)),
        Arg::Buffer(random_buffer(DType::F32, n, 100.0, &mut rng)),
        Arg::Buffer(Buffer::zeros(DType::F32, n).expect("zeros")),
        Arg::Int(n as i64),
    ];
    compare(kernel, args, None);
}

#[test]
fn rms_norm_on_host() {
    let module = example("rms_norm.abk");
    let kernel = &module.kernels[0];
    let mut rng = SplitMix64::new(2);
    let (m, n) = (6, 300);
    let args = vec![
        Arg::Buffer(random_buffer(DType::F16, m * n, 4.0, &mut rng)),
        Arg::Buffer(random_buffer(DType::F16, n, 2.0, &mut rng)),
        Arg::Buffer(Buffer::zeros(DType::F16, m * n).expect("zeros")),
        Arg::Int(m as i64),
        Arg::Int(n as i64),
        Arg::Float(1e-5),
    ];
    compare(kernel, args, None);
}

#[test]
fn matmul_f16_on_host() {
    let module = example("matmul_f16.abk");
    let kernel = &module.kernels[0];
    let mut rng = SplitMix64::new(3);
    for (m, n, k, relu) in [(70, 72, 64, 1), (64, 64, 48, 0)] {
        let args = vec![
            Arg::Buffer(random_buffer(DType::F16, m * k, 2.0, &mut rng)),
            Arg::Buffer(random_buffer(DType::F16, k * n, 2.0, &mut rng)),
            Arg::Buffer(Buffer::zeros(DType::F32, m * n).expect("zeros")),
            Arg::Int(m as i64),
            Arg::Int(n as i64),
            Arg::Int(k as i64),
            Arg::Int(relu),
        ];
        compare(kernel, args, None);
    }
}

/// A `dot` whose accumulator is made of transposed C fragments runs swapped
/// (`via mma(m16n8k16, swapped)`: b as the A operands, a as the B operands), with rows and
/// columns landing where the interpreter puts them — also with operands that need converting.
#[test]
fn swapped_mma_on_host() {
    let src = "
kernel swapped(x: ptr f16[8, 32], w: ptr f16[32, 32], y: ptr f32[8, 32], z: ptr f32[8, 32]) grid(1) warps(2) {
    %xv = global_view %x [8, 32] strides [32, 1]
    %wv = global_view %w [32, 32] strides [32, 1]
    %yv = global_view %y [8, 32] strides [32, 1]
    %zv = global_view %z [8, 32] strides [32, 1]
    %a = load_global %xv [0, 0] : f16[8, 32] layout replicated(2).local(1,4).spatial(8,4).local(1,2)
    %b = load_global %wv [0, 0] : f16[32, 32] layout spatial(1,2).local(2,1).local(2,2).column_spatial(4,8).local(2,1)
    %c = fill 0.0 : f32[8, 32] layout spatial(1,2).local(1,2).column_spatial(4,8).local(2,1)
    %d = dot %a, %b, %c
    store_global %d, %yv [0, 0]
    %a2 = load_global %xv [0, 0] : f16[8, 32] layout spatial(8,8).local(1,4)
    %e = dot %a2, %b, %c
    store_global %e, %zv [0, 0]
}";
    let module = anybit_ir::text::parse_module(src).expect("parse");
    let selected = super::selected(&module.kernels[0]);
    let vias: Vec<String> = selected.insts.iter().filter_map(|(_, i)| i.via.map(|v| v.to_string())).collect();
    assert_eq!(vias.iter().filter(|v| *v == "mma(m16n8k16, swapped)").count(), 2, "{vias:?}");
    let mut rng = SplitMix64::new(17);
    let args = vec![
        Arg::Buffer(random_buffer(DType::F16, 8 * 32, 2.0, &mut rng)),
        Arg::Buffer(random_buffer(DType::F16, 32 * 32, 2.0, &mut rng)),
        Arg::Buffer(Buffer::zeros(DType::F32, 8 * 32).expect("zeros")),
        Arg::Buffer(Buffer::zeros(DType::F32, 8 * 32).expect("zeros")),
    ];
    compare(&module.kernels[0], args, None);
}

#[test]
fn lowbit_u4_example_on_host() {
    let module = example("lowbit_matmul_u4_g128.abk");
    let kernel = &module.kernels[0];
    let mut rng = SplitMix64::new(4);
    let (m, n, k): (usize, usize, usize) = (20, 72, 256);
    let u8t = DType::uint(8).expect("u8");
    let u4 = DType::uint(4).expect("u4");
    // The weights in 64 × 64 tiles of 4-bit codes (2048 bytes each).
    let tiled_bytes = k.div_ceil(64) * n.div_ceil(64) * 2048;
    let args = vec![
        Arg::Buffer(random_buffer(DType::F16, m * k, 1.0, &mut rng)),
        Arg::Buffer(random_buffer(u8t, tiled_bytes, 255.0, &mut rng)),
        Arg::Buffer(random_buffer(DType::F16, k / 128 * n, 0.1, &mut rng)),
        Arg::Buffer(random_buffer(u4, k / 128 * n, 15.0, &mut rng)),
        Arg::Buffer(Buffer::zeros(DType::F16, m * n).expect("zeros")),
        // A split of K in 2: the workspace of f32 partial sums, 2 slabs of 64 rows.
        Arg::Buffer(Buffer::zeros(DType::F32, 2 * 64 * n).expect("zeros")),
        Arg::Int(m as i64),
        Arg::Int(n as i64),
        Arg::Int(k as i64),
        Arg::Int(2),
    ];
    compare(kernel, args, None);
}

#[test]
fn host_run_really_computes() {
    let module = example("vector_add.abk");
    let kernel = &module.kernels[0];
    let n = 600;
    let ones = Buffer::from_f64(DType::F32, &vec![1.5; n]).expect("b");
    let mut args = vec![
        Arg::Buffer(ones.clone()),
        Arg::Buffer(ones),
        Arg::Buffer(Buffer::zeros(DType::F32, n).expect("z")),
        Arg::Int(n as i64),
    ];
    run_on_host(kernel, &mut args).expect("run");
    let Arg::Buffer(z) = &args[2] else { panic!() };
    let v = z.to_f64().expect("f64");
    assert!(v.iter().all(|&x| x == 3.0), "{:?}", &v[..8]);
}
