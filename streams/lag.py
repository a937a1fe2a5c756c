"""Consumer lag per topic/partition: true end offset minus the group's committed offset.

aiokafka's admin ``list_consumer_group_offsets`` cannot decode Tansu's answer, while a
consumer's own ``committed()`` works, so a group-less side consumer asks for both. On the
embedded broker the end offset is corrected by :func:`streams.compat.true_end_offsets`.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from .compat import true_end_offsets
from .metrics import Metrics

log = logging.getLogger(__name__)


class LagMonitor:
    def __init__(self, bootstrap: str, group_id: str, topics: list[str], metrics: Metrics,
                 correct_end_offsets: bool, **client: Any) -> None:
        self.bootstrap, self.group_id, self.topics = bootstrap, group_id, topics
        self.metrics, self.correct = metrics, correct_end_offsets
        self.client = client

    async def measure(self) -> dict[TopicPartition, int]:
        """One short-lived client per measurement: nothing is left open at shutdown."""
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
                committed = await consumer.committed(tp) or 0
                lags[tp] = max(0, ends[tp] - committed)
                self.metrics.consumer_lag.labels(
                    topic=tp.topic, partition=str(tp.partition)).set(lags[tp])
            return lags
        finally:
            await consumer.stop()
