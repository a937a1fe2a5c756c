"""Plain aiokafka producer/consumer helpers for the CLI, the demo and the tests."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable
from itertools import islice
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from .backoff import Backoff, retry_async

log = logging.getLogger(__name__)

#: Which field keys each input topic (co-partitioning: songs by song, interactions by user).
KEY_FIELDS = {"songs.new": "song_id", "interactions": "user_id",
              "candidates.coldstart": "user_id"}


def key_for(topic: str, payload: dict[str, Any], key_field: str | None = None) -> bytes | None:
    field = key_field or KEY_FIELDS.get(topic)
    value = payload.get(field) if field else None
    return str(value).encode() if value is not None else None


async def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]],
                  *, retry_for: float = 0.0, **client: Any) -> int:
    """Send (key, value) pairs; waits for every acknowledgement (acks=all).

    While the broker is unreachable, keep retrying for ``retry_for`` seconds with capped
    backoff instead of failing at once. A retried record may be written twice; consumers
    de-duplicate by event id. Records go in chunks, so a large stream is never held in memory.
    """
    deadline = time.monotonic() + retry_for
    backoff = Backoff(first=0.2, cap=5.0)

    async def start() -> AIOKafkaProducer:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                    **client)
        try:
            await producer.start()
        except KafkaError:
            await producer.stop()
            raise
        return producer

    producer = await retry_async(start, on=KafkaError, backoff=backoff, deadline=deadline,
                                 what="connecting to the broker")
    sent = 0
    try:
        it = iter(records)
        while chunk := list(islice(it, PRODUCE_CHUNK)):
            await send_until_acknowledged(producer, topic, chunk, backoff, deadline)
            sent += len(chunk)
    finally:
        await producer.stop()
    return sent


#: Records sent before waiting for their acknowledgements.
PRODUCE_CHUNK = 1000


async def send_chunk(producer: AIOKafkaProducer, topic: str,
                     records: list[tuple[bytes | None, bytes]],
                     ) -> tuple[list[tuple[bytes | None, bytes]], BaseException | None]:
    """Send and await ``records``; return those not acknowledged and the first error."""
    futures: list[asyncio.Future[Any]] = []
    try:
        for key, value in records:
            futures.append(await producer.send(topic, value=value, key=key))
    except KafkaError as exc:  # not even queued (no metadata): these and the rest retry
        results: list[Any] = [*await asyncio.gather(*futures, return_exceptions=True), exc]
        results += [exc] * (len(records) - len(results))
    else:
        results = await asyncio.gather(*futures, return_exceptions=True)
    failed = [rec for rec, res in zip(records, results, strict=True)
              if isinstance(res, BaseException)]
    first = next((res for res in results if isinstance(res, BaseException)), None)
    return failed, first


async def send_until_acknowledged(producer: AIOKafkaProducer, topic: str,
                                  records: list[tuple[bytes | None, bytes]], backoff: Backoff,
                                  deadline: float) -> None:
    """Resend what was not acknowledged until all is, or the deadline passes."""
    pending = records

    async def attempt() -> None:
        nonlocal pending
        pending, error = await send_chunk(producer, topic, pending)
        if error is not None:
            raise error

    await retry_async(attempt, on=Exception, backoff=backoff, deadline=deadline,
                      what="sending to the broker")


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
