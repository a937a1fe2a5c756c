"""The Tansu end-offset quirk, measured against the real broker, and the shim that fixes it."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from streams.broker import EmbeddedBroker, ensure_topics
from streams.client import produce
from streams.compat import true_end_offsets

pytestmark = pytest.mark.integration


def test_true_end_offsets_count_every_record_of_the_newest_batch(broker: EmbeddedBroker) -> None:
    async def run() -> tuple[int, int]:
        await ensure_topics(broker.bootstrap, ["compat.t"], partitions=1)
        # linger groups these into one record batch, the case Tansu answers wrongly
        await produce(broker.bootstrap, "compat.t", [(b"k", b"v%d" % i) for i in range(7)])
        tp = TopicPartition("compat.t", 0)
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
        await consumer.start()
        try:
            reported = (await consumer.end_offsets([tp]))[tp]
        finally:
            await consumer.stop()
        fixed = (await true_end_offsets(broker.bootstrap, {tp: reported}))[tp]
        return reported, fixed

    reported, fixed = asyncio.run(run())
    assert fixed == 7
    assert reported <= fixed  # Tansu 0.6.0 reports 1 here (first offset of the batch + 1)


def test_empty_partitions_stay_at_zero(broker: EmbeddedBroker) -> None:
    tp = TopicPartition("compat.empty", 0)
    asyncio.run(ensure_topics(broker.bootstrap, ["compat.empty"], partitions=1))
    assert asyncio.run(true_end_offsets(broker.bootstrap, {tp: 0})) == {tp: 0}


def test_topics_are_created_with_our_partition_count(broker: EmbeddedBroker) -> None:
    async def run() -> set[int]:
        created = await ensure_topics(broker.bootstrap, ["compat.parts"], partitions=3)
        again = await ensure_topics(broker.bootstrap, ["compat.parts"], partitions=3)
        assert created == ["compat.parts"] and again == []
        consumer = AIOKafkaConsumer("compat.parts", bootstrap_servers=broker.bootstrap,
                                    group_id=None)
        await consumer.start()
        try:
            return consumer.partitions_for_topic("compat.parts") or set()
        finally:
            await consumer.stop()

    assert asyncio.run(run()) == {0, 1, 2}
