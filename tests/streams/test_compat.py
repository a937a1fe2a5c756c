"""The Tansu end-offset quirk, measured against the real broker, and the shim that fixes it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from streams.broker import EmbeddedBroker, ensure_topics
from streams.client import consume, produce
from streams.compat import EndOffsetUnavailable, true_end_offsets

from .slow_broker import slow_broker

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


async def _read_back_ends(bootstrap: str, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    """The truth: last offset + 1 of every record a reader gets back, per partition."""
    ends = dict.fromkeys(tps, 0)
    async for record in consume(bootstrap, tps[0].topic, idle_timeout=1.0):
        tp = TopicPartition(record.topic, record.partition)
        ends[tp] = max(ends[tp], record.offset + 1)
    return ends


async def _reported(bootstrap: str, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        return await consumer.end_offsets(tps)
    finally:
        await consumer.stop()


def test_shim_is_exact_when_the_broker_answers_late(tmp_path: Path) -> None:
    """Replies 0.4 s late (a busy broker): the old shim's 300 ms poll returned Tansu's wrong
    answer unchanged here (8 for 14 records); the shim must wait for the batch instead."""
    async def run(bootstrap: str) -> tuple[dict, dict, dict]:
        await ensure_topics(bootstrap, ["slow.t"], partitions=2)
        for batch in range(2):  # two batches per partition, several records each
            await produce(bootstrap, "slow.t", [(b"k%d" % (i % 2), b"v%d-%d" % (batch, i))
                                                for i in range(14)])
        tps = [TopicPartition("slow.t", p) for p in range(2)]
        reported = await _reported(bootstrap, tps)
        return reported, await true_end_offsets(bootstrap, reported), \
            await _read_back_ends(bootstrap, tps)

    with slow_broker(0.4, tmp_path / "tansu.log") as bootstrap:
        reported, fixed, truth = asyncio.run(run(bootstrap))
    assert fixed == truth
    assert any(reported[tp] < truth[tp] for tp in truth)  # the quirk was there to fix


def test_shim_never_under_reports_during_concurrent_writes(broker: EmbeddedBroker) -> None:
    """While a producer writes, the answer lies between what was acknowledged before the
    call and what a reader gets back once writing stopped."""
    async def one_round(topic: str) -> tuple[dict, dict, dict]:
        tps = [TopicPartition(topic, p) for p in range(4)]
        acked = dict.fromkeys(tps, 0)
        stop = asyncio.Event()
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
        await producer.start()

        async def writer() -> None:
            n = 0
            while not stop.is_set():
                sent = [await producer.send(topic, b"v", key=b"k%d" % (n + i)) for i in range(12)]
                for meta in await asyncio.gather(*sent):
                    tp = TopicPartition(meta.topic, meta.partition)
                    acked[tp] = max(acked[tp], meta.offset + 1)
                n += 12

        task = asyncio.create_task(writer())
        try:
            await asyncio.sleep(0.3)
            # every partition written at least once before the call (a fixed 0.3 s was not
            # always enough on a loaded machine: a partition still at 0 failed `0 < before`)
            for _ in range(100):
                if all(acked.values()):
                    break
                await asyncio.sleep(0.1)
            before = dict(acked)
            fixed = await true_end_offsets(broker.bootstrap,
                                           await _reported(broker.bootstrap, tps))
        finally:
            stop.set()
            await task
            await producer.stop()
        return before, fixed, await _read_back_ends(broker.bootstrap, tps)

    async def run() -> list[tuple[dict, dict, dict]]:
        rounds = []
        for n in range(4):
            await ensure_topics(broker.bootstrap, [f"busy.{n}"], partitions=4)
            rounds.append(await one_round(f"busy.{n}"))
        return rounds

    for before, fixed, after in asyncio.run(run()):
        assert all(0 < before[tp] <= fixed[tp] <= after[tp] for tp in before)


def test_shim_fails_loudly_rather_than_under_report(broker: EmbeddedBroker) -> None:
    """A batch that cannot be read back is an error, never the broker's answer passed on."""
    tp = TopicPartition("compat.missing", 0)
    asyncio.run(ensure_topics(broker.bootstrap, ["compat.missing"], partitions=1))
    with pytest.raises(EndOffsetUnavailable, match=r"compat.missing\[0\]@41"):
        asyncio.run(true_end_offsets(broker.bootstrap, {tp: 42}, deadline_s=1.0))


def test_fetch_responses_carry_the_true_highwater(broker: EmbeddedBroker) -> None:
    """Faust's other end-offset path, ``consumer.highwater(tp)`` (its stream monitor), reads
    the highwater of fetch responses: Tansu gets that one right, so it needs no shim."""
    async def run() -> tuple[int, int | None]:
        await ensure_topics(broker.bootstrap, ["compat.hw"], partitions=1)
        for batch in range(3):
            await produce(broker.bootstrap, "compat.hw",
                          [(b"k", b"v%d-%d" % (batch, i)) for i in range(5)])
        tp = TopicPartition("compat.hw", 0)
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None,
                                    auto_offset_reset="earliest", fetch_max_wait_ms=20)
        await consumer.start()
        try:
            consumer.assign([tp])
            seen = 0
            while seen < 15:
                seen += sum(len(r) for r in (await consumer.getmany(timeout_ms=1000)).values())
            return (await consumer.end_offsets([tp]))[tp], consumer.highwater(tp)
        finally:
            await consumer.stop()

    listed, fetched = asyncio.run(run())
    assert fetched == 15
    assert listed < 15  # ListOffsets is the path that needs true_end_offsets
