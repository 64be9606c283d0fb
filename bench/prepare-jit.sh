#!/usr/bin/env bash
# Build machine side of the GPU checks of the runtime, the JIT and the host API: writes
# bench/out/rt/ (git-ignored), small enough to carry to the GPU machine with bench/out:
#   runtime-tests           anybit-runtime's test harness (no LLVM): hand-written PTX loaded and
#                           launched, JIT logs, target refusal, a failing kernel named at sync
#   anybit-tests.gz         the root test harness (LLVM linked, gzipped); on the GPU run its
#                           `main::gpu` tests: QuantizedLinear for every weight type vs the interpreter
#   quantized_linear.gz     the host-program example (gzipped)
# Run bench/prepare.sh first (it writes bench/out/ptx and bench/out/bin/gpu-run); then, on the
# GPU machine: bench/gpu-jit.sh.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-target}
out=bench/out/rt
rm -rf "$out"
mkdir -p "$out"
executable() { sed -n 's/^ *Executable tests\/main.rs (\(.*\))$/\1/p' | tail -1; }
runtime=$(cargo test --release --locked -p anybit-runtime --test main --no-run 2>&1 | tee /dev/stderr | executable)
tests=$(cargo test --release --locked --test main --no-run 2>&1 | tee /dev/stderr | executable)
cargo build --release --locked --example quantized_linear
cp "$runtime" "$out/runtime-tests"
cp "$tests" "$out/anybit-tests"
cp "$target/release/examples/quantized_linear" "$out/quantized_linear"
strip "$out"/* 2>/dev/null || true
gzip -6 "$out/anybit-tests" "$out/quantized_linear"
echo "prepared $(ls "$out" | wc -l) files in $out ($(du -sh "$out" | cut -f1)); bench/out is $(du -sh bench/out | cut -f1)"
