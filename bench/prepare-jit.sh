#!/usr/bin/env bash
# Build machine side of the GPU checks of the runtime, the JIT and the host API: writes
# bench/out/rt/ (git-ignored), small enough to carry to the GPU machine with bench/out:
#   runtime-tests           anybit-runtime's test harness (no LLVM): hand-written PTX loaded and
#                           launched, JIT logs, target refusal, a failing kernel named at sync
#   anybit-tests.xz         the root test harness (LLVM linked); on the GPU run its `main::gpu`
#                           tests: QuantizedLinear for every weight type vs the interpreter
#   aot.xz                  the kernels-in-Rust example (examples/aot: PTX embedded at build
#                           time, kernel!, JIT)
#   aot-runtime             the same low-bit matmul from a binary without LLVM
#                           (examples/aot-runtime: anybit-runtime + anybit-macros only, PTX
#                           embedded at build time): ~1.7 MB stripped, carried uncompressed
#   anybit.xz, model/       the CLI and a GGUF model imported for sm_90 (every quantized GGUF
#                           type the fixture script writes) with activation batches, for
#                           `anybit linear --device gpu` against `--device interp`
#   quantized_linear.xz     the host-program example, only with ANYBIT_CARRY_EXAMPLE=1: each
#                           LLVM-linked binary is ~12 MB compressed and the device machine takes
#                           64 MiB in all
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
cargo build --release --locked --bin anybit
cargo build --release --locked -p anybit-example-aot
cargo build --release --locked -p anybit-example-aot-runtime
cp "$runtime" "$out/runtime-tests"
cp "$tests" "$out/anybit-tests"
cp "$target/release/anybit-example-aot" "$out/aot"
cp "$target/release/anybit-example-aot-runtime" "$out/aot-runtime"
cp "$target/release/anybit" "$out/anybit"
big=("$out/anybit-tests" "$out/aot" "$out/anybit")
if [ "${ANYBIT_CARRY_EXAMPLE:-0}" = 1 ]; then
    cargo build --release --locked --example quantized_linear
    cp "$target/release/examples/quantized_linear" "$out/quantized_linear"
    big+=("$out/quantized_linear")
fi
strip "$out"/* 2>/dev/null || true
echo "aot-runtime (no LLVM): $(stat -c %s "$out/aot-runtime") bytes stripped; aot (LLVM linked): $(stat -c %s "$out/aot") bytes stripped"
xz -T2 -6 "${big[@]}"
# An imported model: written by the gguf package, imported here for sm_90, run there.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/python frontend/tests/fixtures/gguf_fixture.py "$work" 7 model
"$target/release/anybit" import "$work/model.gguf" -o "$out/model" --target sm_90
# One f16 activation batch per distinct K, and the list of layers with theirs.
.venv/bin/python - "$out/model" <<'PY'
import json, sys
import numpy as np
d = sys.argv[1]
layers = json.load(open(f"{d}/manifest.json"))["layers"]
rng = np.random.default_rng(7)
for k in sorted({l["k"] for l in layers}):
    np.save(f"{d}/x_{k}.npy", rng.uniform(-1, 1, (16, k)).astype(np.float16))
with open(f"{d}/layers.txt", "w") as f:
    for l in layers:
        f.write(f"{l['name']} {l['k']}\n")
PY
echo "prepared $(ls "$out" | wc -l) files in $out ($(du -sh "$out" | cut -f1)); bench/out is $(du -sh bench/out | cut -f1)"
