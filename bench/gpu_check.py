#!/usr/bin/env python3
"""Run anybit's compiled kernels on the GPU and check every output element.

Usage:
    python3 bench/gpu_check.py CASES PTX [--report FILE] [--only SUBSTRING]
    python3 bench/gpu_check.py --self-test

CASES is written by `gpu-cases data` (bench/src/files.rs): per case and run, the inputs, the
interpreter's outputs, the exact references and the bounds. PTX holds, per case, what
`anybit compile` wrote: manifest.json and one .ptx file per kernel. Each run is launched as the
manifest says (parameter ABI: pointers are device addresses; every scalar is 4 bytes, integers
extended to 32 bits, floats as their code) and each checked output must be bit-for-bit the
interpreter's (cases without a bound) or within its bound of the exact reference.

Needs numpy and CuPy (and a GPU) except for --self-test, which checks the host-side encodings
with numpy alone.
"""

import json
import os
import sys

import numpy as np

# ----- host-side encodings (no GPU needed) -----

INT_TYPES = {f"u{n}": (n, False) for n in range(1, 33)} | {f"i{n}": (n, True) for n in range(2, 33)}


def f32_to_bf16_code(value):
    """Round an f32 to bfloat16 (nearest even), returning the 16-bit code."""
    bits = int(np.array([value], dtype=np.float32).view(np.uint32)[0])
    if (bits & 0x7F800000) == 0x7F800000 and (bits & 0x007FFFFF):
        return 0x7FC0  # canonical NaN
    rounding = 0x7FFF + ((bits >> 16) & 1)
    return ((bits + rounding) >> 16) & 0xFFFF


def scalar_arg(dtype, value):
    """The 4-byte kernel argument of a scalar parameter (see the manifest's ABI)."""
    if dtype in INT_TYPES:
        bits, signed = INT_TYPES[dtype]
        value = int(value)
        low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        if not low <= value <= high:
            raise ValueError(f"{value} does not fit {dtype}")
        return np.int32(value) if signed else np.uint32(value)
    if dtype == "f32":
        return np.float32(value)
    if dtype == "f16":
        return np.uint32(int(np.array([value], dtype=np.float16).view(np.uint16)[0]))
    if dtype == "bf16":
        return np.uint32(f32_to_bf16_code(np.float32(value)))
    raise ValueError(f"scalar parameters of type {dtype} are not supported by this runner")


def decode(dtype, raw):
    """Values (float64) of a buffer's raw bytes, for the output types the cases use."""
    raw = np.frombuffer(raw, dtype=np.uint8)
    if dtype == "f16":
        return raw.view(np.float16).astype(np.float64)
    if dtype == "bf16":
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    if dtype == "f32":
        return raw.view(np.float32).astype(np.float64)
    table = {"u8": np.uint8, "i8": np.int8, "u16": np.uint16, "i16": np.int16, "u32": np.uint32, "i32": np.int32}
    if dtype in table:
        return raw.view(table[dtype]).astype(np.float64)
    raise ValueError(f"outputs of type {dtype} are not supported by this runner")


def eval_expr(expr, scalars):
    """A manifest expression (grid or shape) given the scalar arguments by position."""
    if "const" in expr:
        return int(expr["const"])
    if "param" in expr:
        return int(scalars[expr["param"]])
    op = expr["op"]
    a, b = (eval_expr(e, scalars) for e in expr["args"])
    return {
        "add": lambda: a + b,
        "sub": lambda: a - b,
        "mul": lambda: a * b,
        "div": lambda: a // b,
        "cdiv": lambda: -((-a) // b),
        "min": lambda: min(a, b),
        "max": lambda: max(a, b),
    }[op]()


def compare(dtype, got_raw, interp_raw, reference, bound):
    """(ok, worst ratio of error to bound, max |got − interpreter|, first bad index)."""
    got = decode(dtype, got_raw)
    interp = decode(dtype, interp_raw)
    diff_interp = float(np.max(np.abs(got - interp))) if got.size else 0.0
    if bound is None:
        equal = np.frombuffer(got_raw, np.uint8) == np.frombuffer(interp_raw, np.uint8)
        bad = np.flatnonzero(~equal)
        return bad.size == 0, 0.0 if bad.size == 0 else float("inf"), diff_interp, (int(bad[0]) if bad.size else None)
    error = np.abs(got - reference)
    both_nan = np.isnan(got) & np.isnan(reference)
    ok = (error <= bound) | both_nan
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(bound > 0, error / bound, np.where(error > 0, np.inf, 0.0))
    ratio = np.where(both_nan, 0.0, ratio)
    bad = np.flatnonzero(~ok)
    return bad.size == 0, float(np.max(ratio)) if ratio.size else 0.0, diff_interp, (int(bad[0]) if bad.size else None)


def self_test():
    assert scalar_arg("i32", -5) == np.int32(-5)
    assert scalar_arg("u8", 255) == np.uint32(255)
    assert scalar_arg("f16", 1.5) == np.uint32(0x3E00)
    assert scalar_arg("bf16", 1.5) == np.uint32(0x3FC0)
    assert f32_to_bf16_code(np.float32(1.00390625)) == 0x3F80  # tie to even
    assert scalar_arg("f32", 2.0) == np.float32(2.0)
    try:
        scalar_arg("u4", 16)
        raise AssertionError("16 fits no u4")
    except ValueError:
        pass
    values = decode("bf16", np.array([0x3F80, 0xC020], dtype=np.uint16).tobytes())
    assert values.tolist() == [1.0, -2.5], values
    expr = {"op": "cdiv", "args": [{"param": 1}, {"const": 64}]}
    assert eval_expr(expr, [None, 130]) == 3
    ok, ratio, _, bad = compare("f32", np.float32([1.0, 2.5]).tobytes(), np.float32([1.0, 2.0]).tobytes(),
                                np.array([1.0, 2.0]), np.array([0.0, 0.25]))
    assert not ok and bad == 1 and ratio == 2.0
    ok, _, _, _ = compare("f16", np.float16([3.0]).tobytes(), np.float16([3.0]).tobytes(), np.array([3.0]), None)
    assert ok
    print("gpu_check self-test passed")


# ----- the GPU side -----

def run_case(cp, case_dir, ptx_dir, rows):
    manifest = json.load(open(os.path.join(ptx_dir, "manifest.json")))
    failures = 0
    modules = {}
    for run_name in sorted(d for d in os.listdir(case_dir) if d.startswith("run")):
        run_dir = os.path.join(case_dir, run_name)
        run = json.load(open(os.path.join(run_dir, "run.json")))
        kernel = next(k for k in manifest["kernels"] if k["name"] == run["kernel"])
        if kernel["ptx_file"] not in modules:
            modules[kernel["ptx_file"]] = cp.RawModule(path=os.path.join(ptx_dir, kernel["ptx_file"]))
        function = modules[kernel["ptx_file"]].get_function(kernel["name"])
        by_name = {a["name"]: a for a in run["args"]}
        scalars, args, device = [], [], {}
        for param in kernel["params"]:
            given = by_name[param["name"]]
            if param["kind"] == "scalar":
                scalars.append(given["value"])
                args.append(scalar_arg(param["dtype"], given["value"]))
            else:
                scalars.append(None)
                raw = np.load(os.path.join(run_dir, given["file"])).view(np.uint8).ravel()
                # Round device buffers up to whole 16-byte lines, zero-padded: vector accesses
                # near the end stay inside the allocation.
                padded = np.zeros((raw.size + 15) // 16 * 16 + 16, dtype=np.uint8)
                padded[: raw.size] = raw
                buffer = cp.asarray(padded)
                device[param["name"]] = (buffer, raw.size)
                args.append(buffer)
        grid = [eval_expr(g, scalars) for g in kernel["grid"]] + [1, 1]
        shared = kernel["shared_memory_bytes"] if kernel["needs_shared_memory_opt_in"] else 0
        if shared:
            function.max_dynamic_shared_size_bytes = shared
        function(tuple(grid[:3]), (kernel["threads_per_block"], 1, 1), tuple(args), shared_mem=shared)
        cp.cuda.runtime.deviceSynchronize()
        for check in run["checks"]:
            buffer, size = device[check["name"]]
            got_raw = cp.asnumpy(buffer)[:size].tobytes()
            interp_raw = np.load(os.path.join(run_dir, check["interp"])).view(np.uint8).ravel().tobytes()
            reference = np.load(os.path.join(run_dir, check["reference"]))
            bound = np.load(os.path.join(run_dir, check["bound"])) if check["bound"] else None
            ok, ratio, diff, bad = compare(check["dtype"], got_raw, interp_raw, reference, bound)
            failures += not ok
            detail = "" if ok else f"first bad element {bad}"
            rows.append((os.path.basename(case_dir), run["label"], check["name"], "ok" if ok else "FAIL",
                         "exact" if bound is None else f"{ratio:.3f}", f"{diff:.3g}", detail))
    return failures


def main(argv):
    if argv[1:2] == ["--self-test"]:
        self_test()
        return 0
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    cases, ptx = argv[1], argv[2]
    report = argv[argv.index("--report") + 1] if "--report" in argv else None
    only = argv[argv.index("--only") + 1] if "--only" in argv else ""
    import cupy as cp  # only the GPU side needs it

    device = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
    rows, failures = [], 0
    for case in sorted(os.listdir(cases)):
        if only not in case:
            continue
        case_ptx = os.path.join(ptx, case)
        if not os.path.isdir(case_ptx):
            rows.append((case, "-", "-", "FAIL", "-", "-", "no compiled PTX"))
            failures += 1
            continue
        try:
            failures += run_case(cp, os.path.join(cases, case), case_ptx, rows)
        except Exception as error:  # report and go on with the next case
            rows.append((case, "-", "-", "FAIL", "-", "-", f"{type(error).__name__}: {error}"))
            failures += 1
    header = ("case", "run", "output", "status", "error/bound", "max |gpu−interp|", "detail")
    lines = [f"GPU check on {device}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    lines += ["", f"{len(rows)} checks, {failures} failed"]
    text = "\n".join(lines)
    print(text)
    if report:
        with open(report, "w") as f:
            f.write(text + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
