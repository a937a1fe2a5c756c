"""Compatibility shim for the embedded Tansu broker's end-offset quirk.

Tansu 0.6.0 answers ListOffsets(latest) with the *first offset of the newest record batch + 1*
instead of the true end offset. Faust's table recovery reads a changelog up to that
"highwater", so a batch of several changelog records is only partly replayed and table state is
silently lost on restart (measured: a counter table recovered 2 instead of 3). We fix it by
reading the newest batch and taking its last offset + 1.

The shim is wired in through the ``tansu://`` broker URL scheme, which only the embedded broker
uses. Both it and ``kafka+guarded://`` (real clusters) carry the offset guard of
:mod:`streams.offsets`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import aiokafka
from aiokafka.structs import TopicPartition
from faust.transport import drivers
from faust.transport.drivers import aiokafka as faust_aiokafka

from .offsets import GuardedConsumer, GuardedConsumerThread, GuardedTransport

SCHEME = "tansu"
#: Real Kafka clusters: Faust's aiokafka transport with the offset guard (streams.offsets).
KAFKA_SCHEME = "kafka+guarded"


class EndOffsetUnavailable(RuntimeError):
    """The newest batch of a partition could not be read back before the deadline.

    Raised instead of returning the broker's under-reported answer: a wrong highwater makes
    table recovery stop early (lost state) or fail its consistency check (a crash).
    """


#: Longest wait for the newest batch of every partition (loopback broker; normally ~10 ms).
END_OFFSET_DEADLINE_S = 30.0


async def true_end_offsets(bootstrap: str | list[str], reported: Mapping[Any, int],
                           *, deadline_s: float = END_OFFSET_DEADLINE_S,
                           **client: Any) -> dict[Any, int]:
    """Correct under-reported end offsets by reading each partition's newest batch.

    ``reported`` maps TopicPartition-like keys to the broker's answer, which Tansu gives as
    *first offset of the newest batch + 1*: so a record exists at ``reported - 1`` and the
    fetch that returns it returns its whole batch. We read until every partition has yielded
    a record at or past that offset, with no timeout standing in for "done": the earlier
    version stopped at its first empty ``getmany(timeout_ms=300)`` and returned the wrong
    answer unchanged whenever the broker took longer than that (a busy broker during a
    rebalance; see docs/reliability.md). Partitions reported as empty (0) are empty for real:
    Tansu only errs once a batch exists. The answer is never below the truth at the time of
    the call; records written meanwhile may raise it.
    """
    result = dict(reported)
    todo = {TopicPartition(tp.topic, tp.partition): tp
            for tp, off in reported.items() if off and off > 0}
    if not todo:
        return result
    consumer = aiokafka.AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", fetch_max_wait_ms=FETCH_MAX_WAIT_MS, **client)
    await consumer.start()
    try:
        consumer.assign(list(todo))
        for ktp, tp in todo.items():
            consumer.seek(ktp, reported[tp] - 1)
        pending = set(todo)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + deadline_s
        while pending:
            left = deadline - loop.time()
            if left <= 0:
                raise EndOffsetUnavailable(
                    f"newest batch not readable within {deadline_s:.0f}s for "
                    + ", ".join(f"{k.topic}[{k.partition}]@{reported[todo[k]] - 1}"
                                for k in sorted(pending)))
            batch = await consumer.getmany(*pending, timeout_ms=int(min(left, 1.0) * 1000))
            for ktp, records in batch.items():
                if not records:
                    continue
                tp = todo[ktp]
                result[tp] = max(result[tp], records[-1].offset + 1)
                if records[-1].offset >= reported[tp] - 1:
                    pending.discard(ktp)
    finally:
        await consumer.stop()
    return result


#: Faust hard-codes a 1.5 s fetch long-poll and Tansu answers a fetch only when the wait
#: expires, so every hop could cost up to 1.5 s (measured by ``bench/``: 409 ms p50 round trip
#: at 1500 ms vs 3.8 ms at 10 ms).
FETCH_MAX_WAIT_MS = 20


class TansuConsumerThread(GuardedConsumerThread):
    """Faust's aiokafka consumer thread with corrected highwaters (used by table recovery)
    and a short fetch long-poll."""

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the fetcher starts
        return consumer

    async def _highwaters(self, partitions: Iterable[Any]) -> Mapping[Any, int]:
        reported = await super()._highwaters(list(partitions))
        transport = self.transport
        servers = faust_aiokafka.server_list(transport.url, transport.default_port)
        return await true_end_offsets(servers, reported)


class TansuConsumer(GuardedConsumer):
    def _new_consumer_thread(self) -> TansuConsumerThread:
        return TansuConsumerThread(self, loop=self.loop, beacon=self.beacon)


class TansuTransport(GuardedTransport):
    """The guarded aiokafka transport plus the end-offset fix; selected by ``tansu://`` URLs."""

    Consumer = TansuConsumer


def register() -> None:
    """Make ``tansu://`` and ``kafka+guarded://`` resolve to our transports (idempotent)."""
    drivers.TRANSPORTS.aliases[SCHEME] = f"{__name__}:TansuTransport"
    drivers.TRANSPORTS.aliases[KAFKA_SCHEME] = "streams.offsets:GuardedTransport"
