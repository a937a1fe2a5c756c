"""Stop 41: how long Qdrant Edge's flush holds the GIL, with and without the worker's listener
payload indexes (user_id keyword, boundary float, updated_at integer), by how many points were
written since the last flush (1, 100, 1,000: the store's flush bound), N listeners x 64 float16.
The shard's files are fsynced first, as the worker's store does (that part releases the GIL).

    .venv/bin/python bench/results/stop41/edge_flush_indexes.py 1000000"""
import sys, time, tempfile, shutil
from pathlib import Path
import numpy as np
from streams.ids import song_point_id
from streams.stores import EdgeStore, Point
from streams.stores.edge import sync_files
from streams.pipeline import USER_INDEXES
dim, n = 64, int(sys.argv[1])
for idx in (USER_INDEXES, {}):
    root = Path(tempfile.mkdtemp(dir="build"))
    store = EdgeStore(root, dtype="float16")
    store.ensure_collection("users", dim, idx)
    rng = np.random.default_rng(0)
    pay = lambda i: {"user_id": f"u{i}", "boundary": float(rng.random()), "updated_at": int(rng.integers(1e12))}
    t0 = time.perf_counter()
    for a in range(0, n, 5000):
        store.upsert("users", [Point(song_point_id(f"u{i}"), rng.standard_normal(dim).astype(np.float32), pay(i)) for i in range(a, min(n, a + 5000))])
        if a % 100_000 == 0:
            store.flush()
    store.flush()
    load = time.perf_counter() - t0
    for dirty in (1, 100, 1000):
        times = []
        for rep in range(5):
            ids = rng.integers(0, n, dirty)
            store.upsert("users", [Point(song_point_id(f"u{i}"), rng.standard_normal(dim).astype(np.float32), pay(i)) for i in ids])
            sync_files(root / "users" / "shard")
            t = time.perf_counter(); store._shards["users"].flush(); times.append(1e3 * (time.perf_counter() - t))
            store._unflushed["users"] = 0
        print(f"n={n} indexes={list(idx)} load {load:.0f}s dirty={dirty}: flush ms median {np.median(times):.1f} max {max(times):.1f}", flush=True)
    store.close(); shutil.rmtree(root)
