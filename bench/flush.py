"""Scenario ``flush``: how long Qdrant Edge's ``flush`` stalls the event loop, per flush period.

The worker writes user vectors and songs from its work thread and flushes the embedded store on
a timer. The binding holds the GIL for the whole flush, and a flush costs in proportion to what
was written since the last one, so the period decides the longest stall. This scenario replays
that in one process: a shard of N points, a thread writing ``rate`` points/s in batches (the
soak's user-vector updates) and flushing every ``period`` s, while the main thread's asyncio
loop ticks every 2 ms (``bench.segments.probe_while``). The baseline is the old worker (a 5 s
timer, no point bound), measured in the same run; an idle probe of the same length says what
the OS alone costs.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from streams.ids import song_point_id
from streams.stores import EdgeStore, Point

from .common import Mode, Report, ms, ratio
from .segments import probe_while

BATCH = 50  # points per upsert: a batch of interactions touches tens of users


def write_and_flush(store: EdgeStore, rng: np.random.Generator, n: int, dim: int, rate: float,
                    period: float, seconds: float) -> tuple[int, int]:
    """Upsert ``rate`` points/s over existing ids for ``seconds``, flushing every ``period``
    s in the same thread (as the worker's work thread does); the timer's flush calls and the
    points written (behind schedule when flushing takes the thread's time)."""
    calls = 0
    start = last_flush = time.perf_counter()
    sent = 0
    while (now := time.perf_counter()) - start < seconds:
        if now - last_flush >= period:
            store.flush()
            calls += 1
            last_flush = time.perf_counter()
        due = int((now - start) * rate)
        if sent >= due:
            time.sleep(min(0.005, BATCH / rate))
            continue
        ids = rng.integers(0, n, BATCH)
        vecs = rng.standard_normal((BATCH, dim)).astype(np.float32)
        store.upsert("users", [Point(song_point_id(f"u{i}"), v, {"genre": int(i) % 10})
                               for i, v in zip(ids, vecs, strict=True)])
        sent += BATCH
    return calls, sent


#: (timer period s, the store's ``flush_points``, fsync before flushing): the old worker
#: first (the baseline), then the timer alone at a shorter period, then point bounds, the
#: default last.
CONFIGS = ((5.0, 0, False), (5.0, 0, True), (1.0, 0, True), (1.0, 1_000, False),
           (1.0, 1_000, True), (1.0, 500, True))
DEFAULT = (1.0, 1_000, True)


def run(mode: Mode, n: int | None = None, dim: int = 128, rate: float | None = None,
        seconds: float | None = None,
        configs: tuple[tuple[float, int, bool], ...] = CONFIGS) -> Report:
    n = n or (20_000 if mode == "quick" else 200_000)
    rate = rate or (2_000.0 if mode == "quick" else 5_000.0)
    seconds = seconds or (6.0 if mode == "quick" else 30.0)
    rep = Report("flush", mode, {"n": n, "dim": dim, "points_per_s": rate, "seconds": seconds,
                                 "batch": BATCH, "configs": [list(c) for c in configs]})
    start = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="coldstream-bench-flush-"))
    rng = np.random.default_rng(0)
    try:
        store = EdgeStore(root / "q")
        store.ensure_collection("users", dim, {"genre": "integer"})
        for lo in range(0, n, 2_000):
            store.upsert("users", [Point(song_point_id(f"u{i}"),
                                         rng.standard_normal(dim).astype(np.float32),
                                         {"genre": i % 10}) for i in range(lo, min(n, lo + 2_000))])
        store.flush()
        stalls: list[float] = []
        for period, points, presync in configs:
            store.flush_points, store.presync = points, presync
            flushes: list[float] = []
            store.on_flush = lambda _c, _p, s, out=flushes: out.append(s)
            (calls, sent), probe = probe_while(lambda p=period: write_and_flush(
                store, rng, n, dim, rate, p, seconds))
            _, idle = probe_while(lambda: time.sleep(seconds))
            stalls.append(probe["max_loop_stall_ms"])
            rep.rows.append({"period_s": period, "flush_points": points, "presync": presync,
                             "points_per_s_done": sent / probe["wall_s"],
                             "timer_calls": calls, "flushes": len(flushes),
                             "flush_p50_ms": ms(flushes)["p50_ms"],
                             "flush_p99_ms": ms(flushes)["p99_ms"],
                             "flush_max_ms": max(flushes, default=0.0) * 1e3,
                             "max_loop_stall_ms": probe["max_loop_stall_ms"],
                             "idle_max_loop_stall_ms": idle["max_loop_stall_ms"],
                             "x_baseline_stall": ratio(stalls[0], stalls[-1])})
        store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    default = configs.index(DEFAULT) if DEFAULT in configs else -1
    rep.goal("longest loop stall, default flush settings", "<= 50 ms", stalls[default],
             lambda v: v <= 50)
    rep.notes.append("x_baseline_stall: the first row's longest stall over this one's (higher "
                     "is better); compare each stall with the idle probe's. flushes counts "
                     "every shard flush (the timer's and those flush_points triggers)")
    rep.seconds = time.perf_counter() - start
    return rep
