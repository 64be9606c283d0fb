#!/usr/bin/env bash
# The main job, end to end: builds anybit, writes a small quantized GGUF model with the `gguf`
# package (random weights; Q4_0, Q5_0 and Q8_0 layers), imports it (one kernel per weight
# format compiled to PTX, the weights re-packed into the kernels' layout, a manifest), and
# runs one of its layers on a batch of activations — on the GPU when there is one, else on
# the CPU interpreter — checking y against the package's own dequantized weights in f64.
# Then the pieces: the low-bit weight matmul y = x · dequant(W) for ten weight formats on the
# interpreter against the exact f64 reference; compiled to PTX; quantized linear layers through
# the host API (JIT + cache; GPU or interpreter); data types, layouts, kernel files checked, run
# and compiled from the command line; and, when a GPU is present (nvidia-smi and Python with
# CuPy), every compiled kernel run on it with every output element checked (bench/prepare.sh +
# bench/gpu.sh).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

./scripts/setup.sh
cargo build --release --locked --bin anybit --example lowbit_matmul --example quantized_linear
anybit() { "$root/target/release/anybit" "$@"; }
show() { printf '\n$ anybit %s\n' "$*"; anybit "$@"; }

# The import: on a GPU the kernels are compiled for its architecture, elsewhere for sm_90.
target=sm_90
if command -v nvidia-smi >/dev/null 2>&1 && cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1); then
    case "sm_${cap//./}" in sm_80 | sm_86 | sm_89 | sm_90) target="sm_${cap//./}" ;; esac
fi
model=target/demo-model
rm -rf "$model"
printf '\n$ python frontend/tests/fixtures/gguf_fixture.py %s 7 model   # a small GGUF model, written by the gguf package\n' "$model"
.venv/bin/python frontend/tests/fixtures/gguf_fixture.py "$model" 7 model
show inspect "$model/model.gguf"
show import "$model/model.gguf" -o "$model/imported" --target "$target"
.venv/bin/python - "$model" <<'PY'
import sys
import numpy as np
np.save(f"{sys.argv[1]}/x.npy", np.random.default_rng(7).uniform(-1, 1, (16, 64)).astype(np.float16))
PY
show linear "$model/imported" --layer blk.0.ffn_up.weight --input "$model/x.npy" --output "$model/y.npy"
.venv/bin/python - "$model" <<'PY'
import sys
import numpy as np
d = sys.argv[1]
x = np.load(f"{d}/x.npy").astype(np.float64)
y = np.load(f"{d}/y.npy").astype(np.float64)
w = np.fromfile(f"{d}/blk.0.ffn_up.weight.f32", "<f4").astype(np.float64).reshape(y.shape[1], x.shape[1])
ref = x @ w.T
err = np.abs(y - ref).max()
print(f"y {y.shape}: largest |y - x·Wᵀ| = {err:.3g} (|x·Wᵀ| up to {np.abs(ref).max():.3g}; W dequantized by the gguf package, in f64)")
assert err <= 1e-2 * max(1.0, np.abs(ref).max()), "the imported layer disagrees with the gguf package"
PY

show dtype f4e2m1 --table
show dtype f8e4m3
show layout 'local(2,1).spatial(8,4).local(1,2)'
for file in examples/*.abk; do
    show check --strict "$file"
done
show run examples/lowbit_matmul_u4_g128.abk --kernel lowbit_matmul_u4_g128_sf16_xf16_zp --interp --random 1 \
    --arg m=8 --arg n=4096 --arg k=4096 --arg splits=1

show compile examples/lowbit_matmul_u4_g128.abk --target sm_90 -o target/demo-ptx

printf '\n$ cargo run --release --example lowbit_matmul\n'
"$root/target/release/examples/lowbit_matmul"

# The host API: layers JIT-compiled through the compile cache, run on the GPU through the
# runtime when one is present, on the interpreter otherwise.
printf '\n$ cargo run --release --example quantized_linear\n'
"$root/target/release/examples/quantized_linear"

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1 && python3 -c 'import cupy' 2>/dev/null; then
    printf '\n$ bench/prepare.sh && bench/gpu.sh   # a GPU is present: every kernel on the device\n'
    ./bench/prepare.sh sm_90
    ./bench/gpu.sh
else
    printf '\nno GPU here (nvidia-smi and CuPy not both available): the interpreter was the device\n'
fi
