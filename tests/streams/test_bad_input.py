"""Hostile input through a real worker: each event is processed or dead-lettered with a
reason, and the stream never stops (hypothesis generates the payloads)."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from encoders.artifacts import Registry
from streams.broker import EmbeddedBroker
from streams.client import produce
from streams.events import DeadLetter

from .test_reliability import drained
from .test_worker import read_all, send, song
from .workers import make_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NOW = int(time.time() * 1000)
FIELDS = ["schema_version", "event_id", "user_id", "song_id", "action", "ts", "played_ms"]

valid = {"schema_version": 1, "event_id": "x", "user_id": "u", "song_id": "jazz0",
         "action": "play", "ts": NOW}
int64 = st.integers(-(2**63), 2**63 - 1)
junk = (st.none() | st.booleans() | int64 | st.floats()
        | st.text(max_size=40) | st.lists(int64, max_size=3)
        | st.sampled_from([NOW * 10, -1, 2, "play", "\u202e\U0001f3b5", "a" * 300]))
mutated = st.builds(lambda drop, extra: {**{k: v for k, v in valid.items() if k not in drop},
                                         **extra},
                    st.sets(st.sampled_from(FIELDS), max_size=3),
                    st.dictionaries(st.sampled_from(FIELDS + ["extra"]), junk, max_size=3))
raw = (mutated.map(lambda d: orjson.dumps(d, option=orjson.OPT_NON_STR_KEYS))
       | st.binary(max_size=64)
       | st.sampled_from([b"", b"{", b"null", b"[]", b'{"schema_version": 1}',
                          orjson.dumps({**valid, "pad": "x" * 300_000})]))


@pytest.fixture(scope="module")
def corpus() -> list[bytes]:
    found: list[bytes] = []

    @settings(max_examples=150, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(raw)
    def collect(value: bytes) -> None:
        found.append(value)

    collect()
    return found


def test_every_bad_event_is_handled_or_dead_lettered(
        broker: EmbeddedBroker, model_registry: Registry, tmp_path: Path,
        corpus: list[bytes]) -> None:
    import asyncio

    bs, p = broker.bootstrap, "hostile"
    worker = make_worker(bs, model_registry.root, tmp_path, p).start()
    try:
        send(bs, f"{p}.songs.new", [song("jazz0", "jazz", 0)])
        asyncio.run(produce(bs, f"{p}.interactions", [(b"u", v) for v in corpus]))
        asyncio.run(produce(bs, f"{p}.songs.new", [(b"s", v) for v in corpus[:40]]))
        send(bs, f"{p}.songs.new", [song("jazz1", "jazz", 1)])  # the stream goes on
        worker.wait_metric("coldstream_songs_indexed_total", 2, timeout=120)
        drained(worker, [f"{p}.songs.new", f"{p}.interactions", f"{p}.interactions.by_song"])
        samples = worker.samples()
    finally:
        assert worker.stop() == 0
    handled = {}
    for (name, labels), value in samples.items():
        lab = dict(labels)
        if name == "coldstream_events_total" and lab["topic"] in (f"{p}.interactions",
                                                                  f"{p}.songs.new"):
            handled[(lab["topic"], lab["outcome"])] = value
    total = sum(handled.values())
    assert total == len(corpus) + 40 + 2, handled  # every event accounted for, once
    letters = [DeadLetter.model_validate(orjson.loads(v)) for v in read_all(bs, f"{p}.dlq")]
    assert len(letters) == sum(v for (_, o), v in handled.items() if o == "dlq")
    assert all(letter.error_message and letter.error_kind != "internal" for letter in letters)
    kinds = {letter.error_kind for letter in letters}
    assert {"decode", "validation", "schema_version"} <= kinds, kinds
