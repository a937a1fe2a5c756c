"""`produce` rides out a broker that is not there yet instead of failing at once."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError

from streams.broker import EmbeddedBroker, free_port
from streams.client import consume, produce

pytestmark = pytest.mark.integration


async def read(bootstrap: str, topic: str, n: int) -> list[bytes]:
    return [r.value async for r in consume(bootstrap, topic, idle_timeout=5.0, max_messages=n)]


def test_produce_retries_until_the_broker_comes_up(tmp_path: Path) -> None:
    broker = EmbeddedBroker(port=free_port(), log_path=tmp_path / "tansu.log")
    later = threading.Timer(3.0, broker.start)  # down when the producer starts
    records = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(50)]
    later.start()
    try:
        began = time.monotonic()
        sent = asyncio.run(produce(broker.bootstrap, "retry.topic", records, retry_for=60.0))
        assert sent == 50 and time.monotonic() - began >= 2.5
        got = asyncio.run(read(broker.bootstrap, "retry.topic", 50))
        assert sorted(got) == sorted(v for _, v in records)
    finally:
        later.cancel()
        broker.stop()


def test_produce_without_retry_fails_at_once_when_no_broker() -> None:
    with pytest.raises(KafkaConnectionError):
        asyncio.run(produce(f"127.0.0.1:{free_port()}", "t", [(None, b"x")]))
