"""Build (compress) the producer's record batches on a thread of their own, not on the loop.

aiokafka compresses a record batch when its sender builds the produce request, which runs on
the event loop. With zstd on the outputs, stop 39's stall tracer found that compression to be
the largest single cause of event-loop stalls in an idle soak: 2.5 s of 14.7 s stalled in
stalls of 40 ms or more (``aiokafka zstd_encode``). cramjam lets go of the GIL while it
compresses, so the same work on another thread leaves the loop free to heartbeat, fetch and
run the agents.

:class:`OffLoopSender` builds each drained batch on one ``coldstream-kafka-build`` thread
before aiokafka's own produce request is made; ``MessageBatch`` caches its built buffer, so the
request then only reads it. A drained batch has left the accumulator, so nothing else touches it
meanwhile, and aiokafka keeps one request in flight per broker, so order is kept. If a build
fails, the batch is left unbuilt and aiokafka builds it on the loop as before and reports the
error where it always did.

Tied to aiokafka 0.14's ``Sender._send_produce_req`` and ``MessageBatch.get_data_buffer``
(pinned in pyproject.toml); ``tests/streams/test_offloop_producer.py`` breaks if they move.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiokafka
from aiokafka.producer.sender import Sender
from faust.transport.drivers import aiokafka as faust_aiokafka

THREAD_NAME = "coldstream-kafka-build"
#: One thread for every producer of the process: builds are short and their order per broker
#: is already fixed by the sender, so a second thread would only compete for the two cores.
_BUILDER = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_NAME)


def build_batches(batches: Mapping[Any, Any]) -> None:
    """Build every batch's wire buffer (compression included); failures are left to aiokafka."""
    for batch in batches.values():
        with contextlib.suppress(Exception):
            batch.get_data_buffer()


class OffLoopSender(Sender):
    """aiokafka's sender, with each produce request's batches built on the builder thread."""

    async def _send_produce_req(self, node_id: int, batches: Mapping[Any, Any]) -> None:
        await asyncio.get_running_loop().run_in_executor(_BUILDER, build_batches, batches)
        await super()._send_produce_req(node_id, batches)


class OffLoopAIOKafkaProducer(aiokafka.AIOKafkaProducer):
    """An aiokafka producer whose batches are compressed off the event loop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # the sender keeps no state beyond Sender's own: only its produce step changes
        self._sender.__class__ = OffLoopSender


class OffLoopProducer(faust_aiokafka.Producer):
    """Faust's aiokafka producer (outputs, dead letters, table changelogs) on that client."""

    @property
    def _producer_type(self) -> type[aiokafka.AIOKafkaProducer]:
        return OffLoopAIOKafkaProducer
