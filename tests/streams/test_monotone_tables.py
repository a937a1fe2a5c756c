"""Table recovery skips changelog records older than the key's state (late zombie writes)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from encoders.artifacts import Registry
from streams.broker import EmbeddedBroker, ensure_topics
from streams.events import InteractionEvent
from streams.monotone_tables import fresh_records, user_generation
from streams.pipeline import PipelineConfig, apply_interaction, new_user_state
from streams.topics import USER_STATE_TABLE

from .test_worker import interaction, read_all, send
from .workers import make_worker


@dataclass
class _Message:
    value: bytes | None
    partition: int


@dataclass
class Record:
    """The parts of a Faust changelog event the filter (and the memory store) reads."""

    key: str
    value: Any
    partition: int = 0

    @property
    def message(self) -> _Message:
        return _Message(None if self.value is None else b"x", self.partition)


def gen(value: Any) -> int | None:
    return value.get("g") if isinstance(value, dict) else None


def keep(batch: list[Record], current: dict[str, Any] | None = None) -> list[Any]:
    fresh, _ = fresh_records(batch, current or {}, gen, lambda k: k)
    return [(r.key, r.value) for r in fresh]


def test_a_late_older_record_is_skipped_and_counted() -> None:
    batch = [Record("u", {"g": 1}), Record("u", {"g": 3}), Record("u", {"g": 2})]
    fresh, stale = fresh_records(batch, {}, gen, lambda k: k)
    assert [r.value for r in fresh] == [{"g": 1}, {"g": 3}] and stale == 1


def test_the_current_state_counts_as_seen() -> None:
    assert keep([Record("u", {"g": 4}), Record("u", {"g": 6})], {"u": {"g": 5}}) == \
        [("u", {"g": 6})]


def test_equal_generations_and_unordered_values_keep_last_write_wins() -> None:
    assert keep([Record("u", {"g": 2, "v": "a"}), Record("u", {"g": 2, "v": "b"})]) == \
        [("u", {"g": 2, "v": "a"}), ("u", {"g": 2, "v": "b"})]
    assert keep([Record("s", [1]), Record("s", [0])]) == [("s", [1]), ("s", [0])]


def test_a_deletion_always_applies_and_resets_the_order() -> None:
    assert keep([Record("u", {"g": 5}), Record("u", None), Record("u", {"g": 1})]) == \
        [("u", {"g": 5}), ("u", None), ("u", {"g": 1})]


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 20)), max_size=40))
def test_replay_ends_at_each_keys_newest_generation(writes: list[tuple[str, int]]) -> None:
    """Whatever order late writes arrive in, each key recovers its highest generation."""
    applied: dict[str, Any] = {}
    for key, value in keep([Record(k, {"g": g}) for k, g in writes]):
        applied[key] = value
    newest: dict[str, int] = {}
    for key, g in writes:
        newest[key] = max(g, newest.get(key, g))
    assert {k: v["g"] for k, v in applied.items()} == newest


def test_user_states_count_the_events_applied() -> None:
    cfg = PipelineConfig()
    state = new_user_state()
    for n in range(3):
        event = InteractionEvent(schema_version=1, event_id=f"e{n}", user_id="u",
                                 song_id=f"s{n}", action="play", ts=1_000 + n)
        state = apply_interaction(state, event, 0, n, cfg)
    assert user_generation(state) == 3
    legacy = {k: v for k, v in state.items() if k != "applied"}  # written before `applied`
    assert user_generation(legacy) == 3
    assert user_generation(apply_interaction(legacy, InteractionEvent(
        schema_version=1, event_id="e9", user_id="u", song_id="s9", action="skip", ts=2_000),
        0, 9, cfg)) == 4


@pytest.mark.integration
def test_a_worker_recovers_past_a_late_stale_record(
        broker: EmbeddedBroker, model_registry: Registry, tmp_path: Path) -> None:
    """A real worker recovers a user whose changelog ends with a stale state (3 events, then
    a late record of 2): it keeps the 3-event state, counts the skip, and builds on it."""
    bs, p = broker.bootstrap, "stale"
    cfg, states, state = PipelineConfig(), [], new_user_state()
    for n in range(3):
        state = apply_interaction(state, InteractionEvent(
            schema_version=1, event_id=f"old{n}", user_id="u1", song_id=f"s{n}",
            action="play", ts=1_000 + n), 7, n, cfg)  # read from another topic's partition
        states.append(state)
    worker = make_worker(bs, model_registry.root, tmp_path, p)
    app = worker.env["COLDSTREAM_APP_ID"]
    changelog = f"{app}-{USER_STATE_TABLE}-changelog"
    partition = DefaultPartitioner()(b"u1", [0, 1, 2, 3], [0, 1, 2, 3])

    async def write_changelog() -> None:
        await ensure_topics(bs, [changelog], partitions=4)
        producer = AIOKafkaProducer(bootstrap_servers=bs)
        await producer.start()
        try:
            for s in (states[0], states[2], states[1]):  # the last one is late and stale
                await producer.send_and_wait(changelog, orjson.dumps(s), key=b'"u1"',
                                             partition=partition)
        finally:
            await producer.stop()

    asyncio.run(write_changelog())
    worker.start()
    try:
        assert worker.wait_metric("coldstream_table_stale_records_total", 1,
                                  table=USER_STATE_TABLE) == 1
        send(bs, f"{p}.interactions", [interaction("u1", "s9", "collect", 9)])
        worker.wait_metric("coldstream_events_total", 1, topic=f"{p}.interactions",
                           outcome="ok")
    finally:
        assert worker.stop() == 0
    newest = [orjson.loads(v) for v in read_all(bs, changelog, idle=1.0)][-1]
    assert newest["applied"] == 4
    assert newest["counts"] == {"play": 3, "collect": 1}  # built on the 3-event state
