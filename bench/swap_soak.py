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
metrics (``coldstream_model_swap_seconds``, ``coldstream_model_swap_pause_seconds``,
``coldstream_model_swap_gave_way_seconds_total``). The full run soaks once per swap policy
(:data:`POLICIES`): first the swap that never gives way to events, as it was, then the
default, each on a copy of the same world.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from encoders.artifacts import Registry
from encoders.backbone import BackboneCache
from encoders.runtime import load_model
from streams.broker import EmbeddedBroker, ensure_topics
from streams.context import backbone_folder
from streams.settings import load_settings
from streams.stores import chunks
from training.publish import announce

from . import live, scale
from .common import Mode, Report, ms, ratio
from .models import DEFAULT_MODELS
from .reembed import derive

#: The swap's thread as it was (never waits, Python's 5 ms switch interval) and as it is.
POLICIES = {"swap never waits (as before)": {"COLDSTREAM_SWAP_GIVE_WAY_MS": "0",
                                             "COLDSTREAM_SWAP_SWITCH_INTERVAL_MS": "0"},
            "swap gives way (default)": {}}
#: quick: a smoke test. Offered until songs have been sent for ``after_switch_s`` after the
#: switch, at most 90 s, at a light load: at 100 interactions/s the swap gave way to the
#: events for 36 of its 49 s on this 2-core machine (a fixed 25 s soak, the old length, left
#: the last window empty about half the time); at 40/s it took 18 s. full: fixed lengths, so
#: that runs compare.
SIZES = {"quick": {"n": 1_000, "rate": 40.0, "songs_rate": 2.0, "seconds": 90.0,
                   "swap_at_s": 3.0, "merge_rows": 1_000, "after_switch_s": 6.0,
                   "policies": ["swap gives way (default)"]},
         "full": {"n": 20_000, "rate": 200.0, "songs_rate": 2.0, "seconds": 150.0,
                  "swap_at_s": 20.0, "merge_rows": 20_000, "after_switch_s": None,
                  "policies": list(POLICIES)}}


def switched_for(seconds: float | None) -> Callable[[scale.Soak], bool] | None:
    """A soak's end condition: the worker's scrapes have shown the swap done for
    ``seconds`` (None: never, the soak runs its whole length)."""
    if seconds is None:
        return None

    def enough(soak: scale.Soak) -> bool:
        done = [s["t"] for s in soak.scrapes if s.get("swaps_ok")]
        return bool(done) and soak.scrapes[-1]["t"] - min(done) >= seconds

    return enough


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
    """One soak per swap policy (full: the old one first, as the same-run baseline), each on
    a copy of the same world, registry and cache, with a broker of its own."""
    size = {**SIZES[mode], **sizes}
    rep = Report("swap_soak", mode, {**size, "audio": "30 s mono WAV, 44.1 kHz"})
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="coldstream-bench-swap-soak-"))
    try:
        shutil.copytree(models, tmp / "models")  # the swap promotes a version: not in yours
        reg = Registry(tmp / "models")
        world = scale.write_world(load_model(reg, reg.current() or ""), tmp / "data", size["n"],
                                  size["n"])
        rep.extra["prefill_s"] = prefill_text_rows(reg, tmp / "data", size["n"])
        wavs = live.write_wavs(tmp / "audio")
        for policy in size["policies"]:
            soak = soak_on_a_copy(tmp, policy, world, size, wavs)
            rep.rows += [{"policy": policy, **row} for row in latency_rows(soak)]
            last = soak.scrapes[-1]
            rep.extra.setdefault("scrapes", {})[policy] = soak.scrapes
            rep.extra.setdefault("swaps", {})[policy] = {
                "swaps_ok": last.get("swaps_ok", 0.0), "swap_seconds": last.get("swap_s", 0.0),
                "switch_pause_ms": last.get("swap_pause_s", 0.0) * 1e3,
                "gave_way_s": last.get("swap_gave_way_s", 0.0),
                "max_loop_stall_ms": max(s["stall_s"] for s in soak.scrapes) * 1e3}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = next(r["p99_ms"] for r in rep.rows if r["window"] == "during the swap")
    for row in rep.rows:  # the first policy's rows come first
        row["p99_x_first_policy_during"] = (ratio(row["p99_ms"], base)
                                            if row["window"] == "during the swap" else None)
    rep.summary = dict(rep.extra["swaps"][size["policies"][-1]])
    rep.notes.append("one worker per policy, one run each; songs split by when they were sent")
    rep.seconds = time.perf_counter() - start
    return rep


def soak_on_a_copy(tmp: Path, policy: str, world: scale.World, size: dict[str, Any],
                   wavs: list[str]) -> scale.Soak:
    """A soak with a swap under ``policy``, on fresh copies of the data and the registry."""
    run_dir = tmp / "run"  # removed after each soak
    shutil.copytree(tmp / "data", run_dir / "data")
    shutil.copytree(tmp / "models", run_dir / "models")
    reg = Registry(run_dir / "models")
    names = live.topics("sc")
    rates = (float(size["rate"]), float(size["songs_rate"]))
    try:
        with EmbeddedBroker(log_path=run_dir / "tansu.log") as broker:
            asyncio.run(ensure_topics(broker.bootstrap, list(names.values()), 4))
            return soak_with_swap(broker.bootstrap, reg, reg.current() or "", run_dir, names,
                                  world, rates, size, tmp / "audio", wavs, POLICIES[policy])
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def soak_with_swap(bs: str, reg: Registry, base: str, tmp: Path, names: dict[str, str],
                   world: scale.World, rates: tuple[float, float], size: dict[str, Any],
                   audio: Path, wavs: list[str], env: dict[str, str]) -> scale.Soak:
    worker = live.Worker(bs, reg.root, tmp / "data", "sc", audio_root=audio,
                         extra_env={"COLDSTREAM_LAG_INTERVAL_S": "2",
                                    "COLDSTREAM_SEGMENT_MERGE_ROWS": str(size["merge_rows"]),
                                    **env})
    worker.start(ready_timeout=1200)
    try:
        scale.wait_merges(worker, names, 2, 600)

        def publish() -> None:  # as `coldstream train --bootstrap` does: the worker starts
            derive(reg, base, "v-swap", retrain_audio=False)  # at once, not at its 15 s check
            reg.promote("v-swap")
            announce(reg, reg.load("v-swap"), bs, names["versions"], client={})

        timer = threading.Timer(size["swap_at_s"], publish)
        timer.start()
        try:
            return asyncio.run(scale.soak_run(bs, worker, names, world, rates,
                                              size["seconds"], wavs,
                                              until=switched_for(size["after_switch_s"])))
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
