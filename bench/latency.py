"""Scenario 2: a new song with 30 s audio -> its first candidate, at a fixed rate.

Baseline in the same run: the same rate of plain messages produced and consumed through the
same broker (the transport floor). Latency is the first candidate's arrival minus the send
time, both on this process's clock; the per-stage breakdown comes from the worker's
``coldstream_stage_seconds`` histograms.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.compat import FETCH_MAX_WAIT_MS

from . import live
from .common import Mode, Report, ms, ratio
from .models import DEFAULT_MODELS


async def paced_round_trip(bs: str, send_topic: str, recv_topic: str,
                           values: list[tuple[str, bytes]], rate: float,
                           settle: float = 10.0, fetch_wait_ms: int = 10,
                           compression: str | None = None,
                           ) -> tuple[dict[str, float], dict[str, float]]:
    """Send (id, value) at ``rate``/s; return send times and first-arrival times by id.

    Arrivals are matched on ``song_id`` in the received JSON (candidates) or the key (echo).
    """
    consumer = AIOKafkaConsumer(recv_topic, bootstrap_servers=bs, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=fetch_wait_ms)
    producer = AIOKafkaProducer(bootstrap_servers=bs, acks=1, linger_ms=0,
                                compression_type=compression)
    await consumer.start()
    await producer.start()
    sent: dict[str, float] = {}
    got: dict[str, float] = {}
    done = asyncio.Event()

    async def receive() -> None:
        while not done.is_set() or len(got) < len(values):
            batch = await consumer.getmany(timeout_ms=50)
            now = time.perf_counter()
            for records in batch.values():
                for r in records:
                    key = r.key.decode() if r.key and r.key.decode() in sent else \
                        orjson.loads(r.value).get("song_id")
                    if key in sent and key not in got:
                        got[key] = now
            if done.is_set() and time.perf_counter() > deadline[0]:
                return

    deadline = [float("inf")]
    task = asyncio.create_task(receive())
    try:
        t0 = time.perf_counter()
        for i, (key, value) in enumerate(values):
            wait = t0 + i / rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            sent[key] = time.perf_counter()
            await producer.send(send_topic, value=value, key=key.encode())
        deadline[0] = time.perf_counter() + settle
        done.set()
        await task
    finally:
        await producer.stop()
        await consumer.stop()
    return sent, got


def transport_floor(bs: str, news: list[dict], rate: float) -> tuple[list[float], list[float]]:
    """Plain messages through the same broker at the same rate: round trips (s) with our
    consumers' short fetch wait (the baseline) and with Faust's stock 1500 ms wait."""
    echo = [(f"e{i}", orjson.dumps(ev)) for i, ev in enumerate(news)]
    sent, got = asyncio.run(paced_round_trip(bs, "bl.echo", "bl.echo", echo, rate))
    base = [got[k] - sent[k] for k in got]
    echo = [(f"f{i}", v) for i, (_, v) in enumerate(echo)]
    sent, got = asyncio.run(paced_round_trip(bs, "bl.echo", "bl.echo", echo, rate,
                                             fetch_wait_ms=1500))
    return base, [got[k] - sent[k] for k in got]


def new_song_latency(bs: str, models: Path, tmp: Path, news: list[dict], rate: float,
                     ) -> tuple[list[float], dict]:
    """New songs through a real worker: seconds to each song's first candidate, and the
    worker's metric samples (stage histograms)."""
    t = live.topics("bl")
    worker = live.Worker(bs, models, tmp / "data", "bl", audio_root=tmp / "audio")
    worker.start()
    try:
        values = [(ev["song_id"], orjson.dumps(ev)) for ev in news]
        sent, got = asyncio.run(paced_round_trip(bs, t["songs"], t["candidates"], values, rate))
        samples = worker.samples()
    finally:
        worker.stop()
    return [got[k] - sent[k] for k in got], samples


def stage_rows(rep: Report, samples: dict) -> None:
    """Per-stage rows from the worker's own histograms, and its end-to-end histogram."""
    stages = live.stage_table(samples)
    e2e = live.stage_table(samples, "coldstream_new_song_to_candidates_seconds").get("all", {})
    for name in ("decode", "audio", "encode", "upsert", "search", "emit"):
        d = stages.get(name)
        if d:
            rep.rows.append({"path": f"  stage {name} (worker histogram)",
                             "messages": int(d["count"]), "p50_ms": d["p50_le_ms"],
                             "p95_ms": d["p95_le_ms"], "mean_ms": d["mean_ms"]})
    if e2e:
        rep.rows.append({"path": "  worker's own e2e histogram", "messages": int(e2e["count"]),
                         "p50_ms": e2e["p50_le_ms"], "p95_ms": e2e["p95_le_ms"],
                         "mean_ms": e2e["mean_ms"]})
    rep.extra["stages"] = stages
    rep.extra["store_ops"] = live.stage_table(samples, "coldstream_vector_store_seconds")


def run(mode: Mode, n_new: int | None = None, rate: float | None = None,
        n_songs: int | None = None, n_users: int | None = None,
        models: Path = DEFAULT_MODELS) -> Report:
    n_new = n_new or (30 if mode == "quick" else 300)
    rate = rate or (5.0 if mode == "quick" else 10.0)
    n_songs = n_songs or (2_000 if mode == "quick" else 20_000)
    n_users = n_users or (1_000 if mode == "quick" else 10_000)
    rep = Report("new_song", mode, {"new_songs": n_new, "rate_per_s": rate,
                                    "catalogue_songs": n_songs, "users": n_users,
                                    "audio": "30 s mono WAV, 44.1 kHz (resampled to 16 kHz)",
                                    "fetch_wait_ms": FETCH_MAX_WAIT_MS})
    start = time.perf_counter()
    with live.live_stage(rep, models, "bl", n_songs, n_users, extra_topics=("bl.echo",)) as st:
        wavs = live.write_wavs(st.tmp / "audio")
        news = [live.song_event(i, i % len(live.GENRES), new=True, prefix="new",
                                audio_uri=wavs[i % len(wavs)]) for i in range(n_new)]
        base, slow = transport_floor(st.bootstrap, news, rate)
        lat, samples = new_song_latency(st.bootstrap, models, st.tmp, news, rate)
    b, p = ms(base), ms(lat)
    rep.rows.append({"path": "broker round trip (baseline)", "messages": len(base), **b})
    rep.rows.append({"path": "broker round trip, fetch_max_wait 1500 ms (Faust's)",
                     "messages": len(slow), **ms(slow)})
    rep.rows.append({"path": f"new song -> first candidate (fetch wait {FETCH_MAX_WAIT_MS} ms)",
                     "messages": len(lat), **p,
                     **{f"x_{q}": ratio(p[q], b[q]) for q in ("p50_ms", "p99_ms")}})
    stage_rows(rep, samples)
    rep.extra["songs_without_candidates"] = n_new - len(lat)
    cands = samples.get(("coldstream_candidates_per_song_sum", ()), 0.0)
    rep.extra["candidates_per_song"] = cands / max(1, len(lat))
    rep.goal("p50 new song -> candidates", "<= 150 ms", p["p50_ms"], lambda v: v <= 150)
    rep.goal("p99 new song -> candidates", "<= 500 ms", p["p99_ms"], lambda v: v <= 500)
    rep.notes.append("stage p50/p95 are histogram bucket upper bounds; mean is exact")
    rep.notes.append(f"the worker's consumers long-poll {FETCH_MAX_WAIT_MS} ms "
                     "(streams.compat, tansu://) instead of Faust's 1500 ms")
    if n_new - len(lat):
        rep.notes.append(f"{n_new - len(lat)} songs produced no candidate within 10 s")
    rep.seconds = time.perf_counter() - start
    return rep
