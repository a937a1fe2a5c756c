"""Worker lifecycle: broker (embedded or external) -> topics -> store -> model -> Faust."""

from __future__ import annotations

import asyncio
import logging
import shutil
from contextlib import ExitStack
from pathlib import Path

import faust

from encoders.artifacts import ArtifactError
from encoders.provisional import ensure_model

from . import gc_census
from .app import create_app
from .broker import EmbeddedBroker, changelog_topics, client_config, ensure_topics
from .codecs import disable_codecs
from .context import WorkerContext
from .errors import ModelArtifactError, StoreError
from .flow_sensor import watch_buffers
from .gc_policy import GcFreeze, apply_gc_policy
from .lag import LagMonitor
from .loop_probe import probe_loop
from .metrics import Metrics, serve
from .monotone_tables import MonotoneTable
from .settings import Settings
from .stall_trace import Stall, StallLog, StallTracer
from .stores import EdgeStore, MeteredStore, SegmentedStore, VectorStore, open_store
from .topics import TABLES
from .versions import check_client_versions

log = logging.getLogger(__name__)


def forget_tables_of_a_lost_log(settings: Settings) -> None:
    """A new in-memory embedded broker starts with empty changelogs, so RocksDB tables left by
    an earlier one describe a log that no longer exists: their persisted offsets would exceed
    the new highwaters (Faust's ConsistencyError, a crash loop) or, below them, mix two
    histories. Start them empty, as the in-memory store always does. Durable storage (s3://)
    and external brokers keep their log, and their tables."""
    tables = settings.tables_path
    if (settings.table_store == "rocksdb" and tables.exists()
            and settings.embedded_kafka_storage.startswith("memory://")):
        log.warning("embedded broker with in-memory storage: its changelogs start empty, "
                    "so removing the RocksDB tables of an earlier run in %s", tables)
        shutil.rmtree(tables)


def prepare_topics(settings: Settings, bootstrap: str) -> None:
    if not settings.create_topics:
        return
    topics = settings.all_topics() + changelog_topics(settings, TABLES)
    created = asyncio.run(ensure_topics(bootstrap, topics, settings.partitions,
                                        settings.replication_factor, **client_config(settings)))
    if created:
        log.info("created topics: %s", ", ".join(created))


def start_embedded_broker(settings: Settings, stack: ExitStack) -> str:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    forget_tables_of_a_lost_log(settings)
    broker = EmbeddedBroker(port=settings.embedded_kafka_port,
                            storage=settings.embedded_kafka_storage,
                            log_path=Path(settings.data_dir) / "tansu.log")
    stack.enter_context(broker)
    return broker.bootstrap


class ColdstreamWorker(faust.Worker):
    """Faust's worker plus a readiness signal (log line and ``coldstream_worker_ready``) and,
    once ready (collections loaded, tables restored), the GC policy (streams.gc_policy)."""

    def __init__(self, app: faust.App, metrics: Metrics, gc_freeze: GcFreeze = "off",
                 **kwargs: object) -> None:
        super().__init__(app, **kwargs)
        self.coldstream_metrics = metrics
        self.gc_freeze = gc_freeze

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        done = apply_gc_policy(self.gc_freeze)
        self.coldstream_metrics.gc_frozen.set(done.get("frozen", 0))
        self.coldstream_metrics.ready.set(1)
        log.info("coldstream worker ready")


def watch_event_loop(app: faust.App, metrics: Metrics, trace_ms: float = 0.0) -> None:
    """The event-loop stall probe (streams.loop_probe) and, with ``trace_ms``, the tracer of
    where the loop is when it stalls that long (streams.stall_trace)."""
    def count(stall: Stall) -> None:
        metrics.stall_traced.labels(site=stall.site).inc()
        metrics.stall_traced_seconds.labels(site=stall.site).inc(stall.seconds)

    async def probe_event_loop() -> None:
        threshold = trace_ms / 1e3  # polled 4 times per threshold, at most every 10 ms
        tracer = (StallTracer(StallLog(count), threshold, poll_s=max(0.01, threshold / 4))
                  if trace_ms > 0 else None)
        await probe_loop(metrics, tracer=tracer)

    app.task(probe_event_loop)


def watch_store(backend: VectorStore, metrics: Metrics) -> None:
    """Count the in-worker index's merges and time the embedded store's flushes. Wired as
    soon as the store opens: the first merges start while the collections reload."""
    if isinstance(backend, SegmentedStore):
        backend.on_merge = lambda info: metrics.segment_merges.labels(
            collection=info["collection"]).inc()
    edge = backend.inner if isinstance(backend, SegmentedStore) else backend
    if isinstance(edge, EdgeStore):
        edge.on_flush = lambda _collection, _points, seconds: metrics.store_flush.observe(
            seconds)


def run_worker(settings: Settings, bootstrap: str | None = None) -> None:
    """Run one worker in the foreground until SIGINT/SIGTERM; clean up everything it started.

    Exits non-zero (SystemExit) when the worker crashed, so a supervisor restarts it."""
    untested = check_client_versions(settings.allow_untested_client_versions)
    if untested:
        log.warning("running on untested client versions (allowed by setting): %s", untested)
    if settings.test_without_codecs:
        disable_codecs(settings.test_without_codecs)
    code = 0
    with ExitStack() as stack:
        if bootstrap is None:
            bootstrap = settings.kafka_bootstrap or start_embedded_broker(settings, stack)
        prepare_topics(settings, bootstrap)
        metrics = Metrics()
        metrics.build.info({"version": "0.1.0"})
        backend = open_store(settings)
        watch_store(backend, metrics)
        if settings.test_store_faults:
            from .stores.faults import FaultInjectingStore

            log.warning("TEST HOOK: injecting vector-store faults (%s)", settings.test_store_faults)
            backend = FaultInjectingStore(backend, settings.test_store_faults)
        store = MeteredStore(backend, metrics)
        ctx = WorkerContext(settings, store, metrics)
        ctx.bootstrap = bootstrap
        stack.callback(ctx.close)
        try:
            version = settings.model_version or ensure_model(ctx.registry)
        except ArtifactError as exc:  # e.g. no model and no [train] extra to build one
            raise ModelArtifactError(str(exc)) from None
        ctx.load(version)
        port = serve(metrics, settings.metrics_host, settings.metrics_port)
        if port:
            log.info("metrics on http://%s:%d/metrics", settings.metrics_host, port)
        app = create_app(settings, ctx, bootstrap)
        app.consumer.on_guard = lambda reason: metrics.consumer_guard.labels(reason=reason).inc()
        app.consumer.drop_fetches = settings.test_drop_fetches
        MonotoneTable.on_stale = (
            lambda table, n: metrics.table_stale.labels(table=table).inc(n))
        app.consumer.on_unreadable = metrics.unreadable
        watch_event_loop(app, metrics, settings.stall_trace_ms)
        watch_buffers(app, metrics)
        lag = LagMonitor(bootstrap, settings.app_id, settings.input_topics(), metrics,
                         correct_end_offsets=settings.tansu_compat, **client_config(settings))

        @app.timer(settings.lag_interval_s)
        async def report_lag() -> None:
            try:
                lags = await lag.measure()
            except Exception as exc:  # lag is diagnostics: never let it hurt processing
                log.debug("lag measurement failed: %s", exc)
                return
            app.consumer.behind(lags)  # a partition behind with nothing in flight is re-read

        @app.timer(settings.store_flush_s)
        async def flush_store() -> None:
            # Not in the work thread: a flush mostly waits for the disk (streams.stores.edge).
            try:
                await asyncio.to_thread(ctx.store.flush)
            except StoreError as exc:  # the next tick tries again; nothing is lost (WAL)
                log.warning("store flush failed: %s", exc)

        if settings.gc_census_path:
            @app.timer(gc_census.INTERVAL_S)
            async def census_of_long_lived_objects() -> None:
                gc_census.append_census(Path(settings.gc_census_path))

        worker = ColdstreamWorker(app, metrics, settings.gc_freeze,
                                  loglevel=settings.log_level.upper(), quiet=True,
                                  override_logging=False)
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:  # mode exits 0 on a signal, 1 after a crash
            code = exc.code if isinstance(exc.code, int) else 1
    if code:
        raise SystemExit(code)  # after cleanup: a supervisor must see that it crashed
