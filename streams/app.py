"""``create_app(settings, ctx)``: the Faust app with its topics, tables and agents."""

from __future__ import annotations

from typing import Any

import faust

from . import compat, table_store
from .agents import register_agents
from .broker import client_config
from .context import WorkerContext
from .settings import Settings
from .topics import declare_tables, declare_topics


def broker_url(settings: Settings, bootstrap: str) -> str:
    """``tansu://`` adds the end-offset shim; both schemes guard offsets (streams.offsets)."""
    scheme = compat.SCHEME if settings.tansu_compat else compat.KAFKA_SCHEME
    return ";".join(f"{scheme}://{server.strip()}" for server in bootstrap.split(","))


def credentials(settings: Settings) -> Any:
    """Faust's form of :func:`streams.broker.client_config`: same rules, same defaults."""
    cfg = client_config(settings)
    context = cfg.get("ssl_context")
    if "sasl_mechanism" in cfg:
        return faust.SASLCredentials(
            username=cfg["sasl_plain_username"], password=cfg["sasl_plain_password"],
            mechanism=cfg["sasl_mechanism"], ssl_context=context)
    if context is not None:
        return faust.SSLCredentials(context)
    return None


#: Seconds the producer waits to fill a request; a batch's sends are awaited together, so this
#: adds at most once per batch.
PRODUCER_LINGER_S = 0.005


def base_app(settings: Settings, bootstrap: str) -> faust.App:
    """The Faust app with the worker's configuration and nothing declared on it (the bench's
    empty-agent ceiling runs on this same configuration)."""
    compat.register()
    table_store.register()
    return faust.App(
        settings.app_id,
        broker=broker_url(settings, bootstrap),
        broker_credentials=credentials(settings),
        store=table_store.store_url(settings.table_store),  # bytes in memory, or RocksDB on disk
        datadir=str(settings.data_dir / "faust"),  # not the working directory
        tabledir=str(settings.tables_path.resolve()),  # Faust: relative means under datadir
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=settings.create_topics,
        topic_disable_leader=True,
        broker_session_timeout=settings.effective_session_timeout_s,
        broker_heartbeat_interval=settings.effective_heartbeat_s,
        broker_commit_every=100,
        broker_commit_interval=1.0,
        producer_compression_type=settings.producer_compression,  # candidates, DLQ, changelogs
        # Faust's default linger is 0: every forward and changelog record of a batch left in a
        # produce request of its own (the socket writes were ~10% of the worker's samples,
        # docs/profiles/ingest-100k-before.svg). A batch's records now share a few requests.
        producer_linger=PRODUCER_LINGER_S,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        autodiscover=False,
    )


def create_app(settings: Settings, ctx: WorkerContext, bootstrap: str) -> faust.App:
    app = base_app(settings, bootstrap)
    topics = declare_topics(app, settings)
    tables = declare_tables(app, settings)
    register_agents(app, ctx, topics, tables)
    app.coldstream_topics = topics  # type: ignore[attr-defined]
    app.coldstream_tables = tables  # type: ignore[attr-defined]
    return app
