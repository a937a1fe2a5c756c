"""An A/B test between two model versions on a real broker and worker, with real ONNX models:
each arm is served by its own version from its own collections, and ending the test through
the registry leaves one version serving everyone."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from encoders.artifacts import Registry
from streams.arms import assign, parse_arms
from streams.broker import EmbeddedBroker
from streams.ids import user_point_id
from streams.pipeline import Collections
from streams.stores import EdgeStore

from .test_model_swap import derive_version
from .test_worker import interaction, read_all, send, song
from .workers import make_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USERS = [f"u{i}" for i in range(8)]


def candidates_of(bootstrap: str, topic: str, song_id: str, users: int,
                  timeout: float = 60.0) -> list[dict]:
    """The candidates of ``song_id`` once there is one per user (each version proposes the
    song to its own arms' users in turn)."""
    deadline = time.monotonic() + timeout
    found: list[dict] = []
    while time.monotonic() < deadline:
        found = [c for c in map(orjson.loads, read_all(bootstrap, topic, idle=1.0))
                 if c["song_id"] == song_id]
        if len({c["user_id"] for c in found}) >= users:
            return found
    raise TimeoutError(f"{len(found)} candidates of {song_id} on {topic} within {timeout}s")


def boundaries(data_dir: Path, version: str) -> dict[str, float]:
    store = EdgeStore(data_dir / "qdrant")
    try:
        hits = store.retrieve(Collections.for_version(version).users,
                              [user_point_id(u) for u in USERS])
        return {h.payload["user_id"]: float(h.payload["boundary"]) for h in hits}
    finally:
        store.close()


def wait_until(check, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.3)


@pytest.mark.parametrize("end", ["--promote=treatment",
                                 pytest.param("--rollback", marks=pytest.mark.extended)])
def test_each_arm_is_served_by_its_version_until_the_test_ends(
        broker: EmbeddedBroker, private_registry: Registry, tmp_path: Path, end: str) -> None:
    registry = private_registry
    v1, v2 = registry.current() or "", "v2-ab"
    # another user model: other action weights (another user vector) and a wider margin
    derive_version(registry, v1, v2, user={
        "boundary_margin": 0.2,
        "action_weights": {"play": 1.5, "complete": 1.0, "collect": 0.3, "skip": -0.5}})
    spec = f"control={v1}:50,treatment={v2}:50"
    arm_of = {u: assign(u, parse_arms(spec), "coldstream-ab").name for u in USERS}  # type: ignore[union-attr]
    assert set(arm_of.values()) == {"control", "treatment"}
    version_of = {"control": v1, "treatment": v2}
    bs, p = broker.bootstrap, f"abv{end.strip('-').split('=')[0]}"
    winner = v2 if end.startswith("--promote") else v1
    worker = make_worker(bs, registry.root, tmp_path, p, COLDSTREAM_AB_ARMS=spec).start()
    try:
        send(bs, f"{p}.songs.new", [song(f"jazz{i}", "jazz", i) for i in range(6)])
        send(bs, f"{p}.interactions", [
            interaction(u, f"jazz{i}", "collect" if i % 2 else "play", i)
            for u in USERS for i in range(4)])
        worker.wait_metric("coldstream_events_total", 32, topic=f"{p}.interactions.by_song",
                           outcome="ok")
        worker.wait_metric("coldstream_ab_version_serving", 1, version=v2, timeout=120)

        send(bs, f"{p}.songs.new", [song("jazz-new", "jazz", 1)])
        during = candidates_of(bs, f"{p}.candidates", "jazz-new", len(USERS))
        assert len(during) == len(USERS)  # one per user: no user is served by both versions
        for c in during:
            assert c["arm"] == arm_of[c["user_id"]]
            assert c["model_version"] == version_of[c["arm"]]
        # a replayed song event proposes the same candidates again (same ids, same arms)
        send(bs, f"{p}.songs.new", [song("jazz-new", "jazz", 1)])
        deadline = time.monotonic() + 60
        again = during
        while len(again) < 2 * len(USERS) and time.monotonic() < deadline:
            again = candidates_of(bs, f"{p}.candidates", "jazz-new", len(USERS))
        assert len(again) == 2 * len(USERS)
        assert ({(c["candidate_id"], c["arm"], c["model_version"]) for c in again}
                == {(c["candidate_id"], c["arm"], c["model_version"]) for c in during})

        # end the test (treatment promoted, or rolled back to control): the worker then
        # serves the winner to everyone, with no arms
        done = subprocess.run([sys.executable, "-m", "streams.cli", "ab", "end", end],
                              env=worker.env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert registry.current() == winner
        wait_until(lambda: worker.metric("coldstream_ab_version_serving", version=v2) == 0.0
                   and worker.metric("coldstream_model_info", version=winner) == 1.0,
                   f"one version ({winner}) serving")
        send(bs, f"{p}.songs.new", [song("jazz-after", "jazz", 0)])
        after = candidates_of(bs, f"{p}.candidates", "jazz-after", len(USERS))
        assert {(c["model_version"], c["arm"]) for c in after} == {(winner, None)}
    finally:
        assert worker.stop() == 0

    # each arm's users were scored in their version's space: the candidate carries the
    # boundary of the user's point in that version's collection (the two versions differ)
    b1, b2 = boundaries(worker.data_dir, v1), boundaries(worker.data_dir, v2)
    assert set(b1) == set(b2) == set(USERS)  # both spaces hold every user
    for c in during:
        mine, other = (b1, b2) if c["arm"] == "control" else (b2, b1)
        assert c["boundary"] == pytest.approx(mine[c["user_id"]], abs=1e-3)
        assert abs(c["boundary"] - other[c["user_id"]]) > 0.05
