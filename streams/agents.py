"""Thin agent loops: consume, call pipeline steps through the worker context, produce.

Every loop goes through :func:`guarded`, so a bad event is dead-lettered with its reason and
the stream goes on. Effects are written before the event is acknowledged (Faust commits an
offset only after the agent moved past it and the producer was flushed): at-least-once, with
deterministic ids and offset/event-id de-duplication making replays harmless.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import faust
import orjson
from faust import streams as faust_streams

from . import pipeline
from .context import WorkerContext
from .dlq import send_to_dlq
from .errors import EventError
from .events import InteractionEvent, SongEvent, decode, encode, now_ms
from .topics import Tables, Topics

log = logging.getLogger(__name__)


async def guarded(ctx: WorkerContext, topics: Topics, event: Any,
                  handler: Callable[[Any], Awaitable[str]]) -> None:
    topic = event.message.topic
    try:
        async with ctx.gate:
            outcome = await handler(event)
        ctx.metrics.events.labels(topic=topic, outcome=outcome).inc()
    except EventError as exc:
        await dead_letter_event(ctx, topics, event, exc)
    except Exception as exc:  # a bug must not stop the stream: dead-letter and go on
        log.exception("unexpected failure on %s", topic)
        await dead_letter_event(ctx, topics, event, exc)


@contextmanager
def acting_for(event: Any) -> Iterator[None]:
    """Make ``event`` Faust's current event while writing a table from a batch.

    Faust sends a table's changelog record to the *current event's* partition. Inside
    ``take_events`` that is the newest buffered event, which may belong to another partition;
    the key's own event keeps table and changelog co-partitioned.
    """
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


def decode_timed(ctx: WorkerContext, event: Any, model: type) -> Any:
    """Decode and validate one record, timed as the ``decode`` stage."""
    with ctx.metrics.stage("decode"):
        return decode(event.value, model, max_bytes=ctx.settings.max_event_bytes)


async def guarded_batch(ctx: WorkerContext, topics: Topics, events: list[Any], model: type,
                        handler: Callable[[list[tuple[Any, Any]]], Awaitable[list[str]]],
                        ) -> None:
    """Decode each event (bad ones to the DLQ), then handle the valid ones together."""
    m = ctx.metrics
    valid = []
    for event in events:
        try:
            valid.append((event, decode_timed(ctx, event, model)))
        except EventError as exc:
            await dead_letter_event(ctx, topics, event, exc)
    if not valid:
        return
    try:
        async with ctx.gate:
            outcomes = await handler(valid)
    except Exception as exc:  # a bug must not stop the stream: dead-letter the batch
        log.exception("unexpected failure on a batch of %s", valid[0][0].message.topic)
        for event, _ in valid:
            await dead_letter_event(ctx, topics, event, exc)
        return
    for (event, _), outcome in zip(valid, outcomes, strict=True):
        m.events.labels(topic=event.message.topic, outcome=outcome).inc()


async def dead_letter_event(ctx: WorkerContext, topics: Topics, event: Any,
                            exc: BaseException) -> None:
    topic = event.message.topic
    await send_to_dlq(topics.dlq, event, exc)
    ctx.metrics.events.labels(topic=topic, outcome="dlq").inc()
    kind = exc.kind if isinstance(exc, EventError) else "internal"
    ctx.metrics.dlq.labels(topic=topic, kind=kind).inc()


def register_agents(app: faust.App, ctx: WorkerContext, topics: Topics, tables: Tables) -> None:
    s, m = ctx.settings, ctx.metrics

    async def on_song(event: Any) -> str:
        song: SongEvent = decode_timed(ctx, event, SongEvent)
        engagers = tables.song_engagers.get(song.song_id) or []  # co-partitioned with songs
        candidates = await ctx.run(ctx.process_song, song, engagers)
        start = time.perf_counter()
        for cand in candidates:
            await topics.candidates.send(key=cand.user_id.encode(), value=encode(cand))
            m.candidates.labels(path=cand.path).inc()
        m.stage_seconds.labels(stage="emit").observe(time.perf_counter() - start)
        m.candidates_per_song.observe(len(candidates))
        # Listeners recorded before this song was indexed have it in their history without its
        # vector: ask their partitions (keyed by user) to recompute them now that it exists.
        for user_id in sorted({e[0] for e in engagers}):
            await topics.user_refresh.send(key=user_id.encode(),
                                           value=orjson.dumps({"user_id": user_id}))
        m.songs_indexed.inc()
        produced_ms = event.message.timestamp * 1000 if event.message.timestamp else None
        if produced_ms:
            m.new_song_to_candidates.observe(max(0.0, (now_ms() - produced_ms) / 1000))
        log.info("song %s -> %d candidates", song.song_id, len(candidates))
        return "ok"

    async def on_interactions(batch: list[tuple[Any, InteractionEvent]]) -> list[str]:
        """A batch of interactions: one vector fetch and one upsert for all touched users.

        A song not indexed yet (its songs.new may still be in flight) stays in the history and
        counts towards the user's vector once the song is known.
        """
        pending: dict[str, dict[str, Any]] = {}
        last: dict[str, Any] = {}
        outcomes, forwards = [], []
        for event, ev in batch:
            msg = event.message
            state = (pending.get(ev.user_id) or tables.user_state.get(ev.user_id)
                     or pipeline.new_user_state())
            if pipeline.is_duplicate(state, ev, msg.partition, msg.offset):
                outcomes.append("duplicate")
                continue
            pending[ev.user_id] = pipeline.apply_interaction(state, ev, msg.partition,
                                                             msg.offset, ctx.cfg)
            last[ev.user_id] = event
            forwards.append((ev.song_id, event.value))
            outcomes.append("ok")
        if pending:
            boundaries = await ctx.run(ctx.update_users, pending)
            for user_id, state in pending.items():
                state["boundary"] = boundaries[user_id]
                with acting_for(last[user_id]):
                    tables.user_state[user_id] = state
        for song_id, value in forwards:
            await topics.interactions_by_song.send(key=song_id.encode(), value=value)
        return outcomes

    async def on_engagements(batch: list[tuple[Any, InteractionEvent]]) -> list[str]:
        """Newest listeners per song; one payload write per changed song in the batch."""
        changed: dict[str, list[list[Any]]] = {}
        last: dict[str, Any] = {}
        for event, ev in batch:
            before = changed.get(ev.song_id)
            if before is None:
                before = tables.song_engagers.get(ev.song_id) or []
            after = pipeline.update_engagers(before, ev, ctx.cfg.engagers_per_song)
            if after != before:
                changed[ev.song_id] = after
                last[ev.song_id] = event
        if changed:
            await ctx.run(ctx.write_engagers, changed)
            for song_id, engagers in changed.items():
                with acting_for(last[song_id]):
                    tables.song_engagers[song_id] = engagers
        return ["ok"] * len(batch)

    async def on_refresh(events: list[Any]) -> None:
        """Recompute users from their unchanged state (their songs' vectors became known)."""
        last: dict[str, Any] = {}
        for event in events:
            try:
                user_id = orjson.loads(event.value)["user_id"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue  # internal topic: only this worker writes it
            if user_id in tables.user_state:
                last[user_id] = event
        if not last:
            return
        async with ctx.gate:
            states = {u: tables.user_state[u] for u in last}
            boundaries = await ctx.run(ctx.update_users, states)
            for user_id, state in states.items():
                with acting_for(last[user_id]):
                    tables.user_state[user_id] = {**state, "boundary": boundaries[user_id]}

    async def refresh_agent(stream: Any) -> None:
        async for events in stream.take_events(s.batch_max_events, s.batch_window_s):
            await on_refresh(events)

    app.agent(topics.user_refresh, name="coldstream.user_refresh")(refresh_agent)

    def loop(topic: Any, name: str, handler: Callable[[Any], Awaitable[str]]) -> None:
        async def agent(stream: Any) -> None:
            async for event in stream.events():
                await guarded(ctx, topics, event, handler)

        agent.__name__ = name
        agent.__qualname__ = name
        app.agent(topic, name=f"coldstream.{name}")(agent)

    def batch_loop(topic: Any, name: str, model: type,
                   handler: Callable[[list[tuple[Any, Any]]], Awaitable[list[str]]]) -> None:
        """Events acknowledged only after the whole batch's effects are written."""
        async def agent(stream: Any) -> None:
            async for events in stream.take_events(s.batch_max_events, s.batch_window_s):
                await guarded_batch(ctx, topics, events, model, handler)

        agent.__name__ = name
        agent.__qualname__ = name
        app.agent(topic, name=f"coldstream.{name}")(agent)

    def user_states(ids: Any) -> dict[str, Any]:
        """Snapshot of local users' table state (all, or the given ids); event loop only."""
        table = tables.user_state
        if ids is None:
            return dict(table.items())
        return {k: table[k] for k in ids if k in table}

    async def adopt(version: str, why: str) -> None:
        if s.model_version:
            log.info("model %s announced (%s) but this worker is pinned to %s", version, why,
                     s.model_version)
            return
        if version in ctx.refused_versions or ctx.swapping:
            return
        log.info("adopting model %s (%s)", version, why)
        await ctx.swap_to(version, user_states)

    @app.task
    async def watch_model_versions() -> None:
        """Every worker (not one per group) hears model.versions: a plain consumer."""
        from .broker import client_config
        from .client import consume
        from .events import ModelVersionEvent

        async for rec in consume(ctx.bootstrap, topics.model_versions.get_topic_name(),
                                 from_beginning=False, **client_config(s)):
            try:
                announced = decode(rec.value, ModelVersionEvent, max_bytes=s.max_event_bytes)
            except EventError as exc:
                log.warning("bad model.versions event at offset %d: %s", rec.offset, exc)
                m.dlq.labels(topic=rec.topic, kind=exc.kind).inc()
                continue
            # The registry's CURRENT pointer decides (promote/rollback move it); the event
            # only says "look now", so a stale or unpromoted announcement cannot flip-flop.
            current = ctx.registry.current()
            if current != announced.version:
                log.warning("model.versions announced %s but CURRENT is %s: following CURRENT",
                            announced.version, current)
            if current and ctx.model and current != ctx.model.version:
                asyncio.ensure_future(adopt(current, "model.versions event"))

    @app.timer(15.0)
    async def follow_current_pointer() -> None:
        """Fallback for a missed event: the registry's CURRENT pointer is the truth."""
        current = await asyncio.get_running_loop().run_in_executor(None, ctx.registry.current)
        if current and ctx.model and current != ctx.model.version:
            await adopt(current, "CURRENT pointer")

    loop(topics.songs, "songs", on_song)
    batch_loop(topics.interactions, "interactions", InteractionEvent, on_interactions)
    batch_loop(topics.interactions_by_song, "engagement", InteractionEvent, on_engagements)
