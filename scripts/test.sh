#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up (idempotent), formatting, lints with warnings as
# errors, then every test of every crate (unit, integration, doc tests), then the MLIR backend's
# lints and tests with its feature on.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

./scripts/setup.sh

step() { printf '\n==> %s\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

# The MLIR backend (feature `mlir`, off by default): its lints, unit tests (host runs against the
# interpreter, ptxas, golden MLIR) and doc tests (lifetime misuse must not compile). From a
# clean target this adds about 6 min on 2 cores (bindgen for mlir-sys and tblgen, melior, and
# one more statically linked test binary); the tests themselves take seconds.
step "cargo clippy --features mlir"
cargo clippy -p anybit-backends -p anybit --features anybit/mlir --all-targets --locked -- -D warnings

step "cargo test --features mlir (the MLIR backend)"
cargo test -p anybit-backends --features mlir --locked --lib mlir::
cargo test -p anybit-backends --features mlir --locked --doc mlir

step "all tests passed"
