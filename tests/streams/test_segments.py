"""Segmented search (sealed IVF + growing exact) equals exact search, through real Qdrant Edge
and real build processes, with updates, deletes and payload changes across segments."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streams.ids import song_point_id
from streams.settings import Settings
from streams.stores import EdgeStore, Point, SegmentedStore, Where, scroll_all, sealed
from streams.stores.sealed import finish_build, search_plain, start_build
from streams.stores.segmented import write_snapshot
from streams.stores.segments import as_float32

from .engine_spy import spy_engine_retrieve

DIM = 16
INDEXES = {"is_cold": "integer", "artist": "keyword", "boundary": "float"}


class Reference:
    """What the collection holds, kept in plain Python: exact search is the truth (over the
    unit vectors rounded to ``dtype``, as the store keeps them)."""

    def __init__(self, dtype: str = "float32") -> None:
        self.points: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
        self.dtype = dtype

    def upsert(self, pts: list[Point]) -> None:
        for p in pts:
            v = np.asarray(p.vector, dtype=np.float32)
            v = (v / np.linalg.norm(v)).astype(self.dtype).astype(np.float32)
            self.points[p.id] = (v, dict(p.payload))

    def search(self, q: np.ndarray, k: int, where: Where | None) -> list[str]:
        q = q / np.linalg.norm(q)
        scored = []
        for pid, (v, payload) in self.points.items():
            if where is not None and not matches(pid, payload, where):
                continue
            scored.append((-float(v @ q), pid))
        return [pid for _, pid in sorted(scored)[:k]]


def matches(pid: str, payload: dict[str, Any], where: Where) -> bool:
    return (pid not in where.exclude_ids
            and all(payload.get(k) == v for k, v in where.equals.items())
            and all(payload.get(k) is not None and payload[k] >= b
                    for k, b in where.at_least.items()))


@pytest.fixture(params=[(0, "sq8"), (500, "sq8"), (0, "flat"), (0, "pq4")],
                ids=["segments", "small-filters-exact", "flat-codes", "pq4-codes"])
def store(request: pytest.FixtureRequest, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[SegmentedStore]:
    # nprobe above any list count: the sealed segment scans every list, so any difference
    # from the reference is a segment-logic bug (sq8 codes are rescored exactly; the test
    # below shows their raw scores are not exact). exact_below=0 sends every search through
    # the sealed + growing path; 500 sends the narrow filters to exact search. pq4's codes
    # are too rough for any fixed candidate count to be exact, so here every row is a
    # candidate: what is left to differ is its segment logic (fast-scan lists, removals).
    exact_below, codes = request.param
    if codes == "pq4":
        monkeypatch.setitem(sealed.RESCORE, "pq4", (1, 10_000))  # > any test set
    s = SegmentedStore(EdgeStore(tmp_path / "q"), tmp_path / "seg", merge_rows=0, nprobe=4096,
                       codes=codes)
    s.ensure_collection("songs", DIM, INDEXES)
    s.segments["songs"].exact_below = exact_below
    yield s
    s.close()


def make_points(rng: np.random.Generator, ids: range, artists: int = 3) -> list[Point]:
    return [Point(song_point_id(f"s{i}"), rng.standard_normal(DIM).astype(np.float32),
                  {"song_id": f"s{i}", "is_cold": int(rng.integers(0, 2)),
                   "artist": f"a{int(rng.integers(0, artists))}",
                   "boundary": float(rng.uniform())}) for i in ids]


def wheres(ref: Reference) -> list[Where | None]:
    some = sorted(ref.points)[:3]
    return [None, Where(equals={"is_cold": 0}), Where(equals={"artist": "a1"}),
            Where(at_least={"boundary": 0.5}),
            Where(equals={"is_cold": 0}, exclude_ids=frozenset(some))]


def assert_same(store: SegmentedStore, ref: Reference, rng: np.random.Generator,
                k: int = 10, queries: int = 20) -> None:
    for _ in range(queries):
        q = rng.standard_normal(DIM).astype(np.float32)
        for where in wheres(ref):
            got = store.search("songs", q, k, where)
            assert [h.id for h in got] == ref.search(q, k, where), where
            for h in got:  # the payload the hit carries is the current one
                want = ref.points[h.id][1]
                assert h.payload["is_cold"] == want["is_cold"]
                assert h.payload["boundary"] == pytest.approx(want["boundary"], abs=1e-12)


def churn(store: SegmentedStore, ref: Reference, rng: np.random.Generator, start: int) -> None:
    """New points, re-sent points with new vectors, deletes and payload-only changes."""
    fresh = make_points(rng, range(start, start + 150))
    resent = make_points(rng, range(0, start, 7))
    for pts in (fresh, resent):
        store.upsert("songs", pts)
        ref.upsert(pts)
    gone = [song_point_id(f"s{i}") for i in range(3, start, 11)]
    store.delete("songs", gone)
    for pid in gone:
        ref.points.pop(pid, None)
    for pid in list(ref.points)[::5]:
        store.set_payload("songs", pid, {"is_cold": 0})
        ref.points[pid][1]["is_cold"] = 0


def test_growing_only_then_sealed_equal_exact(store: SegmentedStore) -> None:
    rng, ref = np.random.default_rng(1), Reference()
    pts = make_points(rng, range(2000))
    store.upsert("songs", pts)
    ref.upsert(pts)
    assert store.segments["songs"].grown_n == 0  # nothing sealed: no copy of the mirror
    assert_same(store, ref, rng)  # growing segment only
    info = store.merge("songs")
    assert info is not None and info["rows"] == 2000
    seg = store.segments["songs"]
    assert seg.sealed is not None and seg.growing == 0
    assert_same(store, ref, rng)  # sealed only


def test_updates_and_deletes_across_segments_and_merges(store: SegmentedStore) -> None:
    rng, ref = np.random.default_rng(2), Reference()
    pts = make_points(rng, range(2000))
    store.upsert("songs", pts)
    ref.upsert(pts)
    store.merge("songs")
    for round_ in range(2):
        churn(store, ref, rng, 2000 + 150 * round_)
        seg = store.segments["songs"]
        assert seg.growing > 0 and seg.sealed is not None
        assert_same(store, ref, rng)  # sealed (with tombstones) + growing
        store.merge("songs")
        assert store.segments["songs"].growing == 0
        assert_same(store, ref, rng)  # after the merge
    assert store.segments["songs"].merges == 3


def test_writes_during_a_build_stay_correct(store: SegmentedStore, tmp_path: Path) -> None:
    """Points changed between the snapshot and the install shadow the new sealed segment."""
    rng, ref = np.random.default_rng(3), Reference()
    pts = make_points(rng, range(2000))
    store.upsert("songs", pts)
    ref.upsert(pts)
    seg = store.segments["songs"]
    folder = tmp_path / "build"
    folder.mkdir()
    slots = seg.begin_snapshot()
    write_snapshot(seg, slots, folder)
    child = start_build(folder)
    churn(store, ref, rng, 2000)  # while the child builds
    assert seg.install(finish_build(child, folder))
    assert seg.growing > 0
    assert_same(store, ref, rng)


@pytest.mark.parametrize(("codes", "bytes_per_dim"), [("sq8", 1.0), ("pq4", 0.25)])
def test_approximate_codes_are_rescored_to_exact_cosines(tmp_path: Path, codes: str,
                                                         bytes_per_dim: float) -> None:
    """An sq8 segment holds a byte per dimension, a pq4 one a quarter byte, and their own
    scores are approximate; what the store returns is the exact top k with exact cosines,
    from the float32 mirror."""
    dim, rng = 64, np.random.default_rng(12)
    x = rng.standard_normal((3000, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    store = SegmentedStore(EdgeStore(tmp_path / "q"), tmp_path / "seg", merge_rows=0,
                           nprobe=4096, codes=codes)
    try:
        store.ensure_collection("songs", dim, {})
        ids = [song_point_id(f"s{i}") for i in range(len(x))]
        store.upsert("songs", [Point(pid, v, {}) for pid, v in zip(ids, x, strict=True)])
        info = store.merge("songs")
        assert info is not None and info["codes"] == codes
        assert info["code_bytes"] == dim * bytes_per_dim
        seg = store.segments["songs"]
        assert seg.sealed is not None and not seg.sealed.exact
        worst_raw = 0.0
        for q in rng.standard_normal((20, dim)).astype(np.float32):
            q /= np.linalg.norm(q)
            truth = np.argsort(-(x @ q), kind="stable")[:10]
            got = store.search("songs", q, 10)
            assert [h.id for h in got] == [ids[i] for i in truth]
            for h in got:
                assert h.score == pytest.approx(float(x[ids.index(h.id)] @ q), abs=1e-5)
            raw_slots, raw_scores = search_plain(seg.sealed, q, 10, 4096)
            exact = seg.vectors[raw_slots] @ q
            worst_raw = max(worst_raw, float(np.abs(raw_scores - exact).max()))
        assert worst_raw > 1e-4  # the codes alone are approximate: the rescoring matters
    finally:
        store.close()


def test_the_worker_and_the_store_default_to_the_same_codes() -> None:
    assert Settings.model_fields["segment_codes"].default == sealed.DEFAULT_CODES


def test_a_segment_too_small_to_train_product_codes_is_built_as_sq8(tmp_path: Path) -> None:
    """pq4 (the default) needs rows to train its 16 centroids per pair of dimensions: a small
    collection's first segment is sq8, and its searches still equal exact search."""
    rng = np.random.default_rng(21)
    x = rng.standard_normal((300, DIM)).astype(np.float32)
    store = SegmentedStore(EdgeStore(tmp_path / "q"), tmp_path / "seg", merge_rows=0,
                           nprobe=4096)
    try:
        store.ensure_collection("songs", DIM, {})
        ids = [song_point_id(f"s{i}") for i in range(len(x))]
        store.upsert("songs", [Point(pid, v, {}) for pid, v in zip(ids, x, strict=True)])
        info = store.merge("songs")
        assert store.codes == "pq4" and info is not None and info["codes"] == "sq8"
        q = rng.standard_normal(DIM).astype(np.float32)
        unit = x / np.linalg.norm(x, axis=1, keepdims=True)
        truth = np.argsort(-(unit @ q), kind="stable")[:10]
        assert [h.id for h in store.search("songs", q, 10)] == [ids[i] for i in truth]
    finally:
        store.close()


def test_retrieve_takes_vectors_from_the_mirror_and_payloads_from_the_engine(
        store: SegmentedStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Serving never asks the engine for vectors; what it gets equals the engine's own
    (unit) vectors, updates included, and ids the collection lacks are left out."""
    rng = np.random.default_rng(13)
    store.upsert("songs", make_points(rng, range(300)))
    store.merge("songs")
    resent = make_points(rng, range(0, 300, 3))
    store.upsert("songs", resent)
    ids = [song_point_id(f"s{i}") for i in range(0, 300, 7)] + [song_point_id("absent")]
    engine = {h.id: h for h in store.inner.retrieve("songs", ids, with_vector=True)}
    calls = spy_engine_retrieve(store, monkeypatch)
    got = store.retrieve("songs", ids, with_vector=True)
    assert [with_vector for _, with_vector in calls] == [False]
    assert [h.id for h in got] == list(engine) and song_point_id("absent") not in engine
    for h in got:
        assert h.vector is not None and engine[h.id].vector is not None
        np.testing.assert_allclose(h.vector, engine[h.id].vector, atol=1e-6)
        assert h.payload == engine[h.id].payload
    s0 = next(h for h in got if h.id == song_point_id("s0"))  # re-sent: the new vector
    want = np.asarray(resent[0].vector, dtype=np.float32)
    np.testing.assert_allclose(s0.vector, want / np.linalg.norm(want), atol=1e-6)
    # vectors only (a listener's history): the engine is not asked at all, deletes hold
    store.delete("songs", [song_point_id("s7")])
    calls.clear()
    bare = store.retrieve("songs", ids, with_vector=True, with_payload=False)
    assert calls == []
    assert [h.id for h in bare] == [pid for pid in engine if pid != song_point_id("s7")]
    for h in bare:
        assert h.payload == {}
        np.testing.assert_allclose(h.vector, next(g.vector for g in got if g.id == h.id))


def test_restart_reloads_the_mirror_from_the_engine(tmp_path: Path) -> None:
    rng, ref = np.random.default_rng(4), Reference()
    s = SegmentedStore(EdgeStore(tmp_path / "q"), tmp_path / "seg", merge_rows=0, nprobe=4096)
    s.ensure_collection("songs", DIM, INDEXES)
    pts = make_points(rng, range(500))
    s.upsert("songs", pts)
    ref.upsert(pts)
    s.delete("songs", [pts[0].id])
    ref.points.pop(pts[0].id)
    s.close()
    store = SegmentedStore(EdgeStore(tmp_path / "q"), tmp_path / "seg", merge_rows=0,
                           nprobe=4096)
    try:
        store.ensure_collection("songs", DIM, INDEXES)
        store.segments["songs"].exact_below = 0
        assert len(store.segments["songs"]) == 499
        assert_same(store, ref, rng, queries=5)
    finally:
        store.close()


def resident_vector_bytes(root: Path) -> int:
    """Bytes of this process's mappings of the engine's vector files now in memory."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if "-" in head[0] and len(head) >= 5 and ":" in head[3]:  # a mapping's header line
            inside = len(head) >= 6 and head[5].startswith(str(root.resolve())) \
                and "/vector_storage/vectors/" in head[5]
        elif inside and head[0] == "Rss:":
            total += int(head[1]) * 1024
    return total


def test_reload_hands_the_engine_vector_pages_back(tmp_path: Path) -> None:
    """The reload reads every page of the engine's vector files; the mirror answers every
    vector read afterwards, so the store pages them out (they stayed resident: 2-4 GB at 1M
    songs + 1M listeners). Data and search are unchanged, and a read pages them back in."""
    dim, n, rng = 64, 6000, np.random.default_rng(31)
    pts = [Point(song_point_id(f"s{i}"), rng.standard_normal(dim).astype(np.float32), {})
           for i in range(n)]
    s = SegmentedStore(EdgeStore(tmp_path / "q"), tmp_path / "seg", merge_rows=0)
    s.ensure_collection("songs", dim, {})
    s.upsert("songs", pts)
    s.close()
    kept = SegmentedStore(EdgeStore(tmp_path / "q"), tmp_path / "seg", merge_rows=0)
    kept.ensure_collection("songs", dim, {})  # the default keeps them
    assert resident_vector_bytes(tmp_path / "q") >= n * dim * 4 // 2
    kept.close()
    store = SegmentedStore(EdgeStore(tmp_path / "q"), tmp_path / "seg", merge_rows=0,
                           page_out=True)
    try:
        store.ensure_collection("songs", dim, {})
        after_reload = resident_vector_bytes(tmp_path / "q")
        read = sum(1 for _ in scroll_all(store.inner, "songs", with_vector=True))
        after_read = resident_vector_bytes(tmp_path / "q")
        assert read == n and after_read >= n * dim * 4 // 2  # a read brings them back
        if store.inner.release_vector_pages("songs") == 0:
            pytest.skip("this kernel has no madvise(MADV_PAGEOUT)")
        assert after_reload < after_read // 4
        assert resident_vector_bytes(tmp_path / "q") < after_read // 4
        q = pts[7].vector
        assert store.search("songs", q, 1)[0].id == pts[7].id
        assert store.inner.search("songs", q, 1)[0].id == pts[7].id  # the engine's own copy
    finally:
        store.close()


def test_unindexed_filter_falls_back_to_the_engine(store: SegmentedStore) -> None:
    rng = np.random.default_rng(5)
    pts = make_points(rng, range(100))
    store.upsert("songs", pts)
    hits = store.search("songs", pts[4].vector, 3, Where(equals={"song_id": "s4"}))
    assert [h.payload["song_id"] for h in hits] == ["s4"]


def test_the_engine_builds_no_payload_index_the_mirror_answers(tmp_path: Path) -> None:
    """Qdrant Edge's indexes made each flush cost in proportion to the whole collection, with
    the GIL held; under the mirror the engine gets none unless asked, and a filter the
    columns cannot answer (a list value: any element matches) still runs there, right."""
    plain = SegmentedStore(EdgeStore(tmp_path / "q"), tmp_path / "seg", merge_rows=0)
    plain.ensure_collection("songs", DIM, INDEXES)
    assert plain.inner.payload_indexes("songs") == set()
    rng = np.random.default_rng(8)
    pts = make_points(rng, range(60))
    pts[7] = Point(pts[7].id, pts[7].vector, {**pts[7].payload, "artist": ["a1", "a9"]})
    plain.upsert("songs", pts)
    q = rng.standard_normal(DIM).astype(np.float32)
    got = {h.id for h in plain.search("songs", q, 60, Where(equals={"artist": "a1"}))}
    want = {p.id for p in pts if p.payload["artist"] in ("a1", ["a1", "a9"])}
    assert got == want and pts[7].id in got
    plain.close()
    asked = SegmentedStore(EdgeStore(tmp_path / "q2"), tmp_path / "seg2", merge_rows=0,
                           engine_indexes=True)
    asked.ensure_collection("songs", DIM, INDEXES)
    assert asked.inner.payload_indexes("songs") == set(INDEXES)
    asked.close()


def test_merges_by_themselves_in_a_child_without_blocking_the_loop(tmp_path: Path) -> None:
    """The merger thread builds in another process; the event loop keeps ticking meanwhile.
    (The stall in milliseconds is measured by ``coldstream bench --only search``.)"""
    rng = np.random.default_rng(6)
    store = SegmentedStore(EdgeStore(tmp_path / "q"), tmp_path / "seg", merge_rows=5000,
                           check_s=0.05)
    store.ensure_collection("songs", DIM, INDEXES)

    async def probe() -> tuple[int, float]:
        store.upsert("songs", make_points(rng, range(6000)))
        ticks, worst, last = 0, 0.0, time.perf_counter()
        deadline = time.perf_counter() + 60
        while not store.builds and time.perf_counter() < deadline:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            ticks, worst, last = ticks + 1, max(worst, now - last), now
        return ticks, worst

    try:
        ticks, worst = asyncio.run(probe())
        assert store.builds, "no merge happened"
        assert store.builds[0]["pid"] != os.getpid()
        assert ticks > 0
        assert store.segments["songs"].growing == 0
        print(f"loop max gap during the merge: {worst * 1000:.1f} ms over {ticks} ticks")
    finally:
        store.close()


def test_a_collection_no_alias_serves_loses_its_mirror(store: SegmentedStore) -> None:
    """After a swap the old version's collection is searched by the engine, correctly, and
    its vectors leave the worker's memory."""
    rng, ref = np.random.default_rng(7), Reference()
    store.ensure_collection("songs_v2", DIM, INDEXES)
    pts = make_points(rng, range(300))
    store.upsert("songs", pts)
    ref.upsert(pts)
    store.merge("songs")
    kept = store.segments["songs"].sealed.path  # type: ignore[union-attr]
    assert kept is not None and kept.exists()  # the next delta merge's base
    store.set_alias("songs-alias", "songs")
    store.set_alias("songs-alias", "songs_v2")
    assert "songs" not in store.segments and "songs_v2" in store.segments
    assert not kept.exists()  # and the kept index file with it
    q = rng.standard_normal(DIM).astype(np.float32)
    assert [h.id for h in store.search("songs", q, 5)] == ref.search(q, 5, None)


def test_mostly_dirty_sealed_segment_still_exact(store: SegmentedStore) -> None:
    """When most sealed hits are stale, the unfiltered over-fetch gives way to the bitmap."""
    rng, ref = np.random.default_rng(8), Reference()
    pts = make_points(rng, range(1500))
    store.upsert("songs", pts)
    ref.upsert(pts)
    store.merge("songs")
    again = make_points(rng, range(1400))  # all but 100 re-sent with new vectors
    store.upsert("songs", again)
    ref.upsert(again)
    assert store.segments["songs"].growing == 1400
    assert_same(store, ref, rng, queries=10)


# delta merges -----------------------------------------------------------------------------
def indexed_slots(index: Any) -> np.ndarray:
    """Every label the IVF index holds, sorted (read from its inverted lists)."""
    import faiss

    inv, parts = index.invlists, [np.zeros(0, dtype=np.int64)]
    for i in range(index.nlist):
        size = inv.list_size(i)
        if size:
            parts.append(faiss.rev_swig_ptr(inv.get_ids(i), size).copy())
    return np.sort(np.concatenate(parts))


def live_slots(store: SegmentedStore) -> np.ndarray:
    seg = store.segments["songs"]
    return np.flatnonzero(seg.alive[:len(seg.ids)])


def reuse_slots(store: SegmentedStore, ref: Reference, rng: np.random.Generator,
                start: int) -> None:
    """Delete some points and write new ids at once: they land in the freed slots."""
    gone = list(ref.points)[1:40:3]
    store.delete("songs", gone)
    for pid in gone:
        ref.points.pop(pid)
    seg = store.segments["songs"]
    freed = set(seg.free)
    pts = make_points(rng, range(start, start + len(gone)))
    store.upsert("songs", pts)
    ref.upsert(pts)
    assert {seg.slot_of[p.id] for p in pts} <= freed  # written into freed slots


def test_float16_vectors_halve_the_mirror_and_stay_exact_over_their_values(
        tmp_path: Path) -> None:
    """``vector_dtype=float16``: the engine stores float16 and the mirror takes half the
    memory; search over growing, sealed and delta-merged segments equals exact search over
    the rounded unit vectors, and a restart reloads them within float16's precision."""
    rng, ref = np.random.default_rng(21), Reference("float16")

    def open_store() -> SegmentedStore:
        s = SegmentedStore(EdgeStore(tmp_path / "q", dtype="float16"), tmp_path / "seg",
                           merge_rows=0, nprobe=4096, dtype="float16", codes="sq8")
        s.ensure_collection("songs", DIM, INDEXES)
        s.segments["songs"].exact_below = 0
        return s

    store = open_store()
    pts = make_points(rng, range(2000))
    store.upsert("songs", pts)
    ref.upsert(pts)
    seg = store.segments["songs"]
    assert seg.vectors.dtype == np.float16 and seg.vectors.nbytes == 2 * DIM * len(seg.alive)
    assert_same(store, ref, rng, queries=5)  # every slot growing: the mirror scanned in steps
    store.merge("songs")
    churn(store, ref, rng, 2000)
    assert_same(store, ref, rng, queries=5)  # sealed sq8 rescored from float16 + growing
    assert store.merge("songs")["mode"] == "delta"  # type: ignore[index]
    assert_same(store, ref, rng, queries=5)
    ids = sorted(ref.points)[:50]
    engine = store.inner.retrieve("songs", ids, with_vector=True)
    for hit in engine:  # the engine's own copy is float16 too (not float32 values)
        v = np.asarray(hit.vector, dtype=np.float32)
        assert np.array_equal(v.astype(np.float16).astype(np.float32), v)
        assert np.abs(v - ref.points[hit.id][0]).max() < 2e-3
    store.close()
    store = open_store()
    try:
        reloaded = Reference()  # exact over what the restart reloaded into the mirror
        reloaded.points = {h.id: (np.asarray(h.vector, dtype=np.float32), h.payload)
                           for h in mirror_hits(store)}
        assert reloaded.points.keys() == ref.points.keys()
        worst = max(float(np.abs(v - ref.points[pid][0]).max())
                    for pid, (v, _) in reloaded.points.items())
        assert worst < 2e-3
        store.merge("songs")
        assert_same(store, reloaded, rng, queries=5)
    finally:
        store.close()


def mirror_hits(store: SegmentedStore) -> list[Any]:
    """Every point of "songs" with the vector its mirror holds (``retrieve`` reads it)."""
    seg = store.segments["songs"]
    ids = [pid for pid in seg.ids if pid is not None]
    return store.retrieve("songs", ids, with_vector=True)


def test_delta_merges_equal_exact(store: SegmentedStore) -> None:
    """After a full seal: churn (new ids, re-sent vectors, deletes, payload changes, reused
    slots), then delta merges and one forced full build; each equals exact search, and the
    index holds exactly the live slots (no stale copy left, none missing)."""
    rng, ref = np.random.default_rng(9), Reference()
    pts = make_points(rng, range(2000))
    store.upsert("songs", pts)
    ref.upsert(pts)
    store.retrain_share = 10.0  # never retrain by churn here; the next test checks that
    assert store.merge("songs")["mode"] == "full"  # type: ignore[index]
    modes, start = [], 2000
    for round_ in range(4):
        churn(store, ref, rng, start)
        reuse_slots(store, ref, rng, start + 150)
        start += 200
        assert_same(store, ref, rng, queries=5)  # sealed with tombstones + growing
        info = store.merge("songs", full=round_ == 2)
        assert info is not None
        modes.append(info["mode"])
        seg = store.segments["songs"]
        assert seg.growing == 0 and seg.dirty_count == 0
        assert seg.sealed is not None and seg.sealed.info is info
        assert np.array_equal(indexed_slots(seg.sealed.index), live_slots(store))
        assert info["rows"] == len(ref.points) == len(seg)
        if info["mode"] == "delta":
            assert info["added"] > 0 and info["removed"] > 0
            assert info["dirty"] >= info["added"]  # the dead dirty slots are not re-added
        assert_same(store, ref, rng, queries=10)
    assert modes == ["delta", "delta", "full", "delta"]
    full = next(b for b in store.builds[1:] if b["mode"] == "full")
    assert full["changed_since_training"] == 0 and full["trained_rows"] == full["rows"]
    assert store.builds[-1]["changed_since_training"] == store.builds[-1]["dirty"]


def test_retrain_threshold_and_list_count_force_full_builds(tmp_path: Path) -> None:
    """Changed rows summed over deltas reach retrain_share of the index: full build; so does
    a live count that more than doubled since the lists were chosen."""
    rng, ref = np.random.default_rng(10), Reference()
    store = SegmentedStore(EdgeStore(tmp_path / "q"), tmp_path / "seg", merge_rows=0,
                           nprobe=4096, retrain_share=0.5)
    try:
        store.ensure_collection("songs", DIM, INDEXES)
        store.segments["songs"].exact_below = 0
        pts = make_points(rng, range(2000))
        store.upsert("songs", pts)
        ref.upsert(pts)
        assert store.merge("songs")["mode"] == "full"  # type: ignore[index]
        churn(store, ref, rng, 2000)  # ~30 % of the rows dirty: under the share
        assert store.segments["songs"].dirty_count < 0.5 * 2000
        first = store.merge("songs")
        assert first is not None and first["mode"] == "delta"
        churn(store, ref, rng, 2150)  # summed with the first delta's rows: over it
        assert first["changed_since_training"] + store.segments["songs"].dirty_count >= 1000
        assert store.merge("songs")["mode"] == "full"  # type: ignore[index]
        assert_same(store, ref, rng, queries=5)
        more = make_points(rng, range(5000, 7500))  # few changed rows next to the new count
        store.retrain_share = 10.0
        store.upsert("songs", more[:100])
        ref.upsert(more[:100])
        assert store.merge("songs")["mode"] == "delta"  # type: ignore[index]
        store.upsert("songs", more[100:])
        ref.upsert(more[100:])
        info = store.merge("songs")  # live count 4,900+ > 2 x trained rows
        assert info is not None and info["mode"] == "full"
        assert info["lists"] > store.builds[0]["lists"]
        assert_same(store, ref, rng, queries=5)
    finally:
        store.close()


def test_writes_during_a_delta_build_stay_correct(store: SegmentedStore,
                                                  tmp_path: Path) -> None:
    """A delta build's snapshot holds the dirty slots only; points changed while its child
    runs stay dirty (pending) and shadow it, and the next merge is a delta from it."""
    rng, ref = np.random.default_rng(11), Reference()
    pts = make_points(rng, range(2000))
    store.upsert("songs", pts)
    ref.upsert(pts)
    store.merge("songs")
    churn(store, ref, rng, 2000)
    seg = store.segments["songs"]
    assert seg.sealed is not None and seg.sealed.path is not None
    folder = tmp_path / "delta"
    folder.mkdir()
    dirty, live = seg.begin_delta()
    assert len(live) < len(dirty) < 2000
    np.save(folder / "removed.npy", dirty)
    write_snapshot(seg, live, folder)
    child = start_build(folder, base=seg.sealed.path)
    churn(store, ref, rng, 2150)  # while the child patches the index
    reuse_slots(store, ref, rng, 2300)
    assert seg.install(finish_build(child, folder))
    assert seg.sealed is not None and seg.sealed.info["mode"] == "delta"
    assert seg.growing > 0
    assert_same(store, ref, rng, queries=10)
    assert not seg.install(seg.sealed)  # no snapshot begun: nothing to install
    info = store.merge("songs")
    assert info is not None and info["mode"] == "delta"
    assert np.array_equal(indexed_slots(seg.sealed.index), live_slots(store))
    assert_same(store, ref, rng, queries=10)


def listed_truth(seg: Any, ref: Reference, q: np.ndarray, k: int, nprobe: int) -> list[str]:
    """Exact top ``k`` over the live points in the lists a search with ``nprobe`` probes: what
    an IVF over every point (sealed and growing alike) returns."""
    probed = set(seg.sealed.probed(q / np.linalg.norm(q), nprobe).tolist())
    pids = sorted(ref.points)
    lists = seg.sealed.assign(np.stack([ref.points[p][0] for p in pids]))
    inside = Reference()
    inside.points = {p: ref.points[p] for p, lst in zip(pids, lists, strict=True)
                     if int(lst) in probed}
    return inside.search(q, k, None)


def test_growing_rows_are_searched_by_the_sealed_lists(tmp_path: Path) -> None:
    """With few lists probed, a growing row is found exactly when its list is probed, like a
    sealed one: the search reads those lists' growing rows only, and rows written while a
    merge was built are filed under the new lists when it is installed."""
    rng, ref, nprobe = np.random.default_rng(11), Reference(), 4
    s = SegmentedStore(EdgeStore(tmp_path / "q"), tmp_path / "seg", merge_rows=0,
                       nprobe=nprobe, codes="flat")
    s.ensure_collection("songs", DIM, INDEXES)
    seg = s.segments["songs"]
    pts = make_points(rng, range(2000))
    s.upsert("songs", pts)
    ref.upsert(pts)
    s.merge("songs", full=True)
    assert seg.sealed is not None and seg.sealed.lists > 4 * nprobe
    folder = tmp_path / "build"
    folder.mkdir()
    write_snapshot(seg, seg.begin_snapshot(), folder)
    child = start_build(folder)
    churn(s, ref, rng, 2000)  # written against the old lists, while the child builds
    old = seg.sealed
    assert seg.install(finish_build(child, folder)) and seg.sealed is not old
    assert np.count_nonzero(seg.listed.list_of[:seg.grown_n] == 0) == seg.grown_n
    while seg.list_unlisted(chunk=64):
        pass
    churn(s, ref, rng, 2150)  # written against the new lists
    assert seg.growing > 300 and np.all(seg.listed.list_of[:seg.grown_n] > 0)
    differs = 0
    for _ in range(40):
        q = rng.standard_normal(DIM).astype(np.float32)
        got = [h.id for h in s.search("songs", q, 10)]
        assert got == listed_truth(seg, ref, q, 10, nprobe)
        assert len(seg._probed_rows(q / np.linalg.norm(q), nprobe)) < seg.grown_n
        differs += got != ref.search(q, 10, None)
    assert differs > 0  # the lists matter at this nprobe: not an exact search in disguise
    seg.list_growing = False  # every growing row scanned: none that scores higher is missed
    growing = {seg.ids[x] for x in seg.grown_slot[:seg.grown_n] if seg.alive[x]}
    for _ in range(10):
        q = rng.standard_normal(DIM).astype(np.float32)
        hits = s.search("songs", q, 10)
        u = q / np.linalg.norm(q)
        above = {p for p in growing if float(ref.points[p][0] @ u) > hits[-1].score + 1e-6}
        assert above <= {h.id for h in hits}
    s.close()


@pytest.mark.parametrize("codes", ["flat", "sq8", "pq4"])
def test_a_search_with_its_lists_found_once_equals_a_plain_search(tmp_path: Path,
                                                                   codes: str) -> None:
    """The sealed search and the growing rows share one coarse quantization per query;
    faiss's preassigned search must return what its plain search does, filtered or not."""
    rng = np.random.default_rng(5)
    s = SegmentedStore(EdgeStore(tmp_path / "q"), tmp_path / "seg", merge_rows=0, codes=codes)
    s.ensure_collection("songs", DIM, INDEXES)
    s.upsert("songs", make_points(rng, range(3000)))
    s.merge("songs", full=True)
    sealed = s.segments["songs"].sealed
    assert sealed is not None and sealed.codes == codes
    allowed = rng.random(3000) < 0.3
    for _ in range(10):
        q = rng.standard_normal(DIM).astype(np.float32)
        q /= np.linalg.norm(q)
        coarse = sealed.coarse(q, 6)
        for plain, found in [(search_plain(sealed, q, 20, 6), search_plain(sealed, q, 20, 6,
                                                                          coarse)),
                             (sealed.search(q, 20, allowed, 6),
                              sealed.search(q, 20, allowed, 6, coarse))]:
            assert np.array_equal(plain[0], found[0])
            assert np.allclose(plain[1], found[1])


def test_float16_rows_convert_exactly() -> None:
    """Every finite float16 value, zeros and subnormals included, converts bit for bit as
    numpy's cast does; as rows of a matrix, as one vector and as no rows."""
    bits = np.arange(1 << 16, dtype=np.uint16)
    values = bits.view(np.float16)[np.isfinite(bits.view(np.float16))]
    rows = values[: len(values) // 32 * 32].reshape(-1, 32)
    want = rows.astype(np.float32)
    assert np.array_equal(as_float32(rows).view(np.uint32), want.view(np.uint32))
    assert np.array_equal(as_float32(rows[7]).view(np.uint32), want[7].view(np.uint32))
    assert as_float32(rows[:0]).shape == (0, 32)


def test_a_filter_most_points_pass_is_applied_to_the_hits(
        store: SegmentedStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's songs search (``is_cold == 0`` without the new song itself) keeps nearly
    every point: it filters an over-fetched search's hits, sealed and growing, and builds no
    bitmap over every slot; results equal exact search, with its own top hits excluded."""
    rng, ref = np.random.default_rng(21), Reference()
    pts = make_points(rng, range(2000))
    for i, p in enumerate(pts):
        p.payload["is_cold"] = int(i % 40 == 0)
    store.upsert("songs", pts)
    ref.upsert(pts)
    store.merge("songs")
    fresh = make_points(rng, range(2000, 2100))
    for p in fresh:
        p.payload["is_cold"] = 0
    store.upsert("songs", fresh)
    ref.upsert(fresh)
    gone = [song_point_id(f"s{i}") for i in range(1, 2000, 97)]
    store.delete("songs", gone)
    for pid in gone:
        ref.points.pop(pid)
    seg = store.segments["songs"]
    bitmaps = []
    monkeypatch.setattr(seg, "_allowed", lambda where: bitmaps.append(where))
    for _ in range(30):
        q = rng.standard_normal(DIM).astype(np.float32)
        near = ref.search(q, 3, None)  # the query's own neighbourhood, as a new song's
        where = Where(equals={"is_cold": 0}, exclude_ids=frozenset(near))
        got = store.search("songs", q, 10, where)
        assert [h.id for h in got] == ref.search(q, 10, where)
    assert bitmaps == []
