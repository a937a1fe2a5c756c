"""A real Tansu broker whose answers arrive late: a loopback TCP proxy that delays replies.

The broker advertises the proxy's port, so every client connection (bootstrap and the
per-node ones) goes through it. It models a broker that is slow to answer, as a busy
embedded broker is during a rebalance, without changing what it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from streams.broker import free_port, tansu_binary, wait_for_port


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                delay_s: float) -> None:
    """Copy bytes, each chunk delivered ``delay_s`` after it arrived (order kept)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, chunk = await queue.get()
            if not chunk:
                break
            await asyncio.sleep(max(0.0, due - loop.time()))
            writer.write(chunk)
            await writer.drain()

    sender = asyncio.create_task(deliver())
    try:
        while chunk := await reader.read(65536):
            queue.put_nowait((loop.time() + delay_s, chunk))
        queue.put_nowait((0.0, b""))
        await sender
    except (ConnectionError, asyncio.CancelledError):
        sender.cancel()
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class SlowProxy:
    """Listens on ``port`` and forwards to ``target``; replies are late by ``delay_s``."""

    def __init__(self, target: int, delay_s: float) -> None:
        self.port, self.target, self.delay_s = free_port(), target, delay_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        await asyncio.gather(_pipe(reader, up_writer, 0.0),
                             _pipe(up_reader, writer, self.delay_s))

    def __enter__(self) -> SlowProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", self.port), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@contextlib.contextmanager
def slow_broker(delay_s: float, log_path: Path) -> Iterator[str]:
    """A fresh in-memory Tansu reached only through a :class:`SlowProxy`; yields bootstrap."""
    port = free_port()
    with SlowProxy(port, delay_s) as proxy, log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
             "--advertised-listener-url", f"tcp://127.0.0.1:{proxy.port}",
             "--storage-engine", "memory://tansu/"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_port("127.0.0.1", port)
            yield f"127.0.0.1:{proxy.port}"
        finally:
            process.terminate()
            process.wait(10)
