"""A fetched batch the worker cannot read: stop that partition and alert, never drop it.

A batch can be unreadable because its codec's library is missing, because it is corrupt (CRC
mismatch) or because one record is larger than the fetch limit. Its records are unknown, so it
cannot be dead-lettered, and skipping it would lose events silently. Crashing is no better: a
restart reads the same batch and crashes again, an unexplained loop that stops every
partition. So the worker stops *that partition* at the batch (paused, positioned on it, never
committed past), writes one log line with topic, partition, offset and cause, counts it in
``coldstream_unreadable_batches_total`` and holds ``coldstream_unreadable_partitions`` at the
number of stopped partitions until a restart; the alert ``ColdstreamUnreadableBatch`` fires on
it. Every other partition keeps flowing. What an operator does next: docs/operations.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import CorruptRecordException, RecordTooLargeError, UnsupportedCodecError

log = logging.getLogger(__name__)

#: The client errors that mean "this batch cannot be read", with their metric cause label.
CAUSES: dict[type[Exception], str] = {
    UnsupportedCodecError: "codec",
    CorruptRecordException: "corrupt",
    RecordTooLargeError: "too_large",
}
UNREADABLE = tuple(CAUSES)


def cause_of(exc: BaseException) -> str:
    for kind, cause in CAUSES.items():
        if isinstance(exc, kind):
            return cause
    raise TypeError(f"not an unreadable-batch error: {exc!r}")


@dataclass(frozen=True)
class Unreadable:
    """Where the worker stopped and why."""

    topic: str
    partition: int
    offset: int
    cause: str
    detail: str


def _failed_iterator(result: Any) -> bool:
    """A FetchResult whose record iterator died with an exception (aiokafka 0.14 internals):
    a finished generator has no frame, and aiokafka drops exhausted results itself."""
    records = getattr(result, "_partition_records", None)
    iterator = getattr(records, "_records_iterator", None)
    return iterator is not None and getattr(iterator, "gi_frame", True) is None


def locate(fetcher: Any, exc: BaseException) -> tuple[Any, int] | None:
    """The partition and offset of the batch ``exc`` came from (aiokafka 0.14 internals)."""
    if isinstance(exc, RecordTooLargeError) and len(exc.args) >= 3:
        return exc.args[1], int(exc.args[2])  # (message, tp, fetch offset, limit)
    for tp, result in list(fetcher._records.items()):
        if _failed_iterator(result):
            return tp, int(result._partition_records.next_fetch_offset)
    return None


class UnreadableBatches:
    """Stops partitions at unreadable batches, in the client thread that fetched them."""

    def __init__(self) -> None:
        #: Stopped partitions: tp -> what stopped it (kept until the worker restarts).
        self.stopped: dict[Any, Unreadable] = {}
        #: Called with each new stop and the number of stopped partitions of its topic.
        self.on_stop: Callable[[Unreadable, int], None] | None = None

    def stop(self, consumer: Any, exc: BaseException) -> Unreadable:
        """Pause the partition on the batch, drop the broken fetch, report once per batch.

        Re-raises ``exc`` when the batch cannot be located: crashing with the client's own
        message beats consuming past an unknown position.
        """
        fetcher = consumer._fetcher
        found = locate(fetcher, exc)
        if found is None:
            raise exc
        tp, offset = found
        fetcher._records.pop(tp, None)
        consumer.seek(tp, offset)
        consumer.pause(tp)
        event = Unreadable(tp.topic, tp.partition, offset, cause_of(exc), str(exc))
        previous = self.stopped.get(tp)
        if previous is not None and (previous.offset, previous.cause) == (offset, event.cause):
            return previous  # resumed by a rebalance and met the same batch: already reported
        self.stopped[tp] = event
        log.error("unreadable batch: topic %s partition %d offset %d cause %s (%s): partition "
                  "stopped there, nothing skipped; see docs/operations.md, unreadable batches",
                  event.topic, event.partition, event.offset, event.cause, event.detail)
        if self.on_stop is not None:
            same_topic = sum(1 for u in self.stopped.values() if u.topic == event.topic)
            self.on_stop(event, same_topic)
        return event
