"""User state on disk (RocksDB) recovers exactly after kill -9, warm and cold, on Tansu."""

from __future__ import annotations

import shutil
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from rocksdict import AccessType, Options, Rdict

from encoders.artifacts import Registry
from streams.broker import EmbeddedBroker
from streams.ids import user_point_id
from streams.pipeline import Collections
from streams.process import WorkerProcess
from streams.stores import EdgeStore
from streams.topics import SONG_ENGAGERS_TABLE, USER_STATE_TABLE

from .test_reliability import drained, stable_candidates
from .test_worker import interaction, send, song
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
    assert all(s["format"] == 1 for s in users.values())
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
