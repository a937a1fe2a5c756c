"""Crashes and outages lose nothing and duplicate no effect (real broker, engine, workers)."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from encoders.artifacts import Registry
from streams.broker import EmbeddedBroker
from streams.ids import song_point_id, user_point_id
from streams.pipeline import Collections
from streams.process import WorkerProcess
from streams.stores import EdgeStore

from .test_worker import interaction, read_all, send, song
from .workers import make_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def drained(worker: WorkerProcess, topics: list[str], settle: float = 2.0,
            timeout: float = 180.0) -> None:
    """Wait until every input partition's committed offset reached its true end offset."""
    deadline = time.monotonic() + timeout
    quiet_since = None
    lags: dict = {}
    while time.monotonic() < deadline:
        lags = {lab: v for (name, lab), v in worker.samples().items()
                if name == "coldstream_consumer_lag" and dict(lab)["topic"] in topics}
        seen = {dict(lab)["topic"] for lab in lags}
        if seen == set(topics) and not any(lags.values()):
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= settle:
                return
        else:
            quiet_since = None
        time.sleep(0.3)
    raise TimeoutError(f"lag did not drain: {lags}\n{worker.log()}")


def stable_candidates(bootstrap: str, topic: str) -> list[dict]:
    """Every candidate on ``topic``, after checking that a repeated ``candidate_id`` always
    names the same (song, user, model version): duplicates only as identical ids."""
    cands = [orjson.loads(v) for v in read_all(bootstrap, topic, idle=1.0)]
    by_id: dict[str, set] = {}
    for c in cands:
        by_id.setdefault(c["candidate_id"], set()).add((c["song_id"], c["user_id"],
                                                        c["model_version"]))
    assert all(len(v) == 1 for v in by_id.values())
    return cands


def test_kill_9_rounds_lose_nothing_and_duplicate_nothing(
        broker: EmbeddedBroker, model_registry: Registry, tmp_path: Path) -> None:
    bs, p = broker.bootstrap, "crash"
    # small batches, so kills land between batches and inside them
    worker = make_worker(bs, model_registry.root, tmp_path, p, COLDSTREAM_BATCH_MAX_EVENTS="16")
    songs = [song(f"{g}{i}", g, i) for g in ("jazz", "metal") for i in range(30)]
    late = [song(f"{g}{i}", g, i) for g in ("jazz", "metal") for i in range(30, 40)]
    plays = [interaction(f"u{u}", f"{'jazz' if u % 2 else 'metal'}{(u * 7 + k) % 30}",
                         ("play", "complete", "collect")[k % 3], k)
             for u in range(20) for k in range(12)]
    plays = list({e["event_id"]: e for e in plays}.values())
    ok = {"outcome": "ok"}
    rounds = [
        (lambda: send(bs, f"{p}.songs.new", songs), "coldstream_songs_indexed_total", 10, {}),
        (lambda: send(bs, f"{p}.interactions", plays[:120]), "coldstream_events_total", 30,
         {**ok, "topic": f"{p}.interactions"}),
        (lambda: send(bs, f"{p}.interactions", plays[120:]), "coldstream_events_total", 20,
         {**ok, "topic": f"{p}.interactions.by_song"}),
        (lambda: send(bs, f"{p}.songs.new", late), "coldstream_songs_indexed_total", 5, {}),
    ]
    for produce_round, progress_metric, kill_after, labels in rounds:
        worker.start()
        try:
            produce_round()
            worker.wait_metric(progress_metric, kill_after, timeout=90, **labels)
        finally:
            assert worker.stop(signal.SIGKILL) == -signal.SIGKILL  # mid-stream, no goodbye
    worker.start()
    try:
        send(bs, f"{p}.interactions", plays[:5])  # producer retries: same event ids again
        drained(worker, [f"{p}.songs.new", f"{p}.interactions", f"{p}.interactions.by_song",
                         f"{p}.users.refresh", f"{p}.candidates.proposed"])
    finally:
        assert worker.stop() == 0

    version = model_registry.current() or ""
    cols = Collections.for_version(version)
    store = EdgeStore(worker.data_dir / "qdrant")
    try:
        every = songs + late
        assert store.count(cols.songs) == len(every)  # every song, once
        found = store.retrieve(cols.songs, [song_point_id(s["song_id"]) for s in every])
        assert len(found) == len(every)
        per_user = Counter(e["user_id"] for e in plays)
        users = store.retrieve(cols.users, [user_point_id(u) for u in per_user])
        got = {h.payload["user_id"]: h.payload["events"] for h in users}
        assert got == dict(per_user)  # every interaction counted exactly once
    finally:
        store.close()
    cands = stable_candidates(bs, f"{p}.candidates")
    # songs that arrived after users existed all reached listeners (earlier ones had nobody)
    assert {s["song_id"] for s in late} <= {c["song_id"] for c in cands}


def test_records_dropped_behind_fausts_back_are_read_again(
        broker: EmbeddedBroker, model_registry: Registry, tmp_path: Path) -> None:
    """A fetch whose caller was cancelled (rebalance) still moved the client past its records;
    stock Faust never reads them again. The hook drops three such batches on purpose."""
    bs, p = broker.bootstrap, "dropped"
    worker = make_worker(bs, model_registry.root, tmp_path, p, COLDSTREAM_TEST_DROP_FETCHES="3")
    worker.start()
    songs = [song(f"jazz{i}", "jazz", i) for i in range(20)]
    try:
        for start in range(0, len(songs), 5):  # several fetches, so several can be dropped
            send(bs, f"{p}.songs.new", songs[start:start + 5])
            time.sleep(0.3)
        drained(worker, [f"{p}.songs.new"])
        assert worker.metric("coldstream_consumer_guard_total", reason="undelivered") >= 1
    finally:
        assert worker.stop() == 0
    store = EdgeStore(worker.data_dir / "qdrant")
    try:
        cols = Collections.for_version(model_registry.current() or "")
        assert store.count(cols.songs) == len(songs)
    finally:
        store.close()


def test_vector_store_faults_delay_events_but_lose_none(
        broker: EmbeddedBroker, model_registry: Registry, tmp_path: Path) -> None:
    bs, p = broker.bootstrap, "faults"
    worker = make_worker(bs, model_registry.root, tmp_path, p,
                         COLDSTREAM_TEST_STORE_FAULTS="error_rate=0.3,delay_s=0.01,seed=3")
    worker.start()
    try:
        send(bs, f"{p}.songs.new", [song(f"jazz{i}", "jazz", i) for i in range(15)])
        worker.wait_metric("coldstream_songs_indexed_total", 15, timeout=120)
        errors = sum(v for (n, _), v in worker.samples().items()
                     if n == "coldstream_vector_store_errors_total")
        assert errors > 0  # faults really happened ...
        assert worker.metric("coldstream_events_total", topic=f"{p}.songs.new",
                             outcome="dlq") is None  # ... and nothing was dead-lettered
    finally:
        assert worker.stop() == 0
    store = EdgeStore(worker.data_dir / "qdrant")
    try:
        assert store.count(Collections.for_version(model_registry.current() or "").songs) == 15
    finally:
        store.close()
