#!/usr/bin/env bash
# GPU machine side, one command: generates every case's data with the interpreter
# (bench/out/bin/gpu-cases), runs every compiled kernel on the GPU and checks every output
# element (bench/gpu_check.py), then times the low-bit matmul against cuBLAS bf16 and torch's
# int4 tinygemm in the same run (bench/gpu_bench.py); both again with the MLIR backend's PTX
# (bench/out/ptx-mlir) when prepare.sh wrote it. Reports go to $OUT (or bench/out/report).
# Needs: bench/prepare.sh run on the build machine (bench/out carried over), Python with
# numpy, CuPy and PyTorch, and a GPU.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
report=${OUT:-bench/out/report}
mkdir -p "$report"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
bench/out/bin/gpu-cases data "$work/cases"
status=0
python3 bench/gpu_check.py "$work/cases" bench/out/ptx --report "$report/gpu_check.md" || status=$?
if [ -d bench/out/ptx-mlir ]; then
    python3 bench/gpu_check.py "$work/cases" bench/out/ptx-mlir --report "$report/gpu_check_mlir.md" || status=$?
fi
# ANYBIT_BENCH_ARGS passes options on (e.g. "--shapes 4096x14336,14336x4096 --ms 1,16").
# shellcheck disable=SC2086
python3 bench/gpu_bench.py bench/out/ptx --report "$report/gpu_bench.md" ${ANYBIT_BENCH_ARGS:-} || status=$?
if [ -d bench/out/ptx-mlir ]; then
    # shellcheck disable=SC2086
    python3 bench/gpu_bench.py bench/out/ptx-mlir --report "$report/gpu_bench_mlir.md" ${ANYBIT_BENCH_MLIR_ARGS:-} || status=$?
fi
exit $status
