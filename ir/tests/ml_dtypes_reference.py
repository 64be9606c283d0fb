"""Reference codecs for anybit's data-type tests, computed by ml_dtypes and numpy.

Usage: python ml_dtypes_reference.py TYPE BITS < values > answer

TYPE is an ml_dtypes type name (float8_e4m3fn, int4, bfloat16, ...) or numpy's float16.
stdin holds float32 values (little-endian). stdout gets, little-endian:
  1. the value of every code 0 .. 2**BITS - 1 as float64 (decode), then
  2. the code of every input value as uint32 (encode, i.e. numpy's astype from float32).
"""

import sys

import ml_dtypes
import numpy as np


def main() -> None:
    name, bits = sys.argv[1], int(sys.argv[2])
    target = np.dtype(np.float16) if name == "float16" else np.dtype(getattr(ml_dtypes, name))
    storage = {1: np.uint8, 2: np.uint16}[target.itemsize]
    mask = (1 << bits) - 1

    codes = np.arange(1 << bits, dtype=np.uint64).astype(storage)
    decoded = codes.view(target).astype(np.float64)

    values = np.frombuffer(sys.stdin.buffer.read(), dtype="<f4")
    with np.errstate(all="ignore"):
        encoded = values.astype(target).view(storage).astype(np.uint32) & mask

    sys.stdout.buffer.write(decoded.astype("<f8").tobytes())
    sys.stdout.buffer.write(encoded.astype("<u4").tobytes())


if __name__ == "__main__":
    main()
