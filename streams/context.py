"""The worker's context: settings, store, metrics and the model version being served.

Its one job is the served models' lifecycle: open and warm a version, make it serve, hand out
:class:`~streams.pipeline.Serving` snapshots to the steps, and shut down cleanly. Besides the
current version, an A/B test's version arms (``streams.arms``) serve from their own
collections: :meth:`WorkerContext.servings` pairs each served version with the arms it serves.
Blocking work runs in :class:`~streams.executor.RetryingExecutor`; switching versions is
:mod:`streams.swap`'s job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from encoders.artifacts import ArtifactError, Registry
from encoders.backbone import BackboneCache
from encoders.runtime import LoadedModel, SongInput, load_model

from . import pipeline
from .arms import format_arms, parse_arms, versions_of
from .errors import ColdstreamError, ModelArtifactError
from .executor import RetryingExecutor, retry_store
from .foreground import Foreground
from .gate import Gate
from .metrics import Metrics
from .pipeline import Collections, PipelineConfig, Serving, SongVectorCache
from .settings import Settings
from .stores import VectorStore

log = logging.getLogger(__name__)
T = TypeVar("T")


def pipeline_config(settings: Settings, registry: Registry | None = None) -> PipelineConfig:
    """The pipeline's knobs. A bad A/B spec, or one naming a version the registry lacks, stops
    the worker here; an experiment ended in the registry (``coldstream ab end``) runs no arms."""
    try:
        arms = parse_arms(settings.ab_arms)
    except ValueError as exc:
        raise ColdstreamError(f"COLDSTREAM_AB_ARMS: {exc}") from None
    if registry is not None and arms:
        if format_arms(arms) in registry.ended_experiments():
            log.info("A/B experiment %s has ended: serving one version", format_arms(arms))
            arms = ()
        missing = [v for v in versions_of(arms) if v not in registry.versions()]
        if missing:
            raise ColdstreamError(f"COLDSTREAM_AB_ARMS: versions {missing} are not in the "
                                  f"registry {registry.root}")
    return PipelineConfig(
        arms=arms, ab_salt=settings.ab_salt,
        similar_songs_k=settings.similar_songs_k, u2i_users_k=settings.u2i_users_k,
        max_candidates_per_song=settings.max_candidates_per_song,
        recent_items_per_user=settings.recent_items_per_user,
        engagers_per_song=settings.engagers_per_song,
        similarity_margin=settings.i2i2u_similarity_margin,
        min_similarity=settings.i2i2u_min_similarity,
        u2i_min_margin=settings.u2i_min_margin,
        boundary_gates_i2i2u=settings.boundary_gates_i2i2u)


def backbone_folder(settings: Settings) -> Path | None:
    """Where the frozen-backbone rows persist. Audio rows are keyed by the file's digest, so
    a decode limit that changes what is read gets a folder of its own."""
    if not settings.backbone_cache_persist:
        return None
    return settings.data_dir / "backbones" / f"audio-max-{settings.audio_max_seconds:g}s"


class WorkerContext:
    def __init__(self, settings: Settings, store: VectorStore, metrics: Metrics) -> None:
        self.settings = settings
        self.bootstrap = settings.kafka_bootstrap or ""  # the worker sets the embedded one
        self.store = store
        self.metrics = metrics
        self.registry = Registry(settings.models_path)
        self.cache = SongVectorCache()
        #: Frozen-backbone outputs shared by every version this worker opens (a swap then
        #: runs only the trainable heads for songs it has embedded before).
        self.backbones = (BackboneCache(settings.backbone_cache_rows, backbone_folder(settings))
                          if settings.backbone_cache_rows else None)
        self.cfg = pipeline_config(settings, self.registry)
        self.model: LoadedModel | None = None
        self.cols: Collections | None = None
        #: Version arms' models beside the current one, by version (built by streams.swap).
        self.arm_servings: dict[str, Serving] = {}
        self.retry_max_delay_s = 5.0
        self.work = RetryingExecutor(self.retry_max_delay_s)
        #: A second thread for building a new model version while this one serves.
        self.swap_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="coldstream-swap")
        #: Decodes new songs' audio before their handler takes the gate (soxr and libsndfile
        #: release the GIL, so this overlaps the work thread).
        self.audio_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="coldstream-audio")
        #: Held by every event handler; a model switch takes it to run with no event in flight.
        #: Each handler's wait for it is exported (streams/gate.py).
        self.gate = Gate(fair=not settings.songs_first, on_wait=lambda holder, s:
                         metrics.gate_wait_seconds.labels(holder=holder).observe(s))
        #: Event work in flight (work and audio thread calls, a new song's handling); a model
        #: swap's store calls give way to it.
        self.foreground = Foreground(settings.swap_give_way_ms / 1e3,
                                     metrics.model_swap_gave_way_seconds.inc,
                                     settings.swap_switch_interval_ms / 1e3 or None)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in the work thread; retry vector-store failures until they succeed."""
        with self.foreground.active():
            return await self.work.run(fn, *args)

    async def read_audio(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in the audio thread (no store calls there, so nothing to retry)."""
        with self.foreground.active():
            return await asyncio.get_running_loop().run_in_executor(self.audio_pool, fn, *args)

    def serving(self) -> Serving:
        assert self.model is not None and self.cols is not None, "no model loaded"
        return Serving(self.store, self.model, self.cols, self.cache)

    def servings(self) -> list[tuple[Serving, frozenset[str] | None]]:
        """Each version serving now, with the names of the arms it serves (None: every user).

        The current version serves arms without a version (or with its own); another
        version's arms are served by its own models once built, and until then not at all:
        their users never get a candidate from another vector space.
        """
        primary = self.serving()
        if not versions_of(self.cfg.arms):
            return [(primary, None)]
        served: dict[str, tuple[Serving, set[str]]] = {primary.model.version: (primary, set())}
        for arm in self.cfg.arms:
            version = arm.version or primary.model.version
            if version not in served and version in self.arm_servings:
                served[version] = (self.arm_servings[version], set())
            if version in served:
                served[version][1].add(arm.name)
        return [(sv, frozenset(names)) for sv, names in served.values()]

    def pending_arm_versions(self) -> list[str]:
        """Versions the arms name that serve neither as current nor beside it yet."""
        current = self.model.version if self.model else None
        return [v for v in versions_of(self.cfg.arms)
                if v != current and v not in self.arm_servings]

    def experiment_key(self) -> str:
        return format_arms(self.cfg.arms)

    def end_experiment(self) -> None:
        """No arms from now on: the current version serves every user (the event loop calls
        this under the gate)."""
        log.info("A/B experiment %s ended: serving %s to every user", self.experiment_key(),
                 self.model.version if self.model else None)
        self.cfg = replace(self.cfg, arms=())
        for version in self.arm_servings:
            self.metrics.ab_version_serving.labels(version=version).set(0)
        self.arm_servings.clear()

    # --- model lifecycle -------------------------------------------------------------------
    def open_model(self, version: str) -> LoadedModel:
        try:
            model = load_model(self.registry, version, self.settings.onnx_threads,
                               self.backbones)
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

    def serve_arm(self, model: LoadedModel, cols: Collections) -> None:
        """Serve ``model`` to its A/B arms beside the current version (own cache, own space)."""
        self.arm_servings[model.version] = Serving(self.store, model, cols, SongVectorCache())
        self.metrics.ab_version_serving.labels(version=model.version).set(1)
        log.info("serving model %s to its A/B arms (dim %d)", model.version,
                 model.manifest.dim)

    def close(self, attempts: int = 8) -> None:
        """Drain the work thread, then flush the store (bounded retries: shutdown must end)."""
        self.swap_pool.shutdown(wait=False, cancel_futures=True)
        self.audio_pool.shutdown(wait=False, cancel_futures=True)
        self.work.shutdown()
        if self.backbones is not None:
            self.backbones.close()
        retry_store(self.store.flush, attempts=attempts, max_delay=2.0, what="shutdown flush")
        self.store.close()
