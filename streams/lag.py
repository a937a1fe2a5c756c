"""Consumer lag per topic/partition: true end offset minus the group's committed offset.

aiokafka's admin ``list_consumer_group_offsets`` cannot decode Tansu's answer, while a
consumer's own ``committed()`` works, so a group-less side consumer asks for both. On the
embedded broker the end offset is corrected by :func:`streams.compat.true_end_offsets`.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from .compat import true_end_offsets
from .metrics import Metrics

log = logging.getLogger(__name__)


class PartitionLag(NamedTuple):
    """What the broker says of one partition: the group's committed offset (None: nothing
    committed yet) and the true end offset."""

    committed: int | None
    end: int

    @property
    def behind(self) -> int:
        return max(0, self.end - (self.committed or 0))


class LagMonitor:
    def __init__(self, bootstrap: str, group_id: str, topics: list[str], metrics: Metrics,
                 correct_end_offsets: bool, **client: Any) -> None:
        self.bootstrap, self.group_id, self.topics = bootstrap, group_id, topics
        self.metrics, self.correct = metrics, correct_end_offsets
        self.client = client

    async def measure(self) -> dict[TopicPartition, PartitionLag]:
        """One short-lived client per measurement: nothing is left open at shutdown. The
        committed offsets are the broker's, which the worker's own bookkeeping may not match
        (``GuardedConsumerMixin.behind``)."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.group_id,
                                    enable_auto_commit=False, **self.client)
        await consumer.start()
        try:
            tps = [TopicPartition(t, p) for t in self.topics
                   for p in sorted(consumer.partitions_for_topic(t) or [])]
            if not tps:
                return {}
            ends = await consumer.end_offsets(tps)
            if self.correct:
                ends = await true_end_offsets(self.bootstrap, ends, **self.client)
            lags = {}
            for tp in tps:
                lags[tp] = PartitionLag(await consumer.committed(tp), ends[tp])
                self.metrics.consumer_lag.labels(
                    topic=tp.topic, partition=str(tp.partition)).set(lags[tp].behind)
            return lags
        finally:
            await consumer.stop()
