#!/usr/bin/env python3
"""Time anybit's low-bit matmul against cuBLAS bf16 and torch's int4 tinygemm, in one run.

Usage:
    python3 bench/gpu_bench.py PTX [--report FILE] [--shapes 4096x14336,...] [--ms 1,16,4096] [--runs R]
                                   [--only u4,u4_p2u2]

PTX holds one folder per benchmark module (bench_<weight>: the layer module QuantizedLinear
runs, or bench_<weight>_<tag> for schedule variants), each with manifest.json, the kernels'
.ptx and plans.json — the launch plan (`m16k4`: the matmul kernel with 16 rows per block, K
split in 4 and a reduction kernel) per shape and M — as bench/prepare.sh writes them. Shapes
are KxN. For each format and M it reports the median
time (L2 flushed before every launch by writing a 256 MiB buffer), the effective weight
bandwidth (packed weights + scales / time) as a fraction of the device-to-device copy
bandwidth measured in the same run, TFLOP/s, and the ratios against cuBLAS bf16 (torch.matmul)
and, for 4-bit, tinygemm (torch.ops.aten._weight_int4pack_mm) timed in the same run.
Correctness is checked separately (bench/gpu_check.py); here inputs are random.
"""

import json
import os
import sys
import time

import numpy as np


def median_time(cp, launch, flush, runs):
    """Median seconds of `launch()`, with `flush()` (L2) before each, timed with CUDA events."""
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    times = []
    for _ in range(runs):
        flush()
        start.record()
        launch()
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop) / 1e3)
    return float(np.median(times))


def copy_bandwidth(cp, flush, runs):
    """Device-to-device copy bandwidth (bytes read + written per second) of a 1 GiB buffer."""
    n = 1 << 30
    src, dst = cp.zeros(n, dtype=cp.uint8), cp.empty(n, dtype=cp.uint8)
    seconds = median_time(cp, lambda: cp.copyto(dst, src), flush, runs)
    return 2 * n / seconds


def eval_expr(expr, scalars):
    if "const" in expr:
        return int(expr["const"])
    if "param" in expr:
        return int(scalars[expr["param"]])
    a, b = (eval_expr(e, scalars) for e in expr["args"])
    return {"add": a + b, "sub": a - b, "mul": a * b, "div": a // b, "cdiv": -((-a) // b),
            "min": min(a, b), "max": max(a, b)}[expr["op"]]


def parse_plan(tag):
    """(rows per block, splits of K) of a launch plan tag such as `m16k4`."""
    rows, splits = tag[1:].split("k")
    return int(rows), int(splits)


def plan_launches(kernels, tag):
    """The kernels a plan launches, in order: the matmul with its rows per block, then the
    reduction when K is split; and the split."""
    rows, splits = parse_plan(tag)
    reduce = next(k for k in kernels if k["name"].endswith("_reduce"))
    base = reduce["name"][: -len("_reduce")]
    matmul_name = base if rows == 8 else f"{base}_m{rows}"
    matmul = next((k for k in kernels if k["name"] == matmul_name), None)
    if matmul is None:
        raise ValueError(f"plan {tag}: no kernel {matmul_name} among {[k['name'] for k in kernels]}")
    return ([matmul, reduce] if splits > 1 else [matmul]), splits


def self_test():
    kernels = [{"name": "lm_u4"}, {"name": "lm_u4_m64"}, {"name": "lm_u4_reduce"}]
    assert parse_plan("m64k1") == (64, 1)
    assert [k["name"] for k in plan_launches(kernels, "m8k4")[0]] == ["lm_u4", "lm_u4_reduce"]
    assert [k["name"] for k in plan_launches(kernels, "m64k1")[0]] == ["lm_u4_m64"]
    try:
        plan_launches(kernels, "m32k1")
        raise AssertionError("a missing kernel must be refused")
    except ValueError:
        pass


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    ptx_root = argv[1]
    option = lambda name, default: argv[argv.index(name) + 1] if name in argv else default
    report = option("--report", None)
    shapes = [tuple(int(v) for v in s.split("x")) for s in option("--shapes", "4096x14336").split(",")]
    ms = [int(m) for m in option("--ms", "1,16,4096").split(",")]
    only = option("--only", None)
    only = None if only is None else set(only.split(","))
    runs = int(option("--runs", 50))

    import cupy as cp
    import torch

    device = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
    cache = cp.empty(256 << 20, dtype=cp.uint8)
    flush = lambda: cache.fill(0)
    copy_bw = copy_bandwidth(cp, flush, 10)
    rng = np.random.default_rng(2026)

    # Peers, timed in this run.
    peers = {}
    for (K, N), m in ((shape, m) for shape in shapes for m in ms):
        x = torch.randn(m, K, dtype=torch.bfloat16, device="cuda")
        w = torch.randn(K, N, dtype=torch.bfloat16, device="cuda")
        torch_flush = lambda: flush()
        peers[("cublas", K, N, m)] = median_time(cp, lambda: torch.matmul(x, w), torch_flush, runs)
        try:
            q = torch.randint(0, 16, (N, K), dtype=torch.int32, device="cuda")
            packed_u8 = ((q[:, ::2] << 4) | q[:, 1::2]).to(torch.uint8)
            w_int4 = torch.ops.aten._convert_weight_to_int4pack(packed_u8, 8)
            scales_zeros = torch.randn(K // 128, N, 2, dtype=torch.bfloat16, device="cuda")
            peers[("tinygemm", K, N, m)] = median_time(
                cp, lambda: torch.ops.aten._weight_int4pack_mm(x, w_int4, 128, scales_zeros), torch_flush, runs)
        except Exception as error:  # the API changes between torch versions
            peers[("tinygemm", K, N, m)] = None
            peers["tinygemm_error"] = f"{type(error).__name__}: {error}"

    rows = []
    inputs, reference_y = {}, {}
    folders = sorted(d for d in os.listdir(ptx_root) if d.startswith("bench_"))
    if only is not None:
        folders = [f for f in folders if f[len("bench_"):] in only]
    for folder, (K, N) in ((f, shape) for shape in shapes for f in folders):
        name = folder[len("bench_"):]
        weight = name.split("_")[0]
        manifest = json.load(open(os.path.join(ptx_root, folder, "manifest.json")))
        plans = json.load(open(os.path.join(ptx_root, folder, "plans.json")))
        if f"{K}x{N}" not in plans:
            raise SystemExit(f"{folder}/plans.json has no plan for {K}x{N}: add the shape to BENCH_SHAPES")
        # The matmul, or (a split of K) the matmul writing partial sums and the reduction:
        # launched in order, timed together; buffers are shared by name (the workspace `p`).
        functions = {kernel["name"]: cp.RawModule(path=os.path.join(ptx_root, folder, kernel["ptx_file"]))
                     .get_function(kernel["name"]) for kernel in manifest["kernels"]}
        for m in ms:
            plan = plans[f"{K}x{N}"].get(str(m))
            if plan is None:
                raise SystemExit(f"{folder}/plans.json has no plan for M = {m}: add it to BENCH_MS")
            kernels, splits = plan_launches(manifest["kernels"], plan)
            values = {"m": m, "n": N, "k": K, "splits": splits}
            # Inputs are shared by the schedules of one weight type (same packing), so a
            # variant's y can be compared with the default kernel's.
            shared_inputs = inputs.setdefault((weight, K, N, m), {})
            buffers, launches = {}, []
            for kernel in kernels:
                function = functions[kernel["name"]]
                names = [p["name"] for p in kernel["params"]]
                scalars = [values.get(name) for name in names]
                args = []
                for param, value in zip(kernel["params"], scalars):
                    if param["kind"] == "scalar":
                        args.append(np.int32(value))
                        continue
                    if param["name"] in shared_inputs and param["name"] not in ("y", "p"):
                        buffers[param["name"]] = shared_inputs[param["name"]]
                    if param["name"] not in buffers:
                        elements = 1
                        for d in param["shape"]:
                            elements *= eval_expr(d, scalars)
                        size = (elements * param["bits"] + 7) // 8
                        data = rng.integers(0, 256, size=size + 16, dtype=np.uint8)
                        if param["dtype"] in ("f16", "bf16"):  # finite activations and scales
                            data[1::2] &= 0x3B
                        buffers[param["name"]] = cp.asarray(data)
                        if param["name"] not in ("y", "p"):
                            shared_inputs[param["name"]] = buffers[param["name"]]
                    args.append(buffers[param["name"]])
                grid = [eval_expr(g, scalars) for g in kernel["grid"]] + [1, 1]
                shared = kernel["shared_memory_bytes"] if kernel["needs_shared_memory_opt_in"] else 0
                if shared:
                    function.max_dynamic_shared_size_bytes = shared
                launches.append((function, tuple(grid[:3]), kernel["threads_per_block"], tuple(args), shared))

            # Weight bytes: packed weights, scales and zero points (buffers carry 16 spare bytes).
            weight_bytes = sum(buffers[b].size - 16 for b in ("w", "s", "z") if b in buffers)

            def launch(launches=launches):
                for function, grid, threads, args, shared in launches:
                    function(grid, (threads, 1, 1), args, shared_mem=shared)

            seconds = median_time(cp, launch, flush, runs)
            # Agreement with the default schedule on the same inputs (y as f32 values).
            y_dtype = next(p["dtype"] for kernel in kernels for p in kernel["params"] if p["name"] == "y")
            y = buffers["y"][: m * N * 2].view(cp.float16 if y_dtype == "f16" else cp.uint16)
            y = y.astype(cp.float32) if y.dtype == cp.float16 else (y.astype(cp.uint32) << 16).view(cp.float32)
            if name == weight:
                reference_y[(weight, K, N, m)] = y
                agreement = "-"
            elif (weight, K, N, m) in reference_y:
                ref = reference_y[(weight, K, N, m)]
                scale = float(cp.abs(ref).max()) or 1.0
                agreement = f"{float(cp.abs(y - ref).max()) / scale:.1e}"
            else:
                agreement = "?"
            bandwidth = weight_bytes / seconds
            tflops = 2 * m * N * K / seconds / 1e12
            cublas = peers[("cublas", K, N, m)]
            tiny = peers.get(("tinygemm", K, N, m)) if weight in ("u4", "i4") else None
            rows.append((name, plan, K, N, m, f"{seconds * 1e6:.1f}", f"{bandwidth / 1e12:.2f}",
                         f"{bandwidth / copy_bw:.0%}", f"{tflops:.1f}", f"{cublas * 1e6:.1f}", f"{cublas / seconds:.2f}",
                         "-" if tiny is None else f"{tiny * 1e6:.1f}", "-" if tiny is None else f"{tiny / seconds:.2f}",
                         agreement))

    header = ("weights", "plan", "K", "N", "M", "µs", "weight TB/s", "of copy BW", "TFLOP/s", "cuBLAS bf16 µs", "speedup vs cuBLAS",
              "tinygemm µs", "speedup vs tinygemm", "max abs Δy / max abs y vs the layer module")
    lines = [f"{time.strftime('%Y-%m-%d')} · {device} · group 128 · L2 flushed · median of {runs}",
             f"device-to-device copy bandwidth: {copy_bw / 1e12:.2f} TB/s", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    if "tinygemm_error" in peers:
        lines += ["", f"tinygemm unavailable: {peers['tinygemm_error']}"]
    text = "\n".join(lines)
    print(text)
    if report:
        with open(report, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        print("gpu_bench.py self-test passed")
        sys.exit(0)
    sys.exit(main(sys.argv))
