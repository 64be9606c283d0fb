#!/usr/bin/env python3
"""Plot effective weight bandwidth against M, one line per weight type, from a gpu_bench.py table.

Usage:
    python3 bench/plot.py TABLE.md OUT.png [--shape 4096x14336]

Reads the markdown table bench/gpu_bench.py writes (default-schedule rows only: names without a
schedule suffix) and draws, for one (K, N) shape, the weight bandwidth as a fraction of the
device-to-device copy bandwidth measured in the same run, against M on a log axis. Needs
matplotlib (the GPU machine's Python has it; the build machine's set-up does not install it).
"""

import sys


def rows(path):
    """(copy bandwidth, {column: cell}) per table row (columns by the header's names)."""
    copy, header = None, None
    for line in open(path):
        if line.startswith("device-to-device copy bandwidth:"):
            copy = float(line.split(":")[1].split()[0])
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == "weights":
            header = cells
        elif header is not None and len(cells) > header.index("weight TB/s") and cells[header.index("K")].isdigit():
            yield copy, dict(zip(header, cells))


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    table, png = argv[1], argv[2]
    shape = argv[argv.index("--shape") + 1] if "--shape" in argv else "4096x14336"
    k, n = (int(v) for v in shape.split("x"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {}
    for copy, cells in rows(table):
        name, kk, nn, m = cells["weights"], int(cells["K"]), int(cells["N"]), int(cells["M"])
        tb = float(cells["weight TB/s"])
        if "_" in name or (kk, nn) != (k, n):
            continue
        series.setdefault(name, []).append((m, tb / copy))
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for name, points in sorted(series.items()):
        points.sort()
        ax.plot([m for m, _ in points], [f for _, f in points], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("M (rows of x)")
    ax.set_ylabel("weight bytes / time, fraction of copy bandwidth")
    ax.set_title(f"anybit low-bit matmul, K={k} N={n}, H100 (from {table.split('/')[-1]})")
    ax.axhline(0.85, color="gray", linestyle="--", linewidth=1)
    ax.legend(ncol=3, fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    print(f"wrote {png}: {len(series)} weight types")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
