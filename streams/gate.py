"""The worker's gate: one event handler at a time touches the model and the store, and how
long each waited for it is measured.

Every handler that reads or writes vectors holds the gate, and a model switch takes it to run
with no event in flight. Waiters are served in arrival order (``asyncio.Lock``'s behaviour),
or, with ``COLDSTREAM_SONGS_FIRST=true``, by priority and then arrival: a model switch first
(it waits only for the handler in flight), then new songs, then listener batches. A held gate
is never taken away.

Why priority is not the default: the idea was that a new song that arrives while the
interactions, engagement and refresh agents all wait sits behind each of their batches. At
1M, 500 interactions/s + 10 new songs/s (two 300 s soaks each way, stop 48,
``bench/results/stop48/soaks.md``) the songs' mean gate wait fell only from 13-14 to 9-11 ms,
the listener batches waited longer, and the new songs' latency was no better (p50 488-492
against 367-443 ms). The per-holder wait metric stays: it tells an operator whether the gate
is where time goes (here it is not; the worker's one core is).
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
