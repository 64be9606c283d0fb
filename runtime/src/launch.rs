//! Launch arguments and their checks against a kernel's manifest — everything about a launch
//! that can be decided without a GPU.
//!
//! [`check_launch`] takes a [`KernelManifest`] and one [`ArgSpec`] per parameter and either
//! returns a [`CheckedLaunch`] — the parameter words in the manifest's ABI, the grid, block and
//! dynamic shared memory — or an [`ArgError`] naming the parameter and what was expected. What
//! it establishes is what makes handing the words to `cuLaunchKernel` sound:
//!
//! - as many arguments as parameters, each of the parameter's kind (scalar or pointer);
//! - every scalar inside its type's range (floats are rounded to their type), encoded as one
//!   32-bit word: integers sign- or zero-extended, floats as their code;
//! - every pointer to a buffer of the parameter's element type, aligned to the element size,
//!   holding at least as many elements as the declared shape says for these scalars, and not
//!   overlapping any other pointer argument (kernels declare pointers `noalias`);
//! - buffers the kernel may store to passed as writable ([`ArgSpec::Buffer::writable`]);
//! - the manifest's constraints hold (`k % 128 == 0`);
//! - the grid, evaluated from the manifest's expressions, within the hardware's limits, and
//!   the block size and shared memory sane.

use std::str::FromStr;

use anybit_ir::DType;
use anybit_ir::manifest::{ExprError, KernelManifest, ParamKind};

/// One argument, as the checks see it.
#[derive(Clone, Debug, PartialEq)]
pub enum ArgSpec {
    /// An integer scalar.
    Int(i64),
    /// A float scalar (rounded to the parameter's type).
    Float(f64),
    /// A device buffer.
    Buffer {
        /// Its element type.
        dtype: DType,
        /// Its number of elements.
        len: usize,
        /// Its device address.
        address: u64,
        /// Whether the launch may write it.
        writable: bool,
    },
}

impl ArgSpec {
    fn describe(&self) -> String {
        match self {
            ArgSpec::Int(v) => format!("the integer {v}"),
            ArgSpec::Float(v) => format!("the float {v}"),
            ArgSpec::Buffer { dtype, len, .. } => format!("a buffer of {len} {dtype}"),
        }
    }
}

/// A parameter's value in the launch ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamWord {
    /// A scalar: one 32-bit word.
    Scalar(u32),
    /// A pointer: a 64-bit device address.
    Pointer(u64),
}

/// A launch whose arguments passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedLaunch {
    /// One word per parameter, in order.
    pub params: Vec<ParamWord>,
    /// Blocks along x, y, z (a zero means there is nothing to launch).
    pub grid: [u32; 3],
    /// Threads per block.
    pub block: u32,
    /// Dynamic shared memory per block, in bytes (0 unless the kernel opts in above 48 KiB).
    pub dynamic_shared_memory: u32,
}

impl CheckedLaunch {
    /// Whether the grid is empty (some axis has no blocks): nothing to run.
    pub fn is_empty(&self) -> bool {
        self.grid.contains(&0)
    }
}

/// Why the arguments do not fit the kernel.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ArgError {
    /// The wrong number of arguments.
    #[error("{got} arguments given, the kernel has {expected} parameters ({names})")]
    Count {
        /// The parameter count.
        expected: usize,
        /// The argument count.
        got: usize,
        /// The parameter names, in order.
        names: String,
    },
    /// A parameter's type in the manifest is not a known type.
    #[error("parameter `{param}`: the manifest's type `{dtype}` is not a known type")]
    UnknownType {
        /// The parameter.
        param: String,
        /// The manifest's type name.
        dtype: String,
    },
    /// A scalar parameter got a buffer, or a pointer parameter a scalar.
    #[error("parameter `{param}`: expected {expected}, got {got}")]
    Kind {
        /// The parameter.
        param: String,
        /// What it takes (`a scalar i32`, `a buffer of u8`).
        expected: String,
        /// What it got.
        got: String,
    },
    /// An integer outside the parameter type's range.
    #[error("parameter `{param}`: {value} is outside the range of {dtype} ({min} to {max})")]
    Range {
        /// The parameter.
        param: String,
        /// The parameter's type.
        dtype: DType,
        /// The value given.
        value: i64,
        /// The smallest value.
        min: i64,
        /// The largest value.
        max: i64,
    },
    /// A scalar type the launch ABI cannot carry (wider than 32 bits).
    #[error("parameter `{param}`: scalars of type {dtype} do not fit the 32-bit launch ABI")]
    ScalarType {
        /// The parameter.
        param: String,
        /// Its type.
        dtype: DType,
    },
    /// A buffer of another element type.
    #[error("parameter `{param}`: expected a buffer of {expected}, got a buffer of {got}")]
    ElementType {
        /// The parameter.
        param: String,
        /// The parameter's element type.
        expected: DType,
        /// The buffer's.
        got: DType,
    },
    /// A buffer the kernel may write, passed read-only.
    #[error("parameter `{param}`: the kernel may store to it, so it must be passed writable (LaunchArg::Output)")]
    NotWritable {
        /// The parameter.
        param: String,
    },
    /// A misaligned buffer address.
    #[error("parameter `{param}`: address {address:#x} is not aligned to {align} bytes")]
    Misaligned {
        /// The parameter.
        param: String,
        /// The address.
        address: u64,
        /// The required alignment.
        align: u64,
    },
    /// A buffer smaller than the parameter's declared shape.
    #[error("parameter `{param}`: the buffer has {got} elements, its shape [{shape}] = [{dims}] needs {needed}")]
    TooSmall {
        /// The parameter.
        param: String,
        /// The shape as text (`m, k`).
        shape: String,
        /// The evaluated dimensions.
        dims: String,
        /// Elements needed.
        needed: u64,
        /// Elements given.
        got: usize,
    },
    /// A shape, grid or constraint expression that cannot be evaluated for these arguments.
    #[error("{what}: `{text}` {error}")]
    Expr {
        /// Which expression (`parameter `x`, shape dimension 0`, `grid axis 0`).
        what: String,
        /// The expression as text.
        text: String,
        /// Why it failed.
        error: ExprError,
    },
    /// Two pointer arguments overlap.
    #[error("parameters `{first}` and `{second}` overlap in device memory; the kernel requires distinct buffers")]
    Overlap {
        /// One parameter.
        first: String,
        /// The other.
        second: String,
    },
    /// A constraint of the manifest does not hold.
    #[error("the arguments break the kernel's constraint `{constraint}` ({values})")]
    Constraint {
        /// The constraint as text.
        constraint: String,
        /// The scalar arguments, `name = value, …`.
        values: String,
    },
    /// A grid size beyond the hardware's limit.
    #[error("grid axis {axis} (`{text}`) is {value} blocks, more than the limit of {limit}")]
    GridLimit {
        /// The axis (0 = x).
        axis: usize,
        /// The expression.
        text: String,
        /// Its value.
        value: u64,
        /// The limit.
        limit: u64,
    },
    /// A malformed launch configuration in the manifest.
    #[error("the manifest's launch configuration is invalid: {0}")]
    Config(String),
}

/// The largest grid along x, and along y and z.
const GRID_LIMITS: [u64; 3] = [(1 << 31) - 1, 65_535, 65_535];

/// The alignment a pointer to `dtype` needs: its size for 8-, 16-, 32- and 64-bit types, one
/// byte for the others (they are read as bytes).
pub fn alignment(dtype: DType) -> u64 {
    match dtype.bits() {
        b @ (8 | 16 | 32 | 64) => u64::from(b / 8),
        _ => 1,
    }
}

/// The bytes `len` packed elements of `dtype` occupy.
pub fn packed_bytes(dtype: DType, len: usize) -> u64 {
    (len as u64).saturating_mul(u64::from(dtype.bits())).div_ceil(8)
}

/// The 32-bit word of a scalar argument for a parameter of type `dtype` (the manifest's ABI).
pub fn scalar_word(param: &str, dtype: DType, arg: &ArgSpec) -> Result<u32, ArgError> {
    let bits = dtype.bits();
    if bits > 32 {
        return Err(ArgError::ScalarType { param: param.to_owned(), dtype });
    }
    let kind_error =
        || ArgError::Kind { param: param.to_owned(), expected: format!("a scalar {dtype}"), got: arg.describe() };
    match (arg, dtype) {
        (ArgSpec::Int(v), DType::Uint(_) | DType::Int(_)) => {
            let (min, max) = match dtype {
                DType::Int(_) => (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1),
                _ => (0, (1i64 << bits) - 1),
            };
            if *v < min || *v > max {
                return Err(ArgError::Range { param: param.to_owned(), dtype, value: *v, min, max });
            }
            // Sign extension of a signed value is its two's complement in 32 bits.
            Ok(*v as i32 as u32)
        }
        (ArgSpec::Int(v), DType::Float(_)) => Ok(dtype.encode(*v as f64)),
        (ArgSpec::Float(v), DType::Float(_)) => Ok(dtype.encode(*v)),
        _ => Err(kind_error()),
    }
}

/// Checks `args` against `kernel` (see the module doc for what is checked).
pub fn check_launch(kernel: &KernelManifest, args: &[ArgSpec]) -> Result<CheckedLaunch, ArgError> {
    let names = || kernel.params.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ");
    if args.len() != kernel.params.len() {
        return Err(ArgError::Count { expected: kernel.params.len(), got: args.len(), names: names() });
    }
    let mut dtypes = Vec::with_capacity(args.len());
    for p in &kernel.params {
        let dtype = DType::from_str(&p.dtype)
            .map_err(|_| ArgError::UnknownType { param: p.name.clone(), dtype: p.dtype.clone() })?;
        dtypes.push(dtype);
    }
    // Scalars first: shapes, constraints and the grid are expressions of them.
    let mut scalars: Vec<Option<i64>> = vec![None; args.len()];
    let mut words = Vec::with_capacity(args.len());
    for ((p, &dtype), arg) in kernel.params.iter().zip(&dtypes).zip(args) {
        match (p.kind, arg) {
            (ParamKind::Scalar, _) => {
                words.push(ParamWord::Scalar(scalar_word(&p.name, dtype, arg)?));
                if let ArgSpec::Int(v) = arg {
                    scalars[words.len() - 1] = Some(*v);
                }
            }
            (ParamKind::Pointer, ArgSpec::Buffer { address, .. }) => words.push(ParamWord::Pointer(*address)),
            (ParamKind::Pointer, _) => {
                return Err(ArgError::Kind {
                    param: p.name.clone(),
                    expected: format!("a buffer of {dtype}"),
                    got: arg.describe(),
                });
            }
        }
    }
    let scalar_text = || {
        kernel
            .params
            .iter()
            .zip(&scalars)
            .filter_map(|(p, v)| v.map(|v| format!("{} = {v}", p.name)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for constraint in &kernel.constraints {
        let holds = constraint.holds(&scalars).map_err(|error| ArgError::Expr {
            what: "constraint".into(),
            text: constraint.text().to_owned(),
            error,
        })?;
        if !holds {
            return Err(ArgError::Constraint { constraint: constraint.text().to_owned(), values: scalar_text() });
        }
    }
    // Pointers: element type, writability, alignment, size.
    let mut ranges: Vec<(usize, u64, u64)> = Vec::new();
    for (i, ((p, &dtype), arg)) in kernel.params.iter().zip(&dtypes).zip(args).enumerate() {
        let ArgSpec::Buffer { dtype: got, len, address, writable } = *arg else { continue };
        let param = || p.name.clone();
        if got != dtype {
            return Err(ArgError::ElementType { param: param(), expected: dtype, got });
        }
        if p.written && !writable {
            return Err(ArgError::NotWritable { param: param() });
        }
        let align = alignment(dtype).max(p.align.map_or(1, u64::from));
        if !address.is_multiple_of(align) {
            return Err(ArgError::Misaligned { param: param(), address, align });
        }
        if !p.shape.is_empty() {
            let text = p.shape.iter().map(|d| kernel.expr_text(d)).collect::<Vec<_>>().join(", ");
            let dims = p
                .shape
                .iter()
                .enumerate()
                .map(|(d, expr)| {
                    expr.eval(&scalars).map_err(|error| ArgError::Expr {
                        what: format!("parameter `{}`, shape dimension {d}", p.name),
                        text: kernel.expr_text(expr),
                        error,
                    })
                })
                .collect::<Result<Vec<u64>, _>>()?;
            let needed = dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d)).ok_or_else(|| ArgError::Expr {
                what: format!("parameter `{}`, shape", p.name),
                text: text.clone(),
                error: ExprError::OutOfRange(i128::MAX),
            })?;
            if (len as u64) < needed {
                let dims = dims.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
                return Err(ArgError::TooSmall { param: param(), shape: text, dims, needed, got: len });
            }
        }
        ranges.push((i, address, address.saturating_add(packed_bytes(dtype, len))));
    }
    for (a, &(i, start_i, end_i)) in ranges.iter().enumerate() {
        for &(j, start_j, end_j) in &ranges[a + 1..] {
            let overlap = start_i < end_j && start_j < end_i;
            if overlap {
                return Err(ArgError::Overlap {
                    first: kernel.params[i].name.clone(),
                    second: kernel.params[j].name.clone(),
                });
            }
        }
    }
    // The launch configuration.
    if kernel.grid.is_empty() || kernel.grid.len() > 3 {
        return Err(ArgError::Config(format!("{} grid axes (1 to 3 expected)", kernel.grid.len())));
    }
    let mut grid = [1u32; 3];
    for (axis, expr) in kernel.grid.iter().enumerate() {
        let text = kernel.expr_text(expr);
        let value = expr.eval(&scalars).map_err(|error| ArgError::Expr {
            what: format!("grid axis {axis}"),
            text: text.clone(),
            error,
        })?;
        let limit = GRID_LIMITS[axis];
        if value > limit {
            return Err(ArgError::GridLimit { axis, text, value, limit });
        }
        grid[axis] = value as u32;
    }
    let block = kernel.threads_per_block;
    if block == 0 || block > 1024 || !block.is_multiple_of(32) {
        return Err(ArgError::Config(format!("{block} threads per block (a multiple of 32 up to 1024 expected)")));
    }
    let dynamic_shared_memory = if kernel.needs_shared_memory_opt_in {
        u32::try_from(kernel.shared_memory_bytes)
            .map_err(|_| ArgError::Config(format!("{} bytes of shared memory", kernel.shared_memory_bytes)))?
    } else {
        0
    };
    Ok(CheckedLaunch { params: words, grid, block, dynamic_shared_memory })
}

/// The target a PTX text declares (`.target sm_90a` → `sm_90a`).
pub fn ptx_target(ptx: &str) -> Option<&str> {
    ptx.lines().find_map(|line| {
        let rest = line.trim().strip_prefix(".target")?;
        rest.split([' ', '\t', ',']).find(|w| !w.is_empty())
    })
}

/// The compute capability a PTX target needs, as `major * 10 + minor`, and whether it needs
/// exactly that one (architecture-specific `a`/`f` targets); `None` for a malformed name.
pub fn target_capability(target: &str) -> Option<(u32, bool)> {
    let digits = target.strip_prefix("sm_").or_else(|| target.strip_prefix("compute_"))?;
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    let number: u32 = digits[..end].parse().ok()?;
    match &digits[end..] {
        "" => Some((number, false)),
        "a" | "f" => Some((number, true)),
        _ => None,
    }
}

/// Whether a device of compute capability `major.minor` runs PTX for `target`; the error
/// says why not.
pub fn check_target(target: &str, major: u32, minor: u32) -> Result<(), String> {
    let device = major * 10 + minor;
    let Some((needed, exact)) = target_capability(target) else {
        return Err(format!("the PTX declares an unknown target `{target}`"));
    };
    if exact && needed != device {
        return Err(format!(
            "the PTX is built for {target}, whose architecture-specific features run only on compute capability {}.{}; this device has {major}.{minor}",
            needed / 10,
            needed % 10
        ));
    }
    if needed > device {
        return Err(format!(
            "the PTX is built for {target} (compute capability {}.{}), newer than this device's {major}.{minor}: compile for sm_{major}{minor} or older",
            needed / 10,
            needed % 10
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ptx_targets_parse_and_compare() {
        let ptx = "//\n.version 7.8\n.target sm_90\n.address_size 64\n";
        assert_eq!(ptx_target(ptx), Some("sm_90"));
        assert_eq!(ptx_target(".target sm_90a, debug"), Some("sm_90a"));
        assert_eq!(ptx_target(".version 8.0"), None);
        assert_eq!(target_capability("sm_100a"), Some((100, true)));
        assert_eq!(target_capability("sm_86"), Some((86, false)));
        assert_eq!(target_capability("gfx90a"), None);
        assert!(check_target("sm_80", 9, 0).is_ok());
        assert!(check_target("sm_90a", 9, 0).is_ok());
        let newer = check_target("sm_90", 8, 6).unwrap_err();
        assert!(newer.contains("newer than this device's 8.6"), "{newer}");
        let specific = check_target("sm_90a", 10, 0).unwrap_err();
        assert!(specific.contains("only on compute capability 9.0"), "{specific}");
    }

    #[test]
    fn scalar_words_follow_the_abi() {
        let t = |s: &str| DType::from_str(s).unwrap();
        assert_eq!(scalar_word("n", t("i32"), &ArgSpec::Int(-1)), Ok(0xFFFF_FFFF));
        assert_eq!(scalar_word("n", t("i8"), &ArgSpec::Int(-2)), Ok(0xFFFF_FFFE));
        assert_eq!(scalar_word("n", t("u8"), &ArgSpec::Int(255)), Ok(255));
        assert_eq!(scalar_word("x", t("f16"), &ArgSpec::Float(1.5)), Ok(0x3E00));
        assert_eq!(scalar_word("x", t("bf16"), &ArgSpec::Float(1.5)), Ok(0x3FC0));
        assert_eq!(scalar_word("x", t("f32"), &ArgSpec::Int(2)), Ok(2f32.to_bits()));
        assert!(matches!(scalar_word("n", t("u4"), &ArgSpec::Int(16)), Err(ArgError::Range { max: 15, .. })));
        assert!(matches!(scalar_word("n", t("i32"), &ArgSpec::Float(1.0)), Err(ArgError::Kind { .. })));
        assert_eq!(alignment(t("f16")), 2);
        assert_eq!(alignment(t("u4")), 1);
        assert_eq!(packed_bytes(t("u3"), 5), 2);
    }
}
