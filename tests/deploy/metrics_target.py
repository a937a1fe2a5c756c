"""A stand-in scrape target: a ``streams.metrics.Metrics`` with known samples, served over HTTP.

Run as a script (``python metrics_target.py PORT``) so Prometheus scrapes a separate process, as
it would a worker; it exits when its stdin closes, so a dying test never leaves it behind.
``record_samples`` touches every metric, so every exported series has at least one sample.
"""

from __future__ import annotations

import sys

from streams.metrics import STAGES, Metrics, serve
from streams.supervisor import SupervisorMetrics

MODEL_VERSION = "v-test-1"
#: Instant-query results the integration test expects (PromQL selector -> value).
EXPECTED: dict[str, float] = {
    'coldstream_events_total{topic="songs.new", outcome="ok"}': 3,
    'coldstream_events_total{topic="songs.new", outcome="dlq"}': 1,
    'coldstream_dlq_events_total{topic="songs.new", kind="decode"}': 1,
    'coldstream_songs_indexed_total': 3,
    'coldstream_user_updates_total': 2,
    'coldstream_candidates_total{path="i2i2u"}': 30,
    'coldstream_candidates_total{path="u2i"}': 6,
    'coldstream_boundary_checks_total{result="pass"}': 6,
    'coldstream_boundary_checks_total{result="fail"}': 2,
    'coldstream_new_song_to_candidates_seconds_count': 3,
    'coldstream_new_song_to_candidates_seconds_bucket{le="0.25"}': 2,
    'coldstream_candidates_per_song_sum': 36,
    'coldstream_song_prior_count{version="v-test-2"}': 3,
    'coldstream_songs_batch_size_sum': 10,
    'coldstream_songs_batch_size_bucket{le="1.0"}': 2,
    'coldstream_gate_wait_seconds_count{holder="songs"}': 2,
    'coldstream_consumer_lag{topic="songs.new", partition="0"}': 7,
    'coldstream_consumer_lag{topic="interactions", partition="1"}': 0,
    f'coldstream_model_info{{version="{MODEL_VERSION}"}}': 1,
    'coldstream_vector_store_errors_total{op="search"}': 1,
    'coldstream_vector_store_seconds_count{op="upsert"}': 3,
    'coldstream_deliveries_total{arm="B", path="u2i"}': 20,
    'coldstream_attributed_total{arm="B", action="collect"}': 3,
    'coldstream_time_to_first_play_seconds_count{arm="A"}': 2,
    'coldstream_budget_dropped_total{budget="user_day"}': 4,
    'coldstream_ab_version_serving{version="v-test-2"}': 1,
    'coldstream_segment_merges_total{collection="songs"}': 2,
    'coldstream_topic_buffer_full_total{topic="interactions"}': 3,
}


def record_samples(metrics: Metrics) -> None:
    """Record a small, fixed history: three new songs, one bad event, a few users."""
    metrics.events.labels(topic="songs.new", outcome="ok").inc(3)
    metrics.events.labels(topic="songs.new", outcome="dlq").inc()
    metrics.events.labels(topic="interactions", outcome="ok").inc(10)
    metrics.dlq.labels(topic="songs.new", kind="decode").inc()
    for stage in STAGES:
        metrics.stage_seconds.labels(stage=stage).observe(0.002)
    for seconds in (0.12, 0.2, 0.9):
        metrics.new_song_to_candidates.observe(seconds)
    for count in (10, 12, 14):
        metrics.candidates_per_song.observe(count)
    for prior in (-0.4, 0.1, 1.3):
        metrics.song_prior.labels(version="v-test-2").observe(prior)
    for size in (1, 1, 8):
        metrics.songs_batch_size.observe(size)
    for holder, seconds in (("songs", 0.001), ("songs", 0.03), ("interactions", 0.05)):
        metrics.gate_wait_seconds.labels(holder=holder).observe(seconds)
    metrics.candidates.labels(path="i2i2u").inc(30)
    metrics.candidates.labels(path="u2i").inc(6)
    metrics.boundary_checks.labels(result="pass").inc(6)
    metrics.boundary_checks.labels(result="fail").inc(2)
    metrics.songs_indexed.inc(3)
    metrics.users_updated.inc(2)
    for _ in range(3):
        with metrics.store_call("upsert"):
            pass
    try:
        with metrics.store_call("search"):
            raise ConnectionError("qdrant unreachable")
    except ConnectionError:
        pass
    metrics.consumer_lag.labels(topic="songs.new", partition="0").set(7)
    metrics.consumer_lag.labels(topic="interactions", partition="1").set(0)
    metrics.consumer_guard.labels(reason="undelivered").inc(2)
    metrics.consumer_guard.labels(reason="log_start").inc(4)
    metrics.table_stale.labels(table="user_state").inc(1)
    metrics.unreadable_batches.labels(topic="songs.new", cause="codec").inc()
    metrics.unreadable_partitions.labels(topic="songs.new").set(1)
    metrics.model_swaps.labels(result="ok").inc()
    metrics.model_swaps.labels(result="refused").inc()
    metrics.model_swap_seconds.observe(12.0)
    metrics.model_swap_pause_seconds.observe(0.2)
    metrics.model_swap_gave_way_seconds.inc(3.5)
    metrics.model_swap_in_progress.set(0)
    record_online_samples(metrics)
    record_probe_samples(metrics)
    metrics.model.info({"version": MODEL_VERSION})
    metrics.ab_version_serving.labels(version="v-test-2").set(1)
    metrics.build.info({"version": "0.1.0"})


def record_probe_samples(metrics: Metrics) -> None:
    """The event-loop probe, GC pauses, the in-worker index's merges and full input buffers."""
    metrics.loop_stall.set(0.03)
    metrics.loop_lag.observe(0.012)
    metrics.gc_pause.labels(generation="2").set(0.2)
    metrics.stall_traced.labels(site="streams/pipeline.py:users_update").inc()
    metrics.stall_traced_seconds.labels(site="streams/pipeline.py:users_update").inc(0.12)
    metrics.gc_frozen.set(1_500_000)
    metrics.store_flush.observe(0.02)
    metrics.segment_merges.labels(collection="songs").inc(2)
    metrics.topic_buffer_full.labels(topic="interactions").inc(3)


def record_online_samples(metrics: Metrics) -> None:
    """Two A/B arms' deliveries and attributed outcomes, and both budgets."""
    for arm, path, n in (("A", "i2i2u", 12), ("B", "u2i", 20)):
        metrics.deliveries.labels(version=MODEL_VERSION, path=path, arm=arm).inc(n)
        metrics.attributed.labels(action="play", version=MODEL_VERSION, path=path,
                                  arm=arm).inc(5)
        metrics.attributed.labels(action="collect", version=MODEL_VERSION, path=path,
                                  arm=arm).inc(3)
    for seconds in (600, 7200):
        metrics.time_to_first_play.labels(arm="A").observe(seconds)
    metrics.budget_dropped.labels(budget="user_day").inc(4)
    metrics.budget_dropped.labels(budget="song").inc(2)


def record_supervisor_samples(sup: SupervisorMetrics) -> None:
    """`coldstream up`'s supervisor series (served on their own port in real life)."""
    sup.restarts.labels(reason="exit:1").inc()
    sup.up.set(1)


def main(argv: list[str]) -> None:
    metrics = Metrics()
    record_samples(metrics)
    record_supervisor_samples(SupervisorMetrics(metrics.registry))
    port = serve(metrics, "127.0.0.1", int(argv[1]))
    print(f"serving {port}", flush=True)
    sys.stdin.read()  # block until the parent closes our stdin (or dies)


if __name__ == "__main__":
    main(sys.argv)
