"""A batch the worker cannot read stops its partition and alerts; nothing is skipped.

Real parts: the Tansu broker, a worker process, an lz4 batch written by a real producer. The
worker runs with the test hook that makes its client act as if the lz4 library were missing
(the crash of issue 11); a restart with the library reads the held batch.
"""

from __future__ import annotations

import asyncio
import re
import struct
import time
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.consumer.fetcher import READ_UNCOMMITTED, PartitionRecords
from aiokafka.errors import CorruptRecordException, RecordTooLargeError, UnsupportedCodecError
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition

from encoders.artifacts import Registry
from streams.broker import EmbeddedBroker
from streams.ids import song_point_id
from streams.pipeline import Collections
from streams.stores import EdgeStore
from streams.unreadable import UnreadableBatches, cause_of

from .test_worker import song
from .workers import make_worker

pytestmark = pytest.mark.integration


async def produce_to(bootstrap: str, topic: str, partition: int, payloads: list[dict],
                     compression: str | None) -> int:
    """Write ``payloads`` as one batch to one partition; returns the batch's first offset."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type=compression,
                                linger_ms=50)
    await producer.start()
    try:
        futures = [await producer.send(topic, orjson.dumps(p), key=p["song_id"].encode(),
                                       partition=partition) for p in payloads]
        return min([(await f).offset for f in futures])
    finally:
        await producer.stop()


def indexed(data_dir: Path, version: str, song_ids: list[str]) -> set[str]:
    store = EdgeStore(data_dir / "qdrant")
    try:
        hits = store.retrieve(Collections.for_version(version).songs,
                              [song_point_id(s) for s in song_ids], with_vector=False)
        return {h.payload["song_id"] for h in hits}
    finally:
        store.close()


def test_a_batch_without_its_codec_stops_the_partition_alerts_and_is_read_after_a_fix(
        broker: EmbeddedBroker, model_registry: Registry, tmp_path: Path) -> None:
    bs, p = broker.bootstrap, "unread"
    topic = f"{p}.songs.new"
    version = model_registry.current() or ""
    worker = make_worker(bs, model_registry.root, tmp_path, p,
                         COLDSTREAM_TEST_WITHOUT_CODECS='["lz4"]').start()
    held = [song(f"lz4-{i}", "jazz", i) for i in range(3)]
    try:
        before = [song(f"plain-{i}", "metal", i) for i in range(2)]
        asyncio.run(produce_to(bs, topic, 0, before, None))
        worker.wait_metric("coldstream_events_total", 2, topic=topic, outcome="ok")
        offset = asyncio.run(produce_to(bs, topic, 0, held, "lz4"))
        worker.wait_metric("coldstream_unreadable_batches_total", 1, topic=topic, cause="codec")
        # the other partitions keep flowing
        asyncio.run(produce_to(bs, topic, 1, [song("plain-after", "metal", 5)], None))
        worker.wait_metric("coldstream_events_total", 3, topic=topic, outcome="ok")
        time.sleep(3)  # a few more fetch rounds: the batch must stay reported once, not skipped
        assert worker.process is not None and worker.process.poll() is None, worker.log()
        assert worker.metric("coldstream_unreadable_partitions", topic=topic) == 1.0
        assert worker.metric("coldstream_unreadable_batches_total", topic=topic,
                             cause="codec") == 1.0
        assert worker.metric("coldstream_events_total", topic=topic, outcome="ok") == 3.0
    finally:
        assert worker.stop() == 0, worker.log()
    lines = [line for line in worker.log_path.read_text().splitlines()
             if "unreadable batch:" in line]
    assert len(lines) == 1, lines
    assert re.search(rf"topic {re.escape(topic)} partition 0 offset {offset} cause codec "
                     r"\(.*lz4.*\)", lines[0]), lines[0]
    assert not indexed(worker.data_dir, version, [s["song_id"] for s in held])

    # the library is back (no hook): the restarted worker reads the held batch, nothing lost
    worker.env.pop("COLDSTREAM_TEST_WITHOUT_CODECS")
    worker.start()
    try:
        worker.wait_metric("coldstream_events_total", 3, topic=topic, outcome="ok")
    finally:
        assert worker.stop() == 0, worker.log()
    assert indexed(worker.data_dir, version, [s["song_id"] for s in held]) == {
        s["song_id"] for s in held}


class FakeFetcher:
    def __init__(self) -> None:
        self._records: dict = {}


class FakeClient:
    """The three calls UnreadableBatches makes on aiokafka's consumer, recorded."""

    def __init__(self) -> None:
        self._fetcher = FakeFetcher()
        self.sought: dict = {}
        self.paused: set = set()

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.sought[tp] = offset

    def pause(self, tp: TopicPartition) -> None:
        self.paused.add(tp)


def test_a_record_over_the_fetch_limit_stops_its_partition_at_that_offset() -> None:
    tp = TopicPartition("songs.new", 2)
    err = RecordTooLargeError("There are some messages at [Partition=Offset]: %s=%s whose "
                              "size is larger than the fetch size %s", tp, 41, 1048576)
    client, seen = FakeClient(), []
    batches = UnreadableBatches()
    batches.on_stop = lambda event, n: seen.append((event, n))
    event = batches.stop(client, err)
    assert (event.topic, event.partition, event.offset, event.cause) == ("songs.new", 2, 41,
                                                                         "too_large")
    assert client.sought == {tp: 41} and client.paused == {tp}  # aiokafka had moved past it
    batches.stop(client, err)  # the same batch again (after a rebalance): reported once
    assert len(seen) == 1 and seen[0][1] == 1


def test_an_unlocatable_error_is_raised_not_swallowed() -> None:
    with pytest.raises(CorruptRecordException):
        UnreadableBatches().stop(FakeClient(), CorruptRecordException("Invalid CRC - ?"))
    assert [cause_of(e) for e in (UnsupportedCodecError(), CorruptRecordException(),
                                  RecordTooLargeError())] == ["codec", "corrupt", "too_large"]


def batch(base: int, n: int) -> bytearray:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=1 << 20)
    for i in range(n):
        builder.append(i, timestamp=None, key=b"k", value=b"v%d" % i, headers=[])
    raw = bytearray(builder.build())
    struct.pack_into(">q", raw, 0, base)  # the broker assigns the base offset
    return raw


def test_a_corrupt_batch_is_located_at_its_first_offset_by_the_real_record_reader() -> None:
    """aiokafka's own record iterator meets a CRC mismatch in the second batch of a fetch;
    the partition stops at that batch, after the two good records before it."""
    tp = TopicPartition("interactions", 1)
    bad = batch(12, 2)
    bad[-1] ^= 0xFF  # a flipped bit in the last record: the CRC no longer matches
    records = PartitionRecords(tp, MemoryRecords(bytes(batch(10, 2) + bad)), [], 10, None,
                               None, True, READ_UNCOMMITTED)
    client = FakeClient()
    client._fetcher._records[tp] = SimpleNamespace(_partition_records=records)
    got = []
    with pytest.raises(CorruptRecordException) as caught:
        for record in records:
            got.append(record.offset)
    assert got == [10, 11]
    event = UnreadableBatches().stop(client, caught.value)
    assert (event.partition, event.offset, event.cause) == (1, 12, "corrupt")
    assert client.sought == {tp: 12} and client.paused == {tp}
    assert tp not in client._fetcher._records  # the broken fetch is dropped, not retried
