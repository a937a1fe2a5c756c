"""Ingest rows for listener state at scale: RSS per 100k users and restart-to-serving seconds,
in-memory tables vs RocksDB tables (``COLDSTREAM_TABLE_STORE``), in the same run.

N user states go straight into the ``user_state`` changelog, in the form and partition the
worker itself writes (20 events each, ~1.3 KB of JSON), instead of N x 20 interactions through
a worker: at the measured ingest rate that would take hours at 100k users. Then, one after the
other on the same broker and catalogue:

* a worker on the in-memory store with no users (the baseline: process start, model load,
  group join) and with N users (it replays the changelog at every start);
* a worker on the RocksDB store with no local files (cold: rebuilt from the changelog), then
  restarted on its files (warm: replays only what is newer than them).

Above ``FULL_REPLAY_LIMIT`` users (1M) only the baseline and the warm start run: the bench
writes the warm worker's RocksDB files itself while it produces the changelog (what a finished
cold rebuild leaves), since a memory or cold start replays every state through Faust's recovery
loop, about 10 minutes at 1M on 2 cores.

"Restart to serving" is from process start to the first interaction it has processed (a probe
sent as soon as it reports ready: agents only run once table recovery is over). RSS is the
worker's resident set after that probe.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from rocksdict import Options, Rdict

from streams.broker import ensure_topics
from streams.pipeline import new_user_state
from streams.process import WorkerProcess
from streams.state_format import pack_user_state
from streams.topics import USER_STATE_TABLE

from . import live
from .common import Report, ratio

PARTITIONS = [0, 1, 2, 3]
#: Faust's key for the changelog offset a RocksDB table database holds (faust.stores.rocksdb).
OFFSET_KEY = b"__faust\0offset__"
#: Above this many users the in-memory and cold runs are skipped (each replays every state
#: through Faust's recovery loop: about 10 minutes at 1M on 2 cores) and the warm worker's
#: local RocksDB files are written by the bench, as a finished cold rebuild leaves them.
FULL_REPLAY_LIMIT = 200_000
EVENTS_PER_USER = 20
#: The input partition the synthetic states name as their events' source: none of the topic's,
#: so the probe interaction is never taken for a replay of them.
SYNTHETIC_PARTITION = 99


def user_state(cat: live.Catalogue, uid: str, rng: np.random.Generator,
               offset: int) -> dict[str, Any]:
    """A state as :func:`streams.pipeline.apply_interaction` leaves it after 20 events."""
    songs = rng.choice(len(cat.songs), EVENTS_PER_USER, replace=False)
    ts = live.NOW - np.sort(rng.integers(0, 30 * 86_400_000, EVENTS_PER_USER))[::-1]
    actions = [live.ACTIONS[int(a)] for a in rng.integers(0, len(live.ACTIONS),
                                                          EVENTS_PER_USER)]
    counts: dict[str, int] = {}
    for a in actions:
        counts[a] = counts.get(a, 0) + 1
    offsets = list(range(offset, offset + EVENTS_PER_USER))
    partition = SYNTHETIC_PARTITION  # offsets no probe can hit (it would count as a replay)
    state = {**new_user_state(),
             "history": [[cat.songs[int(s)]["song_id"], a, int(t)]
                         for s, a, t in zip(songs, actions, ts, strict=True)],
             "counts": counts, "offsets": {str(partition): offsets[-1]},
             "event_ids": [f"{uid}-e{o}" for o in offsets],
             "seen": [[partition, o] for o in offsets], "boundary": 0.25,
             "applied": EVENTS_PER_USER}
    assert state.keys() == new_user_state().keys()
    return state


def states(cat: live.Catalogue, n: int, seed: int = 1) -> Iterator[tuple[int, bytes, bytes]]:
    """(partition, key, value) of ``n`` users as the worker's changelog holds them."""
    rng = np.random.default_rng(seed)
    part = DefaultPartitioner()
    for i in range(n):
        uid = f"x{i}"
        p = part(uid.encode(), PARTITIONS, PARTITIONS)  # the partition of the user's events
        yield p, orjson.dumps(uid), orjson.dumps(pack_user_state(user_state(cat, uid, rng,
                                                                            20 * i)))


async def write_changelog(bs: str, topic: str, records: Iterator[tuple[int, bytes, bytes]],
                          local: Path | None = None) -> int:
    """Produce the states; with ``local``, also write them into RocksDB files there, with each
    partition's last offset, as a finished cold rebuild leaves them. Returns mean value size."""
    producer = AIOKafkaProducer(bootstrap_servers=bs, acks="all", linger_ms=20,
                                compression_type="zstd", max_batch_size=256 * 1024)
    dbs = open_tables(local) if local is not None else {}
    last: dict[int, int] = {}
    await producer.start()
    n, size = 0, 0
    try:
        futs = []
        for p, key, value in records:
            futs.append(await producer.send(topic, value=value, key=key, partition=p))
            if dbs:
                dbs[p][key] = value
            n, size = n + 1, size + len(value)
            if len(futs) >= 5000:
                for md in await asyncio.gather(*futs):
                    last[md.partition] = max(md.offset, last.get(md.partition, -1))
                futs.clear()
        for md in await asyncio.gather(*futs):
            last[md.partition] = max(md.offset, last.get(md.partition, -1))
    finally:
        await producer.stop()
        for p, db in dbs.items():
            if p in last:
                db[OFFSET_KEY] = str(last[p]).encode()
            db.close()
    return size // max(n, 1)


def open_tables(local: Path) -> dict[int, Rdict]:
    local.mkdir(parents=True, exist_ok=True)
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    return {p: Rdict(str(local / f"{USER_STATE_TABLE}-{p}.db"), options=opts)
            for p in PARTITIONS}


def rss_mb(pid: int) -> float:
    return memory_mb(pid)["rss"]


def memory_mb(pid: int) -> dict[str, float]:
    """MB of a process: ``rss`` (resident), ``anon`` (its own pages: what only it can free),
    ``file`` (mapped file pages: the page cache, which the kernel reclaims under pressure),
    ``peak`` (the highest ``rss`` since it started)."""
    keys = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file", "VmHWM": "peak"}
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in keys:
            out[keys[key]] = int(value.split()[0]) / 1024
    if "rss" not in out:
        raise RuntimeError("no VmRSS")
    return out


def serve_once(worker: WorkerProcess, bs: str, topic: str, probe: bytes) -> tuple[float, float]:
    """Seconds from process start to its first processed interaction, and RSS (MB) then."""
    t0 = time.perf_counter()
    worker.start(ready_timeout=600)
    asyncio.run(live_send(bs, topic, probe))
    worker.wait_metric("coldstream_events_total", 1, timeout=600, topic=topic, outcome="ok")
    seconds = time.perf_counter() - t0
    assert worker.process is not None
    rss = rss_mb(worker.process.pid)
    assert worker.stop() == 0
    return seconds, rss


async def live_send(bs: str, topic: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bs)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=value, key=orjson.loads(value)["user_id"]
                                     .encode())
    finally:
        await producer.stop()


def probe(cat: live.Catalogue, i: int) -> bytes:
    return orjson.dumps({"schema_version": 1, "event_id": f"probe{i}", "user_id": "x0",
                         "song_id": cat.songs[i]["song_id"], "action": "play",
                         "ts": live.NOW + i, "played_ms": 30_000})


def run_state(rep: Report, st: live.Stage, models: Path, n_users: int,
              raw: float | None) -> None:
    """The rows described in the module docstring, appended to ``rep``."""
    prefix = "bs"
    names = live.topics(prefix)
    changelog = f"{prefix}-app-{USER_STATE_TABLE}-changelog"
    asyncio.run(ensure_topics(st.bootstrap, [*names.values(), changelog], len(PARTITIONS)))
    data = st.tmp / "data"

    def worker(kind: str) -> WorkerProcess:
        return live.Worker(st.bootstrap, models, data, prefix,
                           extra_env={"COLDSTREAM_TABLE_STORE": kind})

    topic, out = names["interactions"], {}
    out["empty"] = serve_once(worker("memory"), st.bootstrap, topic, probe(st.cat, 0))
    full = n_users <= FULL_REPLAY_LIMIT
    t = time.perf_counter()
    size = asyncio.run(write_changelog(st.bootstrap, changelog, states(st.cat, n_users),
                                       local=None if full else data / "tables"))
    rep.extra["state_changelog"] = {"users": n_users, "value_bytes": size,
                                    "write_s": time.perf_counter() - t,
                                    "local_files_written_by_bench": not full}
    if full:
        out["memory"] = serve_once(worker("memory"), st.bootstrap, topic, probe(st.cat, 1))
        shutil.rmtree(data / "tables", ignore_errors=True)
        out["rocksdb cold"] = serve_once(worker("rocksdb"), st.bootstrap, topic,
                                         probe(st.cat, 2))
    out["rocksdb warm"] = serve_once(worker("rocksdb"), st.bootstrap, topic, probe(st.cat, 3))
    rep.extra["state_store"] = {k: {"restart_s": s, "rss_mb": r} for k, (s, r) in out.items()}
    state_rows(rep, out, n_users, raw)


def state_rows(rep: Report, out: dict[str, tuple[float, float]], n_users: int,
               raw: float | None) -> None:
    base_s, base_rss = out["empty"]
    rep.rows.append({"path": "restart to serving, no users (memory store; baseline)",
                     "users": 0, "events/s": None, "x_raw": None, "restart_s": base_s,
                     "rss_mb": base_rss})
    for kind in ("memory", "rocksdb cold", "rocksdb warm"):
        if kind not in out:
            continue
        seconds, rss = out[kind]
        # states recovered per second; a warm start recovers only what is newer than its files
        per_s = None if kind.endswith("warm") else n_users / max(seconds - base_s, 1e-9)
        rep.rows.append({
            "path": f"restart to serving, {n_users:,} users ({kind} store)", "users": n_users,
            "events/s": per_s, "x_raw": ratio(per_s, raw), "restart_s": seconds,
            "x_baseline_s": ratio(seconds, base_s), "rss_mb": rss,
            "rss_mb_per_100k_users": (rss - base_rss) / n_users * 100_000})
    rep.goal(f"warm restart at {n_users:,} users (goal: 60 s at 1M)", "<= 60 s",
             out["rocksdb warm"][0], lambda v: v <= 60)
