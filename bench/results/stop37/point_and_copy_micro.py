"""Two same-run micro-comparisons behind stop 37's notes (docs/benchmarks.md "Stop 37").

1. Qdrant Edge's Point from a numpy vector vs a Python list (512-d, a 5-key payload).
2. Doubling a growing segment: concatenate with a zero block vs zeros + copy of the used rows.
"""
import time
import timeit

import numpy as np
import qdrant_edge as qe

v = np.random.rand(512).astype(np.float32)
payload = {"user_id": "u1", "boundary": 0.1, "updated_at": 1, "model_version": "v0", "events": 3}
pid = "00000000-0000-0000-0000-000000000001"
as_list = v.tolist()
for name, make in [("numpy vector", lambda: qe.Point(pid, v, payload)),
                   ("list vector", lambda: qe.Point(pid, as_list, payload)),
                   ("list vector, no payload", lambda: qe.Point(pid, as_list, {})),
                   ("tolist alone", lambda: v.tolist())]:
    print(f"{name:26s} {timeit.timeit(make, number=20000) / 20000 * 1e6:6.1f} us")
for n in (16384, 65536):
    rows = np.random.rand(n, 512).astype(np.float32)
    t = time.perf_counter()
    np.concatenate([rows, np.zeros_like(rows)])
    concat = time.perf_counter() - t
    t = time.perf_counter()
    out = np.zeros((2 * n, 512), np.float32)
    out[:n] = rows
    copy = time.perf_counter() - t
    print(f"{n} rows x 512: concatenate {concat * 1e3:.1f} ms, zeros + copy {copy * 1e3:.1f} ms")
