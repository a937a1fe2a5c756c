"""``python -m bench.fastfetch worker``: the worker with Faust's consumer long-poll shortened.

Faust's aiokafka driver hard-codes ``fetch_max_wait_ms=1500`` and Tansu answers a fetch only
when that wait expires, so every hop can cost up to 1.5 s. This launcher (bench-only, used to
measure the fix before it lands in ``streams``) lowers it via ``COLDSTREAM_BENCH_FETCH_WAIT_MS``.
"""

from __future__ import annotations

import os

import aiokafka


def patch(wait_ms: int) -> None:
    """Make every AIOKafkaConsumer Faust creates use ``wait_ms`` as its fetch long-poll."""
    import faust.transport.drivers.aiokafka as driver

    base = aiokafka.AIOKafkaConsumer

    class ShortPoll(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: object, **kwargs: object) -> None:
            kwargs["fetch_max_wait_ms"] = wait_ms
            super().__init__(*args, **kwargs)

    driver.aiokafka.AIOKafkaConsumer = ShortPoll  # type: ignore[attr-defined]


if __name__ == "__main__":
    patch(int(os.environ.get("COLDSTREAM_BENCH_FETCH_WAIT_MS", "20")))
    from streams.cli import main

    main()
