//! anybit from a Rust crate, both ways: a low-bit matmul (u4 weights, one f16 scale per 128
//! rows, f16 activations) run
//!
//! 1. **ahead of time**: `kernels/lowbit_u4_g128.abk`, compiled to PTX for sm_80 and sm_90 by
//!    `build.rs` (anybit-build) and launched through its typed handle — on a GPU the embedded
//!    PTX is loaded, no compiler runs;
//! 2. **just in time**: the same layer built from its weight format by
//!    `anybit::linear::QuantizedLinear`, which generates and compiles the kernel at run time;
//!
//! and an inline `anybit::kernel!` (checked when this file compiles) scaling the result. Every
//! output element is checked against the exact f64 reference computed from the same quantized
//! weights. The same code runs on the first GPU when there is one and on the CPU interpreter
//! otherwise:
//!
//! ```text
//! cargo run --release -p anybit-example-aot [-- M K N]
//! ```

use std::error::Error;
use std::process::ExitCode;

use anybit::frontend::lowbit::{QuantizedWeights, WeightFormat, reference};
use anybit::ir::DType;
use anybit::ir::random::SplitMix64;
use anybit::linear::{LinearOptions, QuantizedLinear};
use anybit::runtime::typed::{F16, U8};

/// The kernels of `kernels/`, compiled by `build.rs`: one module per file.
mod kernels {
    include!(concat!(env!("OUT_DIR"), "/anybit_kernels.rs"));
}

// A kernel written inline: parsed and verified when this file compiles.
anybit::kernel!(
    r#"
layout @row = local(4).spatial(128)

kernel scale_f16(x: ptr f16[n], y: ptr f16[n], n: i32, a: f16) grid(cdiv(n, 512)) warps(4) {
    %gx = global_view %x [%n] strides [1]
    %gy = global_view %y [%n] strides [1]
    %b = block_index x
    %start = mul %b, 512
    %v = load_global %gx [%start] : f16[512] layout @row
    %w = mul %v, %a
    store_global %w, %gy [%start]
}
"#
);

/// What a run found.
#[derive(Debug)]
struct Report {
    device: String,
    /// The largest error of each way, as a fraction of its bound (≤ 1 passes).
    aot: f64,
    jit: f64,
    scaled: f64,
}

/// The largest `|y − exact| / bound` over all elements.
fn worst(y: &[f64], expected: &[(f64, f64)]) -> f64 {
    y.iter().zip(expected).map(|(&v, &(exact, bound))| (v - exact).abs() / bound).fold(0.0, f64::max)
}

fn run(m: usize, k: usize, n: usize) -> Result<Report, Box<dyn Error>> {
    let format = WeightFormat {
        weight: "u4".parse()?,
        lut: None,
        group_size: 128,
        scale: DType::F16,
        zero_point: false,
        offset: false,
        activation: DType::F16,
    };
    let mut rng = SplitMix64::new(7);
    let weights = QuantizedWeights::random(format, k, n, &mut rng)?;
    let x_codes: Vec<u32> = (0..m * k).map(|_| DType::F16.encode(rng.uniform(-1.0, 1.0))).collect();
    let expected = reference(&weights, &x_codes, m)?;

    // 1. Ahead of time: the kernel file's typed handle, on the GPU when there is one.
    let exec = anybit::jit::executor();
    let x = exec.upload_codes::<F16>(&x_codes)?;
    let packed: Vec<u32> = weights.pack_rows()?.into_iter().map(u32::from).collect();
    let w = exec.upload_codes::<U8>(&packed)?;
    let s = exec.upload_codes::<F16>(&weights.scales)?;
    let mut y = exec.zeros::<F16>(m * n)?;
    let (mi, ni, ki) = (i32::try_from(m)?, i32::try_from(n)?, i32::try_from(k)?);
    kernels::lowbit_u4_g128::LowbitU4G128.launch(&exec, &x, &w, &s, &mut y, mi, ni, ki)?;
    let aot = worst(&exec.download_f64(&y)?, &expected);

    // The inline kernel on the result: y / 2 is exact in f16 (barring subnormals), so its bound
    // is the reference's, halved.
    let mut half = exec.zeros::<F16>(m * n)?;
    ScaleF16.launch(&exec, &y, &mut half, i32::try_from(m * n)?, 0.5)?;
    let halved: Vec<(f64, f64)> = expected.iter().map(|&(e, b)| (e / 2.0, b / 2.0 + 2f64.powi(-25))).collect();
    let scaled = worst(&exec.download_f64(&half)?, &halved);

    // 2. Just in time: the same layer from its weight format.
    let layer = QuantizedLinear::new(&weights, &LinearOptions::default())?;
    let x_f16: Vec<u16> = x_codes.iter().map(|&c| c as u16).collect();
    let y_jit: Vec<f64> =
        layer.forward(&x_f16)?.into_iter().map(|c| DType::F16.decode_f64(u32::from(c)).unwrap_or(f64::NAN)).collect();
    let jit = worst(&y_jit, &expected);
    Ok(Report { device: exec.device_name(), aot, jit, scaled })
}

fn main() -> ExitCode {
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (m, k, n) = match sizes.as_slice() {
        [m, k, n] => (*m, *k, *n),
        _ => (16, 512, 256),
    };
    match run(m, k, n) {
        Ok(report) => {
            println!("low-bit matmul u4 g128, M={m} K={k} N={n}, on {}", report.device);
            println!("  ahead of time (kernels/lowbit_u4_g128.abk): worst error {:.3} of its bound", report.aot);
            println!("  inline kernel! scale_f16 on the result:      worst error {:.3} of its bound", report.scaled);
            println!("  just in time (QuantizedLinear):             worst error {:.3} of its bound", report.jit);
            if report.aot <= 1.0 && report.jit <= 1.0 && report.scaled <= 1.0 {
                println!("ok");
                ExitCode::SUCCESS
            } else {
                println!("FAILED: an element is outside its bound");
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ways_agree_with_the_reference() {
        // Sizes that leave partial tiles (N = 96 is 1.5 tiles of 64, M = 3 of 16).
        let report = run(3, 256, 96).unwrap();
        println!("{report:?}");
        assert!(report.aot <= 1.0 && report.jit <= 1.0 && report.scaled <= 1.0, "{report:?}");
        assert!(report.aot.is_finite() && report.jit.is_finite());
    }

    #[test]
    fn the_build_script_embedded_ptx_for_both_targets() {
        let module = kernels::lowbit_u4_g128::LowbitU4G128::module();
        let targets: Vec<&str> = module.targets().iter().map(|t| t.target).collect();
        assert_eq!(targets, ["sm_80", "sm_90"]);
        for target in module.targets() {
            assert!(target.ptx[0].contains(".entry lowbit_u4_g128"));
            assert!(target.manifest.contains("\"name\": \"lowbit_u4_g128\""));
        }
        // The H100 gets the sm_90 PTX, an A100 the sm_80 one.
        assert_eq!(module.best_target(9, 0).map(|t| t.target), Some("sm_90"));
        assert_eq!(module.best_target(8, 0).map(|t| t.target), Some("sm_80"));
        assert!(ScaleF16::module().targets().is_empty(), "inline kernels are JIT-compiled on a GPU");
    }
}
