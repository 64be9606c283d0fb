//! Bit-exact agreement with the `ml_dtypes` package (and numpy's float16), an independent
//! implementation of the formats: decode of every code, and encode of a dense set of values
//! (every value, every tie between neighbours and the f64 values just beside it, overflow
//! boundaries, infinities, NaNs of both signs, subnormal ties, random values and random bit
//! patterns). ml_dtypes converts as C++ does, so the comparison uses the non-saturating
//! conversion (round to nearest even for floats, truncation with wrap-around for integers).
//!
//! The inputs are `f32` values: ml_dtypes converts a float64 array by way of float32, rounding
//! twice, so only inputs exact in f32 have one right answer to compare. (Ties ± one f64 ulp are
//! checked against a brute-force oracle in `exhaustive.rs`.)

use std::io::Write;
use std::process::{Command, Stdio};

use anybit_ir::DType;
use anybit_ir::dtype::{Conversion, Overflow, Rounding};

use super::common::{Rng, dtype, python};

/// (reference type name, anybit name).
const PAIRS: &[(&str, &str)] = &[
    ("float8_e4m3fn", "f8e4m3"),
    ("float8_e5m2", "f8e5m2"),
    ("float6_e3m2fn", "f6e3m2"),
    ("float6_e2m3fn", "f6e2m3"),
    ("float4_e2m1fn", "f4e2m1"),
    ("float8_e4m3", "f8e4m3_ieee"),
    ("float8_e3m4", "f8e3m4_ieee"),
    ("bfloat16", "bf16"),
    ("float16", "f16"),
    ("int2", "i2"),
    ("int4", "i4"),
    ("uint2", "u2"),
    ("uint4", "u4"),
];

struct Reference {
    decoded: Vec<f64>,
    encoded: Vec<u32>,
}

fn reference(name: &str, bits: u32, inputs: &[f32]) -> Reference {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ml_dtypes_reference.py");
    let mut child = Command::new(python())
        .arg(script)
        .arg(name)
        .arg(bits.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Python reference");
    let payload: Vec<u8> = inputs.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&payload));
    let output = child.wait_with_output().expect("run the Python reference");
    writer.join().expect("writer thread").expect("write inputs");
    assert!(output.status.success(), "reference for {name} failed: {}", String::from_utf8_lossy(&output.stderr));
    let codes = 1usize << bits;
    let bytes = output.stdout;
    assert_eq!(bytes.len(), codes * 8 + inputs.len() * 4, "reference output size for {name}");
    let (decoded, encoded) = bytes.split_at(codes * 8);
    Reference {
        decoded: decoded.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
        encoded: encoded.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect(),
    }
}

fn push_with_neighbours(inputs: &mut Vec<f32>, x: f64) {
    let x = x as f32;
    for v in [x, x.next_up(), x.next_down()] {
        inputs.push(v);
        inputs.push(-v);
    }
}

/// The dense input set for a float type: every value, every midpoint, the overflow boundary,
/// specials, random magnitudes and random bit patterns.
fn float_inputs(t: DType, rng: &mut Rng) -> Vec<f32> {
    let mut magnitudes: Vec<f64> =
        (0..t.num_codes() as u32).filter_map(|c| t.decode_f64(c).ok()).filter(|v| v.is_finite() && *v >= 0.0).collect();
    magnitudes.sort_by(f64::total_cmp);
    magnitudes.dedup();
    let mut inputs = Vec::new();
    for pair in magnitudes.windows(2) {
        push_with_neighbours(&mut inputs, pair[0]);
        push_with_neighbours(&mut inputs, (pair[0] + pair[1]) / 2.0);
    }
    let max = t.max().to_f64().unwrap();
    let format = t.float_format().unwrap();
    // The value one step above max if the exponent range went on: the overflow tie is halfway.
    let step = 2f64.powi(t.max().leading_exponent().unwrap() as i32 - format.mantissa_bits() as i32);
    for x in [max, max + step / 2.0, max + step, 2.0 * max, 1e38, f64::from(f32::MAX), 1e-45, 1e-40] {
        push_with_neighbours(&mut inputs, x);
    }
    inputs.extend([f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -f32::NAN]);
    let (low, high) = (t.min_subnormal().map_or(1e-3, |d| d.to_f64().unwrap() / 8.0).ln(), (max * 8.0).ln());
    for _ in 0..5000 {
        let magnitude = (low + (high - low) * rng.unit()).exp() as f32;
        inputs.push(if rng.below(2) == 0 { magnitude } else { -magnitude });
    }
    for _ in 0..2000 {
        inputs.push(f32::from_bits(rng.next_u64() as u32));
    }
    inputs
}

/// Inputs for integer types: integers, halves and fractions around them, large values within
/// the range where C++ conversion is defined, specials.
fn integer_inputs(rng: &mut Rng) -> Vec<f32> {
    let mut inputs = Vec::new();
    for n in -40i16..=40 {
        let n = f32::from(n);
        inputs.extend([n, n + 0.5, n + 0.25, n + 0.75, n.next_up(), n.next_down()]);
    }
    inputs.extend([0.0, -0.0, 1073741824.0, -2147483648.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN]);
    for _ in 0..2000 {
        inputs.push(((rng.unit() - 0.5) * 2e6) as f32);
    }
    inputs
}

fn same_f64(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

#[test]
fn codecs_agree_bit_for_bit_with_ml_dtypes() {
    let mut rng = Rng::new(0x5eed_d7e5);
    let mut failures = Vec::new();
    for &(reference_name, name) in PAIRS {
        let t = dtype(name);
        let inputs = if t.is_float() { float_inputs(t, &mut rng) } else { integer_inputs(&mut rng) };
        let theirs = reference(reference_name, t.bits(), &inputs);
        for code in 0..t.num_codes() as u32 {
            let ours = t.decode_f64(code).unwrap();
            let expected = theirs.decoded[code as usize];
            if !same_f64(ours, expected) {
                failures.push(format!("{name} decode {code:#x}: ours {ours:e}, {reference_name} {expected:e}"));
            }
        }
        let conversion = Conversion {
            rounding: if t.is_float() { Rounding::NearestEven } else { Rounding::TowardZero },
            overflow: Overflow::NonSaturating,
        };
        for (&x, &expected) in inputs.iter().zip(&theirs.encoded) {
            // A type without NaN: ml_dtypes returns a zero of the opposite sign to the NaN's (an
            // artifact of its bit arithmetic); anybit returns +0. Nothing to compare.
            if x.is_nan() && !t.float_format().is_some_and(|f| f.has_nan()) && t.is_float() {
                continue;
            }
            let ours = t.encode_with(f64::from(x), conversion);
            // numpy's float16 keeps a NaN's payload bits; anybit makes the canonical quiet NaN
            // (payloads are not values). The sign must still agree.
            let both_nan = x.is_nan()
                && t.decode(ours).is_ok_and(|v| v.is_nan())
                && t.decode(expected).is_ok_and(|v| v.is_nan())
                && (ours ^ expected) >> (t.bits() - 1) == 0;
            if ours != expected && !both_nan {
                failures.push(format!(
                    "{name} encode {x:e} ({:#x}): ours {ours:#x}, {reference_name} {expected:#x}",
                    x.to_bits()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} disagreements, first ones:\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
}
