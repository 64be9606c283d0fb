//! Every kernel case of `anybit-bench` — the examples in `examples/` and the low-bit matmul
//! for every weight type (both group sizes, zero points, f16/bf16 scales and activations,
//! M ∈ {1, 5, 16, 33}), for the formats with f32 scales and float offsets and for the
//! lookup-table formats (IQ4_NL, NF4) — runs on the interpreter and matches its f64 reference within its
//! bound (bit-exact where the arithmetic is exact). The GPU runner checks the same cases.

use anybit_bench::cases::{Sizes, all_cases};

#[test]
fn every_case_matches_its_reference_on_the_interpreter() {
    let cases = all_cases(Sizes::Small, 2026).unwrap();
    let offsets = anybit_bench::cases::scaled_offset_formats().unwrap().len();
    let luts = anybit_bench::cases::lut_formats().len();
    // Each low-bit format: its 8-, 16- and 64-row kernels.
    assert_eq!(cases.len(), 4 + 3 * (2 * anybit_bench::cases::WEIGHT_TYPES.len() + offsets + luts));
    let mut runs = 0;
    for case in &cases {
        let outputs = case.run_interpreter().unwrap();
        for (run, (_, after)) in case.runs.iter().zip(&outputs) {
            let violations = case.violations(run, after).unwrap();
            assert!(
                violations.is_empty(),
                "{} ({}): {:?}",
                case.name,
                run.label,
                &violations[..violations.len().min(3)]
            );
            runs += 1;
        }
    }
    assert!(runs >= 4 * 2 * anybit_bench::cases::WEIGHT_TYPES.len());
}

#[test]
fn a_wrong_output_is_caught() {
    // The checks are not vacuous: perturbing one output element by more than its bound fails.
    let cases = all_cases(Sizes::Small, 7).unwrap();
    for case in cases.iter().take(4) {
        let run = &case.runs[0];
        let (_, mut after) = case.run_interpreter().unwrap().into_iter().next().unwrap();
        let check = &run.checks[0];
        let buffer = after[check.param].buffer_mut().unwrap();
        let dtype = buffer.dtype();
        let value = buffer.to_f64().unwrap()[0];
        let wrong = dtype.encode(value + 1.0 + value.abs());
        buffer.set(0, wrong).unwrap();
        assert!(!case.violations(run, &after).unwrap().is_empty(), "{}", case.name);
    }
}
