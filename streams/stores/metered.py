"""Metering and error translation around any backend.

Every call is timed into ``coldstream_vector_store_seconds{op}`` and a backend failure (HTTP,
gRPC, engine) becomes a :class:`StoreError`, so callers retry store outages and nothing else.
No lock here: each backend serialises what it must itself (see its module).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import StoreError
from .base import VectorStore
from .wrapper import StoreWrapper

T = TypeVar("T")


class MeteredStore(StoreWrapper):
    """A :class:`VectorStore` that meters and translates the calls of ``inner``."""

    def __init__(self, inner: VectorStore, metrics: Any) -> None:
        super().__init__(inner)
        self.metrics = metrics

    def call(self, op: str, fn: Callable[..., T], *args: Any) -> T:
        with self.metrics.store_call(op):
            try:
                return fn(*args)
            except StoreError:
                raise
            except Exception as exc:  # backend-specific errors: HTTP, gRPC, engine
                raise StoreError(f"vector store {op} failed: {exc}") from exc
