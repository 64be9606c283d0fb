#!/usr/bin/env bash
# GPU machine side of the runtime/JIT/host-API checks (after bench/prepare.sh and
# bench/prepare-jit.sh on the build machine, bench/out carried over): anybit's runtime on every
# kernel case (gpu-run), the runtime's own GPU tests, QuantizedLinear for every weight type
# against the interpreter, and the example host program. Reports go to $OUT (or
# bench/out/report). Needs only a GPU and its driver: no Python, no Rust.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
report=${OUT:-bench/out/report}
mkdir -p "$report"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for f in bench/out/rt/*.gz; do gunzip -c "$f" > "$work/$(basename "$f" .gz)"; done
cp bench/out/rt/runtime-tests "$work/"
chmod +x "$work"/*
export ANYBIT_CACHE_DIR="$work/cache"
status=0
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
step() {
    local name=$1
    shift
    echo "== $name: $*"
    "$@" 2>&1 | tee "$report/$name.txt"
    local s=${PIPESTATUS[0]}
    echo "== $name: exit $s"
    [ "$s" -eq 0 ] || status=1
}
step gpu_run bench/out/bin/gpu-run bench/out/ptx
step runtime_tests "$work/runtime-tests" --nocapture --test-threads=1
step linear_gpu_tests "$work/anybit-tests" main::gpu --nocapture --test-threads=1
step quantized_linear_example "$work/quantized_linear"
step quantized_linear_example_warm "$work/quantized_linear"
exit $status
