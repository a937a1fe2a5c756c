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
from collections.abc import Awaitable, Callable
from typing import Any

import faust

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
        await send_to_dlq(topics.dlq, event, exc)
        ctx.metrics.events.labels(topic=topic, outcome="dlq").inc()
        ctx.metrics.dlq.labels(topic=topic, kind=exc.kind).inc()
    except Exception as exc:  # a bug must not stop the stream: dead-letter and go on
        log.exception("unexpected failure on %s", topic)
        await send_to_dlq(topics.dlq, event, exc)
        ctx.metrics.events.labels(topic=topic, outcome="dlq").inc()
        ctx.metrics.dlq.labels(topic=topic, kind="internal").inc()


def register_agents(app: faust.App, ctx: WorkerContext, topics: Topics, tables: Tables) -> None:
    s, m = ctx.settings, ctx.metrics

    def decoded(event: Any, model: type) -> Any:
        with m.stage("decode"):
            return decode(event.value, model, max_bytes=s.max_event_bytes)

    async def on_song(event: Any) -> str:
        song: SongEvent = decoded(event, SongEvent)
        engagers = tables.song_engagers.get(song.song_id) or []  # co-partitioned with songs
        result = await ctx.run(ctx.process_song, song, engagers)
        start = time.perf_counter()
        for cand in result.candidates:
            await topics.candidates.send(key=cand.user_id.encode(), value=encode(cand))
            m.candidates.labels(path=cand.path).inc()
        m.stage_seconds.labels(stage="emit").observe(time.perf_counter() - start)
        m.candidates_per_song.observe(len(result.candidates))
        m.songs_indexed.inc()
        produced_ms = event.message.timestamp * 1000 if event.message.timestamp else None
        if produced_ms:
            m.new_song_to_candidates.observe(max(0.0, (now_ms() - produced_ms) / 1000))
        log.info("song %s -> %d candidates", song.song_id, len(result.candidates))
        return "ok"

    async def on_interaction(event: Any) -> str:
        ev: InteractionEvent = decoded(event, InteractionEvent)
        state = tables.user_state.get(ev.user_id) or pipeline.new_user_state()
        msg = event.message
        if pipeline.is_duplicate(state, ev, msg.partition, msg.offset):
            return "duplicate"
        # A song not indexed yet (its songs.new may still be in flight) stays in the history;
        # it counts towards the user's vector once the song is known.
        new_state = pipeline.apply_interaction(state, ev, msg.partition, msg.offset, ctx.cfg)
        new_state["boundary"] = await ctx.run(ctx.update_user, ev.user_id, new_state)
        tables.user_state[ev.user_id] = new_state
        await topics.interactions_by_song.send(key=ev.song_id.encode(), value=event.value)
        return "ok"

    async def on_engagement(event: Any) -> str:
        ev: InteractionEvent = decoded(event, InteractionEvent)
        before = tables.song_engagers.get(ev.song_id) or []
        after = pipeline.update_engagers(before, ev, ctx.cfg.engagers_per_song)
        if after != before:
            # An unknown song gets its listeners from this table when its songs.new arrives.
            if await ctx.run(ctx.song_known, ev.song_id):
                await ctx.run(ctx.write_engagers, ev.song_id, after)
            tables.song_engagers[ev.song_id] = after
        return "ok"

    def loop(topic: Any, name: str, handler: Callable[[Any], Awaitable[str]]) -> None:
        async def agent(stream: Any) -> None:
            async for event in stream.events():
                await guarded(ctx, topics, event, handler)

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
    loop(topics.interactions, "interactions", on_interaction)
    loop(topics.interactions_by_song, "engagement", on_engagement)
