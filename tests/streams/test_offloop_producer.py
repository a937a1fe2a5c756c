"""The producer compresses its batches off the event loop (real broker, real zstd)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.producer.message_accumulator import BatchBuilder

from streams.app import base_app
from streams.broker import EmbeddedBroker, ensure_topics
from streams.client import consume
from streams.offloop_producer import THREAD_NAME, OffLoopAIOKafkaProducer, OffLoopSender
from streams.settings import Settings

pytestmark = pytest.mark.integration

RECORDS = 2_000


def candidate(i: int) -> bytes:
    return orjson.dumps({"user_id": f"u{i * 7919 % 10007}", "song_id": f"s{i}",
                         "score": i / RECORDS, "explanation": "similar to " * (i % 9)})


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The thread each batch was built (compressed) on; while a build runs off the loop it
    waits for the loop to run a callback, which a build on the loop would never see."""
    threads: list[str] = []
    original = BatchBuilder._build

    def spying_build(self: BatchBuilder) -> Any:
        if self._buffer is None:
            threads.append(threading.current_thread().name)
            if threading.current_thread() is not threading.main_thread():
                loop_ran = threading.Event()
                LOOP.call_soon_threadsafe(loop_ran.set)
                assert loop_ran.wait(10), "the event loop did not run while a batch compressed"
        return original(self)

    monkeypatch.setattr(BatchBuilder, "_build", spying_build)
    yield threads


LOOP: asyncio.AbstractEventLoop


async def send_all(bootstrap: str, topic: str) -> None:
    global LOOP
    LOOP = asyncio.get_running_loop()
    producer = OffLoopAIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                       compression_type="zstd", linger_ms=20)
    await producer.start()
    try:
        sends = [await producer.send(topic, candidate(i), key=b"k") for i in range(RECORDS)]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


def read_back(bootstrap: str, topic: str) -> list[bytes]:
    async def run() -> list[bytes]:
        return [r.value async for r in consume(bootstrap, topic, idle_timeout=1.0)]
    return asyncio.run(run())


def test_batches_compress_on_the_build_thread_while_the_loop_runs(
        broker: EmbeddedBroker, builds: list[str]) -> None:
    topic = "offloop.zstd"
    asyncio.run(ensure_topics(broker.bootstrap, [topic], partitions=1))
    asyncio.run(send_all(broker.bootstrap, topic))
    assert builds and all(name.startswith(THREAD_NAME) for name in builds), builds
    assert read_back(broker.bootstrap, topic) == [candidate(i) for i in range(RECORDS)]


def test_a_build_that_fails_off_the_loop_is_retried_by_aiokafka_and_delivered(
        broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    topic = "offloop.fallback"
    original = BatchBuilder._build
    failed: list[str] = []

    def failing_once_off_the_loop(self: BatchBuilder) -> Any:
        if threading.current_thread().name.startswith(THREAD_NAME) and not failed:
            failed.append(threading.current_thread().name)
            raise RuntimeError("build failed on the build thread")
        return original(self)

    monkeypatch.setattr(BatchBuilder, "_build", failing_once_off_the_loop)
    asyncio.run(ensure_topics(broker.bootstrap, [topic], partitions=1))
    asyncio.run(send_all(broker.bootstrap, topic))
    assert failed  # the first build did fail off the loop; aiokafka built it again on the loop
    assert read_back(broker.bootstrap, topic) == [candidate(i) for i in range(RECORDS)]


def test_the_workers_faust_producer_is_the_off_loop_one(tmp_path: Path) -> None:
    """Outputs, dead letters and changelogs all go through Faust's producer: it must be ours,
    on both the Tansu and the real-Kafka scheme."""
    async def client_of(compat: str) -> tuple[type, type]:
        settings = Settings(data_dir=tmp_path, broker_compat=compat)
        app = base_app(settings, "127.0.0.1:9")
        assert app.conf.broker[0].scheme == ("tansu" if compat == "tansu" else "kafka+guarded")
        client = app.producer._new_producer()  # built, never started: no broker needed
        await client.stop()
        return type(client), type(client._sender)

    for compat in ("tansu", "kafka"):
        assert asyncio.run(client_of(compat)) == (OffLoopAIOKafkaProducer, OffLoopSender)
