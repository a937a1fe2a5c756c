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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from encoders.artifacts import ArtifactError, Registry
from encoders.runtime import LoadedModel, load_model

from . import pipeline
from .audio import load_audio, resolve_audio_path
from .errors import ModelArtifactError, StoreError
from .events import CandidateEvent, SongEvent
from .metrics import Metrics
from .pipeline import Collections, PipelineConfig, SongVectorCache
from .settings import Settings
from .stores import VectorStore

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class SongResult:
    candidates: list[CandidateEvent]
    stage_seconds: dict[str, float] = field(default_factory=dict)


class WorkerContext:
    def __init__(self, settings: Settings, store: VectorStore, metrics: Metrics) -> None:
        self.settings = settings
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

    # --- model ---------------------------------------------------------------------------
    def load(self, version: str) -> LoadedModel:
        try:
            model = load_model(self.registry, version, self.settings.onnx_threads)
        except ArtifactError as exc:
            raise ModelArtifactError(str(exc)) from None
        self.model = model
        self.cols = pipeline.ensure_collections(self.store, model)
        self.cache.clear()
        self.metrics.model.info({"version": model.version})
        log.info("serving model %s (dim %d)", model.version, model.manifest.dim)
        return model

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
    def process_song(self, song: SongEvent, engagers: list[list[Any]]) -> SongResult:
        assert self.model is not None and self.cols is not None
        s, m, times = self.settings, self.metrics, {}
        wave: np.ndarray | None = None
        t = time.perf_counter()
        if song.audio_uri:
            with m.stage("audio"):
                path = resolve_audio_path(song.audio_uri, s.audio_roots, s.audio_schemes)
                wave = load_audio(path, self.model.songs.sample_rate, s.audio_max_bytes,
                                  s.audio_max_seconds)
        times["audio"] = time.perf_counter() - t
        t = time.perf_counter()
        with m.stage("encode"):
            vector = self.model.songs.encode([pipeline.song_input(song, wave)])[0]
        times["encode"] = time.perf_counter() - t
        t = time.perf_counter()
        with m.stage("upsert"):
            pipeline.upsert_song(self.store, self.cols, song, vector, self.model.version,
                                 wave is not None, engagers)
        times["upsert"] = time.perf_counter() - t
        t = time.perf_counter()
        with m.stage("search"):
            cands = pipeline.candidates_for_song(self.store, self.cols, song, vector,
                                                 self.model.version, self.cfg, m)
        times["search"] = time.perf_counter() - t
        return SongResult(cands, times)

    def song_known(self, song_id: str) -> bool:
        assert self.cols is not None
        return pipeline.song_known(self.store, self.cols, self.cache, song_id)

    def update_user(self, user_id: str, state: dict[str, Any]) -> float:
        assert self.model is not None and self.cols is not None
        with self.metrics.stage("user_update"):
            _vec, boundary = pipeline.user_update(self.store, self.cols, self.model, self.cache,
                                                  user_id, state)
        self.metrics.users_updated.inc()
        return boundary

    def write_engagers(self, song_id: str, engagers: list[list[Any]]) -> None:
        assert self.cols is not None
        pipeline.write_engagers(self.store, self.cols, song_id, engagers)

    def close(self, attempts: int = 8) -> None:
        """Drain the work thread, then flush the store (bounded retries: shutdown must end)."""
        self.pool.shutdown(wait=True)
        delay = 0.1
        for attempt in range(attempts):
            try:
                self.store.flush()
                break
            except StoreError as exc:
                if attempt == attempts - 1:
                    log.error("vector store flush failed at shutdown: %s", exc)
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        self.store.close()
