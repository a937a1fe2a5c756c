"""Scenario ``reembed``: a model swap's re-embedding with and without the frozen-backbone cache.

The worker's own path: songs served by version 1 (each passing the frozen graphs once, which
fills :class:`encoders.backbone.BackboneCache`), then ``streams.swap.reembed`` of the scrolled
catalogue into version 2 - same text tower, new head - four ways in the same run: no cache
(the baseline), cache with the audio tower retrained (only MiniLM is reused: the trained
model's case), and cache with an unchanged audio tower too (the provisional model's case),
once for points that keep their audio file's digest (as the worker writes them: a hit reads
no file) and once for points that do not (written before digests were kept). Every song has
a 30 s clip, as in scenario 3.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from encoders.artifacts import Registry, write_manifest
from encoders.backbone import BackboneCache, digest
from encoders.runtime import load_model
from streams import pipeline, swap
from streams.audio import load_song_audio
from streams.events import SongEvent
from streams.ids import song_point_id
from streams.settings import load_settings
from streams.stores import EdgeStore, Point, chunks, scroll_all

from .common import Mode, Report, ratio
from .models import registry as bench_registry


def derive(reg: Registry, parent: str, version: str, retrain_audio: bool) -> None:
    """A version with a new head; ``retrain_audio`` gives it an audio graph with other bytes
    (same computation: the cost of a retrained tower, and a backbone hash that misses)."""
    import onnx

    with reg.staging(version) as folder:
        for f in reg.path(parent).iterdir():
            if f.name != "manifest.json":
                shutil.copy(f, folder / f.name)
        manifest = reg.load(parent)
        if retrain_audio:
            graph = onnx.load(folder / manifest.audio.graph)
            graph.doc_string = f"retrained for {version}"
            onnx.save(graph, folder / manifest.audio.graph)
        write_manifest(folder, manifest.model_copy(update={
            "version": version, "parent": parent, "created_at": int(time.time() * 1000),
            "fusion": manifest.fusion.model_copy(update={"text_weight": 0.6})}))


def workspace(models: Path, prefix: str) -> tuple[Path, Registry, str, Any]:
    """A temporary folder with a copy of the bench model, a version of it with a new head
    ("v2-new-head"), and settings that read audio from the folder."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    base_reg = bench_registry(models)
    reg = Registry(root / "models")
    base = base_reg.current() or ""
    shutil.copytree(base_reg.path(base), reg.path(base))
    derive(reg, base, "v2-new-head", retrain_audio=False)
    return root, reg, base, load_settings(data_dir=root, audio_roots=(root,))


def songs(folder: Path, n: int, sr: int, files: int) -> list[SongEvent]:
    """``n`` songs over ``files`` distinct 30 s clips (song i plays clip i mod files)."""
    rng = np.random.default_rng(0)
    for j in range(files):
        sf.write(folder / f"s{j}.wav", 0.1 * rng.standard_normal(30 * sr).astype(np.float32), sr)
    return [SongEvent(schema_version=1, event_id=f"e{i}", song_id=f"s{i}",
                      title=f"Song number {i}", artist=f"Artist {i % 37}",
                      tags=["pop", "night", f"t{i % 11}"], released_at=1_700_000_000_000,
                      description="A song with a verse, a chorus and a bridge.",
                      audio_uri=(folder / f"s{i % files}.wav").as_uri()) for i in range(n)]


def serve(store: EdgeStore, src: pipeline.Collections, v1: Any, events: list[SongEvent],
          settings: Any, batch: int = 64) -> None:
    """Index the songs as the worker does (each passes v1's frozen graphs, filling the cache;
    each point keeps its audio file's digest), a batch at a time."""
    clips: dict[str, Any] = {}
    for page in tqdm(list(chunks(events, batch)), desc="serve v1", unit="batch"):
        for ev in page:
            if ev.audio_uri not in clips:
                clips[ev.audio_uri or ""] = load_song_audio(ev.audio_uri or "",
                                                            v1.songs.sample_rate, settings)
        vecs = v1.songs.encode([pipeline.song_input(ev, clips[ev.audio_uri or ""])
                                for ev in page])
        store.upsert(src.songs, [Point(song_point_id(ev.song_id), vec, pipeline.song_payload(
            ev, v1.version, [], True, clips[ev.audio_uri or ""].key))
            for ev, vec in zip(page, vecs, strict=True)])


def run(mode: Mode, models: Path, n: int | None = None, scale: int | None = None) -> Report:
    """Quick: 128 songs. Full: 100k songs; the rows that read audio re-embed the first 512
    (each its own clip, so no row gains from clips shared between songs), the digest row all
    of them; then 1M songs through :func:`prefilled_swap` (``scale``; 0 skips it)."""
    n = n or (128 if mode == "quick" else 100_000)
    scale = (0 if mode == "quick" else 1_000_000) if scale is None else scale
    files = min(n, 512)
    rep = Report("reembed", mode, {"songs": n, "distinct clips": files,
                                   "audio": "30 s clip per song", "batch": 32})
    start = time.perf_counter()
    root, reg, base, settings = workspace(models, "coldstream-bench-reembed-")
    derive(reg, base, "v2-new-audio", retrain_audio=True)
    cache = BackboneCache()
    v1 = load_model(reg, base, threads=2, cache=cache)  # set-up, not measured: both cores
    store = EdgeStore(root / "qdrant")
    try:
        src = pipeline.ensure_collections(store, v1)
        t = time.perf_counter()
        serve(store, src, v1, songs(root, n, v1.songs.sample_rate, files), settings)
        rep.extra["serve_s"] = time.perf_counter() - t
        cases = [("no cache (baseline)", "v2-new-head", None, True, files),
                 ("cache, audio tower retrained", "v2-new-audio", cache, True, files),
                 ("cache, audio tower unchanged, file read (no digest kept)", "v2-new-head",
                  cache, False, files),
                 ("cache, audio tower unchanged, digest kept (file not read)", "v2-new-head",
                  cache, True, n)]
        for i, (label, version, c, digests, size) in enumerate(cases):
            rep.rows.append(reembed_row(store, src, reg, version, c, label, settings, i,
                                        digests, size))
    finally:
        store.close()
        shutil.rmtree(root, ignore_errors=True)
    if scale:
        rep.rows.append(prefilled_swap(models, scale))
    base_rate = rep.rows[0]["songs/s"]
    for row in rep.rows:
        row["x_base"] = ratio(row["songs/s"], base_rate)
        row["min_per_100k"] = 100_000 / row["songs/s"] / 60
    rep.notes.append("1 core (ONNX intra-op 1); min_per_100k extrapolates the rate")
    rep.seconds = time.perf_counter() - start
    return rep


def prefilled_swap(models: Path, n: int, batch: int = 4096) -> dict[str, Any]:
    """A swap of ``n`` songs whose frozen outputs are all cached, as after serving them: the
    worker's path at a size whose serving pass (MiniLM for every song) would take hours here.

    The text rows are random unit vectors filed under each song's real key, the points carry
    random vectors and the digest of one real clip: a hit's work (key, lookup, head, upsert)
    does not depend on the values. Timed from the scroll to the last upsert, as above.
    """
    root, reg, base, settings = workspace(models, "coldstream-bench-reembed-scale-")
    cache = BackboneCache()
    model = load_model(reg, "v2-new-head", cache=cache)
    store = EdgeStore(root / "qdrant")
    rng = np.random.default_rng(0)
    try:
        src = pipeline.ensure_collections(store, model)
        events = songs(root, 1, model.songs.sample_rate, 1)
        clip = load_song_audio(events[0].audio_uri or "", model.songs.sample_rate, settings)
        model.songs.audio.vectors([clip.wave], [clip.key])  # the one audio row
        t = time.perf_counter()
        bar = tqdm(total=n, desc="prefill", unit="song")
        for start in range(0, n, batch):
            page = [event_like(events[0], i) for i in range(start, min(n, start + batch))]
            bar.update(len(page))
            keys = [digest(pipeline.song_input(ev, None).text) for ev in page]
            cache.lookup(model.songs.text.backbone, keys,
                         lambda idx: unit_rows(rng, len(idx), model.songs.text.dim))
            store.upsert(src.songs, [Point(song_point_id(ev.song_id), vec, pipeline.song_payload(
                ev, base, [], True, clip.key)) for ev, vec in
                zip(page, unit_rows(rng, len(page), model.manifest.dim), strict=True)])
        bar.close()
        prefill_s = time.perf_counter() - t
        dst = pipeline.Collections("songs_scale", "users_scale")
        store.ensure_collection(dst.songs, model.manifest.dim, pipeline.SONG_INDEXES)
        misses = cache.misses
        t = time.perf_counter()
        done = swap.reembed(store, scroll_all(store, src.songs), dst, model, settings)
        s = time.perf_counter() - t
        assert cache.misses == misses, "a prefilled swap ran a frozen graph"
        pauses = switch_pauses(store, src, dst, model, settings, n)
        pauses.update(pairing_memory(store, src, dst))
    finally:
        store.close()
        shutil.rmtree(root, ignore_errors=True)
    return {"path": f"cache, audio tower unchanged, digest kept: {n:,} songs, prefilled cache",
            "songs": done, "seconds": s, "songs/s": done / s, "prefill_s": prefill_s, **pauses}


def switch_pauses(store: EdgeStore, src: pipeline.Collections, dst: pipeline.Collections,
                  model: Any, settings: Any, n: int, noted: int = 1000) -> dict[str, float]:
    """The swap's exclusive step, both ways, after ``noted`` songs got new listeners during
    the swap: the full comparison of both catalogues (what the switch did before) and the
    noted ids only (what it does now)."""
    ids = [f"s{i}" for i in range(0, n, max(1, n // noted))][:noted]
    out = {}
    for label, song_ids in (("switch_full_scan_s", None), ("switch_noted_only_s", ids)):
        for k, song in enumerate(ids):
            pipeline.write_engagers(store, src, song, [[f"u{k}", "collect", len(label)]])
        t = time.perf_counter()
        added, changed = swap.reconcile(store, src, dst, model, settings, song_ids)
        out[label] = time.perf_counter() - t
        assert (added, changed) == (0, len(ids)), (added, changed)
    return out


def pairing_memory(store: EdgeStore, src: pipeline.Collections,
                   dst: pipeline.Collections) -> dict[str, float]:
    """Peak Python memory (tracemalloc, MiB) of the full catch-up's pairing of the two
    catalogues: both scrolls held in dictionaries (as it was) and the merge join of two
    id-ordered scrolls (``swap.paired_by_id``, as it is)."""
    def dict_join() -> int:
        old = {h.id: h for h in scroll_all(store, src.songs)}
        new = {h.id: h for h in scroll_all(store, dst.songs)}
        return sum(pid in new for pid in old)

    def merge_join() -> int:
        return sum(m is not None for _, m in swap.paired_by_id(
            scroll_all(store, src.songs), scroll_all(store, dst.songs)))

    out = {}
    for label, fn in (("pairing_dict_join_peak_mib", dict_join),
                      ("pairing_merge_join_peak_mib", merge_join)):
        tracemalloc.start()
        try:
            fn()
            out[label] = tracemalloc.get_traced_memory()[1] / 2**20
        finally:
            tracemalloc.stop()
    return out


def event_like(ev: SongEvent, i: int) -> SongEvent:
    return ev.model_copy(update={"event_id": f"e{i}", "song_id": f"s{i}",
                                 "title": f"Song number {i}", "artist": f"Artist {i % 37}",
                                 "tags": ["pop", "night", f"t{i % 11}"]})


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reembed_row(store: EdgeStore, src: pipeline.Collections, reg: Registry, version: str,
                cache: BackboneCache | None, label: str, settings: Any, i: int,
                digests: bool, size: int) -> dict[str, Any]:
    """One swap of the first ``size`` songs, timed from the scroll of the old collection to
    the last upsert. ``digests=False`` drops the audio digests from the payloads: points
    written before they were kept, whose files a swap must read."""
    model = load_model(reg, version, cache=cache)
    dst = pipeline.Collections(f"songs_{i}", f"users_{i}")
    store.ensure_collection(dst.songs, model.manifest.dim, pipeline.SONG_INDEXES)
    hits = cache.hits if cache else 0
    t = time.perf_counter()
    old = list(scroll_all(store, src.songs))
    if size < len(old):
        first = {song_point_id(f"s{j}") for j in range(size)}
        old = [h for h in old if h.id in first]
    if not digests:
        old = [replace(h, payload={k: v for k, v in h.payload.items() if k != "audio_digest"})
               for h in old]
    done = swap.reembed(store, old, dst, model, settings)
    s = time.perf_counter() - t
    return {"path": label, "songs": done, "seconds": s, "songs/s": done / s,
            "backbone_hits": (cache.hits - hits) if cache else 0}
