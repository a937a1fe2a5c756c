"""The three agents that build a user's vector around a new song, driven in every order.

songs.new, interactions and their by-song forwards are separate topics, so a listener's
interaction, the song's indexing and the forward's engagement step can interleave in any
order. Whatever the order, the listener's vector must end up counting the song. The worker
tests cannot force an order (the broker decides), so these drive the real handlers directly,
with the real model and store; the topics and tables are in-memory recorders.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from encoders.artifacts import Registry
from streams import pipeline
from streams.agents import Agents
from streams.context import WorkerContext
from streams.events import InteractionEvent, SongEvent
from streams.forwards import FORWARDS, Forward, pack_forwards, read_forwards
from streams.metrics import Metrics
from streams.pipeline import user_point_id
from streams.settings import load_settings
from streams.stores import EdgeStore, VectorStore
from streams.swap import ModelSwapper
from streams.topics import Tables, Topics

NOW = 1_760_000_000_000


class Message:
    def __init__(self, offset: int) -> None:
        self.partition, self.offset, self.timestamp = 0, offset, NOW / 1000


class Event:
    """What a handler reads of a Faust event (weak-referenceable, like Faust's)."""

    offsets = itertools.count()

    def __init__(self, value: bytes, headers: dict[str, bytes] | None = None) -> None:
        self.value, self.headers = value, headers or {}
        self.message = Message(next(self.offsets))


class RecordingTopic:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, bytes, dict[str, bytes]]] = []
        self.partitions: list[int | None] = []

    async def send(self, key: bytes | None, value: bytes, headers: Any = None,
                   partition: int | None = None) -> asyncio.Future:
        self.sent.append((key, value, dict(headers or {})))
        self.partitions.append(partition)
        done: asyncio.Future = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def interaction(user: str, song: str) -> tuple[Event, InteractionEvent]:
    ev = InteractionEvent(schema_version=1, event_id=f"i-{user}-{song}", user_id=user,
                          song_id=song, action="collect", ts=NOW - 1000)
    return Event(orjson.dumps(ev.model_dump())), ev


def new_song(song: str) -> tuple[Event, SongEvent]:
    ev = SongEvent(schema_version=1, event_id=f"s-{song}", song_id=song, title="Blue train",
                   artist="The jazz band", tags=["jazz"], description="soft brushed drums",
                   released_at=NOW - 10**8)
    return Event(orjson.dumps(ev.model_dump())), ev


async def one_partition(keys: list[bytes]) -> list[int]:
    return [0] * len(keys)


class Worker:
    """One worker's handlers with in-memory topics and tables."""

    def __init__(self, registry: Registry, tmp_path: Path,
                 store: VectorStore | None = None) -> None:
        settings = load_settings(data_dir=tmp_path, model_dir=registry.root)
        self.ctx = WorkerContext(settings, store or EdgeStore(tmp_path / "qdrant"), Metrics())
        self.ctx.load(registry.current() or "")
        self.topics = Topics(**{f.name: RecordingTopic() for f in fields(Topics)})
        self.tables = Tables(user_state={}, song_engagers={}, online_state={})
        self.agents = Agents(self.ctx, ModelSwapper(self.ctx, self.tables.user_state),
                             self.topics, self.tables, one_partition, one_partition)

    def forwarded(self) -> list[tuple[Event, list[Forward]]]:
        """The by-song forwards sent so far, as the engagement agent would read them."""
        return [(Event(value, headers), read_forwards(value, headers, 256_000))
                for _key, value, headers in self.topics.interactions_by_song.sent]

    def refreshes(self) -> list[tuple[Event, str]]:
        return [(Event(value), orjson.loads(value)["user_id"])
                for _key, value, _h in self.topics.user_refresh.sent]

    def has_user(self, user: str) -> bool:
        cols = self.ctx.serving().cols
        found = self.ctx.store.retrieve(cols.users, [user_point_id(user)], with_vector=True)
        return bool(found) and found[0].vector is not None

    def close(self) -> None:
        self.ctx.close()


ORDERS = {
    "song first": ("song", "interaction", "engagement"),
    "engagement before the song": ("interaction", "engagement", "song"),
    "song between the interaction and its engagement": ("interaction", "song", "engagement"),
}


@pytest.mark.parametrize("order", list(ORDERS.values()), ids=list(ORDERS))
def test_the_listener_counts_the_song_in_every_order(
        order: tuple[str, ...], model_registry: Registry, tmp_path: Path) -> None:
    worker = Worker(model_registry, tmp_path)
    agents = worker.agents

    async def step(name: str) -> None:
        if name == "song":
            assert await agents.on_songs([new_song("jazz0")]) == ["ok"]
        elif name == "interaction":
            assert await agents.on_interactions([interaction("u0", "jazz0")]) == ["ok"]
        else:
            await agents.on_engagements(worker.forwarded())

    async def main() -> None:
        for name in order:
            await step(name)
        refreshes = worker.refreshes()
        assert [user for _e, user in refreshes] == (["u0"] if order[0] != "song" else [])
        if refreshes:
            assert await agents.on_refresh(refreshes) == ["ok"]

    try:
        asyncio.run(main())
        assert worker.has_user("u0"), f"u0 has no vector after {order}"
        assert worker.tables.song_engagers["jazz0"][0][0] == "u0"
    finally:
        worker.close()


def test_a_forward_is_marked_only_while_its_song_is_unknown(
        model_registry: Registry, tmp_path: Path) -> None:
    worker = Worker(model_registry, tmp_path)

    async def main() -> None:
        await worker.agents.on_interactions([interaction("u0", "jazz0")])
        await worker.agents.on_songs([new_song("jazz0")])
        await worker.agents.on_interactions([interaction("u1", "jazz0")])

    try:
        asyncio.run(main())
        marks = [row.song_unknown for _e, rows in worker.forwarded() for row in rows]
        assert marks == [True, False]
        vector = np.asarray(worker.ctx.cache.get_many(
            worker.ctx.store, worker.ctx.serving().cols.songs, ["jazz0"])["jazz0"])
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-4)
    finally:
        worker.close()


class HeldTopic(RecordingTopic):
    """Records sends; the broker acknowledges none of them until :meth:`ack`."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[asyncio.Future] = []

    async def send(self, key: bytes | None, value: bytes, headers: Any = None,
                   partition: int | None = None) -> asyncio.Future:
        await super().send(key, value, headers, partition)  # recorded as the parent does
        self.pending.append(asyncio.get_running_loop().create_future())
        return self.pending[-1]

    def ack(self) -> None:
        for fut in self.pending:
            fut.set_result(None)


def test_no_user_state_is_written_before_its_forwards_are_acknowledged(
        model_registry: Registry, tmp_path: Path) -> None:
    """The state that records a batch's events is written only after the broker has
    acknowledged every forward of the batch: a kill -9 in between must replay (and so
    re-forward) them, not find them already applied (docs/reliability.md)."""
    worker = Worker(model_registry, tmp_path)
    worker.topics.interactions_by_song = forwards = HeldTopic()

    async def main() -> None:
        await worker.agents.on_songs([new_song("jazz0")])
        handler = asyncio.create_task(worker.agents.on_interactions(
            [interaction("u0", "jazz0"), interaction("u1", "jazz0")]))
        for _ in range(2000):  # until the forwards are out and waiting for the broker
            if forwards.sent:
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        assert len(forwards.sent) == 1 and not handler.done()  # one song: one record
        assert "u0" not in worker.tables.user_state, "a state was written before its forward"
        assert "u1" not in worker.tables.user_state
        forwards.ack()
        assert await handler == ["ok", "ok"]
        assert {"u0", "u1"} <= set(worker.tables.user_state)

    try:
        asyncio.run(main())
    finally:
        worker.close()


def test_a_batch_is_forwarded_as_one_record_per_partition_without_its_duplicates(
        model_registry: Registry, tmp_path: Path) -> None:
    """Six interactions over three songs on two partitions: two records, every applied
    interaction in exactly one of them, on its song's partition; a replayed event is not
    forwarded again, and the engagement step reads the records back into listener lists."""
    worker = Worker(model_registry, tmp_path)
    song_partition = {"jazz0": 0, "jazz1": 1, "jazz2": 0}

    async def two_partitions(keys: list[bytes]) -> list[int]:
        return [song_partition[k.decode()] for k in keys]

    worker.agents.forward_partitions = two_partitions
    batch = [interaction(u, s) for u in ("u0", "u1") for s in song_partition]

    async def main() -> None:
        assert await worker.agents.on_interactions(batch) == ["ok"] * 6
        assert await worker.agents.on_interactions(batch[:1]) == ["duplicate"]
        await worker.agents.on_engagements(worker.forwarded())

    try:
        asyncio.run(main())
        forwards = worker.topics.interactions_by_song
        assert sorted(forwards.partitions) == [0, 1]
        rows = {p: [(r.user_id, r.song_id) for r in read_forwards(v, h, 256_000)]
                for p, (_k, v, h) in zip(forwards.partitions, forwards.sent, strict=True)}
        assert sorted(rows[0] + rows[1]) == sorted((e.user_id, e.song_id) for _, e in batch)
        assert all(song_partition[s] == p for p, pairs in rows.items() for _u, s in pairs)
        assert {s: [e[0] for e in worker.tables.song_engagers[s]] for s in song_partition} == {
            s: ["u0", "u1"] for s in song_partition}
    finally:
        worker.close()


def test_a_large_take_of_forwards_lets_the_event_loop_run_between_slices(
        model_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A take of by-song records can carry thousands of rows: the engagement step must hand
    the loop back between slices of them, not hold it for the whole take. A ticker task
    notes how many rows had been handled at each of its turns: no two turns may be more than
    a slice apart."""
    worker = Worker(model_registry, tmp_path)
    rows = [Forward(f"u{i}", f"song{i % 500}", "play", NOW - i, False) for i in range(2000)]
    record = Event(pack_forwards(rows), dict(FORWARDS))
    handled = 0
    update = pipeline.update_engagers

    def counted(*args: Any) -> Any:
        nonlocal handled
        handled += 1
        return update(*args)

    monkeypatch.setattr(pipeline, "update_engagers", counted)

    async def main() -> list[int]:
        seen: list[int] = []
        done = False

        async def ticker() -> None:
            while not done:
                seen.append(handled)
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        assert await worker.agents.on_engagements([(record, rows)]) == ["ok"]
        done = True
        await task
        return seen

    try:
        seen = asyncio.run(main())
        assert handled == 2000 and seen[-1] == 2000
        gaps = [b - a for a, b in itertools.pairwise(seen)]
        assert max(gaps) <= 200, f"the loop waited for {max(gaps)} rows at once"
        assert len(worker.tables.song_engagers) == 500
    finally:
        worker.close()
