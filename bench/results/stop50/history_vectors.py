"""Stop 50: the interactions' fetch of their listeners' history songs (``SongVectorCache.rows``
on a miss): with each song's payload read from Qdrant Edge and dropped, as before, against
vectors only from the segmented store's mirror (``retrieve(..., with_payload=False)``).

One SegmentedStore over Qdrant Edge holds N songs with the soak's payloads (title, artist,
tags, description and three engagers; ``bench/scale.py``), sealed. 300 fetches of 100 random
songs (about one interactions batch's misses at 500/s), each mode twice, alternating, alone
on the machine.

    PYTHONPATH=$PWD .venv/bin/python bench/results/stop50/history_vectors.py [N]"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import live
from streams import pipeline
from streams.events import SongEvent
from streams.ids import song_point_id
from streams.stores import EdgeStore, Point, SegmentedStore

DIM, FETCH, ROUNDS, BATCH, GENRES = 64, 100, 300, 2000, 12


def fill(store: SegmentedStore, n: int, rng: np.random.Generator) -> None:
    store.ensure_collection("songs", DIM, pipeline.SONG_INDEXES)
    for lo in range(0, n, BATCH):
        points = []
        for i in range(lo, min(lo + BATCH, n)):
            ev = SongEvent.model_validate(live.song_event(i, i % GENRES))
            engagers = [[f"u{int(u)}", "play", live.NOW - k] for k, u in
                        enumerate(rng.integers(0, n, 3))]
            points.append(Point(song_point_id(ev.song_id), rng.standard_normal(DIM),
                                pipeline.song_payload(ev, "m1", engagers, False)))
        store.upsert("songs", points)
    store.merge("songs")


def fetches(store: SegmentedStore, batches: list[list[str]], with_payload: bool
            ) -> dict[str, float]:
    ms, cpu = [], time.thread_time()
    for ids in batches:
        start = time.perf_counter()
        got = store.retrieve("songs", ids, with_vector=True, with_payload=with_payload)
        ms.append((time.perf_counter() - start) * 1e3)
        assert len(got) == len(ids)
    return {"p50_ms": round(float(np.median(ms)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "cpu_ms": round((time.thread_time() - cpu) / len(batches) * 1e3, 3)}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rng = np.random.default_rng(0)
    root = Path(tempfile.mkdtemp())
    store = SegmentedStore(EdgeStore(root / "q"), root / "seg", merge_rows=10**9)
    fill(store, n, rng)
    out: dict = {"songs": n, "fetched": FETCH}
    for mode in ("payloads", "vectors only", "payloads", "vectors only"):
        batches = [[song_point_id(f"s{int(i)}") for i in rng.integers(0, n, FETCH)]
                   for _ in range(ROUNDS)]  # fresh songs each pass: pages not yet cached
        out.setdefault(mode, []).append(fetches(store, batches, mode == "payloads"))
    store.close()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
