//! The integration tests of `anybit-layouts`, in one harness.

#[path = "main/common.rs"]
mod common;
#[path = "main/expr.rs"]
mod expr;
#[path = "main/fragments.rs"]
mod fragments;
#[path = "main/laws.rs"]
mod laws;
#[path = "main/linear.rs"]
mod linear;
#[path = "main/ops.rs"]
mod ops;
#[path = "main/shared_global.rs"]
mod shared_global;
