"""``create_app(settings, ctx)``: the Faust app with its topics, tables and agents."""

from __future__ import annotations

import ssl
from typing import Any

import faust

from . import compat
from .agents import register_agents
from .context import WorkerContext
from .settings import Settings
from .topics import declare_tables, declare_topics


def broker_url(settings: Settings, bootstrap: str) -> str:
    """``tansu://`` adds the end-offset shim; both schemes guard offsets (streams.offsets)."""
    scheme = compat.SCHEME if settings.tansu_compat else compat.KAFKA_SCHEME
    return ";".join(f"{scheme}://{server.strip()}" for server in bootstrap.split(","))


def credentials(settings: Settings) -> Any:
    """SASL/TLS settings passed through to Faust (and so to aiokafka)."""
    protocol = settings.kafka_security_protocol.upper()
    context = None
    if protocol.endswith("SSL"):
        context = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None)
        if settings.kafka_ssl_certfile:
            context.load_cert_chain(str(settings.kafka_ssl_certfile),
                                    str(settings.kafka_ssl_keyfile or "") or None)
    if protocol.startswith("SASL"):
        password = (settings.kafka_sasl_password.get_secret_value()
                    if settings.kafka_sasl_password else "")
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username or "", password=password,
            mechanism=settings.kafka_sasl_mechanism or "PLAIN", ssl_context=context)
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def create_app(settings: Settings, ctx: WorkerContext, bootstrap: str) -> faust.App:
    compat.register()
    app = faust.App(
        settings.app_id,
        broker=broker_url(settings, bootstrap),
        broker_credentials=credentials(settings),
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=settings.create_topics,
        topic_disable_leader=True,
        broker_session_timeout=settings.effective_session_timeout_s,
        broker_heartbeat_interval=settings.effective_heartbeat_s,
        broker_commit_every=100,
        broker_commit_interval=1.0,
        producer_compression_type=settings.producer_compression,  # candidates, DLQ, changelogs
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        autodiscover=False,
    )
    topics = declare_topics(app, settings)
    tables = declare_tables(app, settings)
    register_agents(app, ctx, topics, tables)
    app.coldstream_topics = topics  # type: ignore[attr-defined]
    app.coldstream_tables = tables  # type: ignore[attr-defined]
    return app
