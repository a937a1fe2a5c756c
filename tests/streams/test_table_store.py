"""User state on disk (RocksDB) recovers exactly after kill -9, warm and cold, on Tansu, and
its recovery still skips stale changelog records."""

from __future__ import annotations

import asyncio
import shutil
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from rocksdict import AccessType, Options, Rdict

from encoders.artifacts import Registry
from streams.broker import EmbeddedBroker
from streams.client import consume
from streams.ids import user_point_id
from streams.pipeline import Collections
from streams.process import WorkerProcess
from streams.state_format import USER_STATE_FORMAT, pack_user_state, read_user_state
from streams.stores import EdgeStore
from streams.topics import SONG_ENGAGERS_TABLE, USER_STATE_TABLE

from .test_reliability import drained, stable_candidates
from .test_worker import interaction, read_all, send, song
from .workers import make_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OFFSET_KEY = b"__faust\0offset__"


def table_on_disk(tables: Path, name: str) -> dict[str, Any]:
    """Every key of a table as its RocksDB files hold it (the worker must be stopped)."""
    out: dict[str, Any] = {}
    for path in sorted(tables.glob(f"{name}-*.db")):
        db = Rdict(str(path), options=Options(raw_mode=True),
                   access_type=AccessType.read_only())
        try:
            for key, value in db.items():
                if key != OFFSET_KEY:
                    out[orjson.loads(key)] = orjson.loads(value)
        finally:
            db.close()
    return out


def assert_state_is_what_was_sent(worker: WorkerProcess, plays: list[dict],
                                  version: str) -> None:
    """User state on disk, user vectors and song listener lists count each play once."""
    tables = worker.data_dir / "tables"
    sent = Counter(e["user_id"] for e in plays)
    users = table_on_disk(tables, USER_STATE_TABLE)
    assert {u: s["applied"] for u, s in users.items()} == dict(sent)
    assert {u: sum(s["counts"].values()) for u, s in users.items()} == dict(sent)
    assert all(s["format"] == USER_STATE_FORMAT for s in users.values())
    engagers = table_on_disk(tables, SONG_ENGAGERS_TABLE)
    by_song = {(e["song_id"], e["user_id"]) for e in plays}
    assert {(s, row[0]) for s, rows in engagers.items() for row in rows} == by_song
    store = EdgeStore(worker.data_dir / "qdrant")
    try:
        points = store.retrieve(Collections.for_version(version).users,
                                [user_point_id(u) for u in sent])
        assert {h.payload["user_id"]: h.payload["events"] for h in points} == dict(sent)
    finally:
        store.close()


def test_rocksdb_state_recovers_after_kill_9_warm_and_cold(
        broker: EmbeddedBroker, model_registry: Registry, tmp_path: Path) -> None:
    """Kill -9 mid-stream twice, restart on the local store (warm: Faust compares the persisted
    changelog offsets with Tansu's highwaters, the path the end-offset shim covers), then
    delete the store and restart (cold: rebuilt from the changelogs). Every user's state
    equals what was sent, re-sent duplicates count once, and no recovery raises."""
    bs, p = broker.bootstrap, "rocks"
    worker = make_worker(bs, model_registry.root, tmp_path, p, COLDSTREAM_TABLE_STORE="rocksdb",
                         COLDSTREAM_BATCH_MAX_EVENTS="16")
    songs = [song(f"{g}{i}", g, i) for g in ("jazz", "metal") for i in range(10)]
    plays = [interaction(f"u{u}", f"{'jazz' if u % 2 else 'metal'}{(u * 7 + k) % 10}",
                         ("play", "complete", "collect")[k % 3], k)
             for u in range(20) for k in range(12)]
    plays = list({e["event_id"]: e for e in plays}.values())
    inputs = [f"{p}.songs.new", f"{p}.interactions", f"{p}.interactions.by_song",
              f"{p}.users.refresh"]
    version = model_registry.current() or ""
    ok = {"outcome": "ok", "topic": f"{p}.interactions"}
    for part, kill_after in ((plays[:100], 30), (plays[100:180], 20)):
        worker.start()
        try:
            send(bs, f"{p}.songs.new", songs)  # re-sent: indexing is idempotent
            send(bs, f"{p}.interactions", part)
            worker.wait_metric("coldstream_events_total", kill_after, timeout=90, **ok)
        finally:
            assert worker.stop(signal.SIGKILL) == -signal.SIGKILL
        assert list((worker.data_dir / "tables").glob(f"{USER_STATE_TABLE}-*.db"))

    worker.start()  # warm: the local store is there
    try:
        drained(worker, inputs)
    finally:
        assert worker.stop() == 0
    assert_state_is_what_was_sent(worker, plays[:180], version)

    shutil.rmtree(worker.data_dir / "tables")
    worker.start()  # cold: rebuilt from the changelogs
    try:
        send(bs, f"{p}.interactions", plays[180:] + plays[:5])  # the first five again
        drained(worker, inputs)
    finally:
        assert worker.stop() == 0
    assert_state_is_what_was_sent(worker, plays, version)
    log = worker.log_path.read_text(errors="replace")
    assert "ConsistencyError" not in log and "Crashed" not in log
    stable_candidates(bs, f"{p}.candidates")


def test_a_late_stale_record_after_a_warm_restart_is_skipped_against_the_local_state(
        broker: EmbeddedBroker, model_registry: Registry, tmp_path: Path) -> None:
    """The stale-skip rule (streams.monotone_tables) on RocksDB: a user's newest state is on
    disk, then a late record of an older state lands in the changelog (a zombie's write). The
    warm restart replays only that record, compares it with the state read from RocksDB,
    skips it and counts the skip; the user then builds on the newest state."""
    bs, p = broker.bootstrap, "rocks-stale"
    worker = make_worker(bs, model_registry.root, tmp_path, p, COLDSTREAM_TABLE_STORE="rocksdb")
    changelog = f"{worker.env['COLDSTREAM_APP_ID']}-{USER_STATE_TABLE}-changelog"
    plays = [interaction("u1", f"jazz{k}", "play", k) for k in range(3)]
    worker.start()
    try:
        send(bs, f"{p}.interactions", plays)
        worker.wait_metric("coldstream_events_total", 3, topic=f"{p}.interactions",
                           outcome="ok")
    finally:
        assert worker.stop() == 0
    states = [orjson.loads(v) for v in read_all(bs, changelog, idle=1.0)]
    newest = states[-1]
    assert newest["applied"] == 3
    # the state after two of the three plays, as a paused member could still send it
    plain = read_user_state(newest)
    assert plain is not None
    stale = pack_user_state({**plain, "applied": 2, "counts": {"play": 2},
                             "history": plain["history"][:2]})
    partition = next(iter(read_partitions(bs, changelog)))
    asyncio.run(produce_one(bs, changelog, partition, b'"u1"', orjson.dumps(stale)))

    worker.start()  # warm: replays only the late record
    try:
        assert worker.wait_metric("coldstream_table_stale_records_total", 1,
                                  table=USER_STATE_TABLE) == 1
        send(bs, f"{p}.interactions", [interaction("u1", "metal1", "collect", 9)])
        worker.wait_metric("coldstream_events_total", 1, topic=f"{p}.interactions",
                           outcome="ok")
    finally:
        assert worker.stop() == 0
    user = table_on_disk(worker.data_dir / "tables", USER_STATE_TABLE)["u1"]
    assert user["applied"] == 4 and user["counts"] == {"play": 3, "collect": 1}


def read_partitions(bs: str, topic: str) -> set[int]:
    """Partitions of ``topic`` that hold records."""

    async def run() -> set[int]:
        return {r.partition async for r in consume(bs, topic, idle_timeout=1.0)}

    return asyncio.run(run())


async def produce_one(bs: str, topic: str, partition: int, key: bytes, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bs)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()
