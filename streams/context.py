"""The worker's context: settings, store, model, collections and the blocking-work executor.

Agents hand every blocking call (ONNX, vector store) to one background thread via
:meth:`WorkerContext.run`, so the event loop keeps heart-beating the consumer group. Store
failures are retried with capped exponential backoff and the event is not acknowledged until
its effects are written: an outage delays events, it never loses them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from encoders.artifacts import ArtifactError, Registry
from encoders.runtime import LoadedModel, SongInput, load_model

from . import pipeline, swap
from .audio import load_audio, resolve_audio_path
from .errors import ModelArtifactError, StoreError
from .events import CandidateEvent, SongEvent
from .metrics import Metrics
from .pipeline import Collections, PipelineConfig, SongVectorCache
from .settings import Settings
from .stores import VectorStore

log = logging.getLogger(__name__)
T = TypeVar("T")


def retry_store(fn: Callable[[], T], attempts: int, max_delay: float, what: str) -> T:
    """Blocking retry with capped backoff for store calls outside the event stream."""
    delay = 0.1
    for attempt in range(attempts):
        try:
            return fn()
        except StoreError as exc:
            if attempt == attempts - 1:
                log.error("vector store failed at %s, giving up: %s", what, exc)
                raise
            log.warning("vector store failed at %s (%s); retrying in %.1fs", what, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, max_delay)
    raise AssertionError("unreachable")


class WorkerContext:
    def __init__(self, settings: Settings, store: VectorStore, metrics: Metrics) -> None:
        self.settings = settings
        self.bootstrap = settings.kafka_bootstrap or ""  # the worker sets the embedded one
        self.store = store
        self.metrics = metrics
        self.registry = Registry(settings.models_path)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="coldstream-work")
        self.cache = SongVectorCache()
        self.cfg = PipelineConfig(
            similar_songs_k=settings.similar_songs_k, u2i_users_k=settings.u2i_users_k,
            max_candidates_per_song=settings.max_candidates_per_song,
            recent_items_per_user=settings.recent_items_per_user,
            engagers_per_song=settings.engagers_per_song,
            similarity_margin=settings.i2i2u_similarity_margin,
            min_similarity=settings.i2i2u_min_similarity)
        self.model: LoadedModel | None = None
        self.cols: Collections | None = None
        self.retry_max_delay_s = 5.0
        self.swap_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="coldstream-swap")
        self.swapping: str | None = None
        self.touched_users: set[str] = set()
        self.refused_versions: set[str] = set()
        #: Held by every event handler; a model switch takes it to run with no event in flight.
        self.gate = asyncio.Lock()

    # --- model ---------------------------------------------------------------------------
    def open_model(self, version: str) -> LoadedModel:
        try:
            model = load_model(self.registry, version, self.settings.onnx_threads)
        except ArtifactError as exc:
            raise ModelArtifactError(str(exc)) from None
        try:
            self.warm_up(model)
        except Exception as exc:  # a graph that loads but cannot run is a broken artifact
            raise ModelArtifactError(f"model {version} fails on a test input: {exc}") from None
        return model

    def load(self, version: str) -> LoadedModel:
        """Start-up: open the model and its collections (the store may still be starting)."""
        model = self.open_model(version)
        retry_store(lambda: self.serve(model, pipeline.ensure_collections(self.store, model)),
                    attempts=30, max_delay=self.retry_max_delay_s, what="start-up")
        return model

    def warm_up(self, model: LoadedModel) -> None:
        """One dummy song through every graph and the resampler, so the first real song does
        not pay lazy imports and ONNX's first-run allocations (measured: ~2.5 s)."""
        from encoders.features import resample

        sr = model.songs.sample_rate
        wave = resample(np.zeros(44_100, dtype=np.float32), 44_100, sr)
        model.songs.encode([SongInput("warm up", wave), SongInput("x")])

    def serve(self, model: LoadedModel, cols: Collections) -> None:
        self.model, self.cols = model, cols
        self.cache.clear()
        self.store.set_alias("songs", cols.songs)
        self.store.set_alias("users", cols.users)
        self.metrics.model.info({"version": model.version})
        log.info("serving model %s (dim %d)", model.version, model.manifest.dim)

    async def swap_to(self, version: str,
                      user_states: Callable[[Iterable[str] | None], dict[str, Any]]) -> str:
        """Build ``version``'s collections while the current one serves, then switch.

        ``user_states(None)`` snapshots every local user's table state; ``user_states(ids)``
        those users only (called on the event loop, where the table lives). Returns "ok",
        "refused" (broken artifact: the old version keeps serving) or "skipped".
        """
        if self.swapping or (self.model and version == self.model.version):
            return "skipped"
        loop = asyncio.get_running_loop()
        m = self.metrics
        self.swapping, started = version, time.perf_counter()
        m.model_swap_in_progress.set(1)
        try:
            try:
                model = await loop.run_in_executor(self.swap_pool, self.open_model, version)
            except ModelArtifactError as exc:
                log.error("refusing model %s, still serving %s: %s", version,
                          self.model.version if self.model else None, exc)
                self.refused_versions.add(version)
                m.model_swaps.labels(result="refused").inc()
                return "refused"
            assert self.cols is not None
            src = self.cols
            dst = await loop.run_in_executor(self.swap_pool, pipeline.ensure_collections,
                                             self.store, model)
            self.touched_users.clear()
            n = await loop.run_in_executor(self.swap_pool, swap.reembed_catalogue, self.store,
                                           src, dst, model, self.settings)
            states = user_states(None)
            u = await loop.run_in_executor(self.swap_pool, swap.recompute_users, self.store,
                                           dst, model, states)
            log.info("model %s: %d songs and %d users re-embedded; reconciling", version, n, u)
            async with self.gate:  # no event is mid-flight: table writes are all done
                touched = user_states(set(self.touched_users))
                await self.run(self._finish_swap, model, src, dst, touched)
            m.model_swaps.labels(result="ok").inc()
            m.model_swap_seconds.observe(time.perf_counter() - started)
            return "ok"
        except Exception:
            log.exception("model swap to %s failed; still serving the old version", version)
            m.model_swaps.labels(result="failed").inc()
            return "failed"
        finally:
            self.swapping = None
            m.model_swap_in_progress.set(0)

    def _finish_swap(self, model: LoadedModel, src: Collections, dst: Collections,
                     touched: dict[str, Any]) -> None:
        """Exclusive (work thread): catch up with what happened meanwhile, then switch."""
        added, changed = swap.reconcile(self.store, src, dst, model, self.settings)
        swap.recompute_users(self.store, dst, model, touched)
        self.serve(model, dst)
        log.info("switched to %s (caught up %d songs, %d listener lists, %d users)",
                 model.version, added, changed, len(touched))

    # --- blocking work, off the event loop ------------------------------------------------
    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in the work thread; retry vector-store failures until they succeed."""
        loop = asyncio.get_running_loop()
        delay = 0.1
        while True:
            try:
                return await loop.run_in_executor(self.pool, fn, *args)
            except StoreError as exc:
                log.warning("vector store failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_delay_s)

    # --- steps (run in the work thread) -----------------------------------------------------
    def process_song(self, song: SongEvent,
                     engagers: list[list[Any]]) -> list[CandidateEvent]:
        """Audio -> vector -> upsert -> candidates; each stage timed by its histogram."""
        assert self.model is not None and self.cols is not None
        s, m = self.settings, self.metrics
        wave: np.ndarray | None = None
        if song.audio_uri:
            with m.stage("audio"):
                path = resolve_audio_path(song.audio_uri, s.audio_roots, s.audio_schemes)
                wave = load_audio(path, self.model.songs.sample_rate, s.audio_max_bytes,
                                  s.audio_max_seconds, s.audio_max_decode_s)
        with m.stage("encode"):
            vector = self.model.songs.encode([pipeline.song_input(song, wave)])[0]
        with m.stage("upsert"):
            pipeline.upsert_song(self.store, self.cols, song, vector, self.model.version,
                                 wave is not None, engagers)
        with m.stage("search"):
            return pipeline.candidates_for_song(self.store, self.cols, song, vector,
                                                self.model.version, self.cfg, m)

    def update_users(self, states: dict[str, dict[str, Any]]) -> dict[str, float]:
        assert self.model is not None and self.cols is not None
        if self.swapping:
            self.touched_users.update(states)
        with self.metrics.stage("user_update"):
            boundaries = pipeline.users_update(self.store, self.cols, self.model, self.cache,
                                               states)
        self.metrics.users_updated.inc(len(states))
        return boundaries

    def write_engagers(self, by_song: dict[str, list[list[Any]]]) -> None:
        """Listener lists of several songs; songs not indexed yet get theirs on arrival."""
        assert self.cols is not None
        known = self.cache.get_many(self.store, self.cols.songs, list(by_song))
        for song_id, engagers in by_song.items():
            if song_id in known:
                pipeline.write_engagers(self.store, self.cols, song_id, engagers)

    def close(self, attempts: int = 8) -> None:
        """Drain the work thread, then flush the store (bounded retries: shutdown must end)."""
        self.swap_pool.shutdown(wait=False, cancel_futures=True)
        self.pool.shutdown(wait=True)
        retry_store(self.store.flush, attempts=attempts, max_delay=2.0, what="shutdown flush")
        self.store.close()
