"""Stop 51: what one doubling of the worker's song-vector cache cost (the matrix grown from
``n`` to ``2n`` rows of ``dim`` float32, the rows held so far copied), against writing the
same new rows into a matrix allocated at its capacity once (the fix). The soak's doublings
fell at 32k, 65k and 131k distinct songs (dim 512: 64, 128 and 256 MB copied).

    PYTHONPATH=$PWD .venv/bin/python bench/results/stop51/cache_growth.py"""
import json
import time

import numpy as np

DIM = 512


def doubling(n: int) -> float:
    held = np.ones((n, DIM), dtype=np.float32)  # every row written, as in the worker
    t = time.perf_counter()
    grown = np.zeros((2 * n, DIM), dtype=np.float32)
    grown[:n] = held
    grown[n] = 1.0  # the row that asked for room
    return time.perf_counter() - t


def at_capacity(n: int) -> float:
    matrix = np.zeros((2 * n, DIM), dtype=np.float32)
    matrix[:n] = 1.0
    t = time.perf_counter()
    matrix[n] = 1.0  # the same row: no copy, one page first touched
    return time.perf_counter() - t


rows = []
for n in (32_768, 65_536, 131_072):
    for _ in range(3):
        rows.append({"rows_held": n, "mb_copied": n * DIM * 4 / 2**20,
                     "doubling_ms": round(doubling(n) * 1e3, 1),
                     "at_capacity_ms": round(at_capacity(n) * 1e3, 3)})
        print(json.dumps(rows[-1]), flush=True)
