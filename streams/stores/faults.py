"""Test hook (``COLDSTREAM_TEST_STORE_FAULTS``): make a fraction of store calls fail or slow
down, so outage handling is tested against the real engine, not a mock.

Imported by the worker only when that setting is set; nothing in serving depends on it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .base import VectorStore
from .wrapper import StoreWrapper

T = TypeVar("T")

#: Set-up calls are never faulted: the worker must be able to start.
NEVER_FAULTED = frozenset({"ensure_collection", "collections"})


class FaultInjectingStore(StoreWrapper):
    """Wraps a backend; ``spec`` is ``error_rate=0.2,delay_s=0.05,seed=1``."""

    def __init__(self, inner: VectorStore, spec: str, seed: int = 0) -> None:
        super().__init__(inner)
        opts = dict(part.split("=", 1) for part in spec.split(",") if part)
        self.error_rate = float(opts.get("error_rate", 0))
        self.delay_s = float(opts.get("delay_s", 0))
        self.rng = random.Random(int(opts.get("seed", seed)))
        self.injected = 0

    def call(self, op: str, fn: Callable[..., T], *args: Any) -> T:
        if op in NEVER_FAULTED:
            return fn(*args)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.rng.random() < self.error_rate:
            self.injected += 1
            raise ConnectionError(f"injected vector-store fault #{self.injected} in {op}")
        return fn(*args)
