"""One record per destination partition: the shape of the worker's packed internal topics.

Each record the worker sends to itself costs a produce and a consume through Faust, aiokafka
and asyncio, which stop 42's GIL profile found to be two thirds of the worker's GIL time.
Where many rows go to one topic at once (a batch's by-song forwards, a new song's proposed
candidates), the rows are grouped by the partition a keyed send would have picked and each
group goes as one record, so keyed state stays co-partitioned with its topic.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson

from .errors import DecodeError

Row = TypeVar("Row")

#: Partitions of a topic for a batch of keys, as a keyed send would pick them.
Partitioner = Callable[[list[bytes]], Awaitable[list[int]]]


def group_by_partition(rows: list[Row], partitions: list[int], per_record: int
                       ) -> list[tuple[int, list[Row]]]:
    """Rows per destination partition, in their batch order, cut at ``per_record`` rows."""
    grouped: dict[int, list[Row]] = {}
    for row, partition in zip(rows, partitions, strict=True):
        grouped.setdefault(partition, []).append(row)
    return [(partition, part[i:i + per_record])
            for partition, part in sorted(grouped.items())
            for i in range(0, len(part), per_record)]


def packed_rows(value: bytes | None, record: str, rows: str) -> list[Any]:
    """A packed record's JSON array, or a DecodeError naming what is wrong with the record
    (``record``: its name in the message, ``rows``: what its array holds)."""
    if value is None:
        raise DecodeError(f"empty {record} record (tombstone)")
    try:
        items = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"{record} record is not JSON: {exc}") from None
    if not isinstance(items, list):
        raise DecodeError(f"{record} record is {type(items).__name__}, not a list of {rows}")
    return items


def producer_partitioner(app: Any, topic: str) -> Partitioner:
    """The partition the app's producer would give each key on ``topic``.

    The first call waits for the topic's metadata (a keyed send waits for it too); after that
    the producer's own partitioner (murmur2 by default, or ``producer_partitioner``) decides,
    against the partitions the broker reports, exactly as for a keyed send.
    """
    ready = False

    async def partitions(keys: list[bytes]) -> list[int]:
        nonlocal ready
        producer = app.producer
        if not ready:
            await producer._ensure_producer().partitions_for(topic)
            ready = True
        return [producer.key_partition(topic, key).partition for key in keys]

    return partitions
