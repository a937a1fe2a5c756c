"""The one frozen Settings object; the only module that reads the environment.

Every knob is a ``COLDSTREAM_*`` environment variable (see README, "Settings"). Build it once at
the entry point with :func:`load_settings` and pass it down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Configuration for broker, vector store, models, metrics and pipeline limits."""

    model_config = SettingsConfigDict(env_prefix="COLDSTREAM_", frozen=True, extra="ignore")

    # --- Kafka -------------------------------------------------------------------------------
    kafka_bootstrap: str | None = Field(
        None, description="host:port[,host:port]. Unset: start the embedded Tansu broker."
    )
    broker_compat: Literal["auto", "kafka", "tansu"] = Field(
        "auto", description="tansu: enable the Tansu end-offset shim (auto: when embedded).")
    embedded_kafka_port: int = Field(0, description="Port for the embedded broker (0: pick one).")
    embedded_kafka_storage: str = Field(
        "memory://tansu/", description="Embedded Tansu storage: memory://tansu/ (lost on restart)"
        " or s3://bucket/ (durable; AWS_* variables, see docs/reliability.md).")
    kafka_security_protocol: str = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    kafka_sasl_mechanism: str | None = Field(None, description="PLAIN, SCRAM-SHA-256/512.")
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    create_topics: bool = Field(True, description="Ensure topics exist with the partition count.")
    partitions: int = Field(4, ge=1, description="Partitions of every Coldstream topic.")
    replication_factor: int = Field(1, ge=1)
    app_id: str = Field("coldstream", description="Faust app id = consumer group id.")
    session_timeout_s: float | None = Field(
        None, description="Consumer session timeout; default 6 s embedded, 30 s external."
    )
    heartbeat_interval_s: float | None = Field(None, description="Default 1 s embedded, 3 s.")
    kafka_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        "zstd", description="Codec of the worker's own producers (candidates, DLQ, internal "
        "topics, changelogs). Input topics accept every codec whatever this says.")
    allow_untested_client_versions: bool = Field(
        False, description="Run although faust-streaming, mode-streaming or aiokafka differ "
        "from the versions the offset guard was proven on (streams/versions.py).")

    topic_songs: str = "songs.new"
    topic_interactions: str = "interactions"
    topic_interactions_by_song: str = "coldstream.interactions.by_song"
    topic_user_refresh: str = Field(
        "coldstream.users.refresh",
        description="Internal, keyed by user: recompute users whose songs arrived late.")
    topic_candidates_proposed: str = Field(
        "coldstream.candidates.proposed",
        description="Internal, keyed by user: candidates before the per-user daily budget.")
    topic_candidates: str = "candidates.coldstart"
    topic_model_versions: str = "model.versions"
    topic_dlq: str = "coldstream.dlq"

    # --- Vector store ------------------------------------------------------------------------
    qdrant_url: str | None = Field(
        None, description="Qdrant server URL. Unset: embedded Qdrant Edge engine in data_dir."
    )
    qdrant_api_key: SecretStr | None = None
    qdrant_local_path: Path | None = Field(
        None, description="Use qdrant-client's local mode at this path (tests, small setups)."
    )
    test_store_faults: str | None = Field(
        None, description="Test hook: 'error_rate=0.3,delay_s=0.05' makes store calls fail.")
    test_drop_fetches: int = Field(
        0, ge=0, description="Test hook: discard this many fetched batches behind Faust's back "
        "(as a fetch orphaned by a rebalance does), to prove the offset guard re-reads them.")
    test_without_codecs: tuple[str, ...] = Field(
        (), description="Test hook: codecs (snappy, lz4, zstd) the worker's Kafka client "
        "behaves as if their library were missing, to prove unreadable batches stop and alert.")
    data_dir: Path = Field(Path(".coldstream"), description="Embedded state: vectors, models.")
    search_index: Literal["segments", "engine"] = Field(
        "segments", description="Embedded store only. segments: search in the worker over a "
        "sealed IVF segment (built in a child process) plus a growing segment; engine: "
        "Qdrant Edge's own search (no index: it holds the GIL while building one).")
    segment_merge_rows: int = Field(
        20_000, ge=0, description="Growing-segment size (or a twentieth of the sealed one, if "
        "more) that triggers a merge into a new sealed segment; 0: never merge.")
    segment_nprobe: int = Field(
        32, ge=1, description="IVF lists probed per sealed-segment search (recall vs time).")
    segment_growing_lists: bool = Field(
        True, description="File each growing-segment row under the sealed segment's nearest "
        "IVF list as it is written, so a search scans only the probed lists' growing rows "
        "(false: every growing row, exactly; at 1M x 128 that exact scan of a 5 % growing "
        "segment made search p50 1.9x slower).")
    engine_payload_indexes: bool = Field(
        False, description="Embedded store with search_index=segments: also build Qdrant "
        "Edge's payload indexes. Off: the segments' columns answer filters on those keys, and "
        "each Edge index made every flush cost in proportion to the whole collection with the "
        "GIL held (1M listeners, 1,000 points unflushed: 281 ms a flush against 27 ms "
        "without). search_index=engine builds them at start.")
    segment_codes: Literal["pq4", "sq8", "flat"] = Field(
        "pq4", description="What a sealed segment stores per vector: pq4 (4-bit product codes "
        "scanned with SIMD, a sixteenth of float32's memory; 1.5-2.2x faster than sq8 at 1M "
        "for 0.01 of recall@10), sq8 (8-bit codes, a quarter) or flat (float32). pq4 and sq8 "
        "candidates are rescored exactly from the worker's mirror. A segment under 1,000 "
        "rows is built as sq8 (too few rows to train the product codes).")
    vector_dtype: Literal["float32", "float16"] = Field(
        "float32", description="How vectors are stored: the engine's datatype for new "
        "collections and the worker's search mirror. float16 halves both (1 GB each per "
        "million 512-d vectors) at cosines within about 1e-3 of float32; what each costs at "
        "1M songs + 1M listeners is in docs/benchmarks.md.")
    segment_page_out: bool = Field(
        False, description="Embedded store with segments: hand the engine's mapped vector "
        "pages back to the kernel after the reload and after each merge (the worker's mirror "
        "answers every vector read). At 1M songs + 1M listeners (float16) RSS 8.3 -> 6.5 GB, "
        "at some throughput: each write to a paged-out vector reads its page back.")
    segment_retrain_share: float = Field(
        0.5, gt=0, description="Merges patch the last sealed index with the changed rows (a "
        "delta, no k-means) until the rows changed since its training reach this share of "
        "it; then a full rebuild retrains the IVF lists.")
    store_flush_s: float = Field(
        1.0, gt=0, description="Embedded store only: how often shards written since their "
        "last flush are flushed (a clean shard is skipped).")
    store_flush_points: int = Field(
        1_000, ge=0, description="Embedded store only: a flusher thread flushes a shard as "
        "soon as this many points are unflushed. Qdrant Edge holds the GIL while it "
        "flushes, for a time that grows with the unflushed points (40-65 ms per 2,500 at 200k "
        "points) and with the collection (at 1M points 16-17 ms per 1,000 alone, stop 47, and "
        "about 60 ms beside a writing thread, of which about 25 ms did not shrink with a "
        "smaller bound, stop 46), so this bounds each stall of the event loop; durability "
        "does not depend on it (write-ahead log). 0: timer only.")
    store_presync: bool = Field(
        True, description="Embedded store only: fsync a shard's files (without the GIL) "
        "before the binding's own flush, which holds the GIL through its fsyncs.")
    table_store: Literal["memory", "rocksdb"] = Field(
        "memory", description="Where table state (user state, song listeners) lives: memory "
        "(values held as bytes, out of the GC's walk; rebuilt from the changelogs at every "
        "start) or rocksdb (on disk, RSS flat in the "
        "number of users; a restart replays only what is newer than the local copy).")
    table_dir: Path | None = Field(
        None, description="RocksDB table files; default data_dir/tables. One per worker.")

    # --- Models ------------------------------------------------------------------------------
    model_dir: Path | None = Field(None, description="Model registry; default data_dir/models.")
    model_version: str | None = Field(None, description="Pin a version; default: current.")
    onnx_threads: int = Field(1, ge=1, description="intra-op threads per ONNX session.")
    backbone_cache_rows: int = Field(
        1_000_000, ge=0, description="Songs whose frozen-backbone outputs (MiniLM text, an "
        "unchanged audio tower) are kept for model swaps, per backbone (1.5 kB each for text); "
        "0: off.")
    backbone_cache_persist: bool = Field(
        True, description="Also keep those outputs on disk (data_dir/backbones), so the first "
        "model swap after a restart still runs only the trainable heads.")
    swap_give_way_ms: float = Field(
        200.0, ge=0, description="A model swap's thread waits before each store call until no "
        "event is being handled, for at most this long, so events keep their latency during "
        "a swap (one GIL); under a load that never pauses, the swap still runs, more "
        "slowly. 0: the swap never waits.")
    swap_switch_interval_ms: float = Field(
        0.5, ge=0, description="Python's GIL switch interval while a model swap runs "
        "(default 5 ms): how long the event loop may wait to get the GIL back from the "
        "swap's thread after each socket call. 0: unchanged.")

    # --- Pipeline ----------------------------------------------------------------------------
    similar_songs_k: int = Field(20, ge=1, description="I2I2U: known songs per new song.")
    i2i2u_similarity_margin: float = Field(
        0.1, ge=0, description="I2I2U: seeds must be within this of the best match.")
    i2i2u_min_similarity: float = Field(0.3, description="I2I2U: minimum seed similarity.")
    u2i_users_k: int = Field(200, ge=1, description="U2I: users scored per new song.")
    u2i_min_margin: float = Field(
        0.0, ge=0, description="U2I admission: a candidate with U2I evidence only is delivered "
        "when its U2I score exceeds the user's boundary by at least this (0: the boundary).")
    boundary_gates_i2i2u: bool = Field(
        False, description="Where U2I is served (not an i2i2u-only arm), an I2I2U candidate "
        "whose user's own score is at or below the user's boundary is held back too.")
    max_candidates_per_song: int = Field(50, ge=1, description="Exposure budget per new song.")
    max_candidates_per_user_day: int = Field(
        0, ge=0, description="Exposure budget per user and event-time day (0: no cap); the "
        "highest scores proposed together win.")
    attribution_window_s: float = Field(
        7 * 86400.0, gt=0, description="Event time after a delivery in which a listener's "
        "interactions with the song count as its outcomes.")
    ab_arms: str = Field(
        "", description="A/B arms NAME=TARGET:WEIGHT,...; TARGET is a policy (i2i2u or "
        "both), a model version, or VERSION/POLICY; empty: none.")
    ab_salt: str = Field("coldstream-ab", min_length=1,
                         description="Key of the arm hash: a new salt reshuffles users.")
    recent_items_per_user: int = Field(50, ge=1)
    engagers_per_song: int = Field(100, ge=1)
    audio_roots: tuple[Path, ...] = Field((), description="Allowed roots for audio_uri files.")
    audio_schemes: tuple[str, ...] = Field(("file",), description="Allowed audio_uri schemes.")
    audio_max_bytes: int = Field(20_000_000, ge=1)
    audio_max_seconds: float = Field(30.0, gt=0, description="Decoded audio is cut here.")
    audio_max_decode_s: float = Field(
        10.0, gt=0, description="Wall-time limit on decoding one file (then it is dead-lettered).")
    batch_max_events: int = Field(1024, ge=1, description="Interactions handled per batch.")
    batch_window_s: float = Field(0.1, gt=0, description="Longest wait to fill a batch.")
    delivery_window_s: float = Field(
        0.01, gt=0, description="Longest wait to fill a batch of proposals: it adds to the "
        "new-song latency, and proposals of one song arrive together.")
    songs_batch_max: int = Field(
        8, ge=1, description="New songs encoded together at most: a backlog is worked off in "
        "batches (the item tower runs faster per song), while a batch holds the other agents "
        "up for its whole encode.")
    songs_batch_window_s: float = Field(
        0.02, gt=0, description="Longest wait to fill a batch of new songs: it adds to the "
        "new-song latency when songs arrive one at a time.")
    songs_first: bool = Field(
        False, description="true: new songs take the worker's gate before listener batches "
        "that wait for it (a model switch first of all); false: every waiter in arrival "
        "order. At 1M, 500 interactions/s + 10 new songs/s, true cut the songs' mean gate "
        "wait from 13-14 to 9-11 ms but not their latency (p50 / p99 488-492 / 1,090-2,807 "
        "ms against 367-443 / 1,143-1,640, two 300 s runs each, stop 48).")
    max_event_bytes: int = Field(256_000, ge=1, description="Larger events go to the DLQ.")
    gc_freeze: Literal["off", "start"] = Field(
        "start", description="Garbage collection (streams/gc_policy.py). start: once the worker "
        "is ready, freeze what start-up left (no collection walks it again) and raise the "
        "thresholds to 5000/10/80 (fewer, later full collections); off: CPython's defaults.")
    stall_trace_ms: float = Field(
        0.0, ge=0, description="Diagnostics: a watchdog thread samples where the event loop "
        "is while it is blocked this long or longer, counts each stall by that site "
        "(coldstream_event_loop_stalls_traced_total) and logs the longest at most every 10 s "
        "(streams/stall_trace.py; it looks 4 times per threshold, at most every 10 ms: 40 "
        "short wake-ups a second at 100 ms). Off by default: in a soak at 40 ms its sampling "
        "cost a third of the interactions (docs/benchmarks.md). 0: off.")
    gc_census_path: str = Field(
        "", description="Diagnostics: append the oldest generation's objects by type to this "
        "file every 30 s (streams/gc_census.py; it holds the GIL about as long as a full "
        "collection). Empty: off.")

    # --- Metrics -----------------------------------------------------------------------------
    metrics_host: str = Field("127.0.0.1", description="Bind address of /metrics.")
    metrics_port: int = Field(9464, ge=0, description="0 disables the endpoint.")
    lag_interval_s: float = Field(
        10.0, gt=0, description="Consumer lag refresh period. A partition still behind after "
        "10 s and three more refreshes, its agent idle, is read again from its commit.")
    supervisor_metrics_port: int = Field(
        9463, ge=0, description="`coldstream up`: the supervisor's /metrics (restarts); 0: off.")
    restart_backoff_max_s: float = Field(
        30.0, gt=0, description="`coldstream up`: longest wait before restarting a worker.")
    log_level: str = "info"

    @property
    def embedded_broker(self) -> bool:
        return self.kafka_bootstrap is None

    @property
    def tansu_compat(self) -> bool:
        """Whether the broker is Tansu (embedded, or declared so) and needs the shim."""
        if self.broker_compat == "auto":
            return self.embedded_broker
        return self.broker_compat == "tansu"

    @property
    def producer_compression(self) -> str | None:
        """The codec as Faust/aiokafka spell it (None: uncompressed)."""
        return None if self.kafka_compression == "none" else self.kafka_compression

    @property
    def tables_path(self) -> Path:
        return self.table_dir or self.data_dir / "tables"

    @property
    def models_path(self) -> Path:
        return self.model_dir or self.data_dir / "models"

    @property
    def effective_session_timeout_s(self) -> float:
        if self.session_timeout_s is not None:
            return self.session_timeout_s
        return 6.0 if self.embedded_broker else 30.0

    @property
    def effective_heartbeat_s(self) -> float:
        if self.heartbeat_interval_s is not None:
            return self.heartbeat_interval_s
        return 1.0 if self.embedded_broker else 3.0

    def input_topics(self) -> list[str]:
        return [self.topic_songs, self.topic_interactions, self.topic_interactions_by_song,
                self.topic_user_refresh, self.topic_candidates_proposed,
                self.topic_model_versions]

    def all_topics(self) -> list[str]:
        return [*self.input_topics(), self.topic_candidates, self.topic_dlq]


def load_settings(**overrides: object) -> Settings:
    """Read the environment once; keyword overrides win (used by the CLI and tests)."""
    return Settings(**overrides)  # type: ignore[arg-type]
