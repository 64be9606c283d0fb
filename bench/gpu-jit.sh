#!/usr/bin/env bash
# GPU machine side of the runtime/JIT/host-API checks (after bench/prepare.sh and
# bench/prepare-jit.sh on the build machine, bench/out carried over): anybit's runtime on every
# kernel case (gpu-run), the runtime's own GPU tests, QuantizedLinear for every weight type
# against the interpreter, the example host programs (QuantizedLinear; kernels in Rust with
# PTX embedded at build time; the same kernel launched by a binary without LLVM), and every
# layer of an imported GGUF model run by `anybit linear` on the GPU and on the interpreter,
# compared bit for bit, and the tuner on one of them (`anybit tune`). Reports go to $OUT (or
# bench/out/report). Needs only a GPU and its driver: no Python, no Rust.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
report=${OUT:-bench/out/report}
mkdir -p "$report"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for f in bench/out/rt/*.xz; do
    # xz where installed, else Python's lzma.
    xz -dc "$f" > "$work/$(basename "$f" .xz)" 2>/dev/null \
        || python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$f" \
            > "$work/$(basename "$f" .xz)"
done
cp bench/out/rt/runtime-tests bench/out/rt/aot-runtime "$work/"
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
if [ -x "$work/quantized_linear" ]; then
    step quantized_linear_example "$work/quantized_linear"
    step quantized_linear_example_warm "$work/quantized_linear"
fi
step aot_example "$work/aot"
# The embedded PTX launched by a binary with no LLVM in it (its size and libraries recorded;
# --require-gpu: exit 2 rather than pass on the interpreter).
step aot_runtime_binary sh -c "stat -c '%n: %s bytes' bench/out/rt/aot-runtime; ldd bench/out/rt/aot-runtime || echo 'no ldd here'"
step aot_runtime_example "$work/aot-runtime" --require-gpu
step aot_runtime_example_decode "$work/aot-runtime" --require-gpu 1 4096 4096
# Every imported layer: GPU (the import's PTX) against the interpreter (its source).
model=bench/out/rt/model
while read -r layer k; do
    x="$model/x_$k.npy"
    step "linear_gpu_$layer" "$work/anybit" linear "$model" --layer "$layer" --input "$x" \
        --output "$work/$layer.gpu.npy" --device gpu
    step "linear_interp_$layer" "$work/anybit" linear "$model" --layer "$layer" --input "$x" \
        --output "$work/$layer.interp.npy" --device interp
    # mma sums in its own order: GPU and interpreter agree within the accumulation bound, not
    # always bit for bit; the report gives the largest difference against the largest |y|.
    python3 - "$work/$layer.gpu.npy" "$work/$layer.interp.npy" "$layer" <<'PY' 2>&1 | tee -a "$report/linear_compare.txt"
import os, sys
import numpy as np
gpu, interp, layer = sys.argv[1:]
if not os.path.exists(gpu):
    print(f"{layer}: no GPU output")
    sys.exit(0)
g, i = np.load(gpu).astype(np.float64), np.load(interp).astype(np.float64)
d = np.abs(g - i).max()
print(f"{layer}: max |gpu - interp| = {d:.3g} (max |y| {np.abs(i).max():.3g}); bit-identical: {bool((np.load(gpu) == np.load(interp)).all())}")
PY
done < "$model/layers.txt"
# The tuner on the first imported layer: every plan timed per M, the winners recorded in
# $ANYBIT_CACHE_DIR/tuning.json, then `anybit linear` on the GPU with the tuned plans.
read -r layer k < "$model/layers.txt"
step tune "$work/anybit" tune "$model" --layer "$layer" --ms 1,5,16,64 --runs 10
step linear_gpu_tuned "$work/anybit" linear "$model" --layer "$layer" --input "$model/x_$k.npy" \
    --output "$work/$layer.tuned.npy" --device gpu
exit $status
