"""The worker's gate: one event handler at a time touches the model and the store, and a new
song does not queue behind listener batches.

Every handler that reads or writes vectors holds the gate, and a model switch takes it to run
with no event in flight. With ``asyncio.Lock`` the waiters were served in arrival order, so a
new song that arrived while the interactions, engagement and refresh agents were all waiting
sat behind each of their batches (a listener update holds the gate for ~30 ms at 1M). Those
batches are not waited on by anyone; a new song's first candidate is the latency the product
promises. So here waiters go by priority, then arrival: a model switch first (it waits only
for the handler in flight), then new songs, then the rest. A held gate is never taken away:
the longest a song waits is the one handler already running.

Listener batches still run between songs: songs arrive at most a few per second, and each
holds the gate for tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from enum import IntEnum


class Priority(IntEnum):
    """Lower goes first."""

    SWITCH = 0
    SONGS = 1
    EVENTS = 2


class Gate:
    """A mutual-exclusion lock whose waiters are served by priority, then in arrival order.

    ``fair=True`` serves every waiter in arrival order (``asyncio.Lock``'s behaviour).
    ``on_wait(holder, seconds)`` is told each acquisition's wait (the worker exports it).
    """

    def __init__(self, fair: bool = False,
                 on_wait: Callable[[str, float], None] | None = None) -> None:
        self.fair = fair
        self.on_wait = on_wait
        self._held = False
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    def locked(self) -> bool:
        return self._held

    @property
    def waiting(self) -> int:
        return sum(1 for *_, fut in self._waiters if not fut.done())

    async def acquire(self, priority: Priority = Priority.EVENTS) -> None:
        if not self._held and not self._waiters:
            self._held = True
            return
        rank = 0 if self.fair else int(priority)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (rank, next(self._arrivals), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # handed over just as it was cancelled
                self.release()
            raise

    def release(self) -> None:
        """Hand the gate straight to the first waiter still waiting, or open it."""
        if not self._held:
            raise RuntimeError("release of a gate that is not held")
        while self._waiters:
            *_, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)  # stays held: ownership passes to that waiter
                return
        self._held = False

    @asynccontextmanager
    async def held(self, holder: str, priority: Priority = Priority.EVENTS
                   ) -> AsyncIterator[None]:
        """Hold the gate for the enclosed block; ``holder`` names the wait in the metric."""
        start = time.perf_counter()
        await self.acquire(priority)
        if self.on_wait is not None:
            self.on_wait(holder, time.perf_counter() - start)
        try:
            yield
        finally:
            self.release()
