"""A song's listener list travels in its payload packed as one string (cheap to write on
Qdrant Edge); readers take both that and the plain list of points written before."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streams import pipeline
from streams.ids import song_point_id
from streams.pipeline import Collections, Scored
from streams.stores import EdgeStore, Hit, Point

LISTENERS = [["u1", "collect", 10], ["u|2", "play", 11], ["ü3", "skip", 12]]


def test_listener_list_round_trips_through_the_store(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path)
    try:
        cols = Collections("songs", "users")
        store.ensure_collection("songs", 4, {"is_cold": "integer"})
        store.upsert("songs", [Point(song_point_id("s"), np.ones(4, dtype=np.float32),
                                     {"song_id": "s", "is_cold": 1})])
        pipeline.write_engagers(store, cols, "s", LISTENERS)
        rec = store.retrieve("songs", [song_point_id("s")])[0]
        assert isinstance(rec.payload["engagers"], str)
        assert pipeline.engagers_of(rec.payload) == LISTENERS
        assert rec.payload["is_cold"] == 0
        pipeline.write_engagers(store, cols, "s", [])
        rec = store.retrieve("songs", [song_point_id("s")])[0]
        assert pipeline.engagers_of(rec.payload) == [] and rec.payload["is_cold"] == 1
    finally:
        store.close()


def test_i2i2u_reads_packed_and_plain_lists_alike() -> None:
    packed = Hit(song_point_id("a"), 0.9, {"song_id": "a", "engagers":
                                           pipeline.pack_engagers(LISTENERS)})
    plain = Hit(song_point_id("a"), 0.9, {"song_id": "a", "engagers": LISTENERS})
    got: list[dict[str, Scored]] = [{}, {}]
    pipeline.i2i2u([packed], got[0])
    pipeline.i2i2u([plain], got[1])
    assert set(got[0]) == {"u1", "u|2"}  # the skip is no tie
    assert {u: s.i2i2u for u, s in got[0].items()} == {u: s.i2i2u for u, s in got[1].items()}
    assert pipeline.engagers_of({}) == []
