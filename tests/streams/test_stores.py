"""Both vector-store backends (real Qdrant engine code) behave the same way."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from streams.errors import EmbeddedStoreLocked, StoreError
from streams.ids import song_point_id
from streams.metrics import Metrics
from streams.stores import (
    EdgeStore,
    MeteredStore,
    Point,
    QdrantClientStore,
    SegmentedStore,
    VectorStore,
    Where,
)


@pytest.fixture(params=["edge", "qdrant-local", "segments"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    s: VectorStore
    if request.param == "segments":  # Edge under in-worker segmented search
        s = SegmentedStore(EdgeStore(tmp_path / "q"), tmp_path / "seg", merge_rows=0)
    else:
        s = EdgeStore(tmp_path) if request.param == "edge" else QdrantClientStore(path=tmp_path)
    s.ensure_collection("songs", 8, {"is_cold": "integer", "artist": "keyword"})
    yield s
    s.close()


def points(n: int = 50) -> list[Point]:
    rng = np.random.default_rng(0)
    return [Point(song_point_id(f"s{i}"), rng.normal(size=8).astype(np.float32),
                  {"song_id": f"s{i}", "is_cold": i % 2, "artist": "a" if i < 10 else "b"})
            for i in range(n)]


def test_search_filter_exclude(store: VectorStore) -> None:
    pts = points()
    store.upsert("songs", pts)
    top = store.search("songs", pts[3].vector, 1)[0]
    assert top.payload["song_id"] == "s3" and top.score == pytest.approx(1.0, abs=1e-5)
    warm = store.search("songs", pts[3].vector, 5, Where(equals={"is_cold": 0}))
    assert warm and all(h.payload["is_cold"] == 0 for h in warm)
    others = store.search("songs", pts[3].vector, 5,
                          Where(equals={"is_cold": 1}, exclude_ids=frozenset([pts[3].id])))
    assert "s3" not in {h.payload["song_id"] for h in others}
    assert store.count("songs", Where(equals={"artist": "a"})) == 10


def test_upsert_is_idempotent_and_payload_updates(store: VectorStore) -> None:
    pts = points(5)
    store.upsert("songs", pts)
    store.upsert("songs", pts)  # a replay overwrites
    assert store.count("songs") == 5
    store.set_payload("songs", pts[0].id, {"engagers": [["u1", "play", 1]], "is_cold": 0})
    rec = store.retrieve("songs", [pts[0].id])[0]
    assert rec.payload["engagers"] == [["u1", "play", 1]]
    assert rec.vector is not None and rec.vector.shape == (8,)
    store.delete("songs", [pts[0].id])
    assert store.count("songs") == 4
    assert store.retrieve("songs", [pts[0].id]) == []


def test_aliases(store: VectorStore) -> None:
    assert store.resolve("songs_live") is None
    store.set_alias("songs_live", "songs")
    assert store.resolve("songs_live") == "songs"


def test_edge_persists_and_belongs_to_one_process(tmp_path: Path) -> None:
    s = EdgeStore(tmp_path)
    s.ensure_collection("songs", 8, {})
    s.upsert("songs", points(3))
    with pytest.raises(EmbeddedStoreLocked, match="COLDSTREAM_QDRANT_URL"):
        EdgeStore(tmp_path)
    s.close()
    again = EdgeStore(tmp_path)
    assert again.count("songs") == 3
    again.close()


def test_edge_gives_an_existing_collection_exactly_the_indexes_asked_for(tmp_path: Path) -> None:
    """A worker that searched its own mirror made its collections without indexes; started
    with the engine's search, it gets them, and its points and filters are as before."""
    s = EdgeStore(tmp_path)
    s.ensure_collection("songs", 8, {})
    s.upsert("songs", points(6))
    assert s.payload_indexes("songs") == set()
    s.close()
    again = EdgeStore(tmp_path)
    again.ensure_collection("songs", 8, {"is_cold": "integer"})
    assert again.payload_indexes("songs") == {"is_cold"} and again.count("songs") == 6
    hits = again.search("songs", np.ones(8, dtype=np.float32), 6,
                        Where(equals={"is_cold": 1}))
    assert sorted(h.payload["song_id"] for h in hits) == ["s1", "s3", "s5"]
    again.close()
    third = EdgeStore(tmp_path)  # the index is kept, and the record of it
    third.ensure_collection("songs", 8, {"is_cold": "integer"})
    assert third.payload_indexes("songs") == {"is_cold"}
    third.close()
    fourth = EdgeStore(tmp_path)  # back under a mirror: an index not asked for is dropped
    fourth.ensure_collection("songs", 8, {})
    assert fourth.payload_indexes("songs") == set() and fourth.count("songs") == 6
    fourth.close()


def test_metered_store_times_calls_and_translates_errors(tmp_path: Path) -> None:
    metrics = Metrics()
    store = MeteredStore(EdgeStore(tmp_path), metrics)
    store.ensure_collection("songs", 8, {})
    store.upsert("songs", points(2))
    with pytest.raises(StoreError):
        store.search("nope", np.ones(8), 1)
    reg = metrics.registry
    assert reg.get_sample_value("coldstream_vector_store_seconds_count", {"op": "upsert"}) == 1
    assert reg.get_sample_value("coldstream_vector_store_errors_total", {"op": "search"}) == 1
    store.close()


def test_scroll_visits_every_point_once(store: VectorStore) -> None:
    from streams.stores import scroll_all

    pts = points(23)
    store.upsert("songs", pts)
    seen = [h.payload["song_id"] for h in scroll_all(store, "songs", page=5)]
    assert sorted(seen) == sorted(p.payload["song_id"] for p in pts)
    with_vec = next(iter(scroll_all(store, "songs", page=5, with_vector=True)))
    assert with_vec.vector is not None and with_vec.vector.shape == (8,)


def test_fault_hook_fails_calls_but_never_set_up(tmp_path: Path) -> None:
    from streams.stores.faults import FaultInjectingStore

    metrics = Metrics()
    store = MeteredStore(FaultInjectingStore(EdgeStore(tmp_path), "error_rate=1"), metrics)
    store.ensure_collection("songs", 8, {})  # set-up is never faulted
    assert store.collections() == ["songs"]
    with pytest.raises(StoreError, match="injected vector-store fault #1 in upsert"):
        store.upsert("songs", points(1))
    assert metrics.registry.get_sample_value("coldstream_vector_store_errors_total",
                                             {"op": "upsert"}) == 1
    store.close()


class CountingShard:
    """An Edge shard that counts its flushes (everything else goes to the real shard)."""

    def __init__(self, shard: object) -> None:
        self.shard, self.flushes = shard, 0

    def flush(self) -> None:
        self.flushes += 1
        self.shard.flush()  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.shard, name)


def test_edge_flushes_only_written_shards_and_bounds_what_is_unflushed(tmp_path: Path) -> None:
    """A flush holds the GIL for as long as its unflushed writes take: a clean shard is never
    flushed, and the flusher thread flushes a shard once ``flush_points`` are unflushed."""
    s = EdgeStore(tmp_path, flush_points=10)
    for name in ("songs", "users"):
        s.ensure_collection(name, 8, {})
    shards = {name: CountingShard(s._shards[name]) for name in ("songs", "users")}
    s._shards.update(shards)
    flushed: list[tuple[str, int]] = []
    s.on_flush = lambda collection, n, seconds: flushed.append((collection, n))
    pts = points(12)
    s.upsert("songs", pts[:7])
    assert s.unflushed() == {"songs": 7, "users": 0}
    s.flush()
    assert (shards["songs"].flushes, shards["users"].flushes) == (1, 0)
    s.flush()  # nothing written since: nothing flushed
    assert shards["songs"].flushes == 1
    s.upsert("songs", pts[:9])
    s.set_payload("songs", pts[0].id, {"is_cold": 0})  # the tenth point wakes the flusher
    deadline = time.monotonic() + 30
    while len(flushed) < 2 and time.monotonic() < deadline:  # reported once it is done
        time.sleep(0.01)
    assert shards["songs"].flushes == 2 and s.unflushed()["songs"] == 0
    s.delete("songs", [p.id for p in pts[:3]])
    assert s.unflushed()["songs"] == 3
    assert flushed == [("songs", 7), ("songs", 10)]
    assert s.count("songs") == 6  # nine written, three deleted
    s.close()


def test_edge_unflushed_writes_survive_a_kill_9(tmp_path: Path) -> None:
    """Durability never waits for a flush: Edge's write-ahead log keeps what was written."""
    script = (
        "import os, sys\n"
        "import numpy as np\n"
        "from streams.stores import EdgeStore, Point\n"
        "s = EdgeStore(sys.argv[1])\n"
        "s.ensure_collection('songs', 8, {})\n"
        "s.upsert('songs', [Point(i, np.ones(8, dtype=np.float32), {}) for i in range(1, 21)])\n"
        "s.flush()\n"
        "s.upsert('songs', [Point(i, np.ones(8, dtype=np.float32), {}) for i in range(21, 41)])\n"
        "assert s.unflushed() == {'songs': 20}\n"
        "os.kill(os.getpid(), 9)\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], timeout=60)
    assert done.returncode == -9
    again = EdgeStore(tmp_path)
    assert again.count("songs") == 40
    again.close()


def test_float16_collections_hold_half_precision_on_both_backends(tmp_path: Path) -> None:
    """``COLDSTREAM_VECTOR_DTYPE=float16`` reaches the engine: a Qdrant collection is created
    with the float16 datatype, and Edge answers with float16 values (not float32's)."""
    server_like = QdrantClientStore(path=tmp_path / "local", dtype="float16")
    edge = EdgeStore(tmp_path / "edge", dtype="float16")
    try:
        server_like.ensure_collection("songs", 8, {})
        params = server_like.client.get_collection("songs").config.params.vectors
        assert params.datatype == server_like.m.Datatype.FLOAT16  # type: ignore[union-attr]
        edge.ensure_collection("songs", 8, {})
        pts = points(5)
        edge.upsert("songs", pts)
        for hit in edge.retrieve("songs", [p.id for p in pts], with_vector=True):
            v = np.asarray(hit.vector, dtype=np.float32)
            assert np.array_equal(v.astype(np.float16).astype(np.float32), v)
    finally:
        server_like.close()
        edge.close()
