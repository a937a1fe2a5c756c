"""Test hook (``COLDSTREAM_TEST_STORE_FAULTS``): make a fraction of store calls fail or slow
down, so outage handling is tested against the real engine, not a mock.

Imported by the worker only when that setting is set; nothing in serving depends on it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from .base import Hit, Point, VectorStore, Where

T = TypeVar("T")


class FaultInjectingStore:
    """Wraps a backend; ``spec`` is ``error_rate=0.2,delay_s=0.05,seed=1``."""

    def __init__(self, inner: VectorStore, spec: str, seed: int = 0) -> None:
        opts = dict(part.split("=", 1) for part in spec.split(",") if part)
        self.error_rate = float(opts.get("error_rate", 0))
        self.delay_s = float(opts.get("delay_s", 0))
        self.inner = inner
        self.rng = random.Random(int(opts.get("seed", seed)))
        self.injected = 0

    def _maybe_fail(self, name: str, fn: Callable[..., T], *args: Any) -> T:
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.rng.random() < self.error_rate:
            self.injected += 1
            raise ConnectionError(f"injected vector-store fault #{self.injected} in {name}")
        return fn(*args)

    # Set-up calls are never faulted: the worker must be able to start.
    def ensure_collection(self, name: str, dim: int, indexes: dict[str, str]) -> None:
        self.inner.ensure_collection(name, dim, indexes)

    def collections(self) -> list[str]:
        return self.inner.collections()

    def upsert(self, collection: str, points: Sequence[Point]) -> None:
        self._maybe_fail("upsert", self.inner.upsert, collection, points)

    def search(self, collection: str, vector: np.ndarray, limit: int,
               where: Where | None = None) -> list[Hit]:
        return self._maybe_fail("search", self.inner.search, collection, vector, limit, where)

    def retrieve(self, collection: str, ids: Sequence[str],
                 with_vector: bool = True) -> list[Hit]:
        return self._maybe_fail("retrieve", self.inner.retrieve, collection, ids, with_vector)

    def set_payload(self, collection: str, point_id: str, payload: dict[str, Any]) -> None:
        self._maybe_fail("set_payload", self.inner.set_payload, collection, point_id, payload)

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        self._maybe_fail("delete", self.inner.delete, collection, ids)

    def count(self, collection: str, where: Where | None = None) -> int:
        return self._maybe_fail("count", self.inner.count, collection, where)

    def scroll(self, collection: str, offset: str | None, limit: int,
               with_vector: bool = False) -> tuple[list[Hit], str | None]:
        return self._maybe_fail("scroll", self.inner.scroll, collection, offset, limit,
                                with_vector)

    def set_alias(self, alias: str, collection: str) -> None:
        self._maybe_fail("set_alias", self.inner.set_alias, alias, collection)

    def resolve(self, alias: str) -> str | None:
        return self._maybe_fail("resolve", self.inner.resolve, alias)

    def optimize(self, collection: str) -> bool:
        return self._maybe_fail("optimize", self.inner.optimize,  # type: ignore[attr-defined]
                                collection)

    def flush(self) -> None:
        self._maybe_fail("flush", self.inner.flush)

    def close(self) -> None:
        self.inner.close()
