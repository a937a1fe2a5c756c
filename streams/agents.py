"""Thin agent loops: consume, call pipeline steps through the worker context, produce.

Every loop takes its events in batches through :func:`guarded_batch`, so a bad event is
dead-lettered with its reason, every event is counted by outcome, and the stream goes on.
Effects are written before the event is acknowledged (Faust commits an offset only after the
agent moved past it and the producer was flushed): at-least-once, with deterministic ids and
offset/event-id de-duplication making replays harmless.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import faust
import orjson
from faust import streams as faust_streams

from . import attribution, pipeline
from .audio import Clip
from .by_partition import Partitioner, group_by_partition, producer_partitioner
from .context import WorkerContext
from .dlq import send_to_dlq
from .errors import DecodeError, EventError
from .events import CandidateEvent, InteractionEvent, SongEvent, decode, encode, now_ms
from .forwards import FORWARDS, ROWS_PER_RECORD, Forward, forward_of, pack_forwards, read_forwards
from .gate import Priority
from .proposals import CANDIDATES_PER_RECORD, PROPOSALS, pack_proposals, read_proposals
from .state_format import pack_user_state, read_user_state
from .swap import ModelSwapper, follow_current, follow_experiment, watch_announcements
from .topics import Tables, Topics

log = logging.getLogger(__name__)

Decoder = Callable[[WorkerContext, Any], Any]
#: One event's outcome: a name, the names of the many events a record carries with their
#: counts, or None for an event the handler dead-lettered itself.
Outcome = str | Counter[str] | None
#: Returns one outcome per event.
BatchHandler = Callable[[list[tuple[Any, Any]]], Awaitable[list[Outcome]]]


# ---------------------------------------------------------------------------------------------
# The guarded path: decode, handle a batch under the gate, count, dead-letter failures
# ---------------------------------------------------------------------------------------------


async def dead_letter_event(ctx: WorkerContext, topics: Topics, event: Any,
                            exc: BaseException) -> None:
    topic = event.message.topic
    record = await send_to_dlq(topics.dlq, event, exc)
    ctx.metrics.events.labels(topic=topic, outcome="dlq").inc()
    ctx.metrics.dlq.labels(topic=topic, kind=record.error_kind).inc()


async def guarded_batch(ctx: WorkerContext, topics: Topics, events: list[Any],
                        decoder: Decoder, handler: BatchHandler, gated: bool = True,
                        carried: Callable[[Any], int] | None = None,
                        holder: str = "events") -> None:
    """Decode each event (bad ones to the DLQ), then handle the valid ones together.

    ``carried`` says how many events a decoded record stands for (the by-song forwards carry
    many interactions each): outcomes are counted per event carried, so the counts keep
    meaning interactions. A handler whose records carry events of different outcomes (the
    packed proposals) returns their counts instead. A record dead-lettered whole counts once.

    ``gated=False`` for a handler that touches neither the model nor the store (delivery),
    or that takes the gate itself for only the part that does (songs): it need not wait
    for, or hold up, a model switch or the other agents for the rest.
    """
    valid = []
    for event in events:
        try:
            valid.append((event, decoder(ctx, event)))
        except EventError as exc:
            await dead_letter_event(ctx, topics, event, exc)
    if not valid:
        return
    try:
        async with ctx.gate.held(holder) if gated else nullcontext():
            outcomes = await handler(valid)
    except Exception as exc:  # a bug must not stop the stream: dead-letter the batch
        log.exception("unexpected failure on a batch of %s", valid[0][0].message.topic)
        for event, _ in valid:
            await dead_letter_event(ctx, topics, event, exc)
        return
    counted: Counter[tuple[str, str]] = Counter()
    for (event, decoded), outcome in zip(valid, outcomes, strict=True):
        if isinstance(outcome, Counter):
            for name, n in outcome.items():
                counted[event.message.topic, name] += n
        elif outcome is not None:
            counted[event.message.topic, outcome] += carried(decoded) if carried else 1
    for (topic, outcome), n in counted.items():  # one counter update per outcome, not event
        ctx.metrics.events.labels(topic=topic, outcome=outcome).inc(n)


def decoder_for(model: type) -> Decoder:
    """Decode and validate one record against the event contract, timed as ``decode``."""
    def decode_timed(ctx: WorkerContext, event: Any) -> Any:
        with ctx.metrics.stage("decode"):
            return decode(event.value, model, max_bytes=ctx.settings.max_event_bytes)

    return decode_timed


def decode_forwards(ctx: WorkerContext, event: Any) -> list[Forward]:
    """A by-song record's forward rows (either form: streams.forwards), timed as ``decode``."""
    with ctx.metrics.stage("decode"):
        return read_forwards(event.value, event.headers, ctx.settings.max_event_bytes)


def decode_proposals(ctx: WorkerContext, event: Any) -> list[CandidateEvent]:
    """A proposals record's candidates (either form: streams.proposals), timed as
    ``decode``."""
    with ctx.metrics.stage("decode"):
        return read_proposals(event.value, event.headers, ctx.settings.max_event_bytes)


def decode_refresh(ctx: WorkerContext, event: Any) -> str:
    """``{"user_id": ...}`` on the internal refresh topic (only this worker writes it)."""
    try:
        user_id = orjson.loads(event.value)["user_id"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise DecodeError("refresh record is not {\"user_id\": ...}") from None
    if not isinstance(user_id, str):
        raise DecodeError(f"refresh user_id is {type(user_id).__name__}, not a string")
    return user_id


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


# ---------------------------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------------------------


async def flush_producer(producer: Any) -> None:
    """Wait until everything sent so far is acknowledged. Faust's buffer flush gives up after
    0.1 s without progress, so it is repeated until the buffer is empty."""
    while True:
        await producer.flush()
        if not producer.buffer.size:
            return


#: Forward rows (and then changed songs) the engagement step handles on the event loop
#: between two yields to it. A by-song record carries a partition's share of a whole
#: interactions batch, so one take of records can hold thousands of rows: without the yields
#: stop 43's tracer found 200-360 ms stalls in ``on_engagements`` (200k, overloaded). 128 rows
#: are about 25 ms of loop time there.
ENGAGEMENT_ROWS_PER_YIELD = 128


class Agents:
    """The worker's handlers, with their dependencies explicit (no closure over them)."""

    def __init__(self, ctx: WorkerContext, swapper: ModelSwapper, topics: Topics,
                 tables: Tables, forward_partitions: Partitioner,
                 proposal_partitions: Partitioner) -> None:
        self.ctx = ctx
        self.swapper = swapper
        self.topics = topics
        self.tables = tables
        self.forward_partitions = forward_partitions
        self.proposal_partitions = proposal_partitions

    async def update_users(self, states: dict[str, dict[str, Any]]) -> dict[str, float]:
        """Recompute users in every serving version's space (an A/B version arm keeps all
        users too, so its U2I searches the same population, and ending the test leaves either
        version complete). Returns the current version's boundaries."""
        self.swapper.note_updated(states)  # a swap in progress recomputes them at the switch
        per_version = [await self.ctx.run(pipeline.refresh_users, sv, states, self.ctx.metrics)
                        for sv, _arms in self.ctx.servings()]
        return per_version[0] if per_version else {}

    async def on_songs(self, batch: list[tuple[Any, SongEvent]]) -> list[str | None]:
        """New songs, encoded together. A song that fails (its audio, say) is dead-lettered
        alone and the rest of the batch goes on.

        Only the vector work holds the gate: the audio is decoded before, in a thread of its
        own, and the candidates are sent after, so both overlap the other agents' work.
        (Decoding the next songs while these encode measured no faster on this machine, where
        the worker is held to one core by the GIL: ``docs/benchmarks.md``.)
        """
        ctx = self.ctx
        with ctx.foreground.active():  # a model swap gives way until the candidates are sent
            return await self.songs_to_candidates(batch)

    async def songs_to_candidates(self, batch: list[tuple[Any, SongEvent]]
                                  ) -> list[str | None]:
        ctx = self.ctx
        ctx.metrics.songs_batch_size.observe(len(batch))
        songs = [song for _, song in batch]
        rate = ctx.serving().model.songs.sample_rate
        waves = await ctx.read_audio(pipeline.read_waves, songs, rate, ctx.settings,
                                     ctx.metrics)
        found, engagers = await self.vectors_and_candidates(songs, waves, rate)
        outcomes: list[str | None] = []
        for (event, song), listeners, result in zip(batch, engagers, found, strict=True):
            if isinstance(result, Exception):
                if not isinstance(result, EventError):
                    log.error("song %s failed: %r", song.song_id, result)
                await dead_letter_event(ctx, self.topics, event, result)
                outcomes.append(None)
            else:
                await self.emit_song(event, song, listeners, result)
                outcomes.append("ok")
        return outcomes

    async def vectors_and_candidates(self, songs: list[SongEvent], waves: pipeline.Waves,
                                     rate: int) -> tuple[list[Any], list[list[list[Any]]]]:
        """Under the gate: each serving version embeds the songs into its own collections and
        proposes them to the users of its arms. Returns each song's candidates (or its error)
        and its listeners."""
        ctx = self.ctx
        found: list[list[CandidateEvent] | Exception] = [[] for _ in songs]
        async with ctx.gate.held("songs", Priority.SONGS):
            self.swapper.note_songs(s.song_id for s in songs)  # a swap's switch redoes them
            engagers = [self.tables.song_engagers.get(s.song_id) or [] for s in songs]
            for sv, arms in ctx.servings():
                vectors = await ctx.run(pipeline.encode_songs, sv, songs, (rate, waves),
                                        ctx.settings, ctx.metrics)
                for i, (song, vector) in enumerate(zip(songs, vectors, strict=True)):
                    if isinstance(found[i], Exception):
                        continue
                    if isinstance(vector, Exception):
                        found[i] = vector
                        continue
                    clip = waves[i] if isinstance(waves[i], Clip) else None
                    # one song at a time: a store failure retries only this song's calls
                    found[i] += await ctx.run(pipeline.index_song, sv, song, vector, clip,
                                              engagers[i], ctx.cfg, ctx.metrics, arms)
        return found, engagers

    async def emit_song(self, event: Any, song: SongEvent, engagers: list[list[Any]],
                        candidates: list[CandidateEvent]) -> None:
        ctx, m, topics = self.ctx, self.ctx.metrics, self.topics
        start = time.perf_counter()
        direct = not ctx.settings.max_candidates_per_user_day  # no per-user budget to apply
        values = [encode(cand) for cand in candidates]
        if direct:  # deliver now; the delivery agent only records them
            for cand, value in zip(candidates, values, strict=True):
                await topics.candidates.send(key=cand.user_id.encode(), value=value)
                m.candidates.labels(path=cand.path).inc()
        # to the users' partitions: the daily budget and the delivery record are per user
        await self.send_proposals(candidates, values)
        m.stage_seconds.labels(stage="emit").observe(time.perf_counter() - start)
        m.candidates_per_song.observe(len(candidates))
        # Listeners recorded before this song was indexed have it in their history without its
        # vector: ask their partitions (keyed by user) to recompute them now that it exists.
        for user_id in sorted({e[0] for e in engagers}):
            await self.send_refresh(user_id)
        m.songs_indexed.inc()
        produced_ms = event.message.timestamp * 1000 if event.message.timestamp else None
        if produced_ms:
            m.new_song_to_candidates.observe(max(0.0, (now_ms() - produced_ms) / 1000))
        log.info("song %s -> %d candidates", song.song_id, len(candidates))

    async def send_proposals(self, candidates: list[CandidateEvent], values: list[bytes]
                             ) -> None:
        """One record per destination partition (the one a send keyed by the user would
        pick), as :mod:`streams.proposals` packs them. Acknowledged before the song's offset
        is committed, as every record the worker sends is."""
        if not candidates:
            return
        topic = self.topics.candidates_proposed
        partitions = await self.proposal_partitions([c.user_id.encode() for c in candidates])
        for partition, part in group_by_partition(values, partitions, CANDIDATES_PER_RECORD):
            await topic.send(key=None, value=pack_proposals(part), partition=partition,
                             headers=PROPOSALS)

    async def on_interactions(self, batch: list[tuple[Any, InteractionEvent]]) -> list[str]:
        """A batch of interactions: one vector fetch and one upsert for all touched users.

        A song not indexed yet (its songs.new may still be in flight) stays in the history and
        counts towards the user's vector once the song is known.
        """
        table = self.tables.user_state
        pending: dict[str, dict[str, Any]] = {}
        last: dict[str, Any] = {}
        outcomes, forwards = [], []
        for event, ev in batch:
            msg = event.message
            state = (pending.get(ev.user_id) or read_user_state(table.get(ev.user_id))
                     or pipeline.new_user_state())
            if pipeline.is_duplicate(state, ev, msg.partition, msg.offset):
                outcomes.append("duplicate")
                continue
            pending[ev.user_id] = pipeline.apply_interaction(state, ev, msg.partition,
                                                             msg.offset, self.ctx.cfg)
            last[ev.user_id] = event
            forwards.append(ev)
            outcomes.append("ok")
        boundaries = await self.update_users(pending) if pending else {}
        # Listeners of a song this worker has no vector for are marked: if the song is indexed
        # before the forward reaches the engagement agent, that agent must refresh them (the
        # song's arrival saw no listener to refresh). The update has just asked the store for
        # every song of these users' histories, so the cache holds each one that is known (no
        # second store call, no extra hop to the work thread: still under the gate).
        cache = self.ctx.serving().cache
        rows = [forward_of(ev, ev.song_id not in cache) for ev in forwards]
        # Forwards are delivered before the state that records their events is written. The
        # other order lost a forward when a kill -9 fell after the state's changelog record
        # was acked and before the forward was: the re-read event was then a duplicate of the
        # state and its forward was never sent again (tests/streams/test_table_store.py, 1 of
        # 16 runs). Now such an event is re-applied and re-forwarded (idempotent downstream).
        with self.ctx.metrics.stage("forward"):  # sent and acknowledged by the broker
            await self.send_forwards(rows)
        for user_id, state in pending.items():
            state["boundary"] = boundaries[user_id]
            with acting_for(last[user_id]):
                table[user_id] = pack_user_state(state)
        self.attribute([(event, ev) for (event, ev), outcome in zip(batch, outcomes,
                                                                    strict=True)
                        if outcome == "ok"])
        return outcomes

    async def send_forwards(self, rows: list[Forward]) -> None:
        """One record per destination partition (the one a keyed send would pick), then wait
        until the broker has acknowledged all of them."""
        if not rows:
            return
        partitions = await self.forward_partitions([r.song_id.encode() for r in rows])
        sent = [await self.topics.interactions_by_song.send(
                    key=None, value=pack_forwards(part), partition=partition, headers=FORWARDS)
                for partition, part in group_by_partition(rows, partitions, ROWS_PER_RECORD)]
        await asyncio.gather(*sent)

    def attribute(self, applied: list[tuple[Any, InteractionEvent]]) -> None:
        """Count each new interaction against the user's deliveries of its song (the
        interactions' duplicates were dropped above, so a replay counts nothing twice)."""
        table, m = self.tables.online_state, self.ctx.metrics
        window_ms = int(self.ctx.settings.attribution_window_s * 1000)
        changed: dict[str, dict[str, Any]] = {}
        last: dict[str, Any] = {}
        for event, ev in applied:
            state = changed.get(ev.user_id) or table.get(ev.user_id)
            if state is None:
                continue  # nothing was ever delivered to this user
            after, found = attribution.attribute(state, ev, window_ms)
            for hit in found:
                arm = hit.arm or ""
                m.attributed.labels(action=hit.action, version=hit.version, path=hit.path,
                                    arm=arm).inc()
                if hit.first_play_s is not None:
                    m.time_to_first_play.labels(arm=arm).observe(hit.first_play_s)
            if after is not state:
                changed[ev.user_id], last[ev.user_id] = after, event
        for user_id, state in changed.items():
            with acting_for(last[user_id]):
                table[user_id] = state

    async def on_proposals(self, batch: list[tuple[Any, list[CandidateEvent]]]
                           ) -> list[Outcome]:
        """Deliver proposed candidates within each user's daily budget, best first.

        The decisions are recorded (and the records acknowledged by the broker) before any
        candidate is sent: a kill -9 can then lose a record only together with its candidate,
        and the replay, batched differently, cannot pick a different best-N on top of the
        candidates already out. A proposal delivered before is emitted again unchanged and
        not counted twice; the candidate id lets downstream drop the repeat. Without a budget
        the songs agent has delivered them already (no extra hop on the new-song latency):
        here they are only recorded, for attribution.
        """
        table, s = self.tables.online_state, self.ctx.settings
        by_user: dict[str, list[tuple[Any, CandidateEvent]]] = {}
        for event, cands in batch:
            for cand in cands:
                by_user.setdefault(cand.user_id, []).append((event, cand))
        decisions: list[attribution.Decision] = []
        for user_id, items in by_user.items():
            state = table.get(user_id) or attribution.new_online_state()
            after, decided = attribution.deliver(
                state, [c for _, c in items], s.max_candidates_per_user_day,
                int(s.attribution_window_s * 1000))
            if after is not state:
                with acting_for(items[-1][0]):
                    table[user_id] = after
            decisions += decided
        if s.max_candidates_per_user_day and any(d.outcome == "delivered" for d in decisions):
            await flush_producer(table.app.producer)
        for d in decisions:
            await self.emit(d)
        outcome = {d.candidate.candidate_id: d.outcome for d in decisions}
        return [Counter(outcome[c.candidate_id] for c in cands) for _, cands in batch]

    async def emit(self, d: attribution.Decision) -> None:
        m, cand = self.ctx.metrics, d.candidate
        if d.outcome == "dropped":
            m.budget_dropped.labels(budget="user_day").inc()
            return
        budgeted = bool(self.ctx.settings.max_candidates_per_user_day)
        if budgeted:  # else the songs agent sent it (Agents.on_song)
            await self.topics.candidates.send(key=cand.user_id.encode(), value=encode(cand))
        if d.outcome == "delivered":
            if budgeted:  # proposed -> delivered, wall time: the hop the budget adds
                m.stage_seconds.labels(stage="deliver").observe(
                    max(0.0, (now_ms() - cand.created_at) / 1000))
                m.candidates.labels(path=cand.path).inc()
            m.deliveries.labels(version=cand.model_version, path=cand.path,
                                arm=cand.arm or "").inc()

    async def on_engagements(self, batch: list[tuple[Any, list[Forward]]]) -> list[str]:
        """Newest listeners per song; one payload write per changed song in the batch.

        Each record carries a partition's share of an interactions batch. A listener whose
        vector was computed before the song was known is refreshed here if the song has been
        indexed since (else the song's arrival refreshes them).
        """
        table = self.tables.song_engagers
        changed: dict[str, list[list[Any]]] = {}
        last: dict[str, Any] = {}
        late: dict[str, set[str]] = {}
        handled = 0
        for event, rows in batch:
            for ev in rows:
                handled += 1
                if handled % ENGAGEMENT_ROWS_PER_YIELD == 0:
                    await asyncio.sleep(0)  # let the loop run between slices of a big take
                if ev.song_unknown:
                    late.setdefault(ev.song_id, set()).add(ev.user_id)
                before = changed.get(ev.song_id)
                if before is None:
                    before = table.get(ev.song_id) or []
                after = pipeline.update_engagers(before, ev, self.ctx.cfg.engagers_per_song)
                if after != before:
                    changed[ev.song_id] = after
                    last[ev.song_id] = event
        if changed:
            self.swapper.note_songs(changed)  # a swap's switch copies their new listeners
            for sv, _arms in self.ctx.servings():
                await self.ctx.run(pipeline.write_known_engagers, sv, changed)
            for i, (song_id, engagers) in enumerate(changed.items(), start=1):
                with acting_for(last[song_id]):
                    table[song_id] = engagers
                if i % ENGAGEMENT_ROWS_PER_YIELD == 0:
                    await asyncio.sleep(0)
        if late:
            still = await self.ctx.run(pipeline.unknown_songs, self.ctx.serving(), late)
            users = sorted({u for song_id, us in late.items() if song_id not in still
                            for u in us})
            for user_id in users:
                await self.send_refresh(user_id)
        return ["ok"] * len(batch)

    async def send_refresh(self, user_id: str) -> None:
        """Ask the user's partition to recompute the user (a song in its history became
        known)."""
        await self.topics.user_refresh.send(key=user_id.encode(),
                                            value=orjson.dumps({"user_id": user_id}))

    async def on_refresh(self, batch: list[tuple[Any, str]]) -> list[str]:
        """Recompute users from their unchanged state (their songs' vectors became known).

        A user with no state on this worker has nothing to recompute ("skipped").
        """
        table = self.tables.user_state
        last = {user_id: event for event, user_id in batch if user_id in table}
        if last:
            states = {u: read_user_state(table[u]) for u in last}
            boundaries = await self.update_users(states)
            for user_id, state in states.items():
                with acting_for(last[user_id]):
                    table[user_id] = pack_user_state({**state, "boundary": boundaries[user_id]})
        return ["ok" if user_id in last else "skipped" for _, user_id in batch]


# ---------------------------------------------------------------------------------------------
# Wiring
# ---------------------------------------------------------------------------------------------


def batch_agent(app: faust.App, ctx: WorkerContext, topics: Topics, topic: Any, name: str,
                decoder: Decoder, handler: BatchHandler, window_s: float | None = None,
                gated: bool = True, max_events: int | None = None,
                carried: Callable[[Any], int] | None = None) -> None:
    """Events acknowledged only after the whole batch's effects are written."""
    s = ctx.settings
    window = window_s or s.batch_window_s
    most = max_events or s.batch_max_events

    async def agent(stream: Any) -> None:
        async for events in stream.take_events(most, window):
            await guarded_batch(ctx, topics, events, decoder, handler, gated, carried, name)

    agent.__name__ = agent.__qualname__ = name
    app.agent(topic, name=f"coldstream.{name}")(agent)


def register_agents(app: faust.App, ctx: WorkerContext, topics: Topics,
                    tables: Tables) -> Agents:
    """The five stream agents, the model-version watcher and its fallback timer (which also
    starts and ends an A/B test's version arms)."""
    swapper = ModelSwapper(ctx, tables.user_state)
    agents = Agents(ctx, swapper, topics, tables,
                    producer_partitioner(app, topics.interactions_by_song.get_topic_name()),
                    producer_partitioner(app, topics.candidates_proposed.get_topic_name()))
    interaction = decoder_for(InteractionEvent)
    batch_agent(app, ctx, topics, topics.songs, "songs", decoder_for(SongEvent),
                agents.on_songs, window_s=ctx.settings.songs_batch_window_s,
                max_events=ctx.settings.songs_batch_max, gated=False)  # gates its own part
    batch_agent(app, ctx, topics, topics.interactions, "interactions", interaction,
                agents.on_interactions)
    batch_agent(app, ctx, topics, topics.interactions_by_song, "engagement", decode_forwards,
                agents.on_engagements, carried=len)
    batch_agent(app, ctx, topics, topics.user_refresh, "user_refresh", decode_refresh,
                agents.on_refresh)
    batch_agent(app, ctx, topics, topics.candidates_proposed, "delivery",
                decode_proposals, agents.on_proposals,
                window_s=ctx.settings.delivery_window_s, gated=False)

    async def watch_model_versions() -> None:
        await watch_announcements(swapper, topics.model_versions.get_topic_name())

    async def follow_current_pointer() -> None:
        await follow_experiment(swapper)  # first: an ended test's promotion is a swap
        await follow_current(swapper)

    app.task(watch_model_versions)
    app.timer(15.0)(follow_current_pointer)
    return agents
