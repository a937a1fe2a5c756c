"""Capped exponential backoff, the one retry rule of the worker and the clients.

An outage delays work, it never loses it: store calls in the event stream retry until they
succeed, set-up and shutdown calls retry a bounded number of times, client calls retry until a
deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
Errors = type[BaseException] | tuple[type[BaseException], ...]


class Backoff:
    """Delays ``first``, doubling up to ``cap``; one instance spans one piece of work."""

    def __init__(self, first: float = 0.1, cap: float = 5.0) -> None:
        self.delay = first
        self.cap = cap

    def next_delay(self) -> float:
        delay = self.delay
        self.delay = min(delay * 2, self.cap)
        return delay


def retry(fn: Callable[[], T], *, on: Errors, backoff: Backoff, attempts: int,
          what: str) -> T:
    """Blocking: call ``fn`` until it succeeds, at most ``attempts`` times."""
    for attempt in range(attempts):
        try:
            return fn()
        except on as exc:
            if attempt == attempts - 1:
                log.error("%s failed, giving up: %s", what, exc)
                raise
            delay = backoff.next_delay()
            log.warning("%s failed (%s); retrying in %.1f s", what, exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


async def retry_async(fn: Callable[[], Awaitable[T]], *, on: Errors, backoff: Backoff,
                      what: str, deadline: float | None = None) -> T:
    """Await ``fn()`` until it succeeds; past ``deadline`` (monotonic) the error is raised."""
    while True:
        try:
            return await fn()
        except on as exc:
            delay = backoff.delay
            if deadline is not None and time.monotonic() + delay > deadline:
                raise
            backoff.next_delay()
            log.warning("%s failed (%s); retrying in %.1f s", what, exc, delay)
            await asyncio.sleep(delay)
