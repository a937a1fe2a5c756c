"""The batched user update (one matrix operation per batch, song vectors from the in-process
cache) gives what a full recompute user by user gives: the user's vector and boundary stay a
pure function of the user's state, whichever batches and cache contents got it there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from encoders.artifacts import Registry
from encoders.runtime import HistoryItem, LoadedModel, load_model, masked_quantile
from streams import pipeline
from streams.events import InteractionEvent
from streams.ids import song_point_id, user_point_id
from streams.pipeline import POSITIVE_ACTIONS, PipelineConfig, SongVectorCache
from streams.stores import EdgeStore, Point

NOW = 1_760_000_000_000
ACTIONS = ["collect", "complete", "play", "play", "skip"]


@pytest.fixture(scope="module")
def model(model_registry: Registry) -> LoadedModel:
    return load_model(model_registry, model_registry.current() or "")


@pytest.fixture
def world(model: LoadedModel, tmp_path: Path) -> tuple[EdgeStore, pipeline.Collections]:
    """300 indexed songs (s0..s299); songs s300.. are referenced but never indexed."""
    store = EdgeStore(tmp_path / "qdrant")
    cols = pipeline.ensure_collections(store, model)
    rng = np.random.default_rng(7)
    vecs = rng.standard_normal((300, model.manifest.dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    store.upsert(cols.songs, [Point(song_point_id(f"s{i}"), v, {"song_id": f"s{i}"})
                              for i, v in enumerate(vecs)])
    yield store, cols
    store.close()


def reference(model: LoadedModel, store: EdgeStore, cols: pipeline.Collections,
              state: dict[str, Any], now: int) -> tuple[np.ndarray | None, float]:
    """A full recompute of one user, song by song from the store: the per-user definition."""
    floor = model.users.spec.boundary_floor
    sids = sorted({s for s, _, _ in state["history"]})
    recs = store.retrieve(cols.songs, [song_point_id(s) for s in sids], with_vector=True)
    by_pid = {r.id: r.vector for r in recs}
    vectors = {s: by_pid[song_point_id(s)] for s in sids if song_point_id(s) in by_pid}
    known = [HistoryItem(s, a, t) for s, a, t in state["history"] if s in vectors]
    if not known:
        return None, floor
    vec = model.users.user_vector(np.stack([vectors[h.song_id] for h in known]),
                                  model.users.weights(known, now))
    if vec is None:
        return None, floor
    positives = np.stack([vectors[h.song_id] for h in known if h.action in POSITIVE_ACTIONS]
                         or [np.zeros(model.manifest.dim, dtype=np.float32)])
    return vec, model.users.boundary(vec, positives)


def event(i: int, user: str, song: str, action: str) -> InteractionEvent:
    return InteractionEvent(schema_version=1, event_id=f"e{i}", user_id=user, song_id=song,
                            action=action, ts=NOW - 86_400_000 * 40 + i * 3_600_000)


def random_states(n_events: int, seed: int) -> list[tuple[str, InteractionEvent]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_events):
        user = f"u{int(rng.integers(0, 30))}"
        song = f"s{int(rng.integers(0, 330))}"  # ~10% never indexed
        out.append((user, event(i, user, song, ACTIONS[int(rng.integers(0, 5))])))
    # edge cases: only skips, only unknown songs, one play
    out += [("skips", event(10_000 + k, "skips", f"s{k}", "skip")) for k in range(5)]
    out += [("ghost", event(10_100 + k, "ghost", f"s{400 + k}", "play")) for k in range(3)]
    out.append(("single", event(10_200, "single", "s1", "play")))
    return out


def test_batched_update_equals_full_recompute(model: LoadedModel, world: Any) -> None:
    """Events applied in batches of 64 through a small (evicting) cache, then compared with a
    recompute of every user from the final state alone: same vector and boundary within
    1e-5, and the users without a vector get the floor and no point."""
    store, cols = world
    cfg = PipelineConfig(recent_items_per_user=50)
    cache = SongVectorCache(capacity=40)  # smaller than one batch's songs: rows are reused
    states: dict[str, dict[str, Any]] = {}
    events = random_states(1_500, seed=3)
    returned: dict[str, float] = {}
    for start in range(0, len(events), 64):
        touched = {}
        for off, (user, ev) in enumerate(events[start:start + 64], start=start):
            state = states.get(user) or pipeline.new_user_state()
            states[user] = touched[user] = pipeline.apply_interaction(state, ev, 0, off, cfg)
        returned.update(pipeline.users_update(store, cols, model, cache, touched, now=NOW))
    stored = {r.id: r for r in store.retrieve(cols.users, [user_point_id(u) for u in states])}
    checked = 0
    for user, state in states.items():
        vec, boundary = reference(model, store, cols, state, NOW)
        assert returned[user] == pytest.approx(boundary, abs=1e-5), user
        rec = stored.get(user_point_id(user))
        if vec is None:
            assert rec is None, f"{user} has no known song but got a point"
            assert boundary == model.users.spec.boundary_floor
            continue
        assert rec is not None and rec.vector is not None
        np.testing.assert_allclose(rec.vector, vec, atol=1e-5, err_msg=user)
        assert rec.payload["boundary"] == pytest.approx(boundary, abs=1e-5)
        checked += 1
    assert checked >= 25
    assert user_point_id("ghost") not in stored


def test_a_replay_from_state_recomputes_the_same_point(model: LoadedModel, world: Any) -> None:
    """Recomputing from the stored state with a fresh cache (a restarted worker) or in one
    batch with other users writes the same vector and boundary."""
    store, cols = world
    cfg = PipelineConfig()
    states: dict[str, dict[str, Any]] = {}
    for off, (user, ev) in enumerate(random_states(400, seed=11)):
        states[user] = pipeline.apply_interaction(states.get(user) or pipeline.new_user_state(),
                                                  ev, 0, off, cfg)
    one = {u: pipeline.users_update(store, cols, model, SongVectorCache(), {u: s}, now=NOW)[u]
           for u, s in states.items()}
    first = {r.id: r.vector for r in store.retrieve(cols.users, [user_point_id(u)
                                                                 for u in states])}
    together = pipeline.users_update(store, cols, model, SongVectorCache(), states, now=NOW)
    again = {r.id: r.vector for r in store.retrieve(cols.users, [user_point_id(u)
                                                                 for u in states])}
    assert together == pytest.approx(one, abs=1e-6)
    assert first.keys() == again.keys()
    for pid, vec in first.items():
        np.testing.assert_allclose(again[pid], vec, atol=1e-6)


def test_masked_quantile_matches_numpy_row_by_row() -> None:
    rng = np.random.default_rng(0)
    values = rng.standard_normal((50, 12))
    mask = rng.random((50, 12)) < 0.5
    mask[0] = False  # no value: 0, as the single zero score of the per-user path
    mask[1] = False
    mask[1, 3] = True  # one value
    got = masked_quantile(values, mask, 0.2)
    want = [np.quantile(v[m], 0.2) if m.any() else 0.0 for v, m in zip(values, mask, strict=True)]
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_cache_rows_stay_valid_for_a_batch_larger_than_its_capacity(model: LoadedModel,
                                                                      world: Any) -> None:
    store, cols = world
    cache = SongVectorCache(capacity=10)
    wanted = [f"s{i}" for i in range(50)] + ["s999"]
    rows = cache.rows(store, cols.songs, wanted)
    assert set(rows) == set(wanted[:50])  # the unknown song is not there, and not remembered
    truth = {r.id: r.vector for r in store.retrieve(cols.songs, [song_point_id(s)
                                                                 for s in wanted[:50]])}
    for sid, row in rows.items():
        np.testing.assert_array_equal(cache.matrix[row], truth[song_point_id(sid)])
    assert len(cache) == 10  # trimmed to its capacity after the batch
    again = cache.rows(store, cols.songs, ["s0", "s49"])  # s0 forgotten, s49 kept
    np.testing.assert_array_equal(cache.matrix[again["s0"]], truth[song_point_id("s0")])
    np.testing.assert_array_equal(cache.matrix[again["s49"]], truth[song_point_id("s49")])
