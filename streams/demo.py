"""``coldstream demo``: the whole system on one machine, on embedded defaults, in minutes.

Embedded Tansu broker -> real worker process (Qdrant Edge, ONNX model) -> a generated music
world's history replayed as events -> new songs published (real 30 s clips that ship in the
``immich-memories-music`` wheel, plus held-out generated songs) -> each song's candidates
printed as they arrive: who, by which path, and why.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from encoders.artifacts import Registry
from encoders.provisional import ensure_model

from .broker import EmbeddedBroker
from .client import consume, json_records, produce
from .process import WorkerProcess, make_worker
from .settings import Settings

console = Console()


def demo_world(new_from_world: int, audio_dir: Path,
               seconds: float = 5.0) -> tuple[list[dict], list[dict], list[dict]]:
    """History (songs + interactions in time order) and held-out new songs from the world.

    Every generated song gets a short clip synthesised from its genre's parameters, so its
    vector has an audio part like the real clips published later.
    """
    import soundfile as sf

    from coldstream_data.music_world import generate_world, render_audio
    from coldstream_data.replay import replay

    world = generate_world("tiny", n_songs=600, n_users=200, n_interactions=8000, n_genres=8)
    records = list(replay(world, end_at_ms=int(time.time() * 1000) - 60_000))
    songs = [r[2] for r in records if r[0] == "songs.new"]
    audio_dir.mkdir(parents=True, exist_ok=True)
    rows = {r["song_id"]: r for r in world.catalogue.to_dict("records")}
    with Progress(console=console, transient=True) as progress:
        for song in progress.track(songs, description="synthesising song audio"):
            name = f"{song['song_id']}.wav"
            sf.write(audio_dir / name, render_audio(rows[song["song_id"]], 16_000, seconds),
                     16_000)
            song["audio_uri"] = name  # relative to an allowed audio root
    held_out = {s["song_id"] for s in songs[-new_from_world:]} if new_from_world else set()
    history_songs = [s for s in songs if s["song_id"] not in held_out]
    interactions = [r[2] for r in records
                    if r[0] == "interactions" and r[2]["song_id"] not in held_out]
    return history_songs, interactions, [s for s in songs if s["song_id"] in held_out]


def real_clips(limit: int) -> tuple[list[dict], Path | None]:
    """New songs with real audio from the immich-memories-music wheel (MIT)."""
    from coldstream_data.audio import immich_tracks_dir, load_immich_music
    from coldstream_data.replay import song_event

    data = load_immich_music()
    root = immich_tracks_dir()
    now = int(time.time() * 1000)
    idx = np.random.default_rng(7).permutation(data.n_items)[:limit]
    return [song_event(data, int(i), now) for i in idx], root


def render_song(song: dict, cands: list[dict], seconds: float) -> None:
    audio = "real audio" if song.get("audio_uri") else "text only"
    console.print(f"\n[bold cyan]♪ {song['title']}[/] — {song['artist']} "
                  f"[dim]{', '.join(song['tags'])} · {audio}[/]")
    if not cands:
        console.print("  [yellow]no listener passed the gates yet[/] (a cold song with no "
                      "similar engaged songs and no user above their boundary)")
        return
    paths = defaultdict(int)
    for c in cands:
        paths[c["path"]] += 1
    console.print(f"  → {len(cands)} listeners in {seconds * 1000:.0f} ms "
                  f"({', '.join(f'{k}: {v}' for k, v in sorted(paths.items()))})")
    for c in sorted(cands, key=lambda c: -c["score"])[:3]:
        console.print(f"    [green]{c['user_id']}[/] score {c['score']:.2f} "
                      f"(boundary {c['boundary']:.2f}) [{c['path']}] {c['explanation']}")


async def wait_counter(worker: WorkerProcess, name: str, labels: dict[str, str],
                       target: float, label: str, timeout: float = 600) -> None:
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(label, total=target)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = sum(v for (n, lab), v in worker.samples().items()
                        if n == name and all(dict(lab).get(k) == x for k, x in labels.items()))
            progress.update(task, completed=value)
            if value >= target:
                return
            await asyncio.sleep(0.3)
    raise TimeoutError(f"{label}: worker did not reach {target}")


async def publish_and_show(bootstrap: str, worker: WorkerProcess, new_songs: list[dict],
                           interval: float, window: float) -> list[float]:
    received: dict[str, list[dict]] = defaultdict(list)
    first_seen: dict[str, float] = {}

    async def listen() -> None:
        async for rec in consume(bootstrap, worker.env["COLDSTREAM_TOPIC_CANDIDATES"],
                                 from_beginning=True):
            cand = orjson.loads(rec.value)
            received[cand["song_id"]].append(cand)
            first_seen.setdefault(cand["song_id"], time.perf_counter())

    listener = asyncio.create_task(listen())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    await asyncio.sleep(1.0)  # let the listener join before the first song
    latencies = []
    try:
        for song in new_songs:
            sent = time.perf_counter()
            await producer.send_and_wait(worker.env["COLDSTREAM_TOPIC_SONGS"],
                                         orjson.dumps(song), key=song["song_id"].encode())
            await asyncio.sleep(window)
            seen = first_seen.get(song["song_id"])
            if seen is not None:
                latencies.append(seen - sent)
            render_song(song, received[song["song_id"]], (seen or sent) - sent)
            await asyncio.sleep(max(0.0, interval - window))
    finally:
        listener.cancel()
        await producer.stop()
    return latencies


def run_demo(settings: Settings, new_songs: int = 12, keep_running: bool = False) -> None:
    started = time.perf_counter()
    demo_dir = settings.data_dir / "demo"
    shutil.rmtree(demo_dir, ignore_errors=True)  # the broker keeps nothing: start clean
    demo_dir.mkdir(parents=True)
    registry = Registry(settings.models_path)
    with console.status("preparing the model (first run exports MiniLM to ONNX)…"):
        ensure_model(registry)
    with console.status("generating a music world…"):
        history, interactions, world_new = demo_world(new_songs - new_songs // 2,
                                                      demo_dir / "audio")
        clips, audio_root = real_clips(new_songs // 2)
    roots = [str(demo_dir / "audio")] + ([str(audio_root)] if audio_root else [])
    broker = EmbeddedBroker(log_path=demo_dir / "tansu.log").start()
    worker = make_worker(broker.bootstrap, settings.models_path, demo_dir, "demo",
                         COLDSTREAM_AUDIO_ROOTS=orjson.dumps(roots).decode(),
                         metrics_port=settings.metrics_port or None,
                         COLDSTREAM_LOG_LEVEL="warning")
    try:
        with console.status("starting the worker (broker, Qdrant Edge, ONNX model)…"):
            worker.start()
        console.print(f"[bold]Coldstream demo[/]: broker {broker.bootstrap}, metrics "
                      f"http://127.0.0.1:{worker.metrics_port}/metrics, data {demo_dir}")
        asyncio.run(replay_history(broker.bootstrap, worker, history, interactions))
        new = [s for pair in zip(clips, world_new, strict=False) for s in pair]
        new += clips[len(world_new):] + world_new[len(clips):]
        console.print(f"\n[bold]Publishing {len(new)} new songs[/] (no plays yet):")
        latencies = asyncio.run(publish_and_show(broker.bootstrap, worker, new,
                                                 interval=0.8, window=0.6))
        summary(worker, history, interactions, new, latencies, time.perf_counter() - started)
        if keep_running:
            console.print("worker keeps running; Ctrl-C stops everything")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        console.print("stopping…")
    finally:
        worker.stop()
        broker.stop()


async def replay_history(bootstrap: str, worker: WorkerProcess, songs: list[dict],
                         interactions: list[dict]) -> None:
    env = worker.env
    t = time.perf_counter()
    await produce(bootstrap, env["COLDSTREAM_TOPIC_SONGS"], json_records("songs.new", songs))
    await wait_counter(worker, "coldstream_events_total",
                       {"topic": env["COLDSTREAM_TOPIC_SONGS"]}, len(songs),
                       f"indexing {len(songs)} catalogue songs")
    songs_s = time.perf_counter() - t
    t = time.perf_counter()
    await produce(bootstrap, env["COLDSTREAM_TOPIC_INTERACTIONS"],
                  json_records("interactions", interactions))
    await wait_counter(worker, "coldstream_events_total",
                       {"topic": env["COLDSTREAM_TOPIC_INTERACTIONS_BY_SONG"]},
                       len(interactions), f"replaying {len(interactions)} interactions")
    inter_s = time.perf_counter() - t
    console.print(f"history: {len(songs)} songs in {songs_s:.1f}s "
                  f"({len(songs) / songs_s:.0f}/s), {len(interactions)} interactions in "
                  f"{inter_s:.1f}s ({len(interactions) / inter_s:.0f}/s)")


def summary(worker: WorkerProcess, history: list[dict], interactions: list[dict],
            new: list[dict], latencies: list[float], wall: float) -> None:
    samples = worker.samples()
    table = Table(title="Coldstream demo summary")
    table.add_column("measure")
    table.add_column("value", justify="right")
    total = sum(v for (n, _), v in samples.items() if n == "coldstream_candidates_total")
    dlq = sum(v for (n, lab), v in samples.items()
              if n == "coldstream_events_total" and dict(lab).get("outcome") == "dlq")
    lat = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    rows: list[tuple[str, Any]] = [
        ("catalogue songs / interactions replayed", f"{len(history)} / {len(interactions)}"),
        ("new songs published", len(new)),
        ("candidates emitted", int(total)),
        ("new song -> first candidate p50 / p99 (client)",
         f"{np.nanpercentile(lat, 50):.0f} / {np.nanpercentile(lat, 99):.0f} ms"),
        ("events dead-lettered", int(dlq)),
        ("demo wall time", f"{wall:.0f} s"),
        ("metrics", f"http://127.0.0.1:{worker.metrics_port}/metrics"),
    ]
    for k, v in rows:
        table.add_row(k, str(v))
    console.print(table)
