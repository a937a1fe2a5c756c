"""Stop 51: what a new song's ``search`` stage is made of (the worker's
``pipeline.candidates_for_song``), measured outside the worker on the soak's own world.

The world is ``bench.scale.write_world``'s (N songs with three engagers each, N listeners
with the worker's five-key payload), opened as the worker opens it (``open_store`` on the
default settings: the segmented store over Qdrant Edge, float16), both collections sealed.
Then S new songs' vectors (the soak's song vectors + noise) go through the stage; per song:
wall and thread CPU, and a cProfile of the whole run (top functions by own time).

    PYTHONPATH=$PWD .venv/bin/python bench/results/stop51/search_stage.py [N] [S]"""
from __future__ import annotations

import cProfile
import io
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import live, scale
from bench.models import loaded
from streams import pipeline
from streams.events import SongEvent
from streams.settings import Settings
from streams.stores import open_store


def stage(store, cols, model, songs: list[SongEvent], vecs: np.ndarray) -> list[float]:
    cfg = pipeline.PipelineConfig()
    out = []
    for ev, v in zip(songs, vecs, strict=True):
        t = time.perf_counter()
        pipeline.candidates_for_song(store, cols, ev, v, model.version, cfg,
                                     None, model.manifest.delivery, None, 0.0)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    s = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    model = loaded()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        t = time.perf_counter()
        scale.write_world(model, data, n, n, dtype="float16")
        built = time.perf_counter() - t
        store = open_store(Settings(data_dir=data, vector_dtype="float16"))
        try:
            cols = pipeline.ensure_collections(store, model)
            for c in (cols.songs, cols.users):
                store.merge(c)
            rng = np.random.default_rng(1)
            base = scale.song_vectors(model, 1200, rng)
            vecs = base[rng.integers(0, len(base), s)] + 0.05 * rng.standard_normal(
                (s, base.shape[1]), dtype=np.float32)
            vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
            songs = [SongEvent.model_validate(live.song_event(n + i, i % scale.G))
                     for i in range(s)]
            stage(store, cols, model, songs[:20], vecs[:20])  # warm the pages
            c0 = time.thread_time()
            wall = np.asarray(stage(store, cols, model, songs, vecs)) * 1e3
            cpu = (time.thread_time() - c0) / s * 1e3
            prof = cProfile.Profile()
            prof.enable()
            stage(store, cols, model, songs, vecs)
            prof.disable()
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(25)
            cands = pipeline.candidates_for_song(store, cols, songs[0], vecs[0],
                                                 model.version, pipeline.PipelineConfig(),
                                                 None, model.manifest.delivery)
        finally:
            store.close()
    print(json.dumps({"n": n, "songs": s, "world_s": round(built, 1),
                      "p50_ms": round(float(np.median(wall)), 2),
                      "p99_ms": round(float(np.percentile(wall, 99)), 2),
                      "cpu_ms_per_song": round(cpu, 2), "candidates": len(cands)}))
    print(buf.getvalue())


if __name__ == "__main__":
    main()
