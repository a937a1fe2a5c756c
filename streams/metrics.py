"""Prometheus metrics, declared once and built on a registry that is passed in.

Conventions: one ``coldstream_`` prefix, base units (seconds), ``_total`` counters, ``_info``
for versions, and never a user or song id as a label (unbounded cardinality).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client import start_http_server as _start_http_server

STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
E2E_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
COUNT_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
#: Event-time seconds from a delivery to its first play: minutes to a week.
FIRST_PLAY_BUCKETS = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400,
                      4 * 86400, 7 * 86400)

#: Pipeline stages timed by ``coldstream_stage_seconds``.
STAGES = ("decode", "audio", "encode", "upsert", "search", "emit", "deliver", "user_update",
          "forward")


class Metrics:
    """Every series the worker exports. One instance per process (per registry)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "coldstream_events", "Input events handled, by topic and outcome (ok, dlq).",
            ["topic", "outcome"], registry=r)
        self.dlq = Counter(
            "coldstream_dlq_events", "Events sent to the dead-letter topic, by reason kind.",
            ["topic", "kind"], registry=r)
        self.stage_seconds = Histogram(
            "coldstream_stage_seconds", "Time spent per pipeline stage.", ["stage"],
            buckets=STAGE_BUCKETS, registry=r)
        self.new_song_to_candidates = Histogram(
            "coldstream_new_song_to_candidates_seconds",
            "From a songs.new record's timestamp to its candidates being proposed (the hop "
            "through the per-user budget is the stage_seconds stage \"deliver\").",
            buckets=E2E_BUCKETS, registry=r)
        self.songs_batch_size = Histogram(
            "coldstream_songs_batch_size",
            "New songs handled together per batch (above 1: a backlog is being worked off).",
            buckets=BATCH_BUCKETS, registry=r)
        self.declare_waits(r)
        self.candidates_per_song = Histogram(
            "coldstream_candidates_per_song",
            "Candidates proposed per new song (before the per-user budget).",
            buckets=COUNT_BUCKETS, registry=r)
        self.song_prior = Histogram(
            "coldstream_song_prior",
            "Each new song's predicted popularity (z-scored over the training catalogue), by "
            "model version; only models that carry a prior. A distribution drifting away "
            "from 0 means new uploads are unlike what the model learned popularity on.",
            ["version"], buckets=(-3.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0), registry=r)
        self.candidates = Counter(
            "coldstream_candidates", "Candidates emitted, by path.", ["path"], registry=r)
        self.boundary_checks = Counter(
            "coldstream_boundary_checks",
            "U2I users scored against their interest boundary, by result (pass, fail).",
            ["result"], registry=r)
        self.declare_online(r)
        self.songs_indexed = Counter(
            "coldstream_songs_indexed", "New songs encoded and upserted.", registry=r)
        self.users_updated = Counter(
            "coldstream_user_updates", "User vector/boundary recomputations.", registry=r)
        self.store_seconds = Histogram(
            "coldstream_vector_store_seconds", "Vector store call latency.", ["op"],
            buckets=STAGE_BUCKETS, registry=r)
        self.store_errors = Counter(
            "coldstream_vector_store_errors", "Vector store calls that failed.", ["op"],
            registry=r)
        self.declare_consumer(r)
        self.ready = Gauge(
            "coldstream_worker_ready", "1 once tables are recovered and agents consume.",
            registry=r)
        self.model_swaps = Counter(
            "coldstream_model_swaps", "Model version changes, by result (ok, refused, failed).",
            ["result"], registry=r)
        self.model_swap_seconds = Histogram(
            "coldstream_model_swap_seconds", "Re-embedding a catalogue into a new version.",
            buckets=(1, 5, 15, 30, 60, 120, 300, 900, 1800, 3600), registry=r)
        self.model_swap_pause_seconds = Histogram(
            "coldstream_model_swap_pause_seconds", "The exclusive step of a model swap: no "
            "event is handled while the songs and users written during it are caught up.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        self.model_swap_gave_way_seconds = Counter(
            "coldstream_model_swap_gave_way_seconds", "Time a model swap's thread waited for "
            "event work in flight before a store call (COLDSTREAM_SWAP_GIVE_WAY_MS).",
            registry=r)
        self.model_swap_in_progress = Gauge(
            "coldstream_model_swap_in_progress", "1 while a new version is being built.",
            registry=r)
        self.declare_loop_and_segments(r)
        self.model = Info(
            "coldstream_model", "Model version this worker serves.", registry=r)
        self.build = Info("coldstream_build", "Coldstream build.", registry=r)

    def declare_waits(self, r: CollectorRegistry) -> None:
        """Where events wait inside the worker: for the gate, or on a full input buffer."""
        self.gate_wait_seconds = Histogram(
            "coldstream_gate_wait_seconds",
            "How long a handler waited for the worker's gate (one handler at a time touches "
            "the model and the store), by holder: songs, interactions, engagement, "
            "user_refresh, model_switch. A new song's wait adds to its latency.",
            ["holder"], buckets=STAGE_BUCKETS, registry=r)
        self.topic_buffer_full = Counter(
            "coldstream_topic_buffer_full",
            "An agent's input buffer reached its high-water mark (fetching its partition "
            "pauses) or was full (Faust's fetch loop, and every agent's input, waited for it).",
            ["topic"], registry=r)

    def declare_consumer(self, r: CollectorRegistry) -> None:
        """What the Kafka side did: lag, and every record the offset guard or the table
        recovery had to step in for."""
        self.consumer_lag = Gauge(
            "coldstream_consumer_lag", "End offset minus committed offset (messages).",
            ["topic", "partition"], registry=r)
        self.table_stale = Counter(
            "coldstream_table_stale_records",
            "Changelog records skipped at table recovery because the key already had a newer "
            "state (a late write from a member that lost its partitions).",
            ["table"], registry=r)
        self.consumer_guard = Counter(
            "coldstream_consumer_guard",
            "Offset guard interventions, by reason (rewind: skipped offsets re-read; "
            "undelivered: a batch cut short re-read; stalled: a commit held by a record no "
            "agent has, re-read; skipped_ack: Faust acked a record it skipped, ignored; "
            "gap: offsets proven absent; commit_failed: a commit a rebalance refused, not "
            "taken as committed; log_start: nothing committed yet, read from the log start).",
            ["reason"], registry=r)
        self.unreadable_batches = Counter(
            "coldstream_unreadable_batches",
            "Fetched batches the worker could not read, by topic and cause (codec: its "
            "library is missing; corrupt: CRC mismatch; too_large: over the fetch limit). "
            "The partition stops there; nothing is skipped.",
            ["topic", "cause"], registry=r)
        self.unreadable_partitions = Gauge(
            "coldstream_unreadable_partitions",
            "Partitions stopped at a batch the worker cannot read, by topic (until restart).",
            ["topic"], registry=r)

    def declare_loop_and_segments(self, r: CollectorRegistry) -> None:
        """Event-loop stalls (streams.loop_probe) and the in-worker index's merges."""
        self.loop_stall = Gauge(
            "coldstream_event_loop_stall_seconds",
            "Longest late wake-up of a 10 ms probe task in the last 5 s window: how long the "
            "event loop was blocked at most (streams.loop_probe).", registry=r)
        self.loop_lag = Histogram(
            "coldstream_event_loop_lag_seconds",
            "Every late wake-up of the 10 ms event-loop probe task.", buckets=STAGE_BUCKETS,
            registry=r)
        self.stall_traced = Counter(
            "coldstream_event_loop_stalls_traced",
            "Event-loop stalls of COLDSTREAM_STALL_TRACE_MS or more, by the site where the "
            "loop thread was found most often while stalled (streams.stall_trace: the "
            "innermost frame of the project's code, path/file.py:function; gil:SITE when the "
            "loop waited for the GIL while another thread ran SITE).", ["site"],
            registry=r)
        self.stall_traced_seconds = Counter(
            "coldstream_event_loop_stalls_traced_seconds",
            "Those stalls' total length, by the same site: which code costs the loop most.",
            ["site"], registry=r)
        self.gc_pause = Gauge(
            "coldstream_gc_pause_seconds",
            "Longest garbage collection of the last 5 s window (it holds the GIL: the event "
            "loop stalls at least that long), by generation.", ["generation"], registry=r)
        self.gc_frozen = Gauge(
            "coldstream_gc_frozen_objects",
            "Objects the GC policy moved to the permanent generation when the worker became "
            "ready, which no collection walks (streams.gc_policy; 0: off).", registry=r)
        self.store_flush = Histogram(
            "coldstream_store_flush_seconds",
            "Embedded store (Qdrant Edge) shard flushes. Each holds the GIL throughout: the "
            "event loop stalls as long (COLDSTREAM_STORE_FLUSH_POINTS bounds it).",
            buckets=STAGE_BUCKETS, registry=r)
        self.segment_merges = Counter(
            "coldstream_segment_merges",
            "Sealed segments built and installed by the in-worker index, by collection.",
            ["collection"], registry=r)

    def declare_online(self, r: CollectorRegistry) -> None:
        """The online loop's series (streams.attribution): deliveries, outcomes, budgets."""
        self.deliveries = Counter(
            "coldstream_deliveries", "Candidates delivered to candidates.coldstart after the "
            "per-user budget, by model version, path and A/B arm.",
            ["version", "path", "arm"], registry=r)
        self.attributed = Counter(
            "coldstream_attributed",
            "Listener outcomes attributed to a delivery within the window (each action once "
            "per delivery), by action, model version, path and arm.",
            ["action", "version", "path", "arm"], registry=r)
        self.time_to_first_play = Histogram(
            "coldstream_time_to_first_play_seconds",
            "Event time from a delivery to the listener's first play of the song, by arm.",
            ["arm"], buckets=FIRST_PLAY_BUCKETS, registry=r)
        self.ab_version_serving = Gauge(
            "coldstream_ab_version_serving", "1 while a model version serves its A/B arms "
            "beside the current one (COLDSTREAM_AB_ARMS version arms).", ["version"],
            registry=r)
        self.budget_dropped = Counter(
            "coldstream_budget_dropped",
            "Candidates not delivered because a budget was full (song: per new song; "
            "user_day: per user and day).", ["budget"], registry=r)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds.labels(stage=name).observe(time.perf_counter() - start)

    def unreadable(self, event: Any, stopped_in_topic: int) -> None:
        """A partition stopped at an unreadable batch (streams.unreadable)."""
        self.unreadable_batches.labels(topic=event.topic, cause=event.cause).inc()
        self.unreadable_partitions.labels(topic=event.topic).set(stopped_in_topic)

    @contextmanager
    def store_call(self, op: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        except Exception:
            self.store_errors.labels(op=op).inc()
            raise
        finally:
            self.store_seconds.labels(op=op).observe(time.perf_counter() - start)


def serve(metrics: Metrics, host: str, port: int) -> int:
    """Start the /metrics HTTP endpoint; returns the bound port (0 disables)."""
    if port == 0:
        return 0
    server, _thread = _start_http_server(port, addr=host, registry=metrics.registry)
    return server.server_port
