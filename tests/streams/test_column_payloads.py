"""Hits' payloads answered from the segments' columns equal the engine's, type for type,
through writes, merges, payload merges and deletes; and the engine is only asked for the
payloads the columns do not hold whole (real Qdrant Edge underneath)."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from encoders.artifacts import Registry
from streams.ids import user_point_id
from streams.pipeline import USER_INDEXES
from streams.stores import EdgeStore, Point, SegmentedStore
from streams.stores.columns import holds_exactly

from .engine_spy import spy_engine_retrieve
from .test_late_listeners import Worker, interaction, new_song

DIM = 8
#: Values of every type a payload field may hold; each field mostly gets one its column holds.
WILD = st.one_of(
    st.sampled_from([0, 1, -7, 2**62, 0.0, -0.0, 1.0, 0.1, 1e300, True, False, None, "", "u",
                     "üñï", [1, 2], ["a"], {"x": 1}]),
    st.floats(allow_nan=False, allow_infinity=False), st.integers(-2**63 + 1, 2**63 - 1),
    st.text(max_size=6))
FITTING = {"user_id": st.text(max_size=6),
           "boundary": st.floats(allow_nan=False, allow_infinity=False),
           "updated_at": st.integers(-2**63 + 1, 2**63 - 1)}
BASE = st.fixed_dictionaries({}, optional={key: st.one_of(fit, fit, fit, WILD)
                                           for key, fit in FITTING.items()})
PAYLOADS = st.one_of(BASE, BASE, BASE,
                     st.tuples(BASE, WILD).map(lambda t: {**t[0], "extra": t[1]}))
#: On few points, so that payload merges and deletes hit points that are there.
OPS = st.lists(st.tuples(st.sampled_from(["upsert", "upsert", "set", "set", "delete", "merge"]),
                         st.integers(0, 4), PAYLOADS), min_size=5, max_size=40)
_names = itertools.count()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SegmentedStore]:
    root = tmp_path_factory.mktemp("column-payloads")
    s = SegmentedStore(EdgeStore(root / "q"), root / "seg", merge_rows=10**9, nprobe=4096,
                       codes="flat")
    yield s
    s.close()


def exact(payload: dict[str, Any]) -> bytes:
    """A form that tells 1 from 1.0 and True from 1."""
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)


def same(ours: Any, engines: Any) -> bool:
    """Equal type for type; a float may differ from the engine's in its last bit.

    The engine's float parser is not correctly rounded: it stores 6.932917620607829e+78 as
    6.93291762060783e+78 (one ulp off), while the columns answer the value as written."""
    if isinstance(ours, float) and isinstance(engines, float):
        return ours == engines or abs(ours - engines) <= 2 * math.ulp(max(abs(ours),
                                                                         abs(engines)))
    if type(ours) is not type(engines):
        return False
    if isinstance(ours, dict):
        return ours.keys() == engines.keys() and all(same(ours[k], engines[k]) for k in ours)
    if isinstance(ours, list):
        return len(ours) == len(engines) and all(map(same, ours, engines))
    return ours == engines


def assert_same_payloads(ours: dict[str, dict], engines: dict[str, dict], op: str) -> None:
    assert ours.keys() == engines.keys(), op
    for pid, payload in ours.items():
        assert same(payload, engines[pid]), (op, exact(payload), exact(engines[pid]))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
@example(ops=[("upsert", 0, {"boundary": 6.932917620607829e+78})])  # the engine rounds it
def test_payloads_from_columns_equal_the_engines(store: SegmentedStore,
                                                 ops: list[tuple[str, int, dict]]) -> None:
    name = f"users{next(_names)}"
    store.ensure_collection(name, DIM, USER_INDEXES)
    rng = np.random.default_rng(0)
    ids = [user_point_id(f"u{i}") for i in range(5)]
    held: set[str] = set()
    for op, i, payload in ops:
        if op == "upsert":
            store.upsert(name, [Point(ids[i], rng.standard_normal(DIM), payload)])
            held.add(ids[i])
        elif op == "set" and ids[i] in held:  # the engine refuses an absent point
            store.set_payload(name, ids[i], payload)
        elif op == "delete":
            store.delete(name, [ids[i]])
            held.discard(ids[i])
        elif op == "merge":
            store.merge(name)
        engine = {h.id: h.payload for h in store.inner.retrieve(name, ids, with_vector=False)}
        got = store.retrieve(name, [*ids, user_point_id("absent")], with_vector=False)
        assert_same_payloads({h.id: h.payload for h in got}, engine, op)
    hits = store.search(name, rng.standard_normal(DIM), len(ids))
    assert_same_payloads({h.id: h.payload for h in hits}, engine, "search")

def test_the_engine_is_asked_only_for_payloads_the_columns_lack(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SegmentedStore(EdgeStore(tmp_path / "q"), tmp_path / "seg", merge_rows=10**9)
    store.ensure_collection("users", DIM, USER_INDEXES)
    rng = np.random.default_rng(1)
    ids = [user_point_id(f"u{i}") for i in range(300)]
    store.upsert("users", [Point(pid, rng.standard_normal(DIM),
                                 {"user_id": f"u{i}", "boundary": float(rng.uniform()),
                                  "updated_at": 1_700_000_000_000 + i})
                           for i, pid in enumerate(ids)])
    store.merge("users")
    store.set_payload("users", ids[5], {"boundary": 0.25})  # still whole in the columns
    store.set_payload("users", ids[7], {"note": "not a column"})
    store.upsert("users", [Point(ids[9], rng.standard_normal(DIM), {"user_id": "u9",
                                                                    "boundary": 1})])  # an int
    calls = spy_engine_retrieve(store, monkeypatch)
    hits = store.search("users", rng.standard_normal(DIM), 300)
    assert len(hits) == 300
    assert [sorted(pids) for pids, _ in calls] == [sorted([ids[7], ids[9]])]
    by_id = {h.id: h.payload for h in hits}
    assert by_id[ids[5]] == {"user_id": "u5", "boundary": 0.25, "updated_at": 1_700_000_000_005}
    assert by_id[ids[7]]["note"] == "not a column" and by_id[ids[9]]["boundary"] == 1
    calls.clear()
    got = store.retrieve("users", ids[:4], with_vector=True)
    assert calls == [] and [h.id for h in got] == ids[:4]
    assert all(h.vector is not None for h in got)
    store.close()


def test_the_listeners_the_worker_writes_are_answered_from_the_columns(
        model_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The payload the interactions agent writes (``pipeline.users_update``), not one made up
    here: a key of it outside ``USER_INDEXES`` sends every U2I hit to the engine (until
    stop 50, ``model_version`` and ``events`` did). Writing them reads nothing from the
    engine either: the songs of their histories are wanted for their vectors only."""
    store = SegmentedStore(EdgeStore(tmp_path / "q"), tmp_path / "seg", merge_rows=10**9)
    worker = Worker(model_registry, tmp_path, store)
    users = [f"u{i}" for i in range(20)]
    spied: list[list[tuple[list[str], bool]]] = []

    async def listen() -> None:
        assert await worker.agents.on_songs([new_song("jazz0")]) == ["ok"]
        spied.append(spy_engine_retrieve(store, monkeypatch))
        assert await worker.agents.on_interactions(
            [interaction(user, "jazz0") for user in users]) == ["ok"] * len(users)

    try:
        asyncio.run(listen())
        assert spied[0] == []
        cols = worker.ctx.serving().cols
        calls = spy_engine_retrieve(store, monkeypatch)
        hits = store.search(cols.users, np.ones(store.segments[cols.users].dim), 50)
        assert sorted(h.payload["user_id"] for h in hits) == sorted(users)
        assert {h.payload["events"] for h in hits} == {1}
        assert calls == []
    finally:
        worker.close()


@pytest.mark.parametrize(("kind", "value", "held"), [
    ("integer", 3, True), ("integer", True, False), ("integer", 3.0, False),
    ("float", 0.5, True), ("float", 1, False), ("float", float("nan"), False),
    ("keyword", "a", True), ("keyword", 1, False), ("keyword", None, False),
    ("integer", None, False), ("integer", [1], False)])
def test_a_column_holds_a_value_exactly_only_with_its_own_type(kind: str, value: Any,
                                                                  held: bool) -> None:
    assert holds_exactly(kind, value) is held
