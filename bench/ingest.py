"""Scenario 1 (and the events/s curve of 6): interactions through a real worker vs raw aiokafka.

The same N pre-produced messages are read twice from the same embedded broker: once by a plain
aiokafka consume loop (the ceiling: what the broker and client can deliver), once by the worker
(decode, user state, user vector and boundary, vector upsert, re-key to by_song). The worker's
rate comes from its own ``coldstream_events_total`` counter over time.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.events import InteractionEvent, decode

from . import live, state_store
from .common import Mode, Report, ratio
from .models import DEFAULT_MODELS


def interactions(cat: live.Catalogue, n: int, seed: int = 0, start: int = 0) -> list[bytes]:
    """Interactions of catalogue users with songs of their favourite genre (~200 B each)."""
    rng = np.random.default_rng(seed)
    by_genre = {g: cat.songs_of(g) for g in range(len(live.GENRES))}
    out = []
    for i in range(start, start + n):
        u = int(rng.integers(0, len(cat.users)))
        s = int(rng.choice(by_genre[int(cat.user_genre[u])]))
        out.append(orjson.dumps({
            "schema_version": 1, "event_id": f"i{i}", "user_id": cat.users[u],
            "song_id": cat.songs[s]["song_id"], "action": live.ACTIONS[i % len(live.ACTIONS)],
            "ts": live.NOW + i, "played_ms": 30_000}))
    return out


async def produce_all(bootstrap: str, topic: str, values: list[bytes]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    t = time.perf_counter()
    try:
        futs = []
        for v in values:
            futs.append(await producer.send(topic, value=v, key=orjson.loads(v)["user_id"]
                                            .encode()))
            if len(futs) >= 2000:
                await asyncio.gather(*futs)
                futs.clear()
        await asyncio.gather(*futs)
    finally:
        await producer.stop()
    return time.perf_counter() - t


async def raw_consume(bootstrap: str, topic: str, n: int, work: str = "none") -> float:
    """Seconds from the consumer being ready to the n-th message, for a plain getmany loop."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    seen = 0
    first = time.perf_counter()
    try:
        while seen < n:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batch.values():
                for r in records:
                    if work == "decode":
                        decode(r.value, InteractionEvent)
                    seen += 1
        return time.perf_counter() - first
    finally:
        await consumer.stop()


def follow(worker: live.Worker, topic: str, target: float, timeout: float,
           poll: float = 0.25) -> list[tuple[float, float]]:
    """(time, ok count) samples until the counter reaches ``target`` or time runs out."""
    out: list[tuple[float, float]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = worker.metric("coldstream_events_total", topic=topic, outcome="ok") or 0.0
        out.append((time.perf_counter(), v))
        if v >= target:
            break
        time.sleep(poll)
    return out


def rate(samples: list[tuple[float, float]], base: float = 0.0) -> tuple[float | None, float]:
    """Events/s between the first sample above ``base`` and the last; and the count reached."""
    moving = [(t, v) for t, v in samples if v > base]
    if len(moving) < 2:
        return None, samples[-1][1] if samples else 0.0
    (t0, v0), (t1, v1) = moving[0], moving[-1]
    return (v1 - v0) / (t1 - t0) if t1 > t0 else None, v1


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process used so far (Linux /proc). Events per CPU-second
    is what a shared, overloaded machine distorts least: wall-clock rates there measure how
    much of a core the process got as much as how much work an event costs."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def baselines(rep: Report, bs: str, topic: str, values: list[bytes]) -> float:
    """Producing, and raw aiokafka consuming with and without decoding; returns raw events/s."""
    n = len(values)
    produce_s = asyncio.run(produce_all(bs, topic, values))
    cpu0 = time.process_time()
    raw_s = asyncio.run(raw_consume(bs, topic, n))
    rep.extra["raw_events_per_cpu_s"] = n / max(time.process_time() - cpu0, 1e-9)
    cpu0 = time.process_time()
    dec_s = asyncio.run(raw_consume(bs, topic, n, work="decode"))
    rep.extra["decode_events_per_cpu_s"] = n / max(time.process_time() - cpu0, 1e-9)
    raw = n / raw_s
    rep.rows.append({"path": "produce (aiokafka, acks=all)", "events": n,
                     "events/s": n / produce_s, "x_raw": ratio(n / produce_s, raw)})
    rep.rows.append({"path": "raw aiokafka consume (baseline)", "events": n,
                     "events/s": raw, "x_raw": 1.0})
    rep.rows.append({"path": "raw consume + decode/validate", "events": n,
                     "events/s": n / dec_s, "x_raw": ratio(n / dec_s, raw)})
    return raw


def worker_rates(rep: Report, worker: live.Worker, t: dict[str, str], n: int,
                 raw: float) -> None:
    """The same events through the worker's two agents, as they drain the backlog."""
    pid = worker.process.pid if worker.process else None
    cpu0 = cpu_seconds(pid) if pid else None
    samples = follow(worker, t["interactions"], n, timeout=max(120, n / 50))
    w_rate, reached = rate(samples)
    by_song = follow(worker, t["by_song"], n, timeout=30)
    if pid and cpu0 is not None and reached:
        per_cpu_s = reached / max(cpu_seconds(pid) - cpu0, 1e-9)
        raw_cpu = rep.extra.get("raw_events_per_cpu_s")
        dec_cpu = rep.extra.get("decode_events_per_cpu_s")
        # ratios against the bare consumer's own events per CPU-second, same run
        rep.rows.append({"path": "worker: events per CPU-second (both agents, whole process)",
                         "events": int(reached), "events/s": per_cpu_s,
                         "x_raw": ratio(per_cpu_s, raw_cpu),
                         "x_decode_cpu": ratio(per_cpu_s, dec_cpu)})
    rep.rows.append({"path": "worker: interactions agent", "events": int(reached),
                     "events/s": w_rate, "x_raw": ratio(w_rate, raw)})
    e_rate, e_reached = rate(by_song)
    rep.rows.append({"path": "worker: engagement agent (by_song)",
                     "events": int(e_reached), "events/s": e_rate,
                     "x_raw": ratio(e_rate, raw)})
    rep.extra["worker_stages"] = live.stage_table(worker.samples())
    rep.extra["store_ops"] = live.stage_table(worker.samples(),
                                              "coldstream_vector_store_seconds")


def run(mode: Mode, n: int | None = None, n_songs: int | None = None,
        n_users: int | None = None, rates: list[int] | None = None,
        models: Path = DEFAULT_MODELS, state_users: int | None = None) -> Report:
    """``state_users``: users whose state the restart and RSS rows load (bench.state_store);
    0 skips those rows."""
    n = n or (10_000 if mode == "quick" else 50_000)
    state_users = (100_000 if mode == "quick" else 1_000_000) if state_users is None \
        else state_users
    n_songs = n_songs or (2_000 if mode == "quick" else 20_000)
    n_users = n_users or (1_000 if mode == "quick" else 10_000)
    rates = rates or ([100, 300, 1000] if mode == "quick" else [100, 300, 1000, 3000])
    rep = Report("ingest", mode, {"events": n, "songs": n_songs, "users": n_users,
                                  "partitions": 4, "event_bytes": None})
    start = time.perf_counter()
    with live.live_stage(rep, models, "bi", n_songs, n_users) as st:
        values = interactions(st.cat, n)
        rep.params["event_bytes"] = int(np.mean([len(v) for v in values]))
        raw = baselines(rep, st.bootstrap, st.topics["interactions"], values)
        worker = live.Worker(st.bootstrap, models, st.tmp / "data", "bi").start()
        try:
            worker_rates(rep, worker, st.topics, n, raw)
            rep.extra["events_per_s_curve"] = paced(worker, st.bootstrap, st.topics, st.cat,
                                                    rates, n)
        finally:
            worker.stop()
        if state_users:
            state_store.run_state(rep, st, models, state_users, raw)
    for p in rep.extra.get("events_per_s_curve", []):
        rep.rows.append({"path": f"paced {p['offered/s']}/s for {p['seconds']:.0f} s",
                         "events": p["events"], "events/s": p["achieved/s"],
                         "x_raw": ratio(p["achieved/s"], raw),
                         "drain_s": p["drain_s"]})
    worker_row = next(r for r in rep.rows if r["path"].startswith("worker: interactions"))
    rep.goal("worker vs raw consumer", ">= 0.5x", worker_row["x_raw"], lambda v: v >= 0.5)
    st_means = rep.extra.get("worker_stages", {})
    rep.notes.append("worker stage means (ms): " + ", ".join(
        f"{k} {v['mean_ms']:.2f}" for k, v in sorted(st_means.items())))
    rep.seconds = time.perf_counter() - start
    return rep


def paced(worker: live.Worker, bs: str, t: dict[str, str], cat: live.Catalogue,
          rates: list[int], done: int, seconds: float = 5.0) -> list[dict[str, Any]]:
    """Offer interactions at fixed rates; the worker keeps up when drain time stays ~0."""
    out = []
    total = done
    for r in rates:
        count = int(r * seconds)
        values = interactions(cat, count, seed=r, start=total)

        async def send(values: list[bytes] = values, r: int = r) -> float:
            producer = AIOKafkaProducer(bootstrap_servers=bs, acks=1, linger_ms=2)
            await producer.start()
            t0 = time.perf_counter()
            try:
                for i, v in enumerate(values):
                    await producer.send(t["interactions"], value=v,
                                        key=orjson.loads(v)["user_id"].encode())
                    lag = t0 + (i + 1) / r - time.perf_counter()
                    if lag > 0:
                        await asyncio.sleep(lag)
                await producer.flush()
            finally:
                await producer.stop()
            return time.perf_counter()

        before = worker.metric("coldstream_events_total", topic=t["interactions"],
                               outcome="ok") or 0.0
        t_start = time.perf_counter()
        t_sent = asyncio.run(send())
        samples = follow(worker, t["interactions"], before + count,
                         timeout=max(60, count / 50))
        t_done = samples[-1][0]
        reached = samples[-1][1] - before
        total += count
        out.append({"offered/s": r, "seconds": t_sent - t_start, "events": int(reached),
                    "achieved/s": reached / (t_done - t_start),
                    "drain_s": max(0.0, t_done - t_sent),
                    "kept_up": reached >= count and t_done - t_sent < 1.0})
    return out
