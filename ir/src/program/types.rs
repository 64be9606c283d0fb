//! The types of values in a kernel.

use std::fmt;

use anybit_layouts::{RegisterLayout, SharedLayout};

use crate::dtype::DType;

/// The type of a value.
///
/// Scalars are *uniform*: every thread of the block sees the same value (block indices, loop
/// indices, parameters, index arithmetic). Tensors are tiles with a static shape; a register
/// tensor is spread over the block's threads by its register layout, a shared tensor lives in
/// the block's shared memory, and a global tensor is a view of a pointer parameter with a
/// shape and strides known only at run time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Type {
    /// A uniform scalar. `u1` is the boolean type.
    Scalar(DType),
    /// A pointer parameter to global memory holding elements of this type, packed.
    Pointer(DType),
    /// A view of global memory.
    Global(GlobalTensorType),
    /// A tile in shared memory.
    Shared(SharedTensorType),
    /// A tile in registers.
    Register(RegisterTensorType),
}

/// The type of a global view: element type and rank (the shape is dynamic).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GlobalTensorType {
    /// Element type.
    pub dtype: DType,
    /// Number of dimensions.
    pub rank: usize,
}

/// The type of a shared tile: element type, static shape, and its layout once known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedTensorType {
    /// Element type.
    pub dtype: DType,
    /// Static shape.
    pub shape: Vec<usize>,
    /// Placement in shared memory; `None` until layout inference fills it in.
    pub layout: Option<SharedLayout>,
}

/// The type of a register tile: element type, static shape, and its layout once known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterTensorType {
    /// Element type.
    pub dtype: DType,
    /// Static shape.
    pub shape: Vec<usize>,
    /// Distribution over threads and slots; `None` until layout inference fills it in.
    pub layout: Option<RegisterLayout>,
}

impl RegisterTensorType {
    /// A register tile type.
    pub fn new(dtype: DType, shape: Vec<usize>, layout: Option<RegisterLayout>) -> RegisterTensorType {
        RegisterTensorType { dtype, shape, layout }
    }

    /// A 2-D type with its dims exchanged (the same registers, relabeled); `None` unless 2-D.
    pub fn transposed(&self) -> Option<RegisterTensorType> {
        let [rows, cols] = self.shape[..] else { return None };
        let layout = match &self.layout {
            Some(l) => Some(l.transpose().ok()?),
            None => None,
        };
        Some(RegisterTensorType::new(self.dtype, vec![cols, rows], layout))
    }

    /// Number of elements (saturating: verified shapes never overflow).
    pub fn num_elements(&self) -> usize {
        self.shape.iter().fold(1usize, |n, &d| n.saturating_mul(d))
    }

    /// The same shape and layout with another element type.
    pub fn with_dtype(&self, dtype: DType) -> RegisterTensorType {
        RegisterTensorType { dtype, ..self.clone() }
    }
}

impl SharedTensorType {
    /// A shared tile type.
    pub fn new(dtype: DType, shape: Vec<usize>, layout: Option<SharedLayout>) -> SharedTensorType {
        SharedTensorType { dtype, shape, layout }
    }

    /// Number of elements (saturating).
    pub fn num_elements(&self) -> usize {
        self.shape.iter().fold(1usize, |n, &d| n.saturating_mul(d))
    }

    /// Bytes of shared memory the tile occupies: its layout's span (cosize) when known, else
    /// the packed size of its elements; a swizzle moves bytes within aligned chunks of
    /// 2^(base + bits) bytes, so the size rounds up to whole chunks.
    pub fn size_in_bytes(&self) -> usize {
        let elements = self.layout.as_ref().map_or(self.num_elements(), |l| l.cosize());
        let bytes = (elements.saturating_mul(self.dtype.bits() as usize)).div_ceil(8);
        match self.layout.as_ref().and_then(|l| l.swizzle()) {
            Some(swizzle) => bytes.next_multiple_of(1usize << (swizzle.base() + swizzle.bits()).min(40)),
            None => bytes,
        }
    }
}

impl Type {
    /// The element type of a scalar, pointer or tensor.
    pub fn dtype(&self) -> DType {
        match self {
            Type::Scalar(d) | Type::Pointer(d) => *d,
            Type::Global(t) => t.dtype,
            Type::Shared(t) => t.dtype,
            Type::Register(t) => t.dtype,
        }
    }

    /// The register tensor type, if this is one.
    pub fn as_register(&self) -> Option<&RegisterTensorType> {
        match self {
            Type::Register(t) => Some(t),
            _ => None,
        }
    }

    /// The shared tensor type, if this is one.
    pub fn as_shared(&self) -> Option<&SharedTensorType> {
        match self {
            Type::Shared(t) => Some(t),
            _ => None,
        }
    }

    /// The global view type, if this is one.
    pub fn as_global(&self) -> Option<&GlobalTensorType> {
        match self {
            Type::Global(t) => Some(t),
            _ => None,
        }
    }

    /// Whether this is a uniform scalar.
    pub fn is_scalar(&self) -> bool {
        matches!(self, Type::Scalar(_))
    }

    /// A short description for messages: `scalar i32`, `register f16[16, 64]`, …
    pub fn describe(&self) -> String {
        let shape = |s: &[usize]| s.iter().map(usize::to_string).collect::<Vec<_>>().join(", ");
        match self {
            Type::Scalar(d) => format!("scalar {d}"),
            Type::Pointer(d) => format!("pointer to {d}"),
            Type::Global(t) => format!("global {}, rank {}", t.dtype, t.rank),
            Type::Shared(t) => format!("shared {}[{}]", t.dtype, shape(&t.shape)),
            Type::Register(t) => format!("register {}[{}]", t.dtype, shape(&t.shape)),
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}
