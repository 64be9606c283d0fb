//! `anybit run`: run one kernel of a file on the CPU interpreter, with inputs and outputs as
//! `.npy` files or random data.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anybit::ir::DType;
use anybit::ir::interp::{Arg, Buffer, RunOptions, run_kernel};
use anybit::ir::program::{Kernel, ParamType};
use anybit::ir::random::SplitMix64;
use anybit::npy::NpyArray;
use anybit::npy::buffers::{buffer_from_npy, npy_from_buffer};
use anyhow::{Context, Result, anyhow, bail};

/// What `anybit run` was asked to do.
#[derive(Debug)]
pub struct RunRequest {
    /// The kernel file.
    pub file: PathBuf,
    /// The kernel's name (may be omitted when the file has one kernel).
    pub kernel: Option<String>,
    /// `NAME=VALUE` (scalars) or `NAME=FILE.npy` (buffers).
    pub args: Vec<String>,
    /// `NAME=FILE.npy`: buffers written after the run.
    pub outputs: Vec<String>,
    /// Fill buffers not given with random values from this seed.
    pub random: Option<u64>,
}

fn split(spec: &str, flag: &str) -> Result<(String, String)> {
    let (name, value) = spec.split_once('=').ok_or_else(|| anyhow!("{flag} `{spec}`: expected NAME=VALUE"))?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
}

/// The generator of `--random`.
struct Random(SplitMix64);

impl Random {
    /// A random buffer: floats uniform in [−1, 1] (rounded to the type), integers any code.
    fn buffer(&mut self, dtype: DType, len: usize) -> Result<Buffer> {
        let buffer = if dtype.is_float() {
            let values: Vec<f64> = (0..len).map(|_| self.0.uniform(-1.0, 1.0)).collect();
            Buffer::from_f64(dtype, &values)
        } else {
            let mask = if dtype.bits() == 32 { u32::MAX } else { (1u32 << dtype.bits()) - 1 };
            let codes: Vec<u32> = (0..len).map(|_| self.0.next_u64() as u32 & mask).collect();
            Buffer::from_codes(dtype, &codes)
        };
        Ok(buffer?)
    }
}

fn pick_kernel<'m>(module: &'m anybit::ir::program::Module, name: Option<&str>, file: &Path) -> Result<&'m Kernel> {
    let names = || module.kernels.iter().map(|k| k.name.as_str()).collect::<Vec<_>>().join(", ");
    match name {
        Some(name) => module
            .kernel(name)
            .ok_or_else(|| anyhow!("{} has no kernel `{name}` (it has: {})", file.display(), names())),
        None if module.kernels.len() == 1 => Ok(&module.kernels[0]),
        None => {
            bail!("{} has {} kernels ({}): choose one with --kernel", file.display(), module.kernels.len(), names())
        }
    }
}

/// Runs the request; everything is checked before anything is written.
pub fn run(request: &RunRequest, out: &mut dyn Write) -> Result<()> {
    let module = super::source::load(&request.file, true)?;
    let kernel = pick_kernel(&module, request.kernel.as_deref(), &request.file)?;
    let mut given: BTreeMap<String, String> = BTreeMap::new();
    for spec in &request.args {
        let (name, value) = split(spec, "--arg")?;
        if kernel.param(&name).is_none() {
            bail!("--arg {name}: kernel `{}` has no parameter `{name}`", kernel.name);
        }
        if given.insert(name.clone(), value).is_some() {
            bail!("--arg {name} is given twice");
        }
    }
    let mut outputs: Vec<(usize, PathBuf)> = Vec::new();
    for spec in &request.outputs {
        let (name, path) = split(spec, "--out")?;
        let position = kernel
            .params
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| anyhow!("--out {name}: kernel `{}` has no parameter `{name}`", kernel.name))?;
        if !matches!(kernel.params[position].ty, ParamType::Pointer(_)) {
            bail!("--out {name}: `{name}` is a scalar parameter; only buffers can be written out");
        }
        outputs.push((position, PathBuf::from(path)));
    }

    // Scalars first: buffer shapes are expressions of them.
    let mut scalars: Vec<Option<i64>> = vec![None; kernel.params.len()];
    let mut args: Vec<Option<Arg>> = vec![None; kernel.params.len()];
    for (i, param) in kernel.params.iter().enumerate() {
        if let ParamType::Scalar(dtype) = param.ty {
            let text = given.get(&param.name).ok_or_else(|| {
                anyhow!("missing a value for scalar parameter `{}: {dtype}` (--arg {}=…)", param.name, param.name)
            })?;
            let arg = if dtype.is_integer() {
                let value: i64 = text.parse().with_context(|| {
                    format!("--arg {}={text}: `{}` is a {dtype}, expected an integer", param.name, param.name)
                })?;
                scalars[i] = Some(value);
                Arg::Int(value)
            } else {
                let value: f64 = text.parse().with_context(|| {
                    format!("--arg {}={text}: `{}` is a {dtype}, expected a number", param.name, param.name)
                })?;
                Arg::Float(value)
            };
            args[i] = Some(arg);
        }
    }
    let mut random = request.random.map(|seed| Random(SplitMix64::new(seed)));
    for (i, param) in kernel.params.iter().enumerate() {
        let ParamType::Pointer(dtype) = param.ty else { continue };
        let shape: Option<Vec<u64>> = if param.shape.is_empty() {
            None
        } else {
            let dims: Result<Vec<u64>, _> = param.shape.iter().map(|d| d.eval_any(&scalars)).collect();
            Some(dims.with_context(|| format!("the declared shape of `{}`", param.name))?)
        };
        let buffer = match given.get(&param.name) {
            Some(path) => {
                let bytes =
                    std::fs::read(path).with_context(|| format!("cannot read {path} (--arg {})", param.name))?;
                let array = NpyArray::read(&bytes).with_context(|| format!("{path} (--arg {})", param.name))?;
                buffer_from_npy(&array, dtype, shape.as_deref())
                    .map_err(|e| anyhow!("{path} (--arg {}: ptr {dtype}) {e}", param.name))?
            }
            None => {
                let Some(shape) = &shape else {
                    bail!(
                        "no data for buffer `{}`: give --arg {}=FILE.npy (the parameter declares no shape to allocate by)",
                        param.name,
                        param.name
                    );
                };
                let len = usize::try_from(shape.iter().product::<u64>()).context("buffer too large")?;
                match &mut random {
                    Some(random) => random.buffer(dtype, len)?,
                    None => Buffer::zeros(dtype, len)?,
                }
            }
        };
        args[i] = Some(Arg::Buffer(buffer));
    }
    let mut args: Vec<Arg> =
        args.into_iter().map(|a| a.ok_or_else(|| anyhow!("internal: missing argument"))).collect::<Result<_>>()?;

    let start = Instant::now();
    let report = run_kernel(kernel, &mut args, &RunOptions::default()).map_err(|e| {
        let text = std::fs::read_to_string(&request.file).unwrap_or_default();
        let name = request.file.display().to_string();
        let file = anybit::ir::diag::SourceFile::new(&name, &text);
        anyhow!("the kernel failed: {}", file.render(&e.to_diagnostic()).trim_start_matches("error: "))
    })?;
    let elapsed = start.elapsed();

    // Write every output (to temporary files first, renamed only when all are written).
    let mut written = Vec::new();
    for (position, path) in &outputs {
        let param = &kernel.params[*position];
        let Some(Arg::Buffer(buffer)) = args.get(*position) else { continue };
        let shape: Option<Vec<u64>> = param.shape.iter().map(|d| d.eval_any(&scalars).ok()).collect();
        let array = npy_from_buffer(buffer, shape.as_deref().filter(|s| !s.is_empty()));
        let tmp = path.with_extension("npy.tmp");
        std::fs::write(&tmp, array.write()).with_context(|| format!("cannot write {}", tmp.display()))?;
        written.push((tmp, path.clone()));
    }
    for (tmp, path) in &written {
        std::fs::rename(tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    }

    writeln!(
        out,
        "ran `{}` on the interpreter: grid {:?}, {} blocks, {} instructions, {:.3} s",
        kernel.name,
        report.grid,
        report.blocks,
        report.instructions,
        elapsed.as_secs_f64()
    )?;
    for (i, param) in kernel.params.iter().enumerate() {
        let Some(Arg::Buffer(buffer)) = args.get(i) else { continue };
        let summary = summarize(buffer);
        writeln!(
            out,
            "  {:<8} ptr {:<8} {:>9} elements  {summary}",
            param.name,
            buffer.dtype().to_string(),
            buffer.len()
        )?;
    }
    for (_, path) in &written {
        writeln!(out, "wrote {}", path.display())?;
    }
    Ok(())
}

/// A one-line digest of a buffer: its first values and a checksum of its bytes.
fn summarize(buffer: &Buffer) -> String {
    let checksum =
        buffer.bytes().iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let first: Vec<String> = buffer
        .codes()
        .iter()
        .take(4)
        .map(|&c| buffer.dtype().decode(c).map(|v| v.to_string()).unwrap_or_else(|_| format!("{c:#x}")))
        .collect();
    format!("[{}{}]  fnv64 {checksum:016x}", first.join(", "), if buffer.len() > 4 { ", …" } else { "" })
}
