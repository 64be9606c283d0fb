//! The manifest: what a host needs to know to launch compiled kernels without the compiler.
//!
//! `anybit compile` writes it as `manifest.json` next to one `.ptx` file per kernel. For each
//! kernel: its entry name and PTX file, its parameters in order (scalar or pointer, element type,
//! the declared buffer shape), the grid as expressions of the scalar parameters, threads per
//! block and shared memory bytes.
//!
//! **Parameter ABI.** Pointers are 8-byte global addresses. Every scalar parameter occupies 4
//! bytes: integers sign- (`iN`) or zero- (`uN`) extended to 32 bits, floats as their code
//! zero-extended to 32 bits (`f32` as its bits).

use anybit_ir::program::{GridExpr, Kernel, ParamType};
use serde::{Deserialize, Serialize};

use crate::target::Target;

/// The manifest of a compiled module.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The anybit version that compiled it.
    pub anybit_version: String,
    /// The target (`sm_90`).
    pub target: String,
    /// The PTX ISA version the files declare (`7.8`).
    pub ptx_version: String,
    /// One entry per kernel, in module order.
    pub kernels: Vec<KernelManifest>,
}

/// How to launch one kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelManifest {
    /// The kernel's name (also its PTX entry point).
    pub name: String,
    /// The PTX file, relative to the manifest.
    pub ptx_file: String,
    /// Parameters, in launch order.
    pub params: Vec<ParamManifest>,
    /// Grid size per axis (1 to 3), as expressions of the scalar parameters.
    pub grid: Vec<Expr>,
    /// The same expressions as text (`cdiv(n, 128)`).
    pub grid_text: Vec<String>,
    /// Threads per block (32 × warps).
    pub threads_per_block: u32,
    /// Shared memory per block, in bytes.
    pub shared_memory_bytes: u64,
    /// Whether the launch must opt in to more than 48 KiB of dynamic shared memory.
    pub needs_shared_memory_opt_in: bool,
}

/// One parameter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamManifest {
    /// Its name.
    pub name: String,
    /// `scalar` or `pointer`.
    pub kind: ParamKind,
    /// The scalar's type, or the pointed-to element type (`u4`, `f16`, …).
    pub dtype: String,
    /// Bits per element.
    pub bits: u32,
    /// For pointers: the declared buffer shape (empty when not declared).
    pub shape: Vec<Expr>,
}

/// Scalar or pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamKind {
    /// A 4-byte scalar (see the module doc for the ABI).
    Scalar,
    /// An 8-byte global pointer to packed elements.
    Pointer,
}

/// An integer expression of the scalar parameters, as JSON: `{"const": 128}`, `{"param": 5}`
/// (a position in the parameter list) or `{"op": "cdiv", "args": [a, b]}` with op one of add,
/// sub, mul, div (floor), cdiv, min, max.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Expr {
    /// A constant.
    Const {
        /// Its value.
        #[serde(rename = "const")]
        value: u64,
    },
    /// The parameter with this position.
    Param {
        /// Its position.
        param: usize,
    },
    /// `op(args[0], args[1])`.
    Op {
        /// The operation's name.
        op: String,
        /// Its two arguments.
        args: Vec<Expr>,
    },
}

impl Expr {
    /// The manifest form of a grid expression.
    pub fn from_grid(expr: &GridExpr) -> Expr {
        match expr {
            GridExpr::Const(c) => Expr::Const { value: *c },
            GridExpr::Param(p) => Expr::Param { param: *p },
            GridExpr::Binary(op, a, b) => {
                Expr::Op { op: op.name().to_owned(), args: vec![Expr::from_grid(a), Expr::from_grid(b)] }
            }
        }
    }
}

fn expr_text(kernel: &Kernel, expr: &GridExpr) -> String {
    match expr {
        GridExpr::Const(c) => c.to_string(),
        GridExpr::Param(p) => kernel.params.get(*p).map_or_else(|| format!("<param {p}>"), |p| p.name.clone()),
        GridExpr::Binary(op, a, b) => format!("{}({}, {})", op.name(), expr_text(kernel, a), expr_text(kernel, b)),
    }
}

impl KernelManifest {
    /// The manifest entry of a kernel compiled into `ptx_file` using `shared_memory_bytes`.
    pub fn new(kernel: &Kernel, ptx_file: String, shared_memory_bytes: u64) -> KernelManifest {
        KernelManifest {
            name: kernel.name.clone(),
            ptx_file,
            params: kernel
                .params
                .iter()
                .map(|p| {
                    let (kind, dtype) = match p.ty {
                        ParamType::Scalar(d) => (ParamKind::Scalar, d),
                        ParamType::Pointer(d) => (ParamKind::Pointer, d),
                    };
                    ParamManifest {
                        name: p.name.clone(),
                        kind,
                        dtype: dtype.to_string(),
                        bits: dtype.bits(),
                        shape: p.shape.iter().map(Expr::from_grid).collect(),
                    }
                })
                .collect(),
            grid: kernel.grid.iter().map(Expr::from_grid).collect(),
            grid_text: kernel.grid.iter().map(|g| expr_text(kernel, g)).collect(),
            threads_per_block: 32 * kernel.warps,
            shared_memory_bytes,
            needs_shared_memory_opt_in: shared_memory_bytes > Target::STATIC_SHARED_MEMORY_LIMIT as u64,
        }
    }
}

impl Manifest {
    /// An empty manifest for `target`.
    pub fn new(target: Target) -> Manifest {
        let (major, minor) = target.ptx_version();
        Manifest {
            anybit_version: env!("CARGO_PKG_VERSION").to_owned(),
            target: target.name().to_owned(),
            ptx_version: format!("{major}.{minor}"),
            kernels: Vec::new(),
        }
    }

    /// The JSON text, pretty-printed.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anybit_ir::program::GridOp;

    #[test]
    fn expressions_serialize_flat() {
        let e = Expr::from_grid(&GridExpr::binary(GridOp::CeilDiv, GridExpr::Param(2), GridExpr::Const(64)));
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, r#"{"op":"cdiv","args":[{"param":2},{"const":64}]}"#);
        assert_eq!(serde_json::from_str::<Expr>(&json).unwrap(), e);
    }
}
