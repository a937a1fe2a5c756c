"""Scenario 1 (and the events/s curve of 6): interactions through a real worker vs raw aiokafka.

The same N pre-produced messages are read twice from the same embedded broker: once by a plain
aiokafka consume loop (the ceiling: what the broker and client can deliver), once by the worker
(decode, user state, user vector and boundary, vector upsert, re-key to by_song). The worker's
rate comes from its own ``coldstream_events_total`` counter over time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.events import InteractionEvent, decode

from . import faust_ceiling, live, state_store
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
    return process_usage(pid)[0]


def process_usage(pid: int) -> tuple[float, float, float, float]:
    """One read of ``/proc/PID/stat``: (user + system CPU seconds, system CPU seconds, minor
    page faults, major page faults) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    user, system = int(fields[11]) / tick, int(fields[12]) / tick
    return user + system, system, float(fields[7]), float(fields[9])


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


def ceiling(rep: Report, st: live.Stage, models: Path, n: int, raw: float) -> None:
    """The empty Faust agent over the same events (bench.faust_ceiling), before the worker
    starts, so the two never share the cores."""
    c = faust_ceiling.measure(st.bootstrap, models, st.tmp, "bi", n)
    rep.rows.append({"path": "faust: empty agent (same app config and batching)",
                     "events": c["events"], "events/s": c["events/s"],
                     "x_raw": ratio(c["events/s"], raw)})
    rep.rows.append({"path": "faust: empty agent, events per CPU-second",
                     "events": c["events"], "events/s": c["events/cpu_s"],
                     "x_raw": ratio(c["events/cpu_s"], rep.extra.get("raw_events_per_cpu_s")),
                     "x_decode_cpu": ratio(c["events/cpu_s"],
                                           rep.extra.get("decode_events_per_cpu_s"))})


@contextmanager
def profiled(pid: int | None) -> Iterator[None]:
    """With ``BENCH_PYSPY=PREFIX`` (bench only; py-spy is not a dependency): py-spy
    on the worker, all threads, while it drains the backlog: a flame graph PREFIX.svg and the
    collapsed stacks PREFIX.txt (for self-time tables, ``bench.profile_top``)."""
    prefix = os.environ.get("BENCH_PYSPY")
    if not prefix or pid is None:
        yield
        return
    spy = str(Path(sys.executable).parent / "py-spy")
    spies = [subprocess.Popen([spy, "record", "--pid", str(pid), "--threads", "--nonblocking",
                               "--rate", "100", "--format", fmt, "-o", f"{prefix}.{ext}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for fmt, ext in (("flamegraph", "svg"), ("raw", "txt"))]
    try:
        yield
    finally:
        for p in spies:
            p.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for p in spies:
            p.wait(60)


def worker_rates(rep: Report, worker: live.Worker, t: dict[str, str], n: int,
                 raw: float) -> None:
    """The same events through the worker's two agents, as they drain the backlog."""
    pid = worker.process.pid if worker.process else None
    cpu0 = cpu_seconds(pid) if pid else None
    with profiled(pid):
        samples = follow(worker, t["interactions"], n, timeout=max(120, n / 50))
        w_rate, reached = rate(samples)
        by_song = follow(worker, t["by_song"], n, timeout=30)
    if pid and cpu0 is not None and reached:
        per_cpu_s = reached / max(cpu_seconds(pid) - cpu0, 1e-9)
        raw_cpu = rep.extra.get("raw_events_per_cpu_s")
        dec_cpu = rep.extra.get("decode_events_per_cpu_s")
        # ratios against the bare consumer's own events per CPU-second, same run
        empty_cpu = next((r["events/s"] for r in rep.rows
                          if r["path"] == "faust: empty agent, events per CPU-second"), None)
        rep.rows.append({"path": "worker: events per CPU-second (both agents, whole process)",
                         "events": int(reached), "events/s": per_cpu_s,
                         "x_raw": ratio(per_cpu_s, raw_cpu),
                         "x_decode_cpu": ratio(per_cpu_s, dec_cpu),
                         "x_faust_cpu": ratio(per_cpu_s, empty_cpu)})
    empty = next((r["events/s"] for r in rep.rows if r["path"].startswith("faust: empty")),
                 None)
    decoded = next(r["events/s"] for r in rep.rows if r["path"].startswith("raw consume +"))
    rep.rows.append({"path": "worker: interactions agent", "events": int(reached),
                     "events/s": w_rate, "x_raw": ratio(w_rate, raw),
                     "x_decode": ratio(w_rate, decoded), "x_faust": ratio(w_rate, empty)})
    e_rate, e_reached = rate(by_song)
    rep.rows.append({"path": "worker: engagement agent (by_song)",
                     "events": int(e_reached), "events/s": e_rate,
                     "x_raw": ratio(e_rate, raw), "x_decode": ratio(e_rate, decoded),
                     "x_faust": ratio(e_rate, empty)})
    rep.extra["worker_stages"] = live.stage_table(worker.samples())
    rep.extra["store_ops"] = live.stage_table(worker.samples(),
                                              "coldstream_vector_store_seconds")


def run(mode: Mode, n: int | None = None, n_songs: int | None = None,
        n_users: int | None = None, rates: list[int] | None = None,
        models: Path = DEFAULT_MODELS, state_users: int | None = None,
        paced_s: float | None = None, lag_png: Path | None = None) -> Report:
    """``state_users``: users whose state the restart and RSS rows load (bench.state_store);
    0 skips those rows. ``--full`` is the issue-14 size: 100k listeners and 100k songs, a
    paced 5,000 ev/s held for 60 s, 1M users' state."""
    n = n or (10_000 if mode == "quick" else 50_000)
    state_users = (100_000 if mode == "quick" else 1_000_000) if state_users is None \
        else state_users
    n_songs = n_songs or (2_000 if mode == "quick" else 100_000)
    n_users = n_users or (1_000 if mode == "quick" else 100_000)
    rates = rates or ([100, 300, 1000] if mode == "quick" else [1000, 5000])
    paced_s = paced_s or (5.0 if mode == "quick" else 60.0)
    rep = Report("ingest", mode, {"events": n, "songs": n_songs, "users": n_users,
                                  "partitions": 4, "event_bytes": None,
                                  "state_users": state_users})
    rep.extra["load"] = {"start": os.getloadavg()}  # a shared machine: say how shared
    start = time.perf_counter()
    with live.live_stage(rep, models, "bi", n_songs, n_users) as st:
        values = interactions(st.cat, n)
        rep.params["event_bytes"] = int(np.mean([len(v) for v in values]))
        raw = baselines(rep, st.bootstrap, st.topics["interactions"], values)
        ceiling(rep, st, models, n, raw)
        worker = live.Worker(st.bootstrap, models, st.tmp / "data", "bi").start()
        try:
            worker_rates(rep, worker, st.topics, n, raw)
            rep.extra["events_per_s_curve"] = paced(worker, st.bootstrap, st.topics, st.cat,
                                                    rates, n, paced_s)
        finally:
            worker.stop()
        if state_users:
            state_store.run_state(rep, st, models, state_users, raw)
    for p in rep.extra.get("events_per_s_curve", []):
        rep.rows.append({"path": f"paced {p['offered/s']}/s for {p['seconds']:.0f} s",
                         "events": p["events"], "events/s": p["achieved/s"],
                         "x_raw": ratio(p["achieved/s"], raw),
                         "drain_s": p["drain_s"], "max_lag": p["max_lag"]})
    if lag_png is not None:
        rep.extra["lag_png"] = str(plot_lag(rep.extra.get("events_per_s_curve", []), lag_png))
    worker_row = next(r for r in rep.rows if r["path"].startswith("worker: interactions"))
    rep.goal("interactions agent", ">= 10,000 ev/s", worker_row["events/s"],
             lambda v: v >= 10_000)
    rep.goal("interactions agent vs decode-only", ">= 0.3x", worker_row["x_decode"],
             lambda v: v >= 0.3)
    st_means = rep.extra.get("worker_stages", {})
    rep.notes.append("worker stage means (ms): " + ", ".join(
        f"{k} {v['mean_ms']:.2f}" for k, v in sorted(st_means.items())))
    rep.extra["load"]["end"] = os.getloadavg()
    rep.seconds = time.perf_counter() - start
    return rep


class LagSampler:
    """Backlog over time while a paced run is offered: events sent so far (the sender counts)
    minus the worker's ``coldstream_events_total`` (a thread polls /metrics every 0.25 s)."""

    def __init__(self, worker: live.Worker, topic: str, before: float) -> None:
        self.worker, self.topic, self.before = worker, topic, before
        self.sent = 0
        self.samples: list[tuple[float, int, float]] = []  # (time, sent, processed)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self.stopped.wait(0.25):
            done = self.worker.metric("coldstream_events_total", topic=self.topic,
                                      outcome="ok")
            if done is not None:  # /metrics did not answer in time: no sample, not a 0
                self.samples.append((time.perf_counter(), self.sent, done - self.before))

    def lag(self, t0: float) -> list[tuple[float, float]]:
        return [(t - t0, max(0.0, sent - done)) for t, sent, done in self.samples]


async def offer(bs: str, topic: str, values: list[bytes], r: int, sampler: LagSampler) -> float:
    """Send ``values`` at ``r`` per second (acks=1), counting into ``sampler``; returns the
    time the last one was acknowledged."""
    producer = AIOKafkaProducer(bootstrap_servers=bs, acks=1, linger_ms=2)
    await producer.start()
    t0 = time.perf_counter()
    try:
        for i, v in enumerate(values):
            await producer.send(topic, value=v, key=orjson.loads(v)["user_id"].encode())
            sampler.sent = i + 1
            lag = t0 + (i + 1) / r - time.perf_counter()
            if lag > 0:
                await asyncio.sleep(lag)
        await producer.flush()
    finally:
        await producer.stop()
    return time.perf_counter()


def paced(worker: live.Worker, bs: str, t: dict[str, str], cat: live.Catalogue,
          rates: list[int], done: int, seconds: float = 5.0) -> list[dict[str, Any]]:
    """Offer interactions at fixed rates; the worker keeps up when drain time stays ~0."""
    out = []
    total = done
    for r in rates:
        count = int(r * seconds)
        values = interactions(cat, count, seed=r, start=total)
        before = worker.metric("coldstream_events_total", topic=t["interactions"],
                               outcome="ok") or 0.0
        sampler = LagSampler(worker, t["interactions"], before)
        sampler.thread.start()
        t_start = time.perf_counter()
        try:
            t_sent = asyncio.run(offer(bs, t["interactions"], values, r, sampler))
            samples = follow(worker, t["interactions"], before + count,
                             timeout=max(60, count / 50))
        finally:
            sampler.stopped.set()
            sampler.thread.join()
        t_done = samples[-1][0]
        reached = samples[-1][1] - before
        total += count
        lag = sampler.lag(t_start)
        out.append({"offered/s": r, "seconds": t_sent - t_start, "events": int(reached),
                    "achieved/s": reached / (t_done - t_start),
                    "drain_s": max(0.0, t_done - t_sent),
                    "max_lag": max((v for _, v in lag), default=0.0),
                    "kept_up": reached >= count and t_done - t_sent < 1.0,
                    "lag": [(round(a, 2), b) for a, b in lag]})
    return out


def plot_lag(curve: list[dict[str, Any]], path: Path) -> Path | None:
    """Backlog (events) over time of each paced run, one PNG."""
    if not curve:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for p in curve:
        if p["lag"]:
            xs, ys = zip(*p["lag"], strict=True)
            ax.plot(xs, ys, label=f"{p['offered/s']:,}/s offered, drain {p['drain_s']:.1f} s")
        ax.axvline(p["seconds"], color="grey", lw=0.5, ls="--")
    ax.set_xlabel("seconds since the first event was offered")
    ax.set_ylabel("backlog (events sent, not yet processed)")
    ax.set_title("interactions agent, one worker, paced input")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
