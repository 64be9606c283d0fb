//! `anybit dtype`: the properties of a data type, or the table of all its codes.

use std::io::Write;

use anybit::ir::dtype::{DType, Dyadic, FloatFormat};
use anyhow::{Context, Result, bail};

/// The most bits a type may have for `--table` (4096 lines).
const TABLE_MAX_BITS: u32 = 12;

pub fn run(name: &str, table: bool, out: &mut dyn Write) -> Result<()> {
    let dtype: DType = name.parse().with_context(|| format!("cannot describe `{name}`"))?;
    if table { print_table(dtype, out) } else { print_properties(dtype, out) }
}

fn binary(dtype: DType, code: u32) -> String {
    format!("{code:0width$b}", width = dtype.bits() as usize)
}

fn print_table(dtype: DType, out: &mut dyn Write) -> Result<()> {
    if dtype.bits() > TABLE_MAX_BITS {
        bail!(
            "--table lists every code of types of at most {TABLE_MAX_BITS} bits; {dtype} has {} bits ({} codes)",
            dtype.bits(),
            dtype.num_codes()
        );
    }
    for code in 0..dtype.num_codes() as u32 {
        let value = dtype.decode(code)?;
        writeln!(out, "{} {value}", binary(dtype, code))?;
    }
    Ok(())
}

fn print_properties(dtype: DType, out: &mut dyn Write) -> Result<()> {
    let mut rows: Vec<(&str, String)> = vec![("type", dtype.to_string())];
    match dtype {
        DType::Uint(_) => rows.push(("kind", "unsigned integer".into())),
        DType::Int(_) => rows.push(("kind", "signed integer (two's complement)".into())),
        DType::Float(f) => rows.push((
            "kind",
            format!(
                "binary float: 1 sign, {} exponent, {} mantissa bit{}",
                f.exponent_bits(),
                f.mantissa_bits(),
                if f.mantissa_bits() == 1 { "" } else { "s" }
            ),
        )),
    }
    rows.push(("bits", dtype.bits().to_string()));
    rows.push(("signed", if dtype.is_signed() { "yes" } else { "no" }.into()));
    rows.push(("codes", dtype.num_codes().to_string()));
    if let DType::Float(f) = dtype {
        rows.push(("bias", f.bias().to_string()));
        rows.push(("special values", f.special().describe().into()));
    }
    rows.push(("max", readable(dtype.max())));
    rows.push(("min", readable(dtype.min())));
    if let DType::Float(f) = dtype {
        rows.extend(float_rows(dtype, f));
    }
    let width = rows.iter().map(|(key, _)| key.len()).max().unwrap_or(0);
    for (key, value) in rows {
        writeln!(out, "{key:width$}  {value}")?;
    }
    Ok(())
}

/// The exact decimal when it is short; otherwise an approximation and the exact binary form
/// (`f16e15m0`'s max has 4933 decimal digits).
fn readable(value: Dyadic) -> String {
    const LONGEST: usize = 40;
    let exact = value.to_string();
    if exact.len() <= LONGEST {
        return exact;
    }
    // Long decimals are printed in scientific form: keep 7 significant digits.
    let (mantissa, exponent) = exact.split_once('e').unwrap_or((&exact, "0"));
    let keep = mantissa.char_indices().nth(if value.is_negative() { 9 } else { 8 }).map_or(mantissa.len(), |(i, _)| i);
    let sign = if value.is_negative() { "-" } else { "" };
    let binary = match value.significand() {
        1 => format!("{sign}2^{}", value.exponent()),
        s => format!("{sign}{s}·2^{}", value.exponent()),
    };
    format!("≈ {}e{exponent} (exactly {binary})", &mantissa[..keep])
}

fn float_rows(dtype: DType, f: FloatFormat) -> Vec<(&'static str, String)> {
    let mut rows = Vec::new();
    if let Some(min_normal) = dtype.min_normal() {
        rows.push(("min normal", readable(min_normal)));
    }
    rows.push(("min subnormal", dtype.min_subnormal().map_or_else(|| "none (no mantissa bits)".into(), readable)));
    rows.push(("max code", binary(dtype, f.max_code())));
    if let Some(inf) = f.infinity_code() {
        rows.push(("inf code", binary(dtype, inf)));
    }
    if let Some(nan) = f.nan_code() {
        rows.push(("nan code", binary(dtype, nan)));
    }
    let exact_in = match (dtype.fits_f32(), dtype.fits_f64()) {
        (true, _) => "f32 and f64",
        (false, true) => "f64 (not f32)",
        (false, false) => "neither f32 nor f64 (exact decimal only)",
    };
    rows.push(("values exact in", exact_in.into()));
    rows
}
