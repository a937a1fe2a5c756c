"""Scenario ``swap_soak``: new-song latency while a running worker swaps model versions.

The scale soak's worker, world and streams (``bench/scale.py``), offered new songs below
what one worker sustains, so their latency is not a backlog's. Before the worker starts, its
frozen-backbone cache (``data_dir/backbones``) holds MiniLM's output for every catalogue song,
as a worker that served them has it; the new songs of the soak fill it as they are served.
``swap_at_s`` into the soak the bench publishes a version with a new head and the same frozen
graphs and makes it current; the worker finds it at its next registry check (<= 15 s),
re-embeds the catalogue from the cache, recomputes its users and switches.

The new songs are split by when they were sent: before the swap began (the baseline, same
run), while it ran, and after the switch. The swap's own figures come from the worker's
metrics (``coldstream_model_swap_seconds``, ``coldstream_model_swap_pause_seconds``).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from encoders.artifacts import Registry
from encoders.backbone import BackboneCache
from encoders.runtime import load_model
from streams.broker import EmbeddedBroker, ensure_topics
from streams.context import backbone_folder
from streams.settings import load_settings
from streams.stores import chunks

from . import live, scale
from .common import Mode, Report, ms, ratio
from .models import DEFAULT_MODELS
from .reembed import derive

SIZES = {"quick": {"n": 2_000, "rate": 100.0, "songs_rate": 2.0, "seconds": 25.0,
                   "swap_at_s": 3.0, "merge_rows": 1_000},
         "full": {"n": 20_000, "rate": 200.0, "songs_rate": 2.0, "seconds": 90.0,
                  "swap_at_s": 20.0, "merge_rows": 20_000}}


def prefill_text_rows(reg: Registry, data_dir: Path, n: int) -> float:
    """MiniLM's output for the catalogue's songs, filed where the worker's cache reads it."""
    t = time.perf_counter()
    cache = BackboneCache(folder=backbone_folder(load_settings(data_dir=data_dir)))
    model = load_model(reg, reg.current() or "", threads=2, cache=cache)
    texts = [live._text(live.song_event(i, i % scale.G)) for i in range(n)]
    for page in chunks(texts, 64):
        model.songs.text.encode(list(page))
    cache.close()
    return time.perf_counter() - t


def run(mode: Mode, models: Path = DEFAULT_MODELS, **sizes: Any) -> Report:
    size = {**SIZES[mode], **sizes}
    rates = (float(size["rate"]), float(size["songs_rate"]))
    rep = Report("swap_soak", mode, {**size, "audio": "30 s mono WAV, 44.1 kHz"})
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="coldstream-bench-swap-soak-"))
    names = live.topics("sc")
    try:
        shutil.copytree(models, tmp / "models")  # the swap promotes a version: not in yours
        reg = Registry(tmp / "models")
        base = reg.current() or ""
        model = load_model(reg, base)
        world = scale.write_world(model, tmp / "data", size["n"], size["n"])
        rep.extra["prefill_s"] = prefill_text_rows(reg, tmp / "data", size["n"])
        wavs = live.write_wavs(tmp / "audio")
        with EmbeddedBroker(log_path=tmp / "tansu.log") as broker:
            asyncio.run(ensure_topics(broker.bootstrap, list(names.values()), 4))
            soak = soak_with_swap(broker.bootstrap, reg, base, tmp, names, world, rates, size,
                                  wavs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rep.rows = latency_rows(soak)
    rep.extra["scrapes"] = soak.scrapes
    last = soak.scrapes[-1]
    rep.summary = {"swaps_ok": last.get("swaps_ok", 0.0),
                   "swap_seconds": last.get("swap_s", 0.0),
                   "switch_pause_ms": last.get("swap_pause_s", 0.0) * 1e3,
                   "max_loop_stall_ms": max(s["stall_s"] for s in soak.scrapes) * 1e3}
    rep.notes.append("one worker, one run; songs split by when they were sent")
    rep.seconds = time.perf_counter() - start
    return rep


def soak_with_swap(bs: str, reg: Registry, base: str, tmp: Path, names: dict[str, str],
                   world: scale.World, rates: tuple[float, float], size: dict[str, Any],
                   wavs: list[str]) -> scale.Soak:
    worker = live.Worker(bs, reg.root, tmp / "data", "sc", audio_root=tmp / "audio",
                         extra_env={"COLDSTREAM_LAG_INTERVAL_S": "2",
                                    "COLDSTREAM_SEGMENT_MERGE_ROWS": str(size["merge_rows"])})
    worker.start(ready_timeout=1200)
    try:
        scale.wait_merges(worker, names, 2, 600)

        def publish() -> None:
            derive(reg, base, "v-swap", retrain_audio=False)
            reg.promote("v-swap")

        timer = threading.Timer(size["swap_at_s"], publish)
        timer.start()
        try:
            return asyncio.run(scale.soak_run(bs, worker, names, world, rates,
                                              size["seconds"], wavs))
        finally:
            timer.cancel()
    finally:
        worker.stop(timeout=120)


def latency_rows(soak: scale.Soak) -> list[dict[str, Any]]:
    """New song -> first candidate, by when the song was sent relative to the swap (bench
    clock: the soak starts with its first song; the swap's bounds are the first scrape that
    saw it in progress and the first that saw it done, so they are known to +-2 s)."""
    t0 = min(soak.sent.values())
    during = [s["t"] for s in soak.scrapes if s.get("swap_in_progress")]
    done = [s["t"] for s in soak.scrapes if s.get("swaps_ok")]
    began = min(during) if during else (min(done) if done else float("inf"))
    ended = min(done) if done else float("inf")
    windows = {"before the swap": (-1.0, began), "during the swap": (began, ended),
               "after the switch": (ended, float("inf"))}
    rows = []
    for label, (lo, hi) in windows.items():
        lat = [soak.got[k] - soak.sent[k] for k in soak.got if lo <= soak.sent[k] - t0 < hi]
        rows.append({"window": label, "from_s": max(lo, 0.0),
                     "to_s": None if hi == float("inf") else hi, "songs": len(lat), **ms(lat)})
    for row in rows:
        row["p99_x_before"] = ratio(row["p99_ms"], rows[0]["p99_ms"])
    return rows
