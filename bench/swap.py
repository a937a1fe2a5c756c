"""Scenarios 5 and 6 (users): model swap upserts, and U2I/I2I2U cost vs the number of users.

Swap: a new model version means a new collection with every song re-embedded. Vectors are
precomputed (the encoder rate comes from scenario 3); what is measured is the upsert side into
Qdrant Edge through the worker's own ``EdgeStore``, batched, against one point per call (how
the worker writes today) as the baseline, plus the HNSW build that makes the new collection
searchable at speed.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from streams import pipeline
from streams.events import SongEvent
from streams.ids import song_point_id, user_point_id
from streams.stores import EdgeStore, Point, Where

from .common import Mode, Report, ms, ratio
from .search import mixture

DIM = 512  # the provisional model: 384 text + 128 audio


def song_points(x: np.ndarray, version: str, offset: int = 0) -> list[Point]:
    out = []
    for i, v in enumerate(x):
        sid = f"s{i + offset}"
        ev = SongEvent(schema_version=1, event_id=f"e{sid}", song_id=sid, title=f"Song {sid}",
                       artist=f"Artist {i % 500}", tags=["pop"], released_at=1_700_000_000_000)
        eng = [[f"u{(i * 7 + j) % 1000}", "collect", 1_700_000_000_000 + j] for j in range(5)]
        out.append(Point(song_point_id(sid), v, pipeline.song_payload(ev, version, eng, True)))
    return out


def run(mode: Mode, n: int | None = None, batch_sizes: list[int] | None = None,
        encoder_rate: dict[str, Any] | None = None, single: int = 1000) -> Report:
    n = n or (20_000 if mode == "quick" else 100_000)
    batch_sizes = batch_sizes or [64, 512]
    rep = Report("swap", mode, {"songs": n, "dim": DIM, "payload": "song payload + 5 engagers"})
    start = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="coldstream-bench-swap-"))
    x, _ = mixture(n, DIM, seed=5)
    points = song_points(x, "v2")
    try:
        store = EdgeStore(root / "qdrant")
        try:
            store.ensure_collection("single", DIM, pipeline.SONG_INDEXES)
            t = time.perf_counter()
            for p in points[:single]:
                store.upsert("single", [p])
            base = single / (time.perf_counter() - t)
            rep.rows.append({"path": "one point per upsert (baseline)", "songs": single,
                             "songs/s": base, "x_base": 1.0, "seconds": single / base})
            for b in batch_sizes:
                name = f"songs__v2_b{b}"
                store.ensure_collection(name, DIM, pipeline.SONG_INDEXES)
                t = time.perf_counter()
                for i in range(0, n, b):
                    store.upsert(name, points[i:i + b])
                store.flush()
                s = time.perf_counter() - t
                rep.rows.append({"path": f"batched upsert, {b} per call", "songs": n,
                                 "songs/s": n / s, "x_base": ratio(n / s, base), "seconds": s})
            t = time.perf_counter()
            store.optimize(f"songs__v2_b{batch_sizes[-1]}")
            opt = time.perf_counter() - t
            rep.rows.append({"path": "HNSW build (optimize) of the new collection", "songs": n,
                             "songs/s": n / opt, "x_base": ratio(n / opt, base),
                             "seconds": opt})
        finally:
            store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    upsert_rate = max(r["songs/s"] for r in rep.rows if r["path"].startswith("batched"))
    if encoder_rate:
        enc = encoder_rate["songs_per_s"]
        total = n / enc + n / upsert_rate + opt
        rep.rows.append({"path": f"re-embed (encoder, batch {encoder_rate['batch']}, 1 core, "
                                 "measured in scenario 3)", "songs": n, "songs/s": enc,
                         "x_base": ratio(enc, base), "seconds": n / enc})
        rep.rows.append({"path": "estimated full swap: embed + upsert + HNSW", "songs": n,
                         "songs/s": n / total, "x_base": ratio(n / total, base),
                         "seconds": total})
        rep.notes.append("the encoder dominates the swap; it parallelises per core (one "
                         "process per core), the upsert and HNSW build do not need to")
    rep.seconds = time.perf_counter() - start
    return rep


def users_curve(mode: Mode, sizes: list[int] | None = None, n_songs: int = 2000,
                queries: int = 100) -> Report:
    """candidates_for_song (both searches + retrieve) as the users collection grows."""
    sizes = sizes or ([1_000, 10_000, 50_000] if mode == "quick"
                      else [1_000, 10_000, 100_000, 300_000])
    rep = Report("scaling_users", mode, {"songs": n_songs, "dim": DIM, "queries": queries,
                                         "index": "none (as the worker runs) vs HNSW"})
    start = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="coldstream-bench-users-"))
    songs, _ = mixture(n_songs, DIM, seed=7)
    try:
        for size in sizes:
            store = EdgeStore(root / f"q{size}")
            try:
                cols = pipeline.Collections("songs", "users")
                store.ensure_collection("songs", DIM, pipeline.SONG_INDEXES)
                store.ensure_collection("users", DIM, pipeline.USER_INDEXES)
                pts = song_points(songs, "v")
                for i in range(0, len(pts), 512):
                    store.upsert("songs", pts[i:i + 512])
                users, _ = mixture(size, DIM, seed=7)  # same centres: users near songs
                for i in range(0, size, 1000):
                    store.upsert("users", [Point(user_point_id(f"u{j}"), users[j], {
                        "user_id": f"u{j}", "boundary": 0.5, "updated_at": 0})
                        for j in range(i, min(size, i + 1000))])
                cfg = pipeline.PipelineConfig()
                qs = songs[:queries]
                for label in ("no index", "HNSW"):
                    if label == "HNSW":
                        store.optimize("users")
                        store.optimize("songs")
                    lat, u2i = [], []
                    for i, v in enumerate(qs):
                        ev = SongEvent(schema_version=1, event_id=f"n{i}", song_id=f"n{i}",
                                       title="x", artist="y", released_at=0)
                        t = time.perf_counter()
                        pipeline.candidates_for_song(store, cols, ev, v, "v", cfg)
                        lat.append(time.perf_counter() - t)
                        t = time.perf_counter()
                        store.search("users", v, cfg.u2i_users_k)
                        u2i.append(time.perf_counter() - t)
                    c, u = ms(lat), ms(u2i)
                    rep.rows.append({"users": size, "index": label,
                                     "candidates_p50_ms": c["p50_ms"],
                                     "candidates_p99_ms": c["p99_ms"],
                                     "u2i_search_p50_ms": u["p50_ms"],
                                     "u2i_search_p99_ms": u["p99_ms"]})
                _ = store.count("users", Where())
            finally:
                store.close()
        first = rep.rows[0]["candidates_p50_ms"]
        for r in rep.rows:
            r["x_smallest"] = ratio(r["candidates_p50_ms"], first)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rep.notes.append("x_smallest: p50 relative to the smallest user count without an index")
    rep.seconds = time.perf_counter() - start
    return rep
