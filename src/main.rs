//! The `anybit` command-line tool.

mod cli;

use std::io::{self, BufWriter, ErrorKind, Write};
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let result = match &cli.command {
        Command::Dtype { name, table } => cli::dtype::run(name, *table, &mut out),
        Command::Layout { expr, table } => cli::layout::run(expr, *table, &mut out),
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
