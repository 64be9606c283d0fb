//! The `anybit` command-line tool.

mod cli;

use std::io::{self, BufWriter, ErrorKind, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// anybit: a compiler for GPU kernels over data types of any bit width.
#[derive(Debug, Parser)]
#[command(name = "anybit", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show a data type's properties, or the value of every code.
    ///
    /// NAME is uN (N = 1..32), iN (N = 2..32), fNeEmM (N = 1+E+M ≤ 16; suffix _finite, _nan or
    /// _ieee to pick the special-value policy), f16, bf16 or f32.
    Dtype {
        /// The type, e.g. f4e2m1, i3, f8e4m3, bf16.
        name: String,
        /// Print one line per code: the code in binary, then its exact decimal value.
        #[arg(long)]
        table: bool,
    },
    /// Show a register layout's shape, threads and slots per thread, or its whole map.
    ///
    /// EXPR composes primitives with '.', e.g. `local(2,1).spatial(8,4).local(1,2)`: local,
    /// column_local, spatial, column_spatial, replicated, or the general form
    /// `layout(dims=[[2,8],[4,2]], threads=[1,2], slots=[0,3])`.
    Layout {
        /// The layout expression.
        expr: String,
        /// Print one line per (thread, slot): thread, slot, then the logical coordinates.
        #[arg(long)]
        table: bool,
    },
    /// Parse and verify a kernel file (.abk), reporting every error with file:line:col.
    Check {
        /// The kernel file.
        file: PathBuf,
        /// Also require every register and shared layout (what running and compiling need).
        #[arg(long)]
        strict: bool,
    },
    /// Compile a kernel file to PTX: one .ptx file per kernel and manifest.json in DIR.
    Compile {
        /// The kernel file.
        file: PathBuf,
        /// The GPU target: sm_80, sm_86, sm_89, sm_90, sm_90a or sm_100a.
        #[arg(long, default_value = "sm_90")]
        target: String,
        /// The output folder (created if needed).
        #[arg(short = 'o', long = "out-dir", value_name = "DIR")]
        out_dir: PathBuf,
        /// What to write per kernel.
        #[arg(long, value_enum, default_value = "ptx")]
        emit: cli::compile::Emit,
        /// Optimization level: the pass pipeline run before code generation (0, 1 or 2).
        #[arg(short = 'O', long = "opt-level", default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=2))]
        opt_level: u8,
        /// Run these passes instead of the level's pipeline, in order (e.g. dce,infer-layouts).
        #[arg(long, value_delimiter = ',')]
        passes: Option<Vec<String>>,
        /// LLVM's optimization pipeline: full (default<O3>) or fast (a short pipeline, about
        /// 60% of the compile time).
        #[arg(long, default_value = "full")]
        llvm: String,
        /// Print the module in the kernel language after every pass (to stderr); the
        /// environment variable ANYBIT_PRINT_AFTER_ALL=1 does the same.
        #[arg(long)]
        print_after_all: bool,
        /// The code generator: llvm, or mlir when built with the `mlir` feature.
        #[arg(long, value_enum, default_value = "llvm")]
        backend: cli::compile::BackendChoice,
    },
    /// List a model file's tensors (name, type, shape, bytes) and metadata keys; reads only
    /// the header (GGUF v2/v3 for now).
    Inspect {
        /// The model file (`.gguf`).
        model: PathBuf,
    },
    /// Import a model: every quantized linear layer becomes a compiled kernel (one per
    /// distinct weight format) plus its weights re-packed in that kernel's layout, described by
    /// DIR/manifest.json. Progress goes to stderr; on failure nothing is left in DIR.
    ///
    /// MODEL is a GGUF file (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K
    /// layers import; unquantized tensors are left out).
    Import {
        /// The model file (`.gguf`).
        model: PathBuf,
        /// The output directory (must not exist, unless --force).
        #[arg(short = 'o', long = "out-dir", value_name = "DIR")]
        out_dir: PathBuf,
        /// The GPU target: sm_80, sm_86, sm_89, sm_90, sm_90a or sm_100a.
        #[arg(long, default_value = "sm_90")]
        target: String,
        /// The activation type of x and y: f16 or bf16.
        #[arg(long, default_value = "f16")]
        activation: String,
        /// LLVM's optimization pipeline: full or fast.
        #[arg(long, default_value = "full")]
        llvm: String,
        /// Replace DIR if it exists (once the new import is complete).
        #[arg(long)]
        force: bool,
    },
    /// Run one imported layer, y = x · dequant(W), on a batch of activations.
    ///
    /// x is a float16 or float32 .npy file of shape [M, K]; y is written with x's element type,
    /// shape [M, N]. On a GPU the PTX the import compiled is loaded (nothing is compiled); on
    /// the interpreter the kernel's source is run.
    Linear {
        /// The import directory (what `anybit import` wrote).
        dir: PathBuf,
        /// The layer's name, as in the model.
        #[arg(long)]
        layer: String,
        /// x: a .npy file, [M, K], float16 or float32.
        #[arg(long, value_name = "X.npy")]
        input: PathBuf,
        /// y: the .npy file to write, [M, N].
        #[arg(long, value_name = "Y.npy")]
        output: PathBuf,
        /// Where to run: auto (GPU 0 when there is one, else the interpreter), gpu, interp.
        #[arg(long, value_enum, default_value = "auto")]
        device: cli::linear::DeviceChoice,
    },
    /// Measure an imported layer's launch plans on GPU 0 and record the fastest.
    ///
    /// For each M, every plan the layer's kernels run without compiling — 16 or 64 rows per
    /// block, K split in 1, 2, 4, … — is timed (L2 flushed before each launch, the median of
    /// --runs); the fastest per M goes into the tuning table, which `anybit linear` and
    /// QuantizedLinear then use on the same GPU.
    Tune {
        /// The import directory (what `anybit import` wrote).
        dir: PathBuf,
        /// The layer's name, as in the model.
        #[arg(long)]
        layer: String,
        /// The rows M to tune for, comma-separated.
        #[arg(long, default_value = "1,4,16,64,256")]
        ms: String,
        /// Timed launches per plan.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// The tuning table to update (default: tuning.json in the compile cache's directory).
        #[arg(long, value_name = "FILE")]
        table: Option<PathBuf>,
    },
    /// Print a kernel file in canonical form.
    Fmt {
        /// The kernel file.
        file: PathBuf,
        /// Fail (exit 1) when the file is not in canonical form, instead of printing.
        #[arg(long, conflicts_with = "write")]
        check: bool,
        /// Rewrite the file in canonical form (refused when it has comments, which would be lost).
        #[arg(long)]
        write: bool,
    },
    /// Run a kernel of a file on the CPU interpreter.
    ///
    /// Scalars are given with --arg NAME=VALUE; buffers with --arg NAME=FILE.npy (f16 as
    /// float16, f32 as float32, bf16 as ml_dtypes' bfloat16 or uint16 bit patterns, 8/16/32-bit
    /// integers as themselves, 8-bit floats as raw bytes, every other type as packed uint8
    /// bytes), checked against the parameter's type and declared shape. Buffers not given are
    /// allocated by their declared shape: zeros, or random values with --random SEED.
    Run {
        /// The kernel file.
        file: PathBuf,
        /// Which kernel (needed when the file has several).
        #[arg(long)]
        kernel: Option<String>,
        /// Run on the CPU interpreter (the only device until the GPU runtime lands).
        #[arg(long)]
        interp: bool,
        /// NAME=VALUE for a scalar, NAME=FILE.npy for a buffer.
        #[arg(long = "arg", value_name = "NAME=VALUE")]
        args: Vec<String>,
        /// NAME=FILE.npy: write this buffer after the run.
        #[arg(long = "out", value_name = "NAME=FILE")]
        outputs: Vec<String>,
        /// Fill buffers not given with random values (floats in [-1, 1], integers any code).
        #[arg(long, value_name = "SEED")]
        random: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let result = match &cli.command {
        Command::Dtype { name, table } => cli::dtype::run(name, *table, &mut out),
        Command::Inspect { model } => cli::inspect::run(model, &mut out),
        Command::Import { model, out_dir, target, activation, llvm, force } => {
            let request = cli::import::ImportRequest {
                model,
                out_dir,
                target,
                activation,
                llvm,
                force: *force,
            };
            cli::import::run(&request, &mut out)
        }
        Command::Linear { dir, layer, input, output, device } => {
            let request = cli::linear::LinearRequest { dir, layer, input, output, device: *device };
            cli::linear::run(&request, &mut out)
        }
        Command::Tune { dir, layer, ms, runs, table } => {
            let request = cli::tune::TuneRequest { dir, layer, ms, runs: *runs, table: table.as_deref() };
            cli::tune::run(&request, &mut out)
        }
        Command::Layout { expr, table } => cli::layout::run(expr, *table, &mut out),
        Command::Check { file, strict } => cli::source::check(file, *strict, &mut out),
        Command::Compile { file, target, out_dir, emit, opt_level, passes, print_after_all, llvm, backend } => {
            let print = *print_after_all || std::env::var_os("ANYBIT_PRINT_AFTER_ALL").is_some_and(|v| v != "0");
            let pipeline = cli::compile::Pipeline {
                opt_level: *opt_level,
                passes: passes.clone(),
                print_after_all: print,
                llvm: llvm.clone(),
                backend: *backend,
            };
            cli::compile::compile(file, target, out_dir, *emit, &pipeline, &mut out)
        }
        Command::Fmt { file, check, write } => {
            let mode = match (check, write) {
                (true, _) => cli::source::FmtMode::Check,
                (_, true) => cli::source::FmtMode::Write,
                _ => cli::source::FmtMode::Print,
            };
            cli::source::fmt(file, mode, &mut out)
        }
        Command::Run { file, kernel, interp, args, outputs, random } => {
            if *interp {
                let request = cli::run::RunRequest {
                    file: file.clone(),
                    kernel: kernel.clone(),
                    args: args.clone(),
                    outputs: outputs.clone(),
                    random: *random,
                };
                cli::run::run(&request, &mut out)
            } else {
                Err(anyhow::anyhow!(
                    "running on a GPU needs the CUDA backend and runtime, which are not built yet: pass --interp to run on \
                     the CPU interpreter"
                ))
            }
        }
    }
    .and_then(|()| out.flush().map_err(Into::into));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`anybit … --table | head`) is the reader's choice, not an error.
        Err(err) if err.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == ErrorKind::BrokenPipe) => {
            ExitCode::SUCCESS
        }
        Err(err) => {
            // Nothing partial: output is only flushed on success... except what BufWriter
            // already wrote for long tables, which only happens after the input was accepted.
            drop(out);
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
