"""Stop 50: a U2I search (200 listeners, as the worker's ``u2i_users_k``) with the listeners'
payloads answered from the segmented store's columns, against the engine answering them
(the columns lacked two keys of the payload the worker writes: ``model_version``, ``events``).

Both collections hold the same N listeners with the worker's five-key payload, in one
SegmentedStore over Qdrant Edge, sealed (one merge); only the column set differs. Per row:
search p50 / p99 and the thread's CPU per search (alone), the engine retrieves per search, and the
share of a pure-Python loop's rate on another thread lost while the searches run (about
the share of the search's time spent holding the GIL; see ``gil_share.py``).

    PYTHONPATH=$PWD .venv/bin/python bench/results/stop50/u2i_payloads.py [N]"""
from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from streams.ids import user_point_id
from streams.stores import EdgeStore, Point, SegmentedStore

DIM, K, QUERIES, BATCH = 64, 200, 400, 2000
OLD = {"user_id": "keyword", "boundary": "float", "updated_at": "integer"}
NEW = {**OLD, "model_version": "keyword", "events": "integer"}


def loop_rate(seconds: float, stop: threading.Event | None = None) -> float:
    n, start = 0, time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end and not (stop and stop.is_set()):
        for _ in range(1000):
            n += 1
    return n / (time.perf_counter() - start)


def measure(store: SegmentedStore, name: str, queries: np.ndarray) -> dict[str, float]:
    asked = [0]
    inner = store.inner.retrieve

    def counted(collection: str, ids: list[str], with_vector: bool = True) -> list:
        asked[0] += 1
        return inner(collection, ids, with_vector)

    store.inner.retrieve = counted  # type: ignore[method-assign]
    times: list[float] = []
    cpu: list[float] = []
    done = threading.Event()

    def searches() -> None:
        t = time.thread_time()
        for q in queries:
            s = time.perf_counter()
            hits = store.search(name, q, K)
            times.append(time.perf_counter() - s)
            assert len(hits) == K
        cpu.append(time.thread_time() - t)
        done.set()

    searches()  # alone: the times and CPU reported
    ms, cpu_alone, asked_alone = np.asarray(times) * 1e3, cpu[0], asked[0]
    times.clear()
    done.clear()
    alone = loop_rate(2.0)
    thread = threading.Thread(target=searches)  # beside the loop: what it loses
    thread.start()
    beside = loop_rate(60.0, done)
    thread.join()
    store.inner.retrieve = inner  # type: ignore[method-assign]
    return {"search_p50_ms": round(float(np.median(ms)), 3),
            "search_p99_ms": round(float(np.percentile(ms, 99)), 3),
            "cpu_ms_per_search": round(cpu_alone / len(queries) * 1e3, 3),
            "engine_retrieves_per_search": asked_alone / len(queries),
            "loop_rate_lost": round(1 - beside / alone, 3)}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rng = np.random.default_rng(0)
    root = Path(tempfile.mkdtemp())
    store = SegmentedStore(EdgeStore(root / "q"), root / "seg", merge_rows=10**9)
    vecs = rng.standard_normal((n, DIM), dtype=np.float32)
    for name, columns in (("old", OLD), ("new", NEW)):
        store.ensure_collection(name, DIM, columns)
        for lo in range(0, n, BATCH):
            store.upsert(name, [Point(user_point_id(f"u{u}"), vecs[u], {
                "user_id": f"u{u}", "boundary": 0.3, "updated_at": 1_760_000_000_000,
                "model_version": "m1", "events": 5}) for u in range(lo, min(lo + BATCH, n))])
        store.merge(name)
    queries = rng.standard_normal((QUERIES, DIM), dtype=np.float32)
    out = {"listeners": n, "k": K, "dim": DIM}
    for name in ("old", "new", "old", "new"):  # each twice, alternating
        out.setdefault(name, []).append(measure(store, name, queries))
    store.close()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
