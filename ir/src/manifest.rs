//! The manifest: what a host needs to know to launch compiled kernels without the compiler.
//!
//! `anybit compile` writes it as `manifest.json` next to one `.ptx` file per kernel. For each
//! kernel: its entry name and PTX file, its parameters in order (scalar or pointer, element type,
//! the declared buffer shape), the grid as expressions of the scalar parameters, threads per
//! block and shared memory bytes.
//!
//! **Parameter ABI.** Pointers are 8-byte global addresses. Every scalar parameter occupies 4
//! bytes: integers sign- (`iN`) or zero- (`uN`) extended to 32 bits, floats as their code
//! zero-extended to 32 bits (`f32` as its bits). Pointer arguments must be aligned to their
//! element size and must not overlap each other (kernels declare them `noalias`).
//!
//! **Constraints.** A kernel may also state conditions on its scalar arguments that its types
//! do not express (`k % 128 == 0`), as [`Constraint`]s; hosts check them before launching.
//!
//! The manifest lives in `anybit-ir` (not in the backends) so that hosts — the runtime, the GPU
//! runners — can read it without linking a code generator.

use serde::{Deserialize, Serialize};

use crate::program::{GridExpr, GridOp, Kernel, ParamType};
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
    /// Conditions on the scalar arguments beyond their types (empty: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
}

/// A condition on a kernel's scalar arguments, checked by hosts before a launch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Constraint {
    /// `value` is a multiple of `divisor`.
    MultipleOf {
        /// The constrained expression.
        value: Expr,
        /// What it must be a multiple of.
        divisor: Expr,
        /// The condition as text (`k % 128 == 0`), for messages.
        text: String,
    },
    /// `value ≥ min`.
    AtLeast {
        /// The constrained expression.
        value: Expr,
        /// Its smallest allowed value.
        min: Expr,
        /// The condition as text (`m >= 1`), for messages.
        text: String,
    },
}

impl Constraint {
    /// The condition as text.
    pub fn text(&self) -> &str {
        match self {
            Constraint::MultipleOf { text, .. } | Constraint::AtLeast { text, .. } => text,
        }
    }

    /// Whether the scalar arguments (integer values by parameter position) meet it.
    pub fn holds(&self, scalars: &[Option<i64>]) -> Result<bool, ExprError> {
        Ok(match self {
            Constraint::MultipleOf { value, divisor, .. } => {
                let divisor = divisor.eval_signed(scalars)?;
                if divisor == 0 {
                    return Err(ExprError::DivisionByZero);
                }
                value.eval_signed(scalars)? % divisor == 0
            }
            Constraint::AtLeast { value, min, .. } => value.eval_signed(scalars)? >= min.eval_signed(scalars)?,
        })
    }
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
    /// For pointers: whether the kernel may store through it (true when that cannot be told,
    /// and for manifests written before this field existed). Always false for scalars.
    #[serde(default = "default_written")]
    pub written: bool,
    /// For pointers: the alignment the address needs, in bytes, when the kernel declares more
    /// than the element's (`align 16`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub align: Option<u32>,
}

fn default_written() -> bool {
    true
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

/// Why a manifest expression could not be evaluated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    /// A parameter is missing, or not an integer scalar.
    #[error("uses parameter {0}, which has no integer value")]
    MissingParam(usize),
    /// A division by zero.
    #[error("divides by zero")]
    DivisionByZero,
    /// The result is negative or too large.
    #[error("evaluates to {0}, which is out of range")]
    OutOfRange(i128),
    /// An unknown operation or a wrong number of arguments.
    #[error("is malformed: {0}")]
    Malformed(String),
}

impl Expr {
    /// The grid expression this stands for; `None` for an unknown operation or a wrong number
    /// of arguments (a malformed manifest).
    pub fn to_grid(&self) -> Option<GridExpr> {
        Some(match self {
            Expr::Const { value } => GridExpr::Const(*value),
            Expr::Param { param } => GridExpr::Param(*param),
            Expr::Op { op, args } => match args.as_slice() {
                [a, b] => GridExpr::binary(GridOp::from_name(op)?, a.to_grid()?, b.to_grid()?),
                _ => return None,
            },
        })
    }

    /// The value as a nonnegative 64-bit size, given the integer scalar arguments by
    /// parameter position (what grid sizes and buffer shapes are).
    pub fn eval(&self, scalars: &[Option<i64>]) -> Result<u64, ExprError> {
        let value = self.eval_signed(scalars)?;
        u64::try_from(value).map_err(|_| ExprError::OutOfRange(value))
    }

    /// The value with its sign.
    fn eval_signed(&self, scalars: &[Option<i64>]) -> Result<i128, ExprError> {
        // Sums and differences of sizes below 2^64 never overflow an i128; products are checked.
        Ok(match self {
            Expr::Const { value } => i128::from(*value),
            Expr::Param { param } => {
                i128::from(scalars.get(*param).copied().flatten().ok_or(ExprError::MissingParam(*param))?)
            }
            Expr::Op { op, args } => {
                let (a, b) = match args.as_slice() {
                    [a, b] => (a.eval_signed(scalars)?, b.eval_signed(scalars)?),
                    _ => return Err(ExprError::Malformed(format!("`{op}` takes 2 arguments, not {}", args.len()))),
                };
                let nonzero = |b: i128| if b == 0 { Err(ExprError::DivisionByZero) } else { Ok(b) };
                let clamp =
                    |v: Option<i128>| v.filter(|v| v.unsigned_abs() < 1 << 100).ok_or(ExprError::OutOfRange(i128::MAX));
                match GridOp::from_name(op) {
                    Some(GridOp::Add) => clamp(a.checked_add(b))?,
                    Some(GridOp::Sub) => clamp(a.checked_sub(b))?,
                    Some(GridOp::Mul) => clamp(a.checked_mul(b))?,
                    Some(GridOp::Div) => a.div_euclid(nonzero(b)?),
                    Some(GridOp::CeilDiv) => -((-a).div_euclid(nonzero(b)?)),
                    Some(GridOp::Min) => a.min(b),
                    Some(GridOp::Max) => a.max(b),
                    None => return Err(ExprError::Malformed(format!("unknown operation `{op}`"))),
                }
            }
        })
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
        let stored = crate::interp::stored_params(kernel);
        KernelManifest {
            name: kernel.name.clone(),
            ptx_file,
            params: kernel
                .params
                .iter()
                .enumerate()
                .map(|(i, p)| {
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
                        written: kind == ParamKind::Pointer && stored.get(i).copied().unwrap_or(true),
                        align: p.align,
                    }
                })
                .collect(),
            grid: kernel.grid.iter().map(Expr::from_grid).collect(),
            grid_text: kernel.grid.iter().map(|g| expr_text(kernel, g)).collect(),
            threads_per_block: 32 * kernel.warps,
            shared_memory_bytes,
            needs_shared_memory_opt_in: shared_memory_bytes > Target::STATIC_SHARED_MEMORY_LIMIT as u64,
            constraints: kernel
                .assumptions
                .iter()
                .filter_map(|a| {
                    let name = &kernel.params.get(a.param)?.name;
                    Some(Constraint::MultipleOf {
                        value: Expr::Param { param: a.param },
                        divisor: Expr::Const { value: a.divisor },
                        text: format!("{name} % {} == 0", a.divisor),
                    })
                })
                .collect(),
        }
    }

    /// The position of the parameter called `name`.
    pub fn param_index(&self, name: &str) -> Option<usize> {
        self.params.iter().position(|p| p.name == name)
    }

    /// An expression as text, parameters by name (`cdiv(n, 64)`).
    pub fn expr_text(&self, expr: &Expr) -> String {
        match expr {
            Expr::Const { value } => value.to_string(),
            Expr::Param { param } => {
                self.params.get(*param).map_or_else(|| format!("<param {param}>"), |p| p.name.clone())
            }
            Expr::Op { op, args } => {
                let args: Vec<String> = args.iter().map(|a| self.expr_text(a)).collect();
                format!("{op}({})", args.join(", "))
            }
        }
    }

    /// Adds the constraint that the scalar parameter `param` is a multiple of `divisor`;
    /// `None` when there is no such parameter.
    pub fn require_multiple(&mut self, param: &str, divisor: u64) -> Option<&mut KernelManifest> {
        let index = self.param_index(param)?;
        self.constraints.push(Constraint::MultipleOf {
            value: Expr::Param { param: index },
            divisor: Expr::Const { value: divisor },
            text: format!("{param} % {divisor} == 0"),
        });
        Some(self)
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

    /// A manifest read from its JSON text.
    pub fn from_json(text: &str) -> Result<Manifest, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The kernel called `name`.
    pub fn kernel(&self, name: &str) -> Option<&KernelManifest> {
        self.kernels.iter().find(|k| k.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_serialize_flat() {
        let e = Expr::from_grid(&GridExpr::binary(GridOp::CeilDiv, GridExpr::Param(2), GridExpr::Const(64)));
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, r#"{"op":"cdiv","args":[{"param":2},{"const":64}]}"#);
        assert_eq!(serde_json::from_str::<Expr>(&json).unwrap(), e);
    }

    fn param(p: usize) -> Expr {
        Expr::Param { param: p }
    }

    fn op(name: &str, a: Expr, b: Expr) -> Expr {
        Expr::Op { op: name.into(), args: vec![a, b] }
    }

    #[test]
    fn expressions_evaluate_like_grid_expressions() {
        let e = op("cdiv", op("mul", param(0), Expr::Const { value: 3 }), Expr::Const { value: 8 });
        assert_eq!(e.eval(&[Some(72)]), Ok(27));
        assert_eq!(e.to_grid().unwrap().eval_any(&[Some(72)]), Ok(27));
        assert_eq!(e.eval(&[None]), Err(ExprError::MissingParam(0)));
        assert_eq!(op("div", param(0), Expr::Const { value: 0 }).eval(&[Some(1)]), Err(ExprError::DivisionByZero));
        assert_eq!(op("sub", param(0), Expr::Const { value: 2 }).eval(&[Some(1)]), Err(ExprError::OutOfRange(-1)));
        assert!(matches!(op("pow", param(0), param(0)).eval(&[Some(1)]), Err(ExprError::Malformed(_))));
        assert!(op("pow", param(0), param(0)).to_grid().is_none());
    }

    #[test]
    fn constraints_check_and_round_trip() {
        let c =
            Constraint::MultipleOf { value: param(1), divisor: Expr::Const { value: 64 }, text: "k % 64 == 0".into() };
        assert_eq!(c.holds(&[None, Some(128)]), Ok(true));
        assert_eq!(c.holds(&[None, Some(96)]), Ok(false));
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, r#"{"kind":"multiple_of","value":{"param":1},"divisor":{"const":64},"text":"k % 64 == 0"}"#);
        assert_eq!(serde_json::from_str::<Constraint>(&json).unwrap(), c);
        let at_least = Constraint::AtLeast { value: param(0), min: Expr::Const { value: 1 }, text: "m >= 1".into() };
        assert_eq!(at_least.holds(&[Some(0)]), Ok(false));
        assert_eq!(at_least.text(), "m >= 1");
    }
}
