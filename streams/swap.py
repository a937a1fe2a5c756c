"""Adopting a new model version without downtime and without mixing vector spaces.

The old version keeps serving while the catalogue is re-embedded into the new version's own
collections in a background thread; users are recomputed from their table state with the new
song vectors. A short exclusive step then reconciles what changed meanwhile (new songs, new
listeners, users who interacted) and switches. Every candidate records the version that made it.

:class:`ModelSwapper` owns that orchestration and its state; :func:`watch_announcements` and
:func:`follow_current` decide when to call it (the agents only schedule them). An A/B test's
version arms are built the same way and then serve beside the current version instead of
replacing it (:func:`follow_experiment`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any

from encoders.runtime import LoadedModel, SongInput

from . import pipeline
from .audio import load_song_audio
from .broker import client_config
from .client import consume
from .context import WorkerContext
from .dlq import error_kind
from .errors import EventError, ModelArtifactError
from .events import ModelVersionEvent, decode
from .gate import Priority
from .ids import song_point_id
from .pipeline import Collections, SongVectorCache
from .settings import Settings
from .state_format import read_user_state
from .stores import Hit, Point, VectorStore, chunks, scroll_all
from .stores.yielding import YieldingStore

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Steps (run in the swap thread, or exclusively in the work thread)
# ---------------------------------------------------------------------------------------------


def song_input_from_payload(payload: Mapping[str, Any], model: LoadedModel,
                            settings: Settings) -> SongInput:
    """Rebuild a song's model inputs from what the store kept of its event.

    When the payload names the audio file's digest and ``model``'s audio tower has its output
    cached (a version that kept the tower), the file is not read at all.
    """
    uri = payload.get("audio_uri")
    if not uri:
        return pipeline.song_input(payload, None)
    known = digest_of(payload)
    if known and model.songs.audio.cached(known):
        return pipeline.song_input(payload, None, known)
    try:
        clip = load_song_audio(uri, model.songs.sample_rate, settings)
    except EventError as exc:  # the file moved since upload: keep the song, text only
        log.warning("re-embedding %s without audio: %s", payload.get("song_id"), exc)
        clip = None
    return pipeline.song_input(payload, clip)


def digest_of(payload: Mapping[str, Any]) -> bytes | None:
    """The audio file digest a point kept (None: not kept, or not a digest)."""
    try:
        return bytes.fromhex(payload.get("audio_digest") or "") or None
    except (TypeError, ValueError):
        return None


def reembed(store: VectorStore, songs: Iterable[Hit], dst: Collections, model: LoadedModel,
            settings: Settings, batch: int = 32) -> int:
    """Encode songs (points of another version) with ``model`` into ``dst``; same ids.
    ``songs`` is read a page at a time (a 1M-song scroll is never held whole)."""
    done = 0
    for page in chunks(songs, batch):
        inputs = [song_input_from_payload(h.payload, model, settings) for h in page]
        vectors = model.songs.encode(inputs)
        store.upsert(dst.songs, [
            Point(h.id, v, reembedded_payload(h.payload, model, song))
            for h, v, song in zip(page, vectors, inputs, strict=True)])
        done += len(page)
    return done


def reembedded_payload(payload: Mapping[str, Any], model: LoadedModel,
                       song: SongInput) -> dict[str, Any]:
    """The payload in the new version: its name, and whether (and which) audio it used now."""
    out = {**payload, "model_version": model.version, "has_audio": int(song.has_audio)}
    out.pop("audio_digest", None)
    if song.audio_key is not None:
        out["audio_digest"] = song.audio_key.hex()
    return out


def reembed_catalogue(store: VectorStore, src: Collections, dst: Collections,
                      model: LoadedModel, settings: Settings) -> int:
    return reembed(store, scroll_all(store, src.songs), dst, model, settings)


def recompute_users(store: VectorStore, dst: Collections, model: LoadedModel,
                    states: Mapping[str, dict[str, Any]]) -> int:
    cache = SongVectorCache()
    items = list(states.items())
    for i in range(0, len(items), 256):
        pipeline.users_update(store, dst, model, cache, dict(items[i:i + 256]))
    return len(states)


async def recompute_all_users(users: Mapping[str, Any], store: VectorStore, dst: Collections,
                              model: LoadedModel, in_thread: Callable[..., Awaitable[int]],
                              chunk: int = 1024, only: Iterable[str] | None = None) -> int:
    """Every local user (or those in ``only``) in the new version's space, ``chunk`` users at
    a time.

    A chunk's states are read on the event loop (the table is not thread-safe; ~20 us a user,
    so 1M users read at once would hold the loop ~20 s), then recomputed in the swap thread.
    Users written meanwhile are noted and recomputed again at the switch.
    """
    done = 0
    for ids in chunks(list(users.keys() if only is None else only), chunk):
        done += await in_thread(recompute_users, store, dst, model, user_states(users, ids))
    return done


def user_states(users: Mapping[str, Any], ids: Iterable[str]) -> dict[str, Any]:
    """These users' table state (those still in the table), in the current plain form
    (streams.state_format). Event loop only: the table is not thread-safe."""
    return {k: read_user_state(users[k]) for k in ids if k in users}


#: Payload fields a song's vector is computed from: a song re-sent with other values during a
#: swap is re-embedded, not only given its new listeners.
CONTENT_FIELDS = ("title", "artist", "tags", "description", "audio_uri", "released_at")


def reconcile(store: VectorStore, src: Collections, dst: Collections, model: LoadedModel,
              settings: Settings, song_ids: Iterable[str] | None = None) -> tuple[int, int]:
    """Bring ``dst`` up to date with what ``src`` received during the bulk pass: every song,
    or only ``song_ids`` (those the agents noted since the swap began).

    Returns (songs re-embedded: new or re-sent, songs whose listeners changed). The full
    form scans both collections and runs in the swap thread while the old version serves;
    the exclusive step at the switch passes the noted ids, so its pause does not grow with
    the catalogue.
    """
    if song_ids is None:
        try:
            pairs = paired_by_id(scroll_all(store, src.songs), scroll_all(store, dst.songs))
            return catch_up_pairs(store, pairs, dst, model, settings)
        except UnorderedScroll as exc:  # not Qdrant's order: pair in memory (idempotent redo)
            log.warning("reconciling in memory: %s", exc)
            pairs = paired_in_memory(scroll_all(store, src.songs), scroll_all(store, dst.songs))
            return catch_up_pairs(store, pairs, dst, model, settings)
    pids = sorted({song_point_id(s) for s in song_ids})
    pairs = paired_in_memory(store.retrieve(src.songs, pids, with_vector=False),
                             store.retrieve(dst.songs, pids, with_vector=False))
    return catch_up_pairs(store, pairs, dst, model, settings)


def catch_up_pairs(store: VectorStore, pairs: Iterable[tuple[Hit, Hit | None]],
                   dst: Collections, model: LoadedModel, settings: Settings) -> tuple[int, int]:
    """For each (old point, its new point or None): re-embed it if new or re-sent, else copy
    its listeners if they changed."""
    stale: list[Hit] = []
    changed = 0
    for h, now in pairs:
        if now is None or any(now.payload.get(k) != h.payload.get(k) for k in CONTENT_FIELDS):
            stale.append(h)
        elif now.payload.get("engagers") != h.payload.get("engagers"):
            store.set_payload(dst.songs, h.id, {"engagers": h.payload.get("engagers", []),
                                                "is_cold": h.payload.get("is_cold", 1)})
            changed += 1
    return (reembed(store, stale, dst, model, settings) if stale else 0), changed


class UnorderedScroll(ValueError):
    """A scroll that did not come in id order (every Qdrant backend's does)."""


def paired_by_id(old: Iterable[Hit], new: Iterable[Hit]) -> Iterator[tuple[Hit, Hit | None]]:
    """Each point of ``old`` with the point of ``new`` that has its id (None: none), from two
    scrolls in id order: a merge join, so neither catalogue is held in memory (at 1M songs
    the two were ~2M payloads). Raises :class:`UnorderedScroll` when either is out of order."""
    news = in_id_order(new, "new")
    pending = next(news, None)
    for h in in_id_order(old, "source"):
        while pending is not None and pending.id < h.id:  # only in dst: nothing to catch up
            pending = next(news, None)
        yield h, (pending if pending is not None and pending.id == h.id else None)


def paired_in_memory(old: Iterable[Hit], new: Iterable[Hit]
                     ) -> Iterator[tuple[Hit, Hit | None]]:
    """:func:`paired_by_id` for points in any order: ``new`` is held in a dictionary."""
    by_id = {h.id: h for h in new}
    return ((h, by_id.get(h.id)) for h in old)


def in_id_order(points: Iterable[Hit], what: str) -> Iterator[Hit]:
    last: str | None = None
    for point in points:
        if last is not None and point.id <= last:
            raise UnorderedScroll(f"{what} point {point.id} came after {last}")
        last = point.id
        yield point


# ---------------------------------------------------------------------------------------------
# Orchestration (event loop)
# ---------------------------------------------------------------------------------------------


class ModelSwapper:
    """Builds a new version while the current one serves, then switches under the gate.

    ``users`` is the user-state table (read on the event loop only). Users whose state changes
    while a swap runs are noted by :meth:`note_updated` and recomputed at the switch.
    """

    def __init__(self, ctx: WorkerContext, users: Mapping[str, Any]) -> None:
        self.ctx = ctx
        self.users = users
        self.swapping: str | None = None
        self.refused: set[str] = set()
        self.touched: set[str] = set()
        self.touched_songs: set[str] = set()
        #: The store as the swap thread uses it: each call first gives way to event work.
        self.store = YieldingStore(ctx.store, ctx.foreground)

    def note_updated(self, user_ids: Iterable[str]) -> None:
        if self.swapping:
            self.touched.update(user_ids)

    def note_songs(self, song_ids: Iterable[str]) -> None:
        """Songs written (indexed, re-sent, new listeners) while a swap runs: the exclusive
        step at the switch reconciles exactly these."""
        if self.swapping:
            self.touched_songs.update(song_ids)

    def needs(self, version: str | None) -> bool:
        """Whether ``version`` should replace the one serving now."""
        model = self.ctx.model
        return bool(version and model and version != model.version)

    async def adopt(self, version: str, why: str) -> None:
        pinned = self.ctx.settings.model_version
        if pinned:
            log.info("model %s announced (%s) but this worker is pinned to %s", version, why,
                     pinned)
            return
        if version in self.refused or self.swapping:
            return
        log.info("adopting model %s (%s)", version, why)
        await self.swap_to(version)

    async def swap_to(self, version: str, as_arm: bool = False) -> str:
        """Returns "ok", "refused" (broken artifact: the old version keeps serving), "failed"
        or "skipped". ``as_arm``: build ``version`` the same way, then serve it beside the
        current one to its A/B arms (:meth:`WorkerContext.serve_arm`) instead of switching."""
        ctx, m = self.ctx, self.ctx.metrics
        if self.swapping or (ctx.model and version == ctx.model.version):
            return "skipped"
        self.swapping, started = version, time.perf_counter()
        m.model_swap_in_progress.set(1)
        try:
            with ctx.foreground.background():
                result = await self._build_and_switch(version, as_arm)
            m.model_swaps.labels(result=result).inc()
            if result == "ok":
                m.model_swap_seconds.observe(time.perf_counter() - started)
            return result
        except Exception:
            log.exception("model swap to %s failed; still serving the old version", version)
            m.model_swaps.labels(result="failed").inc()
            return "failed"
        finally:
            self.swapping = None
            m.model_swap_in_progress.set(0)

    async def _build_and_switch(self, version: str, as_arm: bool = False) -> str:
        ctx = self.ctx
        loop = asyncio.get_running_loop()

        def in_swap_thread(fn: Any, *args: Any) -> Any:
            return loop.run_in_executor(ctx.swap_pool, fn, *args)

        try:
            model = await in_swap_thread(ctx.open_model, version)
        except ModelArtifactError as exc:
            log.error("refusing model %s, still serving %s: %s", version,
                      ctx.model.version if ctx.model else None, exc)
            self.refused.add(version)
            return "refused"
        assert ctx.cols is not None
        src = ctx.cols
        dst = await in_swap_thread(pipeline.ensure_collections, self.store, model)
        self.touched.clear()
        self.touched_songs.clear()
        n = await in_swap_thread(reembed_catalogue, self.store, src, dst, model, ctx.settings)
        u = await recompute_all_users(self.users, self.store, dst, model, in_swap_thread)
        # a full catch-up while the old version still serves (belt and braces: anything an
        # agent wrote without noting it is caught here); the switch then redoes only what the
        # agents noted
        caught = await in_swap_thread(reconcile, self.store, src, dst, model, ctx.settings)
        log.info("model %s: %d songs and %d users re-embedded, %d + %d caught up", version, n,
                 u, *caught)
        await self.catch_up(src, dst, model, in_swap_thread)
        async with ctx.gate.held("model_switch", Priority.SWITCH):  # no event mid-flight
            touched = user_states(self.users, set(self.touched))
            songs = set(self.touched_songs)
            started = time.perf_counter()
            await ctx.run(self._finish, model, src, dst, touched, songs, as_arm)
            ctx.metrics.model_swap_pause_seconds.observe(time.perf_counter() - started)
        return "ok"

    async def catch_up(self, src: Collections, dst: Collections, model: LoadedModel,
                       in_swap_thread: Callable[..., Awaitable[Any]], rounds: int = 3,
                       few: int = 256) -> None:
        """Redo the songs and users written during the swap while the old version still
        serves, a round at a time, until few are left for the exclusive step (under load
        thousands are written during a bulk pass of a minute)."""
        for _ in range(rounds):
            songs, users = set(self.touched_songs), set(self.touched)
            if len(songs) + len(users) <= few:
                return
            self.touched_songs.clear()
            self.touched.clear()
            await in_swap_thread(reconcile, self.store, src, dst, model, self.ctx.settings,
                                 songs)
            await recompute_all_users(self.users, self.store, dst, model, in_swap_thread,
                                      only=users)
            log.info("model %s: caught up %d songs and %d users written meanwhile",
                     model.version, len(songs), len(users))

    def _finish(self, model: LoadedModel, src: Collections, dst: Collections,
                touched: dict[str, Any], songs: set[str], as_arm: bool = False) -> None:
        """Exclusive (work thread): catch up with the songs and users written meanwhile, then
        switch (or serve beside the current version, for its A/B arms)."""
        ctx = self.ctx
        added, changed = reconcile(ctx.store, src, dst, model, ctx.settings, songs)
        recompute_users(ctx.store, dst, model, touched)
        (ctx.serve_arm if as_arm else ctx.serve)(model, dst)
        log.info("%s %s (caught up %d songs, %d listener lists, %d users)",
                 "serving A/B arms from" if as_arm else "switched to", model.version, added,
                 changed, len(touched))


async def watch_announcements(swapper: ModelSwapper, topic: str) -> None:
    """Every worker (not one per group) hears model.versions: a plain consumer."""
    ctx = swapper.ctx
    s = ctx.settings
    async for rec in consume(ctx.bootstrap, topic, from_beginning=False, **client_config(s)):
        try:
            announced = decode(rec.value, ModelVersionEvent, max_bytes=s.max_event_bytes)
        except EventError as exc:
            log.warning("bad model.versions event at offset %d: %s", rec.offset, exc)
            ctx.metrics.dlq.labels(topic=rec.topic, kind=error_kind(exc)).inc()
            continue
        # The registry's CURRENT pointer decides (promote/rollback move it); the event
        # only says "look now", so a stale or unpromoted announcement cannot flip-flop.
        current = ctx.registry.current()
        if current != announced.version:
            log.warning("model.versions announced %s but CURRENT is %s: following CURRENT",
                        announced.version, current)
        if current and swapper.needs(current):
            asyncio.ensure_future(swapper.adopt(current, "model.versions event"))


async def follow_current(swapper: ModelSwapper) -> None:
    """Fallback for a missed event: the registry's CURRENT pointer is the truth."""
    registry = swapper.ctx.registry
    current = await asyncio.get_running_loop().run_in_executor(None, registry.current)
    if current and swapper.needs(current):
        await swapper.adopt(current, "CURRENT pointer")


async def follow_experiment(swapper: ModelSwapper) -> None:
    """An A/B test's version arms: stop them once the registry says the test ended
    (``coldstream ab end``), else build each arm's version not serving yet, one at a time."""
    ctx = swapper.ctx
    if not ctx.cfg.arms:
        return
    ended = await asyncio.get_running_loop().run_in_executor(
        None, ctx.registry.ended_experiments)
    if ctx.experiment_key() in ended:
        async with ctx.gate.held("model_switch", Priority.SWITCH):  # none mid-flight
            ctx.end_experiment()
        return
    for version in ctx.pending_arm_versions():
        if version in swapper.refused:
            continue
        log.info("building model %s for its A/B arms", version)
        await swapper.swap_to(version, as_arm=True)
