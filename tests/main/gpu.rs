//! `QuantizedLinear` on the GPU, for every weight type (u1–u8, i2–i8, every float type of the
//! kernel cases), with and without zero points, f16 and bf16, for the formats with f32
//! scales and float offsets, and for the lookup-table formats (IQ4_NL, NF4): each output
//! within its bound of the exact reference and close to the interpreter's, launched through the JIT, the compile
//! cache and the runtime's checked launches. Where there is no CUDA driver or device the test
//! prints why it is skipped and passes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anybit::frontend::lowbit::QuantizedWeights;
use anybit::ir::DType;
use anybit::ir::random::SplitMix64;
use anybit::linear::{Device, LinearOptions, PrefillKernel, QuantizedLinear};
use anybit::runtime::cache::{CacheConfig, CompileCache, Source};
use anybit::runtime::{DeviceBuffer, Gpu, RuntimeError};
use anybit_bench::cases::WEIGHT_TYPES;

use super::linear::{activations, format, worst_ratio};

/// A fresh directory for `name`: inside the target directory (cargo gives integration tests
/// one), or the system's temporary folder where that is not writable (a test binary copied to
/// another machine).
fn scratch(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let root = if std::fs::create_dir_all(root).is_ok() { root.to_path_buf() } else { std::env::temp_dir() };
    root.join(format!("{name}-{}", std::process::id()))
}

/// GPU 0, or `None` after saying (on stderr, past the test harness's capture) why not.
fn gpu() -> Option<Arc<Gpu>> {
    match Gpu::new(0) {
        Ok(gpu) => Some(Arc::new(gpu)),
        Err(e @ (RuntimeError::NoDriver | RuntimeError::NoDevice { .. })) => {
            let _ = writeln!(std::io::stderr(), "GPU test of QuantizedLinear: skipped: no CUDA driver/GPU ({e})");
            None
        }
        Err(e) => panic!("a GPU is present but unusable: {e}"),
    }
}

fn decode(act: DType, codes: &[u16]) -> Vec<f64> {
    codes.iter().map(|&c| act.decode_f64(u32::from(c)).unwrap()).collect()
}

#[test]
fn every_weight_type_runs_on_the_gpu_like_on_the_interpreter() {
    let Some(gpu) = gpu() else { return };
    let dir = scratch("anybit-gpu-test-cache");
    let cache = Arc::new(CompileCache::new(CacheConfig::in_dir(&dir)));
    let on_gpu =
        LinearOptions { device: Device::Gpu(gpu.clone()), cache: Some(cache.clone()), ..LinearOptions::default() };
    let on_interpreter = LinearOptions { device: Device::Interpreter, ..LinearOptions::default() };
    let mut rng = SplitMix64::new(2027);
    let mut failures = Vec::new();
    let mut rows = 0;
    println!("{} (compute capability {:?}, driver {:?})", gpu.name(), gpu.compute_capability(), gpu.driver_version());
    println!(
        "{:<40} {:>4} {:>8} {:>10} {:>14} {:>14} {:>8}",
        "kernel", "m", "source", "compile ms", "error / bound", "max |gpu-int|", "equal"
    );
    let mut formats: Vec<_> = WEIGHT_TYPES
        .iter()
        .enumerate()
        .map(|(t, &name)| {
            let weight: DType = name.parse().unwrap();
            let zero_point = weight.is_integer() && t % 2 == 1;
            let activation = if t % 3 == 0 { DType::BF16 } else { DType::F16 };
            format(name, [32, 64, 128][t % 3], zero_point, activation)
        })
        .collect();
    // And the formats that dequantize in f32 (f32 scales, offsets: what GGUF K-quants import as).
    formats.extend(anybit_bench::cases::scaled_offset_formats().unwrap());
    // And the lookup-table formats (IQ4_NL, NF4: `lookup` instead of `cast`).
    formats.extend(anybit_bench::cases::lut_formats());
    for fmt in formats {
        let activation = fmt.activation;
        let (k, n) = (256, 200);
        let weights = QuantizedWeights::random(fmt, k, n, &mut rng).unwrap();
        let layer = QuantizedLinear::new(&weights, &on_gpu).unwrap();
        let twin = QuantizedLinear::new(&weights, &on_interpreter).unwrap();
        let info = layer.compile_info().unwrap().clone();
        assert!(info.warning.is_none(), "{:?}", info.warning);
        for m in [1, 16, 33] {
            let x = activations(&fmt, m, k, &mut rng);
            let y = layer.forward(&x).unwrap();
            let expected = twin.forward(&x).unwrap();
            let ratio = worst_ratio(&weights, &x, &y);
            let (got, interp) = (decode(activation, &y), decode(activation, &expected));
            let diff = got.iter().zip(&interp).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            let equal = y.iter().zip(&expected).filter(|(a, b)| a == b).count();
            println!(
                "{:<40} {m:>4} {:>8} {:>10} {ratio:>14.3} {diff:>14.3e} {:>7.1}%",
                fmt.kernel_name(),
                info.source.to_string(),
                info.milliseconds,
                100.0 * equal as f64 / y.len() as f64
            );
            if ratio > 1.0 {
                failures.push(format!("{} m={m}: error / bound = {ratio}", fmt.kernel_name()));
            }
            rows += 1;
        }
        // A second layer of the same format comes from the cache.
        let again = QuantizedLinear::new(&weights, &on_gpu).unwrap();
        assert_eq!(again.compile_info().unwrap().source, Source::Memory);
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{} of {rows} runs fail their bound:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn forward_on_launches_on_the_callers_stream() {
    let Some(gpu) = gpu() else { return };
    let fmt = format("u4", 128, true, DType::F16);
    let mut rng = SplitMix64::new(5);
    let weights = QuantizedWeights::random(fmt, 512, 4096, &mut rng).unwrap();
    let options = LinearOptions { device: Device::Gpu(gpu.clone()), ..LinearOptions::default() };
    let layer = QuantizedLinear::new(&weights, &options).unwrap();
    let stream = gpu.new_stream().unwrap();
    let m = 16;
    let x_codes = activations(&fmt, m, 512, &mut rng);
    let host =
        anybit::ir::interp::Buffer::from_codes(DType::F16, &x_codes.iter().map(|&c| u32::from(c)).collect::<Vec<_>>())
            .unwrap();
    let x = DeviceBuffer::upload(&stream, &host).unwrap();
    let mut y = DeviceBuffer::zeros(&stream, DType::F16, m * 4096).unwrap();
    layer.forward_on(&stream, &x, &mut y).unwrap();
    let codes: Vec<u16> = y.download(&stream).unwrap().codes().into_iter().map(|c| c as u16).collect();
    assert!(worst_ratio(&weights, &x_codes, &codes) <= 1.0);
    assert_eq!(codes, layer.forward(&x_codes).unwrap(), "the same kernel on another stream");
    // A y of the wrong size is refused before launching.
    let mut small = DeviceBuffer::zeros(&stream, DType::F16, 10).unwrap();
    assert!(layer.forward_on(&stream, &x, &mut small).unwrap_err().to_string().starts_with("y: expected 65536"));
}

/// Splits of K on the GPU — the matmul writing partial sums to a workspace from the stream's
/// pool and the reduction adding them — for both matmul kernels, against the reference and
/// the interpreter running the same plan (the same additions in the same order).
#[test]
fn plans_with_splits_of_k_run_on_the_gpu_like_on_the_interpreter() {
    use anybit::frontend::lowbit::LaunchPlan;
    let Some(gpu) = gpu() else { return };
    let mut rng = SplitMix64::new(2028);
    let (k, n) = (1024, 136);
    for fmt in [
        format("u4", 128, true, DType::BF16),
        format("i3", 32, false, DType::F16),
        format("f4e2m1", 64, false, DType::F16),
    ] {
        let weights = QuantizedWeights::random(fmt, k, n, &mut rng).unwrap();
        for plan in [
            LaunchPlan { block_m: 8, splits: 2 },
            LaunchPlan { block_m: 16, splits: 8 },
            LaunchPlan { block_m: 64, splits: 3 },
        ] {
            let with = |device| LinearOptions {
                device,
                plan: Some(plan),
                prefill_kernel: PrefillKernel::Now,
                ..LinearOptions::default()
            };
            let (on_gpu, on_interpreter) = (with(Device::Gpu(gpu.clone())), with(Device::Interpreter));
            let layer = QuantizedLinear::new(&weights, &on_gpu).unwrap();
            let twin = QuantizedLinear::new(&weights, &on_interpreter).unwrap();
            for m in [1, 5, 70] {
                let x = activations(&fmt, m, k, &mut rng);
                let y = layer.forward(&x).unwrap();
                let ratio = worst_ratio(&weights, &x, &y);
                assert!(ratio <= 1.0, "{} {} m={m}: error / bound = {ratio}", fmt.kernel_name(), plan.tag());
                let (got, interp) = (decode(fmt.activation, &y), decode(fmt.activation, &twin.forward(&x).unwrap()));
                let diff = got.iter().zip(&interp).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
                println!(
                    "{:<40} {} m={m:>3}: error / bound {ratio:.3}, max |gpu-int| {diff:.3e}",
                    fmt.kernel_name(),
                    plan.tag()
                );
            }
        }
    }
}

/// The 16- and 64-row kernels compiled in the background: the layer is built after the 8-row
/// kernel only, runs every M meanwhile, and uses the 64-row kernel for large M once it is
/// ready — against the reference either way.
#[test]
fn the_prefill_kernel_arrives_in_the_background() {
    use anybit::frontend::lowbit::LaunchPlan;
    let Some(gpu) = gpu() else { return };
    let mut rng = SplitMix64::new(2029);
    let fmt = format("u4", 128, false, DType::BF16);
    let (k, n) = (512, 192);
    let weights = QuantizedWeights::random(fmt, k, n, &mut rng).unwrap();
    let options = LinearOptions { device: Device::Gpu(gpu), ..LinearOptions::default() };
    let layer = QuantizedLinear::new(&weights, &options).unwrap();
    let x = activations(&fmt, 100, k, &mut rng);
    assert!(worst_ratio(&weights, &x, &layer.forward(&x).unwrap()) <= 1.0, "before the 64-row kernel");
    assert!(layer.wait_for_prefill_kernel().unwrap());
    assert_eq!(layer.plan_for(100).block_m, 64);
    assert!(worst_ratio(&weights, &x, &layer.forward(&x).unwrap()) <= 1.0, "with the 64-row kernel");
    layer.set_plan(100, LaunchPlan { block_m: 64, splits: 2 }).unwrap();
    assert!(worst_ratio(&weights, &x, &layer.forward(&x).unwrap()) <= 1.0, "64 rows, K split in 2");
}
