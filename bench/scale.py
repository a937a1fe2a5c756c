"""Scenario ``scale``: the soak. One worker on the embedded broker and store holding N songs and
N user vectors is offered interactions and new songs (30 s audio) at fixed rates for minutes.

The catalogue is written through the store interface (Qdrant Edge, what the worker opens)
before the worker starts: song vectors are the real model's vectors of 240 distinct song texts
plus a little noise (as :mod:`bench.live`), users are the mean of five songs of their
favourite genre plus noise; each song carries three engagers of its genre (so I2I2U has
seeds). The encoder is not the point: nothing of the catalogue goes through it.

While the worker runs, the bench offers ``rate`` interactions/s and ``songs_rate`` new songs/s,
reads the candidates topic (new song -> first candidate, on this process's clock), and every
2 s scrapes the worker: consumer lag per topic, events handled, songs indexed, segment merges,
the event-loop probe's longest stall (:mod:`streams.loop_probe`), and the worker's RSS.
Achieved rates are the worker's own counters over the offered window. After the worker stops,
the final song collection is reopened the way a restart does, sealed, and searched: store
search p50/p99 and recall@10 against exact numpy over the same live vectors.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from encoders.runtime import LoadedModel, SongInput
from streams import pipeline
from streams.broker import EmbeddedBroker, ensure_topics
from streams.events import SongEvent
from streams.ids import song_point_id, user_point_id
from streams.process import WorkerProcess
from streams.stores import EdgeStore, Point, SegmentedStore
from streams.stores.sealed import DEFAULT_CODES

from . import ingest, live
from .common import Mode, Report, ms, ratio
from .memory_cap import MemoryCap
from .models import DEFAULT_MODELS, loaded
from .search import exact, queries
from .state_store import memory_mb

G = len(live.GENRES)
ENGAGERS_PER_SONG = 3
SCRAPE_S = 2.0
#: The worker's loop probe (streams.loop_probe) in a process that does nothing else, run for
#: the soak's minutes: on a shared machine the scheduler alone wakes a loop late; the worker's
#: stall minus this is what the worker's own work costs. SIGTERM ends it early (a soak that
#: ended early), still printing.
NOISE_PROBE = """
import asyncio, json, signal, sys
async def main(seconds):
    loop = asyncio.get_running_loop()
    ended = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, ended.set)
    last = start = loop.time()
    worst = 0.0
    while loop.time() - start < seconds and not ended.is_set():
        await asyncio.sleep(0.01)
        now = loop.time()
        worst, last = max(worst, now - last - 0.01), now
    print(json.dumps({"max_late_ms": worst * 1e3}))
asyncio.run(main(float(sys.argv[1])))
"""


@dataclass
class World:
    """What the bench knows of the catalogue it wrote: enough to make realistic events."""

    n_songs: int
    n_users: int
    seconds: dict[str, float] = field(default_factory=dict)


def song_vectors(model: LoadedModel, n: int, rng: np.random.Generator,
                 distinct: int = 240) -> np.ndarray:
    """Song i (genre i % 12): one of ``distinct`` real encoded texts of its genre + noise."""
    base = model.songs.encode([SongInput(live._text(live.song_event(i, i % G)))
                               for i in range(distinct)])
    genre = np.arange(n) % G
    pick = (np.arange(n) // G * G + genre) % distinct
    v = base[pick] + 0.05 * rng.standard_normal((n, base.shape[1]), dtype=np.float32)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def user_vectors(songs: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """User u (genre u % 12): the mean of five songs of that genre + noise, unit length."""
    g = np.arange(n) % G
    per_genre = len(songs) // G
    picks = g[:, None] + G * rng.integers(0, max(per_genre, 1), (n, 5))
    v = songs[np.minimum(picks, len(songs) - 1)].mean(axis=1)
    v += 0.02 * rng.standard_normal(v.shape, dtype=np.float32)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def typical_boundary(model: LoadedModel, users: np.ndarray, songs: np.ndarray,
                     sample: int = 200) -> float:
    """The model's boundary for a sample of users (five genre songs as positives); every
    user gets the median (one tower call per user would cost minutes at 1M)."""
    out = []
    for u in range(min(sample, len(users))):
        pos = songs[(u % G + G * np.arange(5)) % len(songs)]
        out.append(model.users.boundary(users[u], pos))
    return float(np.median(out))


def song_points(model: LoadedModel, vecs: np.ndarray, lo: int, hi: int, n_users: int,
                rng: np.random.Generator) -> list[Point]:
    pts = []
    for i in range(lo, hi):
        g = i % G
        eng = [[f"u{int(u)}", "play", live.NOW - 1000 * k] for k, u in enumerate(
            g + G * rng.integers(0, max(n_users // G, 1), ENGAGERS_PER_SONG))]
        ev = SongEvent.model_validate(live.song_event(i, g))
        pts.append(Point(song_point_id(ev.song_id), vecs[i],
                         pipeline.song_payload(ev, model.version, eng, False)))
    return pts


def write_world(model: LoadedModel, data_dir: Path, n_songs: int, n_users: int,
                batch: int = 2000, seed: int = 0, dtype: str = "float32") -> World:
    """Songs and users into the worker's Edge store, through ``upsert`` (collections made
    with the ``dtype`` the worker's settings name)."""
    rng = np.random.default_rng(seed)
    world = World(n_songs, n_users)
    t = time.perf_counter()
    songs = song_vectors(model, n_songs, rng)
    users = user_vectors(songs, n_users, rng)
    boundary = typical_boundary(model, users, songs)
    world.seconds["vectors_s"] = time.perf_counter() - t
    store = EdgeStore(data_dir / "qdrant", dtype=dtype)
    try:
        cols = pipeline.ensure_collections(store, model)
        t = time.perf_counter()
        for lo in range(0, n_songs, batch):
            store.upsert(cols.songs, song_points(model, songs, lo, min(lo + batch, n_songs),
                                                 n_users, rng))
        world.seconds["songs_upsert_s"] = time.perf_counter() - t
        t = time.perf_counter()
        for lo in range(0, n_users, batch):
            store.upsert(cols.users, [Point(user_point_id(f"u{u}"), users[u], {
                "user_id": f"u{u}", "boundary": boundary, "updated_at": live.NOW,
                "model_version": model.version, "events": 5})
                for u in range(lo, min(lo + batch, n_users))])
        world.seconds["users_upsert_s"] = time.perf_counter() - t
        store.flush()
    finally:
        store.close()
    world.seconds["boundary"] = boundary
    return world


def interaction(world: World, i: int, rng: np.random.Generator) -> tuple[bytes, bytes]:
    """A listener of genre g plays a song of genre g (key: user id, as the topic is keyed)."""
    u = int(rng.integers(0, world.n_users))
    s = u % G + G * int(rng.integers(0, max(world.n_songs // G, 1)))
    uid = f"u{u}"
    return uid.encode(), orjson.dumps({
        "schema_version": 1, "event_id": f"soak{i}", "user_id": uid,
        "song_id": f"s{min(s, world.n_songs - 1)}",
        "action": live.ACTIONS[i % len(live.ACTIONS)], "ts": live.NOW + i,
        "played_ms": 30_000})


# ---------------------------------------------------------------------------------------------
# The soak
# ---------------------------------------------------------------------------------------------


@dataclass
class Soak:
    """What the bench saw: sends, first candidates, the worker's scrapes, the offered window."""

    sent: dict[str, float] = field(default_factory=dict)
    got: dict[str, float] = field(default_factory=dict)
    produced: int = 0
    scrapes: list[dict[str, Any]] = field(default_factory=list)
    window: tuple[float, float] = (0.0, 0.0)
    idle_probe_ms: float | None = None  # the same probe in an idle process, same minutes
    t0: float = 0.0  # perf_counter when the soak began (``sent``/``got`` share that clock)

    def latencies(self) -> list[tuple[float, float]]:
        """(seconds since the soak began when sent, ms to the first candidate), in send
        order: a slow song is placed in time next to the lag curve and the merges."""
        return sorted((self.sent[k] - self.t0, (self.got[k] - self.sent[k]) * 1e3)
                      for k in self.got)

    def merge_times(self) -> list[float]:
        """Seconds since the soak began of the scrapes that first saw each new merge."""
        seen = answered(self.scrapes)
        return [b["t"] for a, b in pairwise(seen) if b["merges"] > a["merges"]]


def answered(scrapes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The scrapes the worker answered (an unanswered one holds no reading)."""
    return [s for s in scrapes if s.get("ok", bool(s["lag"]))]


def seconds_and_counts(s: dict[tuple[str, tuple], float], seconds: str, counts: str,
                       label: str) -> dict[str, tuple[float, float]]:
    """{label value: (seconds, count)} of a pair of series sharing their labels."""
    return {dict(labels)[label]: (v, s.get((counts, labels), 0.0))
            for (name, labels), v in s.items() if name == seconds}


def cpu_and_kernel(worker_pid: int) -> tuple[dict[str, float], dict[str, tuple[float, ...]]]:
    """CPU seconds so far of the worker, the embedded broker (this process's child named
    tansu) and this process (the offered load and the scrapes): on two cores, which of them
    grows is what a slowing soak is short of. Beside them, each one's (system CPU seconds,
    minor and major page faults): when a process's cores move at a constant offer, these say
    whether the kernel (page faults on the store's mapped files, reclaim) or its own code
    took them. One read of each process's /proc stat for both."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = {"bench": sum(os.times()[:2])}
    kernel = {"bench": (usage.ru_stime, float(usage.ru_minflt), float(usage.ru_majflt))}
    for name, pid in (("worker", worker_pid), ("broker", child_named("tansu"))):
        if pid is not None:
            with contextlib.suppress(OSError):  # it ended between the lookup and the read
                total, system, minor, major = ingest.process_usage(pid)
                cpu[name], kernel[name] = total, (system, minor, major)
    return cpu, kernel


def child_named(comm: str) -> int | None:
    """The pid of this process's child whose command name is ``comm``, or None."""
    for children in Path("/proc/self/task").glob("*/children"):
        for pid in children.read_text().split():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == comm:
                    return int(pid)
    return None


def scrape(worker: WorkerProcess, names: dict[str, str], t0: float) -> dict[str, Any]:
    """One reading of the worker's metrics, RSS and CPU time, at seconds ``t`` since the soak
    began."""
    s = worker.samples()
    lag: dict[str, float] = {}
    events: dict[str, float] = {}
    buffer_full: dict[str, float] = {}
    for (name, labels), v in s.items():
        lab = dict(labels)
        if name == "coldstream_consumer_lag":
            lag[lab["topic"]] = lag.get(lab["topic"], 0.0) + v
        elif name == "coldstream_events_total":
            events[lab["topic"]] = events.get(lab["topic"], 0.0) + v
        elif name == "coldstream_topic_buffer_full_total":
            buffer_full[lab["topic"]] = v
    merges = sum(v for (n, _), v in s.items() if n == "coldstream_segment_merges_total")
    stages = seconds_and_counts(s, "coldstream_stage_seconds_sum",
                                "coldstream_stage_seconds_count", "stage")
    gate_waits = seconds_and_counts(s, "coldstream_gate_wait_seconds_sum",
                                    "coldstream_gate_wait_seconds_count", "holder")
    stall_sites = seconds_and_counts(s, "coldstream_event_loop_stalls_traced_seconds_total",
                                     "coldstream_event_loop_stalls_traced_total", "site")
    assert worker.process is not None
    cpu, kernel = cpu_and_kernel(worker.process.pid)
    # ok False: /metrics did not answer within 2 s (the worker's GIL was held that long)
    return {"t": time.perf_counter() - t0, "ok": bool(s), "lag": lag,
            "interactions": events.get(names["interactions"], 0.0),
            "songs_indexed": s.get(("coldstream_songs_indexed_total", ()), 0.0),
            "merges": merges, "stages": stages, "gate_waits": gate_waits,
            "buffer_full": buffer_full,
            "stall_sites": stall_sites,
            "gc_frozen": s.get(("coldstream_gc_frozen_objects", ()), 0.0),
            "stall_s": s.get(("coldstream_event_loop_stall_seconds", ()), 0.0),
            "swap_in_progress": s.get(("coldstream_model_swap_in_progress", ()), 0.0),
            "swaps_ok": s.get(("coldstream_model_swaps_total", (("result", "ok"),)), 0.0),
            "swap_s": s.get(("coldstream_model_swap_seconds_sum", ()), 0.0),
            "swap_pause_s": s.get(("coldstream_model_swap_pause_seconds_sum", ()), 0.0),
            "swap_gave_way_s": s.get(("coldstream_model_swap_gave_way_seconds_total", ()), 0.0),
            "store_flush": (s.get(("coldstream_store_flush_seconds_sum", ()), 0.0),
                            s.get(("coldstream_store_flush_seconds_count", ()), 0.0)),
            **{f"gc{g}_s": s.get(("coldstream_gc_pause_seconds", (("generation", str(g)),)),
                                 0.0) for g in range(3)},
            **{f"{k}_mb": v for k, v in memory_mb(worker.process.pid).items()},
            "cpu_s": cpu, "kernel": kernel}


async def offer_interactions(producer: AIOKafkaProducer, topic: str, world: World,
                             rate: float, seconds: float, first: int = 0,
                             enough: asyncio.Event | None = None) -> int:
    """``rate``/s for ``seconds`` (or until ``enough`` is set), sent in 10 ms slices;
    returns how many were sent."""
    rng = np.random.default_rng(7 + first)
    enough = enough or asyncio.Event()
    t0, i = time.perf_counter(), 0
    while (now := time.perf_counter()) - t0 < seconds and not enough.is_set():
        due = int((now - t0) * rate)
        while i < due:
            key, value = interaction(world, first + i, rng)
            await producer.send(topic, value=value, key=key)
            i += 1
        await asyncio.sleep(0.01)
    return i


async def offer_songs(producer: AIOKafkaProducer, topic: str, rate: float, seconds: float,
                      wavs: list[str], sent: dict[str, float], first: int = 0,
                      enough: asyncio.Event | None = None) -> None:
    enough = enough or asyncio.Event()
    t0, i = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds and not enough.is_set():
        wait = t0 + i / rate - time.perf_counter()
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(enough.wait(), wait)
            if enough.is_set():
                break
        ev = live.song_event(first + i, i % G, new=True, prefix="new",
                             audio_uri=wavs[i % len(wavs)])
        sent[ev["song_id"]] = time.perf_counter()
        await producer.send(topic, value=orjson.dumps(ev), key=ev["song_id"].encode())
        i += 1


async def first_candidates(consumer: AIOKafkaConsumer, soak: Soak, stop: asyncio.Event) -> None:
    while not stop.is_set():
        batch = await consumer.getmany(timeout_ms=50)
        now = time.perf_counter()
        for records in batch.values():
            for r in records:
                sid = orjson.loads(r.value).get("song_id")
                if sid in soak.sent and sid not in soak.got:
                    soak.got[sid] = now


async def scrape_every(worker: WorkerProcess, names: dict[str, str], soak: Soak, t0: float,
                       stop: asyncio.Event, until: Callable[[Soak], bool] | None = None,
                       enough: asyncio.Event | None = None) -> None:
    """Scrape every ``SCRAPE_S``; set ``enough`` once ``until(soak)`` holds."""
    while not stop.is_set():
        soak.scrapes.append(await asyncio.to_thread(scrape, worker, names, t0))
        if until is not None and enough is not None and until(soak):
            enough.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SCRAPE_S)


async def soak_run(bs: str, worker: WorkerProcess, names: dict[str, str], world: World,
                   rates: tuple[float, float], seconds: float, wavs: list[str],
                   settle_s: float = 10.0, first: int = 0,
                   until: Callable[[Soak], bool] | None = None, linger_ms: int = 5,
                   songs_linger_ms: int | None = None) -> Soak:
    """Offer both streams for ``seconds``, or less once a scrape finds ``until(soak)`` true,
    then let the worker drain for ``settle_s`` (candidates of the last songs, the lag curve
    going down) while scraping. ``linger_ms``: the offering producer's linger, so how many
    records each stored batch holds; ``songs_linger_ms``: the songs' own producer's (None: the
    songs share the interactions' producer; see :data:`SIZES`)."""
    soak = Soak()
    consumer = AIOKafkaConsumer(names["candidates"], bootstrap_servers=bs, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="latest",
                                fetch_max_wait_ms=10)
    producer = AIOKafkaProducer(bootstrap_servers=bs, acks=1, linger_ms=linger_ms)
    uploads = (producer if songs_linger_ms is None else
               AIOKafkaProducer(bootstrap_servers=bs, acks=1, linger_ms=songs_linger_ms))
    await consumer.start()
    await producer.start()
    if uploads is not producer:
        await uploads.start()
    stop, enough = asyncio.Event(), asyncio.Event()
    noise = subprocess.Popen([sys.executable, "-c", NOISE_PROBE, str(seconds)],
                             stdout=subprocess.PIPE)
    t0 = soak.t0 = time.perf_counter()
    tasks = [asyncio.create_task(first_candidates(consumer, soak, stop)),
             asyncio.create_task(scrape_every(worker, names, soak, t0, stop, until, enough))]
    try:
        songs = asyncio.create_task(offer_songs(uploads, names["songs"], rates[1], seconds,
                                                wavs, soak.sent, first, enough))
        soak.produced = await offer_interactions(producer, names["interactions"], world,
                                                 rates[0], seconds, first, enough)
        await songs
        await producer.flush()
        await uploads.flush()
        soak.window = (0.0, time.perf_counter() - t0)
        soak.scrapes.append(await asyncio.to_thread(scrape, worker, names, t0))
        await asyncio.sleep(settle_s)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await producer.stop()
        if uploads is not producer:
            await uploads.stop()
        await consumer.stop()
        if enough.is_set():
            noise.terminate()
        out, _ = await asyncio.to_thread(noise.communicate)
        soak.idle_probe_ms = orjson.loads(out or b"{}").get("max_late_ms")
    return soak


# ---------------------------------------------------------------------------------------------
# After the soak: search on the final collection, the lag plot, the figures
# ---------------------------------------------------------------------------------------------


def search_after(data_dir: Path, work: Path, collection: str, dim: int, n_queries: int = 200,
                 k: int = 10, dtype: str = "float32", codes: str = DEFAULT_CODES) -> dict[str, Any]:
    """Reopen the songs as a restart does, seal them (with the worker's ``codes``), search:
    store p50/p99 and recall@k against exact numpy over the same live vectors (and numpy's
    own p50, same queries)."""
    t = time.perf_counter()
    store = SegmentedStore(EdgeStore(data_dir / "qdrant"), work, merge_rows=0, dtype=dtype,
                           codes=codes)
    try:
        store.ensure_collection(collection, dim, pipeline.SONG_INDEXES)
        reload_s = time.perf_counter() - t
        merge = store.merge(collection) or {}
        seg = store.segments[collection]
        n = len(seg.ids)
        x, alive = seg.vectors[:n].astype(np.float32, copy=False), seg.alive[:n]  # f32: a view
        lat: dict[str, list[float]] = {"store": [], "numpy": []}
        recall = []
        for q in queries(x[alive], n_queries):
            t = time.perf_counter()
            truth = exact(x, q, k, alive)
            lat["numpy"].append(time.perf_counter() - t)
            t = time.perf_counter()
            hits = store.search(collection, q, k)
            lat["store"].append(time.perf_counter() - t)
            recall.append(len({seg.slot_of[h.id] for h in hits} & set(truth.tolist())) / k)
        return {"songs": int(alive.sum()), "reload_s": reload_s, "merge": merge,
                "nprobe": seg.nprobe, "store": ms(lat["store"]), "numpy": ms(lat["numpy"]),
                "recall_at_10": float(np.mean(recall))}
    finally:
        store.close()


def plot_lag(soaks: list[Soak], path: Path, title: str) -> None:
    """Lag per topic over time, the phases one after the other (dashed: offering stops), and
    below it each new song's time to its first candidate (dotted: a segment merge began)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, lat, cpu) = plt.subplots(3, 1, figsize=(10, 9), sharex=True,
                                       gridspec_kw={"height_ratios": [3, 2, 2]})
    points, offset, stops, songs, merges, used = [], 0.0, [], [], [], []
    for soak in soaks:
        points += [(offset + s["t"], s["lag"]) for s in answered(soak.scrapes)]
        used += [(offset + b["t"], cores(a, b)) for a, b in pairwise(soak.scrapes)]
        songs += [(offset + t, ms_) for t, ms_ in soak.latencies()]
        merges += [offset + t for t in soak.merge_times()]
        stops.append(offset + soak.window[1])
        offset += soak.scrapes[-1]["t"] if soak.scrapes else 0.0
    for topic in sorted({t for _, lag in points for t in lag}):
        ax.plot([t for t, _ in points], [lag.get(topic, 0) for _, lag in points], label=topic)
    for x in stops:
        for panel in (ax, lat, cpu):
            panel.axvline(x, color="grey", linestyle="--")
    for x in merges:
        lat.axvline(x, color="tab:red", linestyle=":", linewidth=1)
    ax.set_yscale("symlog", linthresh=10)  # a backlog of 200k next to one of 100
    ax.set_ylim(bottom=0)
    ax.set_ylabel("consumer lag (messages, symlog)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    lat.scatter([t for t, _ in songs], [v for _, v in songs], s=6)
    lat.axhline(500, color="tab:green", linewidth=1)  # the issue's p99 goal
    lat.set_yscale("log")
    lat.set_ylabel("new song -> first\ncandidate (ms)")
    for name in sorted({n for _, c in used for n in c}):
        cpu.plot([t for t, c in used if name in c], [c[name] for _, c in used if name in c],
                 label=name)
    cpu.set_ylabel("cores used")
    cpu.set_ylim(bottom=0)
    cpu.legend(fontsize=8)
    cpu.set_xlabel("seconds since the soak began (dashed: offering stops; dotted: a merge)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def figures(soak: Soak, rates: tuple[float, float]) -> dict[str, Any]:
    """The issue's keys that come from the soak (the search ones come from search_after)."""
    end = soak.window[1]
    replies = answered(soak.scrapes)
    inside = [s for s in replies if s["t"] <= end + 0.5]
    first, last = inside[0], inside[-1]
    span = max(last["t"] - first["t"], 1e-9)
    lat = [soak.got[k] - soak.sent[k] for k in soak.got]
    p = ms(lat)
    return {"interactions_per_s_offered": rates[0],
            "interactions_per_s_produced": soak.produced / max(end, 1e-9),
            "interactions_per_s_achieved": (last["interactions"] - first["interactions"]) / span,
            "new_songs_per_s_offered": rates[1],
            "new_songs_per_s_achieved": (last["songs_indexed"] - first["songs_indexed"]) / span,
            "new_songs_sent": len(soak.sent), "new_songs_with_candidates": len(soak.got),
            "new_song_p50_ms": p["p50_ms"], "new_song_p99_ms": p["p99_ms"],
            "slowest_new_songs": [{"sent_s": round(t, 1), "ms": round(v, 1)} for t, v in
                                  sorted(soak.latencies(), key=lambda tv: -tv[1])[:10]],
            "merge_times_s": [round(t, 1) for t in soak.merge_times()],
            "rss_gb": max(s["rss_mb"] for s in soak.scrapes) / 1024,
            "rss_anon_gb": max(s.get("anon_mb", 0.0) for s in soak.scrapes) / 1024,
            "rss_file_gb": max(s.get("file_mb", 0.0) for s in soak.scrapes) / 1024,
            "rss_peak_since_start_gb": max(s.get("peak_mb", 0.0) for s in soak.scrapes) / 1024,
            "max_loop_stall_ms": max(s["stall_s"] for s in inside) * 1e3,
            "idle_probe_max_stall_ms": soak.idle_probe_ms,
            "max_gc_gen2_pause_ms": max(s.get("gc2_s", 0.0) for s in inside) * 1e3,
            "max_gc_gen01_pause_ms": max(max(s.get("gc0_s", 0.0), s.get("gc1_s", 0.0))
                                         for s in inside) * 1e3,
            "cores": cores(first, last),
            **kernel_figures(first, last),
            "merges_during_soak": last["merges"] - first["merges"],
            "merges_total": replies[-1]["merges"],
            "scrapes_unanswered": len(soak.scrapes) - len(replies),
            "lag_max": {t: max(s["lag"].get(t, 0) for s in replies)
                        for t in {t for s in replies for t in s["lag"]}},
            "lag_end": replies[-1]["lag"], "soak_seconds": end,
            "stages": stage_times(first, last, span),
            "gate_waits": stage_times(first, last, span, "gate_waits"),
            **store_flushes(first, last, span),
            "stall_sites": stall_sites(first, last)}


def cores(first: dict[str, Any], last: dict[str, Any]) -> dict[str, float]:
    """Cores each process used on average between two scrapes (worker, broker, bench)."""
    span = max(last["t"] - first["t"], 1e-9)
    a, b = first.get("cpu_s", {}), last.get("cpu_s", {})
    return {name: round((b[name] - a[name]) / span, 3) for name in b if name in a}


def kernel_figures(first: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
    """Per process between two scrapes: cores spent in the kernel, page faults per second."""
    span = max(last["t"] - first["t"], 1e-9)
    a, b = first.get("kernel", {}), last.get("kernel", {})
    both = [name for name in b if name in a]
    return {"kernel_cores": {n: round((b[n][0] - a[n][0]) / span, 3) for n in both},
            "page_faults_per_s": {n: {"minor": round((b[n][1] - a[n][1]) / span, 1),
                                      "major": round((b[n][2] - a[n][2]) / span, 1)}
                                  for n in both}}


def store_flushes(first: dict[str, Any], last: dict[str, Any], span: float
                  ) -> dict[str, float]:
    """The embedded store's flushes in the window: per second, and the mean time each held
    the GIL (a flush stalls the event loop that long)."""
    s0, n0 = first.get("store_flush", (0.0, 0.0))
    s1, n1 = last.get("store_flush", (0.0, 0.0))
    n = n1 - n0
    return {"store_flushes_per_s": n / span,
            "store_flush_mean_ms": (s1 - s0) / n * 1e3 if n > 0 else 0.0}


def stall_sites(first: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
    """Stalls traced in the window (``COLDSTREAM_STALL_TRACE_MS`` or longer) by the site the
    worker's watchdog found the event loop in, longest total first: count and seconds."""
    out = {}
    for site, (seconds, count) in last.get("stall_sites", {}).items():
        s0, n0 = first.get("stall_sites", {}).get(site, (0.0, 0.0))
        if count > n0:
            out[site] = {"stalls": count - n0, "seconds": seconds - s0}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["seconds"]))


def stage_times(first: dict[str, Any], last: dict[str, Any], span: float,
                key: str = "stages") -> dict[str, Any]:
    """Per pipeline stage (or gate holder, ``key="gate_waits"``) over the window: calls/s,
    mean ms per call and the share of wall time spent in it (the work thread is one thread:
    shares near 1 in all mean it is full)."""
    out = {}
    for stage, (total, count) in last.get(key, {}).items():
        t0, n0 = first.get(key, {}).get(stage, (0.0, 0.0))
        calls = count - n0
        if calls > 0:
            out[stage] = {"calls_per_s": calls / span, "mean_ms": (total - t0) / calls * 1e3,
                          "busy_share": (total - t0) / span}
    return out


def wait_merges(worker: WorkerProcess, names: dict[str, str], at_least: int,
                timeout: float) -> float:
    """Seconds until the worker has sealed its mirrors (the catalogue it reloaded at start
    sits in the growing segments, searched exactly, until then)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if scrape(worker, names, t0)["merges"] >= at_least:
            break
        time.sleep(1.0)
    return time.perf_counter() - t0


#: ``rate``: the soak's interactions/s, one the worker sustains (ingest is issue 14's: ~1k/s
#: at best); then ``issue_rate`` (the issue's 5,000/s) is offered for ``issue_seconds`` to
#: report offered vs achieved at that rate (its backlog no longer matters by then).
#: ``producer_linger_ms``: the offering producer batches as a busy client does. Tansu 0.6
#: lists every batch a partition holds on each fetch, so at 5 ms (a batch of one or two
#: records per partition) the broker's CPU grew from 0.2 to 1 core within 100 s at 1M and
#: took the new songs' p99 to 0.7-1.1 s; at 50 ms it used 0.33 cores (docs/benchmarks.md,
#: stop 44). ``songs_linger_ms``: the new songs' own producer (an upload service sends one
#: song at a time; until stop 51 the songs shared the interactions' producer and waited for
#: its linger). None: the songs share the interactions' producer, as before.
SIZES = {"quick": {"n_songs": 2_000, "n_users": 2_000, "rate": 200.0, "songs_rate": 2.0,
                   "seconds": 10.0, "issue_rate": 1_000.0, "issue_seconds": 4.0,
                   "merge_rows": 1_000, "producer_linger_ms": 50, "songs_linger_ms": 5},
         "full": {"n_songs": 1_000_000, "n_users": 1_000_000, "rate": 800.0,
                  "songs_rate": 10.0, "seconds": 300.0, "issue_rate": 5_000.0,
                  "issue_seconds": 60.0, "merge_rows": 20_000, "producer_linger_ms": 50,
                  "songs_linger_ms": 5}}


def run(mode: Mode, models: Path = DEFAULT_MODELS, out: Path = Path("bench/results"),
        env: dict[str, str] | None = None, memory_cap_gb: float | None = None,
        vector_dtype: str = "float32", **sizes: Any) -> Report:
    """``sizes`` overrides :data:`SIZES` (n_songs, n_users, rate, songs_rate, seconds);
    ``env``: worker settings to run under (e.g. an older default, as a same-session baseline);
    ``memory_cap_gb``: run the worker (and its segment builds) in a cgroup of that size
    (:mod:`.memory_cap`): whether it fits, page cache reclaimed, not just what RSS it reached;
    ``vector_dtype``: ``COLDSTREAM_VECTOR_DTYPE`` for the store and the worker."""
    size = {**SIZES[mode], **sizes, "memory_cap_gb": memory_cap_gb}
    env = {**(env or {}), "COLDSTREAM_VECTOR_DTYPE": vector_dtype}
    rates = (float(size["rate"]), float(size["songs_rate"]))
    rep = Report("scale", mode, {**size, "audio": "30 s mono WAV, 44.1 kHz",
                                 "scrape_s": SCRAPE_S, "worker_env": env})
    start = time.perf_counter()
    model = loaded(models)
    tmp = Path(tempfile.mkdtemp(prefix="coldstream-bench-scale-"))
    names = live.topics("sc")
    try:
        world = write_world(model, tmp / "data", size["n_songs"], size["n_users"],
                            dtype=vector_dtype)
        rep.extra["load"] = world.seconds
        wavs = live.write_wavs(tmp / "audio")
        with EmbeddedBroker(log_path=tmp / "tansu.log") as broker:
            asyncio.run(ensure_topics(broker.bootstrap, list(names.values()), 4))
            soak, at_issue = soak_with_worker(rep, broker.bootstrap, models, tmp, names,
                                              world, rates, size, wavs, env)
        cols = pipeline.Collections.for_version(model.version)
        search = search_after(tmp / "data", tmp / "seg-check", cols.songs, model.manifest.dim,
                              dtype=vector_dtype,
                              codes=env.get("COLDSTREAM_SEGMENT_CODES", DEFAULT_CODES))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    plot_lag([soak, at_issue], out / "scale_lag.png", f"consumer lag, {size['n_songs']:,} "
             f"songs, {size['n_users']:,} users: {rates[0]:,.0f} interactions/s offered for "
             f"{size['seconds']:.0f} s, then {size['issue_rate']:,.0f}/s for "
             f"{size['issue_seconds']:.0f} s; {rates[1]:g} new songs/s throughout")
    rep.extra["lag_png"] = str(out / "scale_lag.png")
    rep.extra["scrapes"] = soak.scrapes
    rep.extra["search_after"] = search
    rep.extra["scrapes_at_issue_rate"] = at_issue.scrapes
    rep.summary = {"songs": size["n_songs"], "users": size["n_users"],
                   **figures(soak, rates), **cap_figures(rep.extra.get("memory_cap")),
                   "search_p50_ms": search["store"]["p50_ms"],
                   "search_p99_ms": search["store"]["p99_ms"],
                   "search_numpy_p50_ms": search["numpy"]["p50_ms"],
                   "search_recall_at_10": search["recall_at_10"],
                   "at_issue_rate": figures(at_issue, (size["issue_rate"], rates[1]))}
    rep.seconds = time.perf_counter() - start
    rows_and_goals(rep)
    return rep


def soak_with_worker(rep: Report, bs: str, models: Path, tmp: Path, names: dict[str, str],
                     world: World, rates: tuple[float, float], size: dict[str, Any],
                     wavs: list[str], env: dict[str, str]) -> tuple[Soak, Soak]:
    """The soak at ``rate``, then ``issue_rate`` for ``issue_seconds``, on one worker."""
    worker = live.Worker(bs, models, tmp / "data", "sc", audio_root=tmp / "audio", extra_env={
        "COLDSTREAM_LAG_INTERVAL_S": "2", "COLDSTREAM_SEGMENT_MERGE_ROWS":
            str(size["merge_rows"]), **env})
    cap = MemoryCap(size["memory_cap_gb"]) if size.get("memory_cap_gb") else None
    t = time.perf_counter()
    try:
        worker.start(ready_timeout=1200, on_spawn=cap.add if cap else None)
        rep.extra["worker_ready_s"] = time.perf_counter() - t
        rep.extra["first_merges_s"] = wait_merges(worker, names, 2, 600)
        # Writing the world and sealing it leave dirty pages; drain their writeback so none
        # lands in the soak (0.4 s at 200k here: it was not what made soaks differ).
        t = time.perf_counter()
        os.sync()
        rep.extra["sync_before_soak_s"] = time.perf_counter() - t
        soak = asyncio.run(soak_run(bs, worker, names, world, rates, size["seconds"], wavs,
                                    linger_ms=size["producer_linger_ms"],
                                    songs_linger_ms=size["songs_linger_ms"]))
        at_issue = asyncio.run(soak_run(bs, worker, names, world, (size["issue_rate"], rates[1]),
                                        size["issue_seconds"], wavs, settle_s=2.0,
                                        first=10**7, linger_ms=size["producer_linger_ms"],
                                        songs_linger_ms=size["songs_linger_ms"]))
        return soak, at_issue
    finally:
        worker.stop(timeout=120)
        rep.extra["stall_log"] = stall_lines(worker.log_path)
        if cap is not None:
            rep.extra["memory_cap"] = cap.stats()
            print(f"memory cap: {rep.extra['memory_cap']}", file=sys.stderr)  # also on a death
            cap.close()


def stall_lines(log_path: Path, keep: int = 40) -> list[str]:
    """The worker's stall-trace log lines (the longest stall per 10 s, with where the loop
    was; streams.stall_trace), the last ``keep``, for the report: the log goes with tmp."""
    if not log_path.exists():
        return []
    lines = log_path.read_text(errors="replace").splitlines()
    return [line for line in lines if "event loop stalled" in line][-keep:]


def cap_figures(cap: dict[str, Any] | None) -> dict[str, Any]:
    """The memory cap's figures for the summary (none without a cap)."""
    if not cap:
        return {}
    return {"memory_cap_gb": cap["limit_gb"], "memory_cap_max_usage_gb": cap["max_usage_gb"],
            "memory_cap_oom_kills": cap["oom_kills"]}


def rows_and_goals(rep: Report) -> None:
    s = rep.summary
    for key, value in s.items():
        if not isinstance(value, dict):
            rep.rows.append({"figure": key, "value": value})
    rep.goal("new song -> first candidate p99", "<= 500 ms", s["new_song_p99_ms"],
             lambda v: v <= 500)
    rep.goal("interactions achieved / offered", "1.0", ratio(
        s["interactions_per_s_achieved"], s["interactions_per_s_offered"]), lambda v: v >= 0.99)
    rep.goal("new songs achieved / offered", "1.0", ratio(
        s["new_songs_per_s_achieved"], s["new_songs_per_s_offered"]), lambda v: v >= 0.99)
    rep.goal("worker RSS", "<= 8 GB", s["rss_gb"], lambda v: v <= 8)
    rep.goal("longest event-loop stall", "<= 50 ms", s["max_loop_stall_ms"], lambda v: v <= 50)
    if "memory_cap_gb" in s:
        rep.goal(f"worker + builds in a {s['memory_cap_gb']:g} GB cgroup: OOM kills", "0",
                 s["memory_cap_oom_kills"], lambda v: v == 0)
    if s.get("stall_sites"):
        top = list(s["stall_sites"].items())[:3]
        rep.notes.append("stalls traced in the soak (COLDSTREAM_STALL_TRACE_MS or longer) by "
                         "where the loop was: " + "; ".join(
                             f"{site} {v['stalls']:.0f} stalls, {v['seconds']:.2f} s"
                             for site, v in top))
    rep.notes.append("achieved rates: the worker's own counters (events handled, songs "
                     "indexed) over the offered window; lag keeps what it did not take")
    rep.notes.append("search_*: the final song collection reopened as a restart does, sealed, "
                     "200 queries, recall@10 vs exact numpy over the same live vectors")
    rep.notes.append("RSS: the worker process (the sealed-segment builder is a short-lived "
                     "child, not counted), max over the soak's scrapes; rss_anon_gb: its own "
                     "pages, rss_file_gb: mapped file pages (Qdrant Edge's files, reclaimable "
                     "page cache), rss_peak_since_start_gb: the kernel's high-water mark, "
                     "start-up (reload, first seals) included")
