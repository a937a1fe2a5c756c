"""Publishing: write a version atomically, make it current, announce it on ``model.versions``.

The event is plain JSON sent with aiokafka (no ``streams`` import: training and the worker
share only the contract): {schema_version: 1, event_id, version, uri, created_at, metrics}.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson

from encoders.artifacts import Manifest, Registry, new_version

from .export import write_version
from .train import TrainResult

TOPIC = "model.versions"


def save(registry: Registry, result: TrainResult, metrics: dict[str, float],
         promote: bool = True, version: str | None = None) -> Manifest:
    """Stage every file, rename into place, then (optionally) swap CURRENT to it."""
    version = version or new_version()
    parent = registry.current()
    with registry.staging(version) as folder:
        manifest = write_version(result, folder, version, parent, metrics)
    registry.load(version)  # verify hashes from disk before anyone is pointed at it
    if promote:
        registry.promote(version)
    return manifest


def version_event(registry: Registry, manifest: Manifest) -> dict[str, Any]:
    return {"schema_version": 1, "event_id": uuid.uuid4().hex, "version": manifest.version,
            "uri": str(registry.path(manifest.version).resolve()),
            "created_at": int(time.time() * 1000),
            "metrics": {k: float(v) for k, v in manifest.metrics.items()}}


async def _send(bootstrap: str, topic: str, event: dict[str, Any]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, orjson.dumps(event),
                                     key=event["version"].encode())
    finally:
        await producer.stop()


def announce(registry: Registry, manifest: Manifest, bootstrap: str,
             topic: str = TOPIC) -> dict[str, Any]:
    """Send the ``model.versions`` event; returns what was sent."""
    event = version_event(registry, manifest)
    asyncio.run(_send(bootstrap, topic, event))
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
