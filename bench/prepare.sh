#!/usr/bin/env bash
# Build machine side of the GPU check: writes bench/out/ (git-ignored) with
#   bin/gpu-cases      the case data generator (no LLVM, no CUDA; runs on the GPU machine)
#   bin/gpu-run        runs every case through anybit's own runtime and checks it (no LLVM)
#   kernels/<case>/    every case's and benchmark's kernel, as .abk
#   ptx/<case>/        those kernels compiled for TARGET (default sm_90): .ptx + manifest.json
#   ptx-mlir/<case>/   the same kernels compiled by the MLIR backend (skipped with MLIR=0)
# Then, on the GPU machine: bench/gpu.sh (carry bench/out).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
target=${1:-sm_90}
out=bench/out
rm -rf "$out"
mkdir -p "$out/bin"
./scripts/setup.sh
cargo build --release --locked -p anybit-bench --bin gpu-cases --bin gpu-run
mlir=${MLIR:-1}
if [ "$mlir" = 1 ]; then
    cargo build --release --locked --bin anybit --features mlir
else
    cargo build --release --locked --bin anybit
fi
cp target/release/gpu-cases target/release/gpu-run "$out/bin/"
strip "$out/bin/gpu-cases" "$out/bin/gpu-run" 2>/dev/null || true
# ANYBIT_BENCH_SCHEDULES=m16n128p1u1,m64n128p1u1,m8p2u2k4 adds benchmark modules with those
# schedules (n128: 128 columns per block; k4: a split of K in 4).
"$out/bin/gpu-cases" kernels "$out/kernels" ${ANYBIT_BENCH_SCHEDULES:+--schedules "$ANYBIT_BENCH_SCHEDULES"}
for dir in "$out"/kernels/*/; do
    case=$(basename "$dir")
    target/release/anybit compile "$dir/kernel.abk" --target "$target" -o "$out/ptx/$case" >/dev/null
    if [ -f "$dir/plans.json" ]; then cp "$dir/plans.json" "$out/ptx/$case/"; fi
    if [ "$mlir" = 1 ]; then
        target/release/anybit compile "$dir/kernel.abk" --target "$target" --backend mlir \
            -o "$out/ptx-mlir/$case" >/dev/null
        if [ -f "$dir/plans.json" ]; then cp "$dir/plans.json" "$out/ptx-mlir/$case/"; fi
    fi
done
echo "prepared $(ls "$out/ptx" | wc -l) compiled cases for $target in $out ($(du -sh "$out" | cut -f1))"
