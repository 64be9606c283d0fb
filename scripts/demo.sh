#!/usr/bin/env bash
# The main job, end to end: builds anybit and runs the low-bit weight matmul
# y = x · dequant(W) for ten weight formats on the CPU interpreter, printing each one's error
# against the exact f64 reference computed from the same quantized weights; compiles it to PTX;
# builds quantized linear layers through the host API (JIT + cache; GPU or interpreter);
# and, when a GPU is present (nvidia-smi and Python with CuPy), runs every compiled kernel on
# it and checks every output element (bench/prepare.sh + bench/gpu.sh). Along the way it shows
# the pieces: data types, layouts, kernel files checked, run and compiled from the command line.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

./scripts/setup.sh
cargo build --release --locked --bin anybit --example lowbit_matmul --example quantized_linear
anybit() { "$root/target/release/anybit" "$@"; }
show() { printf '\n$ anybit %s\n' "$*"; anybit "$@"; }

show dtype f4e2m1 --table
show dtype f8e4m3
show layout 'local(2,1).spatial(8,4).local(1,2)'
for file in examples/*.abk; do
    show check --strict "$file"
done
show run examples/lowbit_matmul_u4_g128.abk --interp --random 1 --arg m=16 --arg n=4096 --arg k=4096

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
