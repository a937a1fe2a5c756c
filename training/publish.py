"""Publishing: write a version atomically, make it current, announce it on ``model.versions``.

The announcement is the contract's :class:`~streams.events.ModelVersionEvent`, sent with the
project's one producer (:func:`streams.client.produce`) and Kafka security settings
(:func:`streams.broker.client_config`, read from ``COLDSTREAM_KAFKA_*``). Training imports only
that client side of ``streams``, never the worker.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from encoders.artifacts import DeliverySpec, Manifest, Registry, new_version
from streams.broker import client_config
from streams.client import produce
from streams.events import ModelVersionEvent, encode
from streams.settings import load_settings

from .export import write_version
from .train import TrainResult

TOPIC = "model.versions"


def save(registry: Registry, result: TrainResult, metrics: dict[str, float],
         promote: bool = True, version: str | None = None,
         delivery: DeliverySpec | None = None) -> Manifest:
    """Stage every file, rename into place, then (optionally) swap CURRENT to it."""
    version = version or new_version()
    parent = registry.current()
    with registry.staging(version) as folder:
        manifest = write_version(result, folder, version, parent, metrics, delivery=delivery)
    registry.load(version)  # verify hashes from disk before anyone is pointed at it
    if promote:
        registry.promote(version)
    return manifest


def version_event(registry: Registry, manifest: Manifest) -> ModelVersionEvent:
    return ModelVersionEvent(
        schema_version=1, event_id=uuid.uuid4().hex, version=manifest.version,
        uri=str(registry.path(manifest.version).resolve()), created_at=int(time.time() * 1000),
        metrics={k: float(v) for k, v in manifest.metrics.items()})


def announce(registry: Registry, manifest: Manifest, bootstrap: str, topic: str = TOPIC,
             client: dict[str, Any] | None = None) -> ModelVersionEvent:
    """Send the ``model.versions`` event; returns what was sent.

    ``client``: aiokafka security settings; by default those of the ``COLDSTREAM_*``
    environment, like every other client of the project.
    """
    event = version_event(registry, manifest)
    client = client_config(load_settings()) if client is None else client
    asyncio.run(produce(bootstrap, topic, [(event.version.encode(), encode(event))], **client))
    return event


def rollback(registry: Registry) -> str:
    """Point CURRENT at the current version's parent."""
    current = registry.current()
    if current is None:
        raise ValueError("no current version to roll back from")
    parent = registry.previous(current)
    if parent is None:
        raise ValueError(f"{current} has no parent version")
    registry.promote(parent)
    return parent
