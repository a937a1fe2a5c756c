"""The work thread: every blocking call (ONNX, vector store) runs here, off the event loop.

The event loop keeps heart-beating the consumer group while a song encodes. Store failures are
retried with capped backoff and the event is not acknowledged until its effects are written:
an outage delays events, it never loses them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .backoff import Backoff, retry, retry_async
from .errors import StoreError

T = TypeVar("T")


class RetryingExecutor:
    """One background thread; :meth:`run` retries vector-store failures until they succeed."""

    def __init__(self, max_delay_s: float = 5.0, name: str = "coldstream-work") -> None:
        self.max_delay_s = max_delay_s
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await retry_async(lambda: loop.run_in_executor(self.pool, fn, *args),
                                 on=StoreError, backoff=Backoff(0.1, self.max_delay_s),
                                 what="vector store")

    def shutdown(self) -> None:
        """Finish what is queued (its effects must land), then stop the thread."""
        self.pool.shutdown(wait=True)


def retry_store(fn: Callable[[], T], attempts: int, max_delay: float, what: str) -> T:
    """Blocking retry of a store call outside the event stream (start-up, shutdown)."""
    return retry(fn, on=StoreError, backoff=Backoff(0.1, max_delay), attempts=attempts,
                 what=f"vector store at {what}")
