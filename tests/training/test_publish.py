"""The ``model.versions`` event reaches a real broker and fits the worker's contract."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from encoders.artifacts import AudioSpec, Manifest, Registry, TextSpec, write_manifest
from streams.broker import EmbeddedBroker, ensure_topics_sync
from streams.events import ModelVersionEvent, decode
from training.publish import announce


async def _first(bootstrap: str, topic: str) -> bytes:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        msg = await asyncio.wait_for(consumer.getone(), timeout=20)
        return msg.value
    finally:
        await consumer.stop()


@pytest.mark.integration
def test_announce_sends_a_valid_model_versions_event(broker: EmbeddedBroker,
                                                     tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    with reg.staging("v1") as folder:
        (folder / "text.onnx").write_bytes(b"x")
        manifest = write_manifest(folder, Manifest(
            version="v1", created_at=0, dim=4, metrics={"cold_recall@20": 0.4},
            text=TextSpec(graph="text.onnx", tokenizer="tokenizer.json", dim=4),
            audio=AudioSpec(graph="audio.onnx", dim=4)))
    topic = "test-training.model.versions"
    ensure_topics_sync(broker.bootstrap, [topic], partitions=1)
    sent = announce(reg, manifest, broker.bootstrap, topic)
    event = decode(asyncio.run(_first(broker.bootstrap, topic)), ModelVersionEvent)
    assert event.version == "v1" and event.event_id == sent.event_id
    assert Path(event.uri) == reg.path("v1").resolve()
    assert event.metrics == {"cold_recall@20": 0.4}
