"""Plain aiokafka producer/consumer helpers for the CLI, the demo and the tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

#: Which field keys each input topic (co-partitioning: songs by song, interactions by user).
KEY_FIELDS = {"songs.new": "song_id", "interactions": "user_id",
              "candidates.coldstart": "user_id"}


def key_for(topic: str, payload: dict[str, Any], key_field: str | None = None) -> bytes | None:
    field = key_field or KEY_FIELDS.get(topic)
    value = payload.get(field) if field else None
    return str(value).encode() if value is not None else None


async def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]],
                  **client: Any) -> int:
    """Send (key, value) pairs; waits for every acknowledgement (acks=all)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, **client)
    await producer.start()
    sent = 0
    try:
        futures = []
        for key, value in records:
            futures.append(await producer.send(topic, value=value, key=key))
            sent += 1
            if len(futures) >= 1000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent


def json_records(topic: str, payloads: Iterable[dict[str, Any]],
                 key_field: str | None = None) -> Iterable[tuple[bytes | None, bytes]]:
    for p in payloads:
        yield key_for(topic, p, key_field), orjson.dumps(p)


async def consume(bootstrap: str, topic: str, *, from_beginning: bool = True,
                  idle_timeout: float | None = None, max_messages: int | None = None,
                  **client: Any) -> AsyncIterator[Any]:
    """Yield records of every partition of ``topic`` (no consumer group, nothing committed)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest", **client)
    await consumer.start()
    seen = 0
    loop = asyncio.get_running_loop()
    last = loop.time()
    try:
        while max_messages is None or seen < max_messages:
            batch = await consumer.getmany(timeout_ms=200)
            if not batch:
                if idle_timeout is not None and loop.time() - last > idle_timeout:
                    return
                continue
            last = loop.time()
            for records in batch.values():
                for record in records:
                    yield record
                    seen += 1
    finally:
        await consumer.stop()
