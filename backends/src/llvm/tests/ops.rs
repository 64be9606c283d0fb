//! Every elementwise operation and cast on many types, on the host against the interpreter.
//!
//! Inputs are random codes over the whole code space (NaNs, infinities, subnormals and
//! extremes included); results must agree bit for bit, except for `exp`, `exp2`, `log`,
//! `log2` and `tanh`, which the interpreter computes with the host's `f64` functions and the
//! backend approximates (a difference of one code is allowed, two for `f32`).

use anybit_ir::dtype::DType;
use anybit_ir::interp::{Arg, Buffer, RunOptions, run_kernel};
use anybit_ir::program::{Kernel, ParamType};
use anybit_ir::random::SplitMix64;
use anybit_ir::verify::{VerifyOptions, verify_module};

const N: usize = 250;
const LAYOUT: &str = "local(2).spatial(64).local(2)";

pub(crate) fn parse(text: &str) -> Kernel {
    let module = anybit_ir::text::parse_module(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    verify_module(&module, &VerifyOptions::strict()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    module.kernels.into_iter().next().expect("a kernel")
}

fn random_codes(dtype: DType, n: usize, rng: &mut SplitMix64, nonzero: bool) -> Buffer {
    let codes: Vec<u32> = (0..n)
        .map(|_| {
            let bits = dtype.bits();
            let mask = if bits == 32 { u32::MAX } else { (1u32 << bits) - 1 };
            // Half the time a small value, so that arithmetic is not all overflow.
            let mut c = if rng.below(2) == 0 {
                (rng.next_u64() as u32) & mask
            } else if dtype.is_float() {
                dtype.encode(rng.uniform(-8.0, 8.0))
            } else {
                (rng.below(17) as i64 - 8) as u32 & mask
            };
            if nonzero && dtype.decode(c).ok().and_then(|v| v.finite()).is_some_and(|d| d.is_zero()) {
                c = 1;
            }
            c
        })
        .collect();
    Buffer::from_codes(dtype, &codes).expect("codes")
}

/// How close a host result must be to the interpreter's.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    Exact,
    /// Within this many codes (same sign), for approximated functions.
    Codes(u32),
}

fn close(dtype: DType, x: u32, y: u32, check: Check) -> bool {
    if x == y {
        return true;
    }
    let nan = |c: u32| dtype.decode(c).is_ok_and(|v| v.is_nan());
    match check {
        Check::Exact => false,
        Check::Codes(k) => {
            if nan(x) || nan(y) {
                return false;
            }
            let sign = 1u32 << (dtype.bits() - 1);
            if dtype.is_float() && (x & sign) != (y & sign) {
                // ±0 against a tiny value of the other sign.
                return (x & !sign) <= k && (y & !sign) <= k;
            }
            x.abs_diff(y) <= k
        }
    }
}

/// Runs a kernel whose pointer parameters after the inputs are outputs; compares them.
fn run_and_compare(kernel: &Kernel, args: Vec<Arg>, checks: &[Check]) {
    let kernel = &super::selected(kernel);
    super::kernels::assemble(kernel);
    let mut expected = args.clone();
    run_kernel(kernel, &mut expected, &RunOptions::default()).unwrap_or_else(|e| panic!("interpreter: {e}"));
    for run in super::host_runners() {
        let mut actual = args.clone();
        run(kernel, &mut actual).unwrap_or_else(|e| panic!("host: {e}"));
        compare_outputs(kernel, &expected, &actual, checks);
    }
}

/// Compares the output buffers (parameters named `o…`) of a host run with the interpreter's.
fn compare_outputs(kernel: &Kernel, expected: &[Arg], actual: &[Arg], checks: &[Check]) {
    let mut output = 0;
    let mut failures = Vec::new();
    for ((p, e), a) in kernel.params.iter().zip(expected).zip(actual) {
        let (Arg::Buffer(e), Arg::Buffer(a), ParamType::Pointer(dtype)) = (e, a, p.ty) else { continue };
        if !p.name.starts_with('o') {
            continue;
        }
        let check = checks.get(output).copied().unwrap_or(Check::Exact);
        output += 1;
        for (i, (x, y)) in e.codes().into_iter().zip(a.codes()).enumerate() {
            if !close(dtype, x, y, check) {
                failures.push(format!(
                    "`{}` [{i}]: interpreter {x:#x} ({}), host {y:#x} ({})",
                    p.name,
                    dtype.decode(x).map(|v| v.to_string()).unwrap_or_default(),
                    dtype.decode(y).map(|v| v.to_string()).unwrap_or_default()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}: {} mismatches:\n{}",
        kernel.name,
        failures.len(),
        failures[..failures.len().min(12)].join("\n")
    );
}

fn int_types() -> Vec<DType> {
    ["u1", "u3", "u8", "u16", "u32", "i2", "i5", "i8", "i16", "i32"].iter().map(|s| s.parse().expect("type")).collect()
}

fn float_types() -> Vec<DType> {
    [
        "f32",
        "f16",
        "bf16",
        "f8e4m3",
        "f8e5m2",
        "f4e2m1",
        "f6e3m2",
        "f3e1m1",
        "f16e4m11",
        "f12e8m3_ieee",
        "f14e10m3",
        "f16e1m14",
        "f9e5m3_nan",
    ]
    .iter()
    .map(|s| s.parse().expect("type"))
    .collect()
}

/// One kernel applying every `ops` entry (a statement producing `%r{i}` from `%x`, `%y`,
/// `%s`) and storing each result to output `o{i}` of type `out[i]`.
fn ops_kernel(dtype: DType, ops: &[(String, DType)]) -> Kernel {
    let mut params = format!("a: ptr {dtype}, b: ptr {dtype}, s: {dtype}, n: i32");
    let mut body = String::new();
    for (i, (stmt, out)) in ops.iter().enumerate() {
        params.push_str(&format!(", o{i}: ptr {out}"));
        body.push_str(&format!(
            "    {stmt}\n    %g{i} = global_view %o{i} [%n] strides [1]\n    store_global %r{i}, %g{i} [0]\n"
        ));
    }
    let text = format!(
        "kernel ops({params}) grid(1) warps(2) {{
    %ga = global_view %a [%n] strides [1]
    %gb = global_view %b [%n] strides [1]
    %x = load_global %ga [0] : {dtype}[256] layout {LAYOUT}
    %y = load_global %gb [0] : {dtype}[256] layout {LAYOUT}
{body}}}"
    );
    parse(&text)
}

fn ops_args(kernel: &Kernel, dtype: DType, nonzero_b: bool, rng: &mut SplitMix64) -> Vec<Arg> {
    let mut args = vec![
        Arg::Buffer(random_codes(dtype, N, rng, false)),
        Arg::Buffer(random_codes(dtype, N, rng, nonzero_b)),
        if dtype.is_float() { Arg::Float(1.5) } else { Arg::Int(1) },
        Arg::Int(N as i64),
    ];
    for p in kernel.params.iter().skip(4) {
        if let ParamType::Pointer(d) = p.ty {
            args.push(Arg::Buffer(Buffer::zeros(d, N).expect("zeros")));
        }
    }
    args
}

#[test]
fn integer_operations() {
    let mut rng = SplitMix64::new(21);
    let u1: DType = "u1".parse().expect("u1");
    for dtype in int_types() {
        let mut ops: Vec<(String, DType)> = Vec::new();
        for (i, op) in ["add", "sub", "mul", "div", "rem", "cdiv", "min", "max", "and", "or", "xor", "shl", "shr"]
            .iter()
            .enumerate()
        {
            // Divisors are made nonzero (masked elements load as 0).
            let divisor = if matches!(*op, "div" | "rem" | "cdiv") {
                format!("%z{i} = eq %y, 0\n    %d{i} = select %z{i}, 1, %y\n    ")
            } else {
                String::new()
            };
            let rhs = if divisor.is_empty() { "%y".to_string() } else { format!("%d{i}") };
            ops.push((format!("{divisor}%r{i} = {op} %x, {rhs}"), dtype));
        }
        let base = ops.len();
        for (j, op) in ["neg", "abs", "not"].iter().enumerate() {
            ops.push((format!("%r{} = {op} %x", base + j), dtype));
        }
        let base = ops.len();
        for (j, op) in ["eq", "ne", "lt", "le", "gt", "ge"].iter().enumerate() {
            ops.push((format!("%r{} = {op} %x, %y", base + j), u1));
        }
        let k = ops.len();
        ops.push((format!("%m{k} = lt %x, %y\n    %r{k} = select %m{k}, %x, %y"), dtype));
        let k = ops.len();
        ops.push((format!("%r{k} = add %x, %s"), dtype));
        let k = ops.len();
        ops.push((format!("%r{k} = sub 1, %x"), dtype));
        let kernel = ops_kernel(dtype, &ops);
        let args = ops_args(&kernel, dtype, true, &mut rng);
        run_and_compare(&kernel, args, &[]);
    }
}

#[test]
fn float_operations() {
    let mut rng = SplitMix64::new(22);
    let u1: DType = "u1".parse().expect("u1");
    for dtype in float_types() {
        let mut ops: Vec<(String, DType)> = Vec::new();
        let mut checks = Vec::new();
        for op in ["add", "sub", "mul", "div", "min", "max"] {
            ops.push((format!("%r{} = {op} %x, %y", ops.len()), dtype));
            checks.push(Check::Exact);
        }
        let fits_f32 = dtype.fits_f32();
        for op in ["neg", "abs", "sqrt", "rsqrt", "recip", "exp", "exp2", "log", "log2", "tanh"] {
            let approximate = matches!(op, "exp" | "exp2" | "log" | "log2" | "tanh");
            if approximate && !fits_f32 {
                continue;
            }
            ops.push((format!("%r{} = {op} %x", ops.len()), dtype));
            checks.push(if !approximate {
                Check::Exact
            } else if dtype == DType::F32 {
                Check::Codes(2)
            } else {
                Check::Codes(1)
            });
        }
        for op in ["eq", "ne", "lt", "le", "gt", "ge"] {
            ops.push((format!("%r{} = {op} %x, %y", ops.len()), u1));
            checks.push(Check::Exact);
        }
        let k = ops.len();
        ops.push((format!("%m{k} = lt %x, %y\n    %r{k} = select %m{k}, %x, %y"), dtype));
        ops.push((format!("%r{} = mul %x, %s", k + 1), dtype));
        ops.push((format!("%r{} = add %x, 0.3", k + 2), dtype));
        checks.extend([Check::Exact; 3]);
        let kernel = ops_kernel(dtype, &ops);
        let args = ops_args(&kernel, dtype, false, &mut rng);
        run_and_compare(&kernel, args, &checks);
    }
}

#[test]
fn casts_between_types() {
    let mut rng = SplitMix64::new(23);
    let types: Vec<DType> = [
        "u1",
        "u4",
        "u8",
        "u32",
        "i3",
        "i8",
        "i32",
        "f32",
        "f16",
        "bf16",
        "f8e4m3",
        "f8e5m2",
        "f4e2m1",
        "f6e3m2",
        "f16e4m11",
        "f14e10m3",
        "f12e8m3_ieee",
    ]
    .iter()
    .map(|s| s.parse().expect("type"))
    .collect();
    for &from in &types {
        let ops: Vec<(String, DType)> =
            types.iter().enumerate().map(|(i, &to)| (format!("%r{i} = cast %x : {to}"), to)).collect();
        let kernel = ops_kernel(from, &ops);
        let args = ops_args(&kernel, from, false, &mut rng);
        run_and_compare(&kernel, args, &[]);
    }
}

#[test]
fn wide_integers_round_once_into_floats() {
    // Integers beyond 2^24 into bf16, f16 and 8-bit floats (no double rounding).
    let u32t: DType = "u32".parse().expect("u32");
    let i32t: DType = "i32".parse().expect("i32");
    let targets: Vec<DType> =
        ["bf16", "f16", "f8e4m3", "f8e5m2", "f32", "f12e8m3_ieee"].iter().map(|s| s.parse().expect("t")).collect();
    let mut rng = SplitMix64::new(24);
    for from in [u32t, i32t] {
        let ops: Vec<(String, DType)> =
            targets.iter().enumerate().map(|(i, &to)| (format!("%r{i} = cast %x : {to}"), to)).collect();
        let kernel = ops_kernel(from, &ops);
        let mut args = ops_args(&kernel, from, false, &mut rng);
        // Values just around rounding boundaries of bf16: k·2^16 ± 2^15 ± 1, etc.
        let codes: Vec<u32> = (0..N)
            .map(|i| {
                let base = ((rng.next_u64() as u32) & 0x7fff_0000) | 0x0100_0000;
                let tweak = [0x8000u32, 0x8001, 0x7fff, 0x0080, 0x0081, 0x007f, 0][i % 7];
                base.wrapping_add(tweak)
            })
            .collect();
        args[0] = Arg::Buffer(Buffer::from_codes(from, &codes).expect("codes"));
        run_and_compare(&kernel, args, &[]);
    }
}

#[test]
fn unsupported_arithmetic_is_reported() {
    let t: DType = "f15e11m3".parse().expect("type");
    let kernel = ops_kernel(t, &[("%r0 = add %x, %y".to_string(), t)]);
    let module = anybit_ir::program::Module { layouts: vec![], kernels: vec![kernel] };
    for backend in super::backends() {
        let err = backend
            .compile(&module, crate::Target::Sm90, &crate::CompileOptions::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("`add`") && err.contains("%r0"), "{}: {err}", backend.name());
    }
}

/// `fma` (one rounding, `llvm.fma.f32`) and a load promised `inside` its view along K (no
/// bounds test there; rows past the view still read zeros) agree with the interpreter on
/// random operands, on the host as on the interpreter.
#[test]
fn fma_and_inside_loads_match_the_interpreter() {
    let kernel = parse(
        "
kernel fma_rows(a: ptr f32[m, k], b: ptr f32[m, k], c: ptr f32[m, k], o: ptr f32[m, k], m: i32, k: i32) grid(1) warps(1) {
    %av = global_view %a [%m, %k] strides [%k, 1]
    %bv = global_view %b [%m, %k] strides [%k, 1]
    %cv = global_view %c [%m, %k] strides [%k, 1]
    %ov = global_view %o [%m, %k] strides [%k, 1]
    %x = load_global %av [0, 8] : f32[8, 16] layout spatial(8,4).local(1,4) inside [1]
    %y = load_global %bv [0, 8] : f32[8, 16] layout spatial(8,4).local(1,4) inside [1]
    %z = load_global %cv [0, 8] : f32[8, 16] layout spatial(8,4).local(1,4)
    %d = fma %x, %y, %z
    store_global %d, %ov [0, 8]
}",
    );
    let mut rng = SplitMix64::new(23);
    let (m, k) = (5usize, 24usize);
    let args = vec![
        Arg::Buffer(random_codes(DType::F32, m * k, &mut rng, false)),
        Arg::Buffer(random_codes(DType::F32, m * k, &mut rng, false)),
        Arg::Buffer(random_codes(DType::F32, m * k, &mut rng, false)),
        Arg::Buffer(Buffer::zeros(DType::F32, m * k).expect("zeros")),
        Arg::Int(m as i64),
        Arg::Int(k as i64),
    ];
    run_and_compare(&kernel, args, &[Check::Exact]);
}
