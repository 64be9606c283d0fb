//! `QuantizedLinear` on the interpreter: several weight types (odd widths included) against the
//! exact f64 reference within its bound, and every kind of invalid input as a typed error.

use anybit::frontend::lowbit::{FormatError, Lut, QuantizedWeights, WeightFormat, reference};
use anybit::ir::DType;
use anybit::ir::random::SplitMix64;
use anybit::linear::{Device, LinearError, LinearOptions, PrefillKernel, QuantizedLinear};

pub fn format(weight: &str, group_size: usize, zero_point: bool, activation: DType) -> WeightFormat {
    let scale = if activation == DType::F16 { DType::BF16 } else { DType::F16 };
    WeightFormat {
        weight: weight.parse().unwrap(),
        lut: None,
        group_size,
        scale,
        zero_point,
        offset: false,
        activation,
    }
}

/// `m` rows of random activations in [−1, 1) (codes).
pub fn activations(format: &WeightFormat, m: usize, k: usize, rng: &mut SplitMix64) -> Vec<u16> {
    (0..m * k).map(|_| format.activation.encode(rng.uniform(-1.0, 1.0)) as u16).collect()
}

/// The largest |y − exact| / bound over the outputs (must be ≤ 1).
pub fn worst_ratio(weights: &QuantizedWeights, x: &[u16], y: &[u16]) -> f64 {
    let m = x.len() / weights.k;
    let codes: Vec<u32> = x.iter().map(|&c| u32::from(c)).collect();
    let expected = reference(weights, &codes, m).unwrap();
    assert_eq!(y.len(), expected.len());
    let act = weights.format.activation;
    y.iter()
        .zip(&expected)
        .map(|(&code, &(exact, bound))| {
            let got = act.decode_f64(u32::from(code)).unwrap();
            let error = (got - exact).abs();
            if error == 0.0 { 0.0 } else { error / bound }
        })
        .fold(0.0, f64::max)
}

fn interpreter() -> LinearOptions {
    LinearOptions { device: Device::Interpreter, ..LinearOptions::default() }
}

/// Each call runs the plan for its M: the 8-row kernel up to 8 rows, the 16-row one up to 32,
/// the 64-row kernel past 32 rows, a split of K where the
/// grid is small and K long; fixed and tuned plans override the choice; every plan agrees with
/// the reference.
#[test]
fn each_call_runs_its_plan_and_every_plan_matches_the_reference() {
    use anybit::frontend::lowbit::LaunchPlan;
    let mut rng = SplitMix64::new(9);
    let format = format("u4", 64, true, DType::BF16);
    // One column tile and 16 steps of K: the chosen plan splits K in 2 at small M.
    let (k, n) = (1024, 64);
    let weights = QuantizedWeights::random(format, k, n, &mut rng).unwrap();
    // Without the 16- and 64-row kernels every M runs on the 8-row one.
    let never = LinearOptions { prefill_kernel: PrefillKernel::Never, ..interpreter() };
    let decode_only = QuantizedLinear::new(&weights, &never).unwrap();
    assert!(!decode_only.has_prefill_kernel());
    assert_eq!(decode_only.plan_for(40).block_m, 8);
    let x = activations(&format, 40, k, &mut rng);
    assert!(worst_ratio(&weights, &x, &decode_only.forward(&x).unwrap()) <= 1.0);
    let refused = decode_only.set_plan(64, LaunchPlan { block_m: 64, splits: 1 }).unwrap_err();
    assert!(refused.to_string().contains("prefill_kernel"), "{refused}");
    // On the interpreter the default (a background compile on a GPU) has it at once.
    let options = interpreter();
    let layer = QuantizedLinear::new(&weights, &options).unwrap();
    assert!(layer.wait_for_prefill_kernel().unwrap());
    assert!(layer.has_prefill_kernel());
    assert_eq!(layer.plan_for(3), LaunchPlan { block_m: 8, splits: 2 });
    assert_eq!(layer.plan_for(12), LaunchPlan { block_m: 16, splits: 2 });
    assert_eq!(layer.plan_for(40).block_m, 64);
    for m in [3, 12, 40] {
        let x = activations(&format, m, k, &mut rng);
        let ratio = worst_ratio(&weights, &x, &layer.forward(&x).unwrap());
        assert!(ratio <= 1.0, "chosen plan, m={m}: error / bound = {ratio}");
    }
    // Tuned plans: for M up to the tuned M, the nearest one.
    layer.set_plan(8, LaunchPlan { block_m: 64, splits: 3 }).unwrap();
    layer.set_plan(2, LaunchPlan { block_m: 16, splits: 5 }).unwrap();
    assert_eq!(layer.plan_for(1), LaunchPlan { block_m: 16, splits: 5 });
    assert_eq!(layer.plan_for(5), LaunchPlan { block_m: 64, splits: 3 });
    assert_eq!(layer.plan_for(9), LaunchPlan::choose(&format, 9, n, k, anybit::linear::INTERPRETER_MULTIPROCESSORS));
    for m in [2, 5] {
        let x = activations(&format, m, k, &mut rng);
        let ratio = worst_ratio(&weights, &x, &layer.forward(&x).unwrap());
        assert!(ratio <= 1.0, "tuned plan, m={m}: error / bound = {ratio}");
    }
    let bad = layer.set_plan(4, LaunchPlan { block_m: 32, splits: 1 }).unwrap_err();
    assert!(matches!(bad, LinearError::Plan { .. }), "{bad}");
    // A fixed plan for every call.
    let plan = LaunchPlan { block_m: 64, splits: 4 };
    let fixed = QuantizedLinear::new(&weights, &LinearOptions { plan: Some(plan), ..options.clone() }).unwrap();
    assert_eq!((fixed.plan_for(1), fixed.plan_for(100)), (plan, plan));
    let x = activations(&format, 1, k, &mut rng);
    assert!(worst_ratio(&weights, &x, &fixed.forward(&x).unwrap()) <= 1.0);
    let options = LinearOptions { plan: Some(LaunchPlan { block_m: 16, splits: 0 }), ..interpreter() };
    assert!(matches!(QuantizedLinear::new(&weights, &options), Err(LinearError::Format(FormatError::Plan(_)))));
}

#[test]
fn layers_of_several_types_match_the_reference_on_the_interpreter() {
    let mut rng = SplitMix64::new(6);
    let formats = [
        format("u4", 32, true, DType::F16),
        format("i4", 64, false, DType::BF16),
        format("u3", 32, true, DType::F16),
        format("i5", 128, false, DType::F16),
        format("u1", 16, false, DType::BF16),
        format("f4e2m1", 32, false, DType::F16),
        format("f6e3m2", 64, false, DType::BF16),
        format("f8e4m3", 128, false, DType::F16),
        format("u8", 32, true, DType::BF16),
        // Lookup-table formats: IQ4_NL (decoded in the activation type), NF4 (in f32).
        WeightFormat::with_lut(Lut::IQ4_NL, 32, DType::BF16, DType::F16),
        WeightFormat::with_lut(Lut::NF4, 64, DType::F16, DType::BF16),
    ];
    for format in formats {
        let (k, n) = (128, 72);
        let weights = QuantizedWeights::random(format, k, n, &mut rng).unwrap();
        let layer = QuantizedLinear::new(&weights, &interpreter()).unwrap();
        assert!(!layer.is_gpu() && layer.compile_info().is_none());
        assert_eq!((layer.k(), layer.n(), layer.device_name().as_str()), (k, n, "interpreter"));
        for m in [1, 5, 17] {
            let x = activations(&format, m, k, &mut rng);
            let y = layer.forward(&x).unwrap();
            let ratio = worst_ratio(&weights, &x, &y);
            assert!(ratio <= 1.0, "{} m={m}: error / bound = {ratio}", format.kernel_name());
        }
        assert!(layer.forward(&[]).unwrap().is_empty());
    }
}

#[test]
fn forward_f32_rounds_to_the_activation_type() {
    let format = format("u4", 32, false, DType::F16);
    let weights = QuantizedWeights::random(format, 64, 16, &mut SplitMix64::new(2)).unwrap();
    let layer = QuantizedLinear::new(&weights, &interpreter()).unwrap();
    let x: Vec<f32> = (0..2 * 64).map(|i| (i as f32 - 64.0) / 50.0).collect();
    let codes: Vec<u16> = x.iter().map(|&v| DType::F16.encode(f64::from(v)) as u16).collect();
    let by_codes: Vec<f32> = layer
        .forward(&codes)
        .unwrap()
        .into_iter()
        .map(|c| DType::F16.decode_f64(u32::from(c)).unwrap() as f32)
        .collect();
    assert_eq!(layer.forward_f32(&x).unwrap(), by_codes);
}

#[test]
fn invalid_weights_and_inputs_are_typed_errors() {
    let fmt = format("u4", 32, true, DType::F16);
    let good = QuantizedWeights::random(fmt, 64, 8, &mut SplitMix64::new(3)).unwrap();
    let build = |w: &QuantizedWeights| QuantizedLinear::new(w, &interpreter()).unwrap_err();

    let mut short = good.clone();
    short.codes.pop();
    let e = build(&short);
    assert_eq!(e.to_string(), "invalid quantized weights: weight codes: 511 values, expected 512");

    let mut out_of_range = good.clone();
    out_of_range.codes[3] = 16;
    assert_eq!(build(&out_of_range).to_string(), "invalid quantized weights: weight code 3 is 0x10, not a code of u4");

    let mut ragged = good.clone();
    ragged.k = 48;
    assert!(matches!(build(&ragged), LinearError::Format(FormatError::KNotMultipleOfGroup { k: 48, group_size: 32 })));

    let mut float_zero = good.clone();
    float_zero.format.weight = "f4e2m1".parse().unwrap();
    assert!(matches!(build(&float_zero), LinearError::Format(FormatError::ZeroPointForFloat(_))));

    let mut odd_group = good.clone();
    odd_group.format.group_size = 24;
    assert!(matches!(build(&odd_group), LinearError::Format(FormatError::GroupSize(24))));

    let layer = QuantizedLinear::new(&good, &interpreter()).unwrap();
    assert_eq!(
        layer.forward(&[0; 65]).unwrap_err().to_string(),
        "x has 65 values, which is not a whole number of rows of K = 64"
    );
}
