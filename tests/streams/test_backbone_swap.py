"""A model swap with the frozen-backbone cache gives the vectors a swap without it gives, and
runs no frozen graph for songs the worker has embedded before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from hypothesis import given
from hypothesis import strategies as st

from encoders.artifacts import Registry
from encoders.backbone import BackboneCache
from encoders.runtime import LoadedModel, load_model
from streams import pipeline, swap
from streams.audio import load_song_audio
from streams.events import SongEvent
from streams.ids import song_point_id
from streams.settings import Settings, load_settings
from streams.stores import EdgeStore, Hit, Point, make_hit, scroll_all

from .test_model_swap import derive_version


def songs(folder: Path, n: int = 24) -> list[SongEvent]:
    """Songs with text, every third with a short audio file."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        uri = None
        if i % 3 == 0:
            path = folder / f"s{i}.wav"
            sf.write(path, 0.2 * rng.standard_normal(16_000 * 2).astype(np.float32), 16_000)
            uri = path.as_uri()
        out.append(SongEvent(schema_version=1, event_id=f"e{i}", song_id=f"s{i}",
                             title=f"Song {i}", artist=f"Artist {i % 4}", tags=["pop", f"t{i}"],
                             released_at=1_700_000_000_000, audio_uri=uri))
    return out


def serve(store: EdgeStore, src: pipeline.Collections, model: LoadedModel,
          events: list[SongEvent], settings: Settings, keep_digest: bool = True) -> None:
    """Index songs as the worker does: each passes the frozen graphs once (filling the
    cache), and its point keeps its audio file's digest (``keep_digest=False``: a point
    written before digests were kept)."""
    for ev in events:
        clip = load_song_audio(ev.audio_uri, model.songs.sample_rate,
                               settings) if ev.audio_uri else None
        vec = model.songs.encode([pipeline.song_input(ev, clip)])[0]
        payload = pipeline.song_payload(ev, model.version, [], clip is not None,
                                        clip.key if clip and keep_digest else None)
        store.upsert(src.songs, [Point(song_point_id(ev.song_id), vec, payload)])


def swapped(store: EdgeStore, src: pipeline.Collections, model: LoadedModel, label: str,
            settings: Settings) -> dict[str, Hit]:
    """Re-embed ``src`` into ``model``'s new collections; the points there, by id."""
    dst = pipeline.Collections(f"songs_{label}", f"users_{label}")
    store.ensure_collection(dst.songs, model.manifest.dim, pipeline.SONG_INDEXES)
    swap.reembed_catalogue(store, src, dst, model, settings)
    return {h.id: h for h in scroll_all(store, dst.songs, with_vector=True)}


def test_a_swap_reads_no_audio_file_when_the_point_keeps_its_digest(
        private_registry: Registry, tmp_path: Path) -> None:
    """The worker restarts and the audio files are gone before the swap: the rows it kept on
    disk, found by the digest each point kept, still give the uncached swap's vectors, and
    every song keeps its audio."""
    registry, base = private_registry, private_registry.current() or ""
    derive_version(registry, base, "v2-head", fusion={"text_weight": 0.5, "audio_weight": 0.9})
    settings = load_settings(data_dir=tmp_path, audio_roots=(tmp_path,))
    serving = BackboneCache(folder=tmp_path / "backbones")
    store = EdgeStore(tmp_path / "qdrant")
    try:
        src = pipeline.ensure_collections(store, load_model(registry, base))
        events = songs(tmp_path)
        serve(store, src, load_model(registry, base, cache=serving), events, settings)
        serving.close()
        plain = swapped(store, src, load_model(registry, "v2-head"), "plain", settings)
        for wav in tmp_path.glob("*.wav"):
            wav.unlink()
        cache = BackboneCache(folder=tmp_path / "backbones")  # after a restart
        cached = swapped(store, src, load_model(registry, "v2-head", cache=cache), "cached",
                         settings)
        assert cache.misses == 0 and cache.hits == len(events) + len(events) // 3
        assert cached.keys() == plain.keys() and len(cached) == len(events)
        for pid, hit in plain.items():
            np.testing.assert_allclose(cached[pid].vector, hit.vector, atol=1e-5)
            assert cached[pid].payload["has_audio"] == hit.payload["has_audio"]
            assert cached[pid].payload.get("audio_digest") == hit.payload.get("audio_digest")
        assert sum(h.payload["has_audio"] for h in cached.values()) == len(events) // 3
        # Without a cache the files are needed: the songs fall back to their text.
        fallback = swapped(store, src, load_model(registry, "v2-head"), "text", settings)
        assert sum(h.payload["has_audio"] for h in fallback.values()) == 0
    finally:
        store.close()


def test_swap_with_backbone_cache_equals_swap_without(private_registry: Registry,
                                                      tmp_path: Path) -> None:
    registry, base = private_registry, private_registry.current() or ""
    derive_version(registry, base, "v2-head",  # same frozen graphs, another head
                   fusion={"text_weight": 0.5, "audio_weight": 0.9})
    settings = load_settings(data_dir=tmp_path, audio_roots=(tmp_path,))
    cache = BackboneCache()
    v1 = load_model(registry, base, cache=cache)
    store = EdgeStore(tmp_path / "qdrant")
    try:
        src = pipeline.ensure_collections(store, v1)
        events = songs(tmp_path)
        serve(store, src, v1, events, settings, keep_digest=False)
        misses = cache.misses
        vectors = {}
        for label, model in (("cached", load_model(registry, "v2-head", cache=cache)),
                             ("plain", load_model(registry, "v2-head"))):
            dst = pipeline.Collections(f"songs_{label}", f"users_{label}")
            store.ensure_collection(dst.songs, model.manifest.dim, pipeline.SONG_INDEXES)
            assert swap.reembed_catalogue(store, src, dst, model, settings) == len(events)
            vectors[label] = {h.id: h.vector for h in
                              scroll_all(store, dst.songs, with_vector=True)}
        assert cache.misses == misses  # the cached swap ran no frozen graph
        assert vectors["cached"].keys() == vectors["plain"].keys()
        for pid, v in vectors["plain"].items():
            np.testing.assert_allclose(vectors["cached"][pid], v, atol=1e-5)
        old = {h.id: h.vector for h in scroll_all(store, src.songs, with_vector=True)}
        assert max(float(np.abs(old[p] - v).max()) for p, v in vectors["plain"].items()) > 1e-3
    finally:
        store.close()


def test_a_changed_backbone_never_hits_old_rows() -> None:
    cache = BackboneCache()
    rows = cache.lookup("graph-a", [b"k1", b"k2"], lambda idx: np.ones((len(idx), 3)))
    assert rows.shape == (2, 3) and cache.misses == 2
    cache.lookup("graph-a", [b"k2", b"k3"], lambda idx: np.full((len(idx), 3), 2.0))
    assert (cache.hits, cache.misses) == (1, 3)
    fresh = cache.lookup("graph-b", [b"k1"], lambda idx: np.zeros((len(idx), 3)))
    assert fresh.tolist() == [[0.0, 0.0, 0.0]] and cache.misses == 4


def test_kept_rows_survive_a_restart_and_a_torn_last_record(tmp_path: Path) -> None:
    """A cache with a folder reads its rows back (a restarted worker's first swap still runs
    only the heads); a record cut short by a crash is dropped, the rest kept."""
    keys = [bytes([i]) * 16 for i in range(5)]
    rows = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)
    first = BackboneCache(folder=tmp_path)
    first.lookup("graph-a", keys[:4], lambda idx: rows[idx])
    first.lookup("graph-b", keys[:1], lambda idx: np.ones((len(idx), 2)))
    first.close()
    files = sorted(p.name for p in tmp_path.glob("*.rows"))
    assert files == ["graph-a-3.rows", "graph-b-2.rows"]
    with (tmp_path / "graph-a-3.rows").open("ab") as f:
        f.write(keys[4] + b"\x00" * 5)  # a crash mid-record

    again = BackboneCache(folder=tmp_path)
    got = again.lookup("graph-a", keys, lambda idx: np.full((len(idx), 3), -1.0))
    assert (again.hits, again.misses) == (4, 1)  # the torn fifth row is computed again
    np.testing.assert_array_equal(got[:4], rows[:4])
    assert got[4].tolist() == [-1.0, -1.0, -1.0]
    assert again.has("graph-b", keys[0]) and not again.has("graph-b", keys[1])
    again.close()
    assert len(BackboneCache(folder=tmp_path)) == 6  # the recomputed row was appended whole


class CountingStore:
    """The real store, counting its scrolls (a full scan of a collection)."""

    def __init__(self, inner: EdgeStore) -> None:
        self.inner, self.scrolls = inner, 0

    def scroll(self, *args: Any, **kwargs: Any) -> Any:
        self.scrolls += 1
        return self.inner.scroll(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_the_switch_reconciles_only_the_noted_songs_without_a_scan(
        private_registry: Registry, tmp_path: Path) -> None:
    """Written during the swap: a new song, a re-sent song with a new title, new listeners of
    another. Given their ids, the exclusive step redoes exactly those, with no scan of either
    catalogue; the full catch-up (before the switch) also finds a write nobody noted."""
    registry, base = private_registry, private_registry.current() or ""
    derive_version(registry, base, "v2-head", fusion={"text_weight": 0.5, "audio_weight": 0.9})
    settings = load_settings(data_dir=tmp_path, audio_roots=(tmp_path,))
    v1, v2 = load_model(registry, base), load_model(registry, "v2-head")
    store = CountingStore(EdgeStore(tmp_path / "qdrant"))
    try:
        src = pipeline.ensure_collections(store, v1)
        events = songs(tmp_path, n=6)
        serve(store, src, v1, events, settings)
        dst = pipeline.Collections("songs_v2", "users_v2")
        store.ensure_collection(dst.songs, v2.manifest.dim, pipeline.SONG_INDEXES)
        swap.reembed_catalogue(store, src, dst, v2, settings)

        fresh = events[0].model_copy(update={"song_id": "new", "event_id": "e-new"})
        resent = events[1].model_copy(update={"title": "A new title"})
        serve(store, src, v1, [fresh, resent], settings)
        pipeline.write_engagers(store, src, "s2", [["u1", "collect", 5]])
        pipeline.write_engagers(store, src, "s3", [["u2", "play", 6]])  # not noted
        store.scrolls = 0
        assert swap.reconcile(store, src, dst, v2, settings, {"new", "s1", "s2"}) == (2, 1)
        assert store.scrolls == 0
        got = {h.payload["song_id"]: h for h in scroll_all(store, dst.songs, with_vector=True)}
        assert got["s1"].payload["title"] == "A new title"
        want = v2.songs.encode([pipeline.song_input(resent, None)])[0]
        np.testing.assert_allclose(got["s1"].vector, want, atol=1e-5)
        assert "new" in got and pipeline.engagers_of(got["s2"].payload) == [["u1", "collect", 5]]
        assert pipeline.engagers_of(got["s3"].payload) == []
        assert swap.reconcile(store, src, dst, v2, settings) == (0, 1)  # the full pass
        # a backend whose scroll is not in id order: the full pass pairs in memory instead
        pipeline.write_engagers(store, src, "s4", [["u3", "skip", 7]])
        assert swap.reconcile(ReversedPages(store), src, dst, v2, settings) == (0, 1)
        s4 = store.retrieve(dst.songs, [song_point_id("s4")], with_vector=False)[0]
        assert pipeline.engagers_of(s4.payload) == [["u3", "skip", 7]]
    finally:
        store.inner.close()


class ReversedPages(CountingStore):
    """Scroll pages in reverse id order."""

    def scroll(self, *args: Any, **kwargs: Any) -> Any:
        hits, nxt = self.inner.scroll(*args, **kwargs)
        return hits[::-1], nxt


@given(st.sets(st.integers(0, 60)), st.sets(st.integers(0, 60)))
def test_the_full_pass_pairs_points_by_id_without_holding_either(old: set[int],
                                                                  new: set[int]) -> None:
    """The merge join over two id-ordered scrolls gives what a dictionary join gives."""
    def hits(ids: set[int]) -> list[Hit]:
        return [make_hit(f"{i:04d}", {"n": i}) for i in sorted(ids)]

    got = [(a.id, b.id if b else None) for a, b in swap.paired_by_id(hits(old), hits(new))]
    assert got == [(f"{i:04d}", f"{i:04d}" if i in new else None) for i in sorted(old)]
    in_memory = swap.paired_in_memory(hits(old)[::-1], hits(new)[::-1])  # any order
    assert sorted((a.id, b.id if b else None) for a, b in in_memory) == got


def test_an_unordered_scroll_is_refused() -> None:
    import pytest

    unordered = [make_hit("b", {}), make_hit("a", {})]
    with pytest.raises(swap.UnorderedScroll):
        list(swap.paired_by_id(unordered, []))
    with pytest.raises(swap.UnorderedScroll):
        list(swap.paired_by_id([make_hit("z", {})], unordered))


def test_users_are_recomputed_a_chunk_at_a_time(private_registry: Registry,
                                                 tmp_path: Path) -> None:
    """The swap reads the user table one chunk per step of the event loop, never all of it at
    once; every user still lands in the new version's collection."""
    import asyncio

    from streams.events import now_ms
    from streams.state_format import pack_user_state

    now = now_ms()

    registry, base = private_registry, private_registry.current() or ""
    settings = load_settings(data_dir=tmp_path, audio_roots=(tmp_path,))
    model = load_model(registry, base)
    store = EdgeStore(tmp_path / "qdrant")
    try:
        cols = pipeline.ensure_collections(store, model)
        serve(store, cols, model, songs(tmp_path, n=6), settings)
        users = {f"u{k}": pack_user_state({
            "history": [[f"s{(k + j) % 6}", "collect", now - 1000 * j] for j in range(3)],
            "counts": {"collect": 3}, "offsets": {}, "event_ids": [], "seen": [],
            "boundary": 0.0, "applied": 3}) for k in range(5)}
        chunks: list[int] = []

        async def in_thread(fn: Any, *args: Any) -> Any:
            chunks.append(len(args[-1]))
            return fn(*args)

        done = asyncio.run(swap.recompute_all_users(users, store, cols, model, in_thread, 2))
        assert done == 5 and chunks == [2, 2, 1]
        assert sorted(h.payload["user_id"] for h in scroll_all(store, cols.users)) == sorted(users)
    finally:
        store.close()


def test_a_cache_that_cannot_write_keeps_serving_from_memory(tmp_path: Path) -> None:
    """A stray file is skipped when the cache opens; a failed append (a full disk, say) turns
    persistence off instead of failing the encode."""
    (tmp_path / "not-a-backbone.rows").write_bytes(b"junk")
    cache = BackboneCache(folder=tmp_path)
    (tmp_path / "graph-a-3.rows").mkdir()  # opening it for append fails
    rows = cache.lookup("graph-a", [bytes(16)], lambda idx: np.ones((len(idx), 3)))
    assert rows.tolist() == [[1.0, 1.0, 1.0]] and cache.has("graph-a", bytes(16))
