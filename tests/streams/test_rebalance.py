"""Rebalances after processing never crash a serving worker (real broker, engine, workers).

Each scenario forces the group to rebalance while a worker already holds table state and serves:
a member killed faster than its session expires, a second worker joining and leaving, a member
whose heartbeat pauses (SIGSTOP past the session timeout). New songs keep arriving throughout;
afterwards the serving worker must still be up, every song that arrived after its listeners
existed must have reached them, duplicates may only be identical ``candidate_id``s, and each
user's interaction count and each song's listener list must equal what was sent.

``make test`` runs the three in a row on one worker, once. ``make soak-rebalance`` runs each
on a worker of its own, then all three in a row ``COLDSTREAM_REBALANCE_REPEAT`` times (20 by
default there), stopping at the first failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from encoders.artifacts import Registry
from streams.broker import EmbeddedBroker
from streams.client import consume
from streams.ids import song_point_id, user_point_id
from streams.monotone_tables import Generation, fresh_records
from streams.pipeline import Collections
from streams.process import WorkerProcess
from streams.stores import EdgeStore
from streams.topics import GENERATIONS, SONG_ENGAGERS_TABLE, USER_STATE_TABLE

from .test_reliability import drained, stable_candidates
from .test_worker import interaction, send, song
from .workers import make_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPEAT = int(os.environ.get("COLDSTREAM_REBALANCE_REPEAT", "1"))
GENRES = ("jazz", "metal")
USERS = 16


def catalogue() -> tuple[list[dict], list[dict]]:
    """Known songs and the plays that give them listeners (every user: one genre)."""
    songs = [song(f"{g}{i}", g, i) for g in GENRES for i in range(12)]
    plays = [interaction(f"u{u}", f"{GENRES[u % 2]}{(u * 5 + k) % 12}",
                         ("play", "complete", "collect")[k % 3], k)
             for u in range(USERS) for k in range(6)]
    return songs, list({e["event_id"]: e for e in plays}.values())


class Feed:
    """Sends new songs (and a few plays of known songs) at a steady rate from a thread."""

    def __init__(self, bootstrap: str, prefix: str, per_s: float = 3.0) -> None:
        self.bootstrap, self.prefix, self.per_s = bootstrap, prefix, per_s
        self.songs: list[dict] = []
        self.plays: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(1.0 / self.per_s):
            genre = GENRES[n % 2]
            new = song(f"new-{genre}{n}", genre, n)
            play = interaction(f"u{n % USERS}", f"{GENRES[n % USERS % 2]}{n % 12}", "play",
                               1000 + n) | {"event_id": f"feed-{self.prefix}-{n}"}
            send(self.bootstrap, f"{self.prefix}.songs.new", [new])
            send(self.bootstrap, f"{self.prefix}.interactions", [play])
            self.songs.append(new)
            self.plays.append(play)
            n += 1

    def __enter__(self) -> Feed:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


@contextmanager
def serving_worker(bs: str, registry: Registry, tmp: Path, prefix: str
                   ) -> Iterator[tuple[WorkerProcess, list[dict], list[dict]]]:
    """A worker that has indexed the catalogue and counted its plays (so it holds state)."""
    songs, plays = catalogue()
    worker = peer(bs, registry, tmp, prefix, "a")
    worker.start()
    send(bs, f"{prefix}.songs.new", songs)
    send(bs, f"{prefix}.interactions", plays)
    worker.wait_metric("coldstream_songs_indexed_total", len(songs), timeout=120)
    worker.wait_metric("coldstream_events_total", len(plays), timeout=120,
                       topic=f"{prefix}.interactions.by_song", outcome="ok")
    yield worker, songs, plays


def peer(bs: str, registry: Registry, tmp: Path, prefix: str, name: str) -> WorkerProcess:
    """Another member of the same group, with its own vector store and metrics port."""
    (tmp / name).mkdir(parents=True, exist_ok=True)
    return make_worker(bs, registry.root, tmp / name, prefix)


def assert_consistent(worker: WorkerProcess, registry: Registry, bs: str, prefix: str,
                      plays: list[dict], feed: Feed, peers: list[WorkerProcess]) -> None:
    """Up, drained, every new song delivered, ids stable, table state exact."""
    assert worker.process is not None and worker.process.poll() is None, worker.log()
    drained(worker, [f"{prefix}.songs.new", f"{prefix}.interactions",
                     f"{prefix}.interactions.by_song", f"{prefix}.users.refresh",
                     f"{prefix}.candidates.proposed"])
    assert worker.process.poll() is None, worker.log()
    assert "We experienced a crash" not in worker.log_path.read_text(errors="replace")

    cands = stable_candidates(bs, f"{prefix}.candidates")
    reached = {c["song_id"] for c in cands}
    missing = {s["song_id"] for s in feed.songs if s["song_id"] not in reached}
    # A peer has an embedded store of its own (no Qdrant server here, see test_scale_out):
    # it indexes the songs of its partitions but knows no listeners, so those reach nobody.
    missing -= indexed_by(peers, registry, missing)
    assert not missing, f"{len(missing)} of {len(feed.songs)} new songs reached nobody"

    every_play = plays + feed.plays
    per_user = Counter(e["user_id"] for e in every_play)
    listeners: dict[str, set[str]] = {}
    for e in every_play:
        listeners.setdefault(e["song_id"], set()).add(e["user_id"])
    app = worker.env["COLDSTREAM_APP_ID"]
    users, history = table_state(bs, f"{app}-{USER_STATE_TABLE}-changelog",
                                 GENERATIONS[USER_STATE_TABLE])
    counts = {u: int(sum(state["counts"].values())) for u, state in users.items()}
    wrong = {u for u in per_user if counts.get(u) != per_user[u]}
    assert not wrong, "user counts differ from what was sent: " + "; ".join(
        f"{u} sent {per_user[u]}, changelog "
        f"{[(o, sum(v['counts'].values())) for o, v in history[u]]}" for u in sorted(wrong))
    songs_table, _ = table_state(bs, f"{app}-{SONG_ENGAGERS_TABLE}-changelog")
    engagers = {s: {e[0] for e in rows} for s, rows in songs_table.items() if rows}
    assert engagers == listeners  # every song's listener list as sent


def indexed_by(peers: list[WorkerProcess], registry: Registry, songs: set[str]) -> set[str]:
    """Which of ``songs`` the peers indexed (each in its own store)."""
    cols = Collections.for_version(registry.current() or "")
    found: set[str] = set()
    for peer_worker in peers:
        store = EdgeStore(peer_worker.data_dir / "qdrant")
        try:
            hits = store.retrieve(cols.songs, [song_point_id(s) for s in songs])
            found |= {hit.payload["song_id"] for hit in hits}
        finally:
            store.close()
    return found


def table_state(bootstrap: str, changelog: str, generation: Generation = lambda v: None,
                ) -> tuple[dict[str, Any], dict[str, list[tuple[int, Any]]]]:
    """A table as a recovering worker rebuilds it from its changelog (later records win,
    unless ``generation`` marks them stale), and each key's history as (offset, value)."""
    async def run() -> dict[str, list[tuple[int, Any]]]:
        history: dict[str, list[tuple[int, Any]]] = {}
        async for record in consume(bootstrap, changelog, idle_timeout=1.0):
            value = orjson.loads(record.value) if record.value is not None else None
            history.setdefault(orjson.loads(record.key), []).append((record.offset, value))
        return history

    history = asyncio.run(run())
    records = [SimpleNamespace(key=k, value=v, message=SimpleNamespace(value=v))
               for k, rows in history.items() for _, v in rows]
    state: dict[str, Any] = {}
    for record in fresh_records(records, {}, generation, lambda k: k)[0]:  # recovery's rule
        state[record.key] = record.value
    return {k: v for k, v in state.items() if v is not None}, history


def run_scenario(broker: EmbeddedBroker, registry: Registry, tmp: Path, prefix: str,
                 disturb: Callable[[WorkerProcess, Path, list[WorkerProcess]], WorkerProcess],
                 ) -> None:
    bs = broker.bootstrap
    with serving_worker(bs, registry, tmp, prefix) as (worker, _songs, plays):
        try:
            with Feed(bs, prefix) as feed:
                peers: list[WorkerProcess] = []
                worker = disturb(worker, tmp, peers)
                time.sleep(10)  # the membership changes settle while songs keep coming
            # the worker serving now is the one that lived through the rebalances
            try:
                assert_consistent(worker, registry, bs, prefix, plays, feed, peers)
            except AssertionError:
                keep_logs(tmp, prefix)
                raise
        finally:
            if worker.process is not None and worker.process.poll() is None:
                assert worker.stop() == 0
        if disturb is kill_storm:  # one member wrote everything: its users collection agrees
            assert_users_collection(worker, registry, plays + feed.plays)


def keep_logs(tmp: Path, prefix: str) -> None:
    """Copy every member's log to build/test-logs/ (pytest prunes its temp dirs)."""
    dest = Path(__file__).resolve().parents[2] / "build" / "test-logs" / prefix
    dest.mkdir(parents=True, exist_ok=True)
    for log in tmp.glob("*/worker.log"):
        shutil.copy(log, dest / f"{log.parent.name}.log")


def assert_users_collection(worker: WorkerProcess, registry: Registry,
                            plays: list[dict]) -> None:
    per_user = Counter(e["user_id"] for e in plays)
    cols = Collections.for_version(registry.current() or "")
    store = EdgeStore(worker.data_dir / "qdrant")
    try:
        hits = store.retrieve(cols.users, [user_point_id(u) for u in per_user])
        assert {h.payload["user_id"]: h.payload["events"] for h in hits} == dict(per_user)
    finally:
        store.close()


def kill_storm(worker: WorkerProcess, tmp: Path, peers: list[WorkerProcess]) -> WorkerProcess:
    """kill -9 faster than the session expires: each replacement inherits a dead member."""
    for _ in range(4):
        time.sleep(3)
        assert worker.stop(signal.SIGKILL) == -signal.SIGKILL
        worker.start()
    return worker


def join_and_leave(worker: WorkerProcess, tmp: Path, peers: list[WorkerProcess],
                   ) -> WorkerProcess:
    """A second worker joins (partitions move away) and leaves (they move back), twice."""
    bs = worker.env["COLDSTREAM_KAFKA_BOOTSTRAP"]
    prefix = worker.env["COLDSTREAM_APP_ID"].removesuffix("-app")
    registry = Registry(Path(worker.env["COLDSTREAM_MODEL_DIR"]))
    for round_ in range(2):
        other = peer(bs, registry, tmp, prefix, f"b{round_}")
        peers.append(other)
        other.start()
        time.sleep(4)
        if round_ == 0:
            assert other.stop() == 0  # leaves politely
        else:
            assert other.stop(signal.SIGKILL) == -signal.SIGKILL  # vanishes
    return worker


def paused_heartbeat(worker: WorkerProcess, tmp: Path, peers: list[WorkerProcess],
                     ) -> WorkerProcess:
    """A member stops heartbeating past its session timeout, is expelled, then wakes up."""
    bs = worker.env["COLDSTREAM_KAFKA_BOOTSTRAP"]
    prefix = worker.env["COLDSTREAM_APP_ID"].removesuffix("-app")
    other = peer(bs, Registry(Path(worker.env["COLDSTREAM_MODEL_DIR"])), tmp, prefix, "b")
    peers.append(other)
    other.start()
    assert other.process is not None
    time.sleep(3)
    other.process.send_signal(signal.SIGSTOP)
    time.sleep(9)  # > the 6 s session timeout: the group rebalances without it
    other.process.send_signal(signal.SIGCONT)
    time.sleep(6)  # it rejoins, the serving worker rebalances again
    assert other.stop() == 0
    return worker


def gauntlet(worker: WorkerProcess, tmp: Path, peers: list[WorkerProcess]) -> WorkerProcess:
    """All of the above, one after another, on one serving worker."""
    worker = kill_storm(worker, tmp, peers)
    worker = join_and_leave(worker, tmp, peers)
    return paused_heartbeat(worker, tmp, peers)


SCENARIOS = {"kill_storm": kill_storm, "join_and_leave": join_and_leave,
             "paused_heartbeat": paused_heartbeat}


def test_rebalances_after_processing_keep_the_worker_serving(
        broker: EmbeddedBroker, model_registry: Registry, tmp_path: Path) -> None:
    """The three scenarios in a row on one serving worker (one worker start and one check
    instead of three: about a minute less of ``make test``)."""
    run_scenario(broker, model_registry, tmp_path, "rb-gauntlet", gauntlet)


@pytest.mark.soak
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_rebalance_scenario_alone(broker: EmbeddedBroker, model_registry: Registry,
                                  tmp_path: Path, name: str) -> None:
    """``make soak-rebalance``: each scenario on a worker of its own, so a failure names it."""
    run_scenario(broker, model_registry, tmp_path, f"rb-{name}", SCENARIOS[name])


@pytest.mark.soak
@pytest.mark.parametrize("run", range(REPEAT))
def test_rebalance_gauntlet(broker: EmbeddedBroker, model_registry: Registry, tmp_path: Path,
                            run: int) -> None:
    """``make soak-rebalance``: the three scenarios in a row, repeated; -x stops at the first
    failure, so N passes are N in a row."""
    run_scenario(broker, model_registry, tmp_path, f"rb-gauntlet-{run}", gauntlet)
