#!/usr/bin/env python3
"""SASS instructions per weight element of dequantization, for every weight type → f16/bf16.

Usage:
    python3 bench/dequant_sass.py ANYBIT [ANYBIT_BEFORE] [--target sm_90] [--report FILE]

For each weight type W and half type H, a micro-kernel is compiled with the given `anybit`
binary, assembled with ptxas and disassembled with cuobjdump (the set-up's .venv): each of 128
threads loads four word groups of W as u32 words, views them as W, casts them to H and stores
the E halves. A baseline kernel of the same shape loads the halves' own bits as u32 words,
views them as H and stores them. The cost per element is the difference of their SASS
instruction counts (memory instructions — LDG, STG, LDC, LDS, STS — and NOPs left out)
divided by E: what the conversion adds, with addressing, stores and the handling of register
halves cancelled as far as the two kernels share them. With a second
binary (an older build) the table shows before and after. No GPU needed.
"""

import os
import re
import subprocess
import sys
import tempfile
from math import gcd

TYPES = [f"u{n}" for n in range(1, 9)] + [f"i{n}" for n in range(2, 9)] + [
    "f3e1m1", "f4e2m1", "f5e2m2", "f6e2m3", "f6e3m2", "f7e3m3", "f8e4m3", "f8e5m2"]


def bits_of(name):
    if name[0] in "ui":
        return int(name[1:])
    return int(re.match(r"f(\d+)", name).group(1))


def kernel(weight, half, groups):
    """Each of 128 threads loads `groups` word groups of W as u32 words, views them as W,
    casts to `half` and stores the halves."""
    n = bits_of(weight)
    words = groups * (n // gcd(n, 32))
    elements = words * 32 // n
    source = f"""
kernel dq(w: ptr u32[{128 * words}], y: ptr {half}[{128 * elements}]) grid(1) warps(4) {{
    %wv = global_view %w [128, {words}] strides [{words}, 1]
    %yv = global_view %y [128, {elements}] strides [{elements}, 1]
    %words = load_global %wv [0, 0] : u32[128, {words}] layout spatial(128,1).local(1,{words})
    %q = view %words : {weight}[128, {elements}] layout spatial(128,1).local(1,{elements})
    %h = cast %q : {half}
    store_global %h, %yv [0, 0]
}}
"""
    return source, elements


def baseline(half, elements):
    """The same kernel shape without a conversion: the halves' own bits loaded as u32 words and
    viewed as `half` (so the stores and the register-half handling cancel)."""
    words = elements // 2
    return f"""
kernel dq(w: ptr u32[{128 * words}], y: ptr {half}[{128 * elements}]) grid(1) warps(4) {{
    %wv = global_view %w [128, {words}] strides [{words}, 1]
    %yv = global_view %y [128, {elements}] strides [{elements}, 1]
    %words = load_global %wv [0, 0] : u32[128, {words}] layout spatial(128,1).local(1,{words})
    %h = view %words : {half}[128, {elements}] layout spatial(128,1).local(1,{elements})
    store_global %h, %yv [0, 0]
}}
"""


def sass_count(anybit, source, target, work):
    path = os.path.join(work, "k.abk")
    with open(path, "w") as f:
        f.write(source)
    out = os.path.join(work, "out")
    subprocess.run([anybit, "compile", path, "--target", target, "-o", out], check=True,
                   stdout=subprocess.DEVNULL)
    venv = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".venv", "bin")
    cubin = os.path.join(work, "k.cubin")
    subprocess.run([os.path.join(venv, "ptxas"), f"-arch={target}", os.path.join(out, "dq.ptx"), "-o", cubin],
                   check=True)
    sass = subprocess.run([os.path.join(venv, "cuobjdump"), "-sass", cubin], check=True,
                          capture_output=True, text=True).stdout
    # Instruction lines look like `/*0070*/  LOP3.LUT R5, R2, ...`; NOPs pad, EXIT/BRA end.
    ops = [m.group(1) for m in re.finditer(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?P\d\s+)?([A-Z][A-Z0-9_.]*)", sass)]
    memory = ("NOP", "LDG", "STG", "LDC", "LDS", "STS", "ULDC")
    return len([o for o in ops if not o.startswith(memory)])


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    option = lambda name, default: argv[argv.index(name) + 1] if name in argv else default
    target = option("--target", "sm_90")
    report = option("--report", None)
    args = [a for a in args if a not in (target, report)]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    binaries = args[:2]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for weight in TYPES:
            row = [weight]
            for half in ("f16", "bf16"):
                source, elements = kernel(weight, half, 4)
                base = baseline(half, elements)
                for anybit in binaries:
                    try:
                        extra = sass_count(anybit, source, target, work) - sass_count(anybit, base, target, work)
                        row.append(f"{extra / elements:.2f}")
                    except subprocess.CalledProcessError as error:
                        row.append(f"error ({error.returncode})")
            rows.append(row)
    names = ["after"] if len(binaries) == 1 else ["after", "before"]
    header = ["weight"] + [f"→ {h} ({n})" for h in ("f16", "bf16") for n in names]
    lines = [f"SASS instructions per weight element, {target} (ptxas + cuobjdump from .venv)", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    text = "\n".join(lines)
    print(text)
    if report:
        with open(report, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
