"""The online loop survives kill -9: arms, the daily budget and attribution count nothing twice
(real broker, engine and worker processes)."""

from __future__ import annotations

import signal
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from encoders.artifacts import Registry
from streams.arms import assign, parse_arms
from streams.attribution import DAY_MS
from streams.broker import EmbeddedBroker
from streams.process import WorkerProcess
from streams.topics import GENERATIONS, ONLINE_STATE_TABLE

from .test_rebalance import table_state
from .test_reliability import drained, stable_candidates
from .test_worker import interaction, send, song
from .workers import make_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ARMS = "A=i2i2u:50,B=both:50"
CAP = 3
GENRES = ("jazz", "metal")


def total(worker: WorkerProcess, name: str) -> float:
    return sum(v for (n, _), v in worker.samples().items() if n == name)


def wait_total(worker: WorkerProcess, name: str, at_least: float, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if total(worker, name) >= at_least:
            return
        time.sleep(0.2)
    raise TimeoutError(f"{name} < {at_least}\n{worker.log()}")


def outcomes_for(cands: list[dict]) -> list[dict]:
    """Each delivered song played twice and collected once by its user (distinct events)."""
    out = []
    for c in sorted({(c["user_id"], c["song_id"]) for c in cands}):
        for k, action in enumerate(("play", "play", "collect")):
            ev = interaction(c[0], c[1], action, 500 + k)
            out.append({**ev, "event_id": f"{ev['event_id']}-{k}"})
    return out


def topics(p: str) -> list[str]:
    return [f"{p}.songs.new", f"{p}.interactions", f"{p}.interactions.by_song",
            f"{p}.users.refresh", f"{p}.candidates.proposed"]


def test_kill_9_keeps_arms_budget_and_attribution_exact(
        broker: EmbeddedBroker, model_registry: Registry, tmp_path: Path) -> None:
    bs, p = broker.bootstrap, "online9"
    worker = make_worker(bs, model_registry.root, tmp_path, p, COLDSTREAM_BATCH_MAX_EVENTS="8",
                         COLDSTREAM_AB_ARMS=ARMS,
                         COLDSTREAM_MAX_CANDIDATES_PER_USER_DAY=str(CAP))
    known = [song(f"{g}{i}", g, i) for g in GENRES for i in range(16)]
    late = [song(f"{g}{i}", g, i) for g in GENRES for i in range(16, 28)]  # one event-time day
    plays = [interaction(f"u{u}", f"{GENRES[u % 2]}{(u * 5 + k) % 16}",
                         ("play", "complete", "collect")[k % 3], k)
             for u in range(16) for k in range(6)]
    plays = list({e["event_id"]: e for e in plays}.values())
    worker.start()
    try:  # users with history, then new songs: kill -9 while their proposals are delivered
        send(bs, f"{p}.songs.new", known)
        worker.wait_metric("coldstream_songs_indexed_total", len(known), timeout=120)
        send(bs, f"{p}.interactions", plays)
        worker.wait_metric("coldstream_events_total", len(plays), timeout=120,
                           topic=f"{p}.interactions.by_song", outcome="ok")
        send(bs, f"{p}.songs.new", late)
        wait_total(worker, "coldstream_deliveries_total", 5)
    finally:
        assert worker.stop(signal.SIGKILL) == -signal.SIGKILL
    worker.start()
    try:  # every delivery answered; kill -9 while the outcomes are attributed
        drained(worker, topics(p))
        outcomes = outcomes_for(stable_candidates(bs, f"{p}.candidates"))
        send(bs, f"{p}.interactions", outcomes)
        wait_total(worker, "coldstream_attributed_total", 5)
    finally:
        assert worker.stop(signal.SIGKILL) == -signal.SIGKILL
    worker.start()
    try:
        send(bs, f"{p}.interactions", outcomes[:10])  # producer retries: same event ids again
        drained(worker, topics(p))
    finally:
        assert worker.stop() == 0
    check(bs, worker, outcomes)


def check(bs: str, worker: WorkerProcess, outcomes: list[dict]) -> None:
    p = worker.env["COLDSTREAM_TOPIC_SONGS"].removesuffix(".songs.new")
    cands = stable_candidates(bs, f"{p}.candidates")  # a repeated id is the same candidate
    arms = parse_arms(ARMS)
    for c in cands:  # every candidate names the user's stable arm; arm A never gets U2I
        assert c["arm"] == assign(c["user_id"], arms, "coldstream-ab").name  # type: ignore[union-attr]
        assert c["arm"] == "B" or c["path"] == "i2i2u"
    per_user_day = Counter((c["user_id"], c["event_ts"] // DAY_MS)
                           for c in {c["candidate_id"]: c for c in cands}.values())
    assert per_user_day and max(per_user_day.values()) <= CAP  # the budget held across kills
    assert max(per_user_day.values()) == CAP  # ... and was reached: it did something

    app = worker.env["COLDSTREAM_APP_ID"]
    state, _ = table_state(bs, f"{app}-{ONLINE_STATE_TABLE}-changelog",
                           GENERATIONS[ONLINE_STATE_TABLE])
    recorded = {d["id"]: (u, d) for u, st in state.items() for d in st["deliveries"]}
    assert set(recorded) == {c["candidate_id"] for c in cands}  # emitted <=> recorded
    sent: dict[tuple[str, str], set[str]] = defaultdict(set)
    for e in outcomes:
        sent[(e["user_id"], e["song_id"])].add(e["action"])
    attributed = 0
    for user, d in recorded.values():
        assert len(d["done"]) == len(set(d["done"])), d  # no action counted twice
        assert set(d["done"]) <= sent[(user, d["song"])], d
        attributed += len(d["done"])
    assert attributed >= len(recorded)  # outcomes were attributed, not dropped wholesale
