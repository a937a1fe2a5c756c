"""Metering and error translation around any backend.

Every call is timed into ``coldstream_vector_store_seconds{op}`` and a backend failure (HTTP,
gRPC, engine) becomes a :class:`StoreError`, so callers retry store outages and nothing else.
No lock here: each backend serialises what it must itself (see its module).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np

from ..errors import StoreError
from .base import Hit, Point, VectorStore, Where

T = TypeVar("T")


class MeteredStore:
    """A :class:`VectorStore` that meters and translates the calls of ``inner``."""

    def __init__(self, inner: VectorStore, metrics: Any) -> None:
        self.inner = inner
        self.metrics = metrics

    @contextmanager
    def _op(self, name: str) -> Iterator[None]:
        with self.metrics.store_call(name):
            try:
                yield
            except StoreError:
                raise
            except Exception as exc:  # backend-specific errors: HTTP, gRPC, engine
                raise StoreError(f"vector store {name} failed: {exc}") from exc

    def _timed(self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._op(name):
            return fn(*args, **kwargs)

    def ensure_collection(self, name: str, dim: int, indexes: dict[str, str]) -> None:
        self._timed("ensure_collection", self.inner.ensure_collection, name, dim, indexes)

    def upsert(self, collection: str, points: Sequence[Point]) -> None:
        self._timed("upsert", self.inner.upsert, collection, points)

    def search(self, collection: str, vector: np.ndarray, limit: int,
               where: Where | None = None) -> list[Hit]:
        return self._timed("search", self.inner.search, collection, vector, limit, where)

    def retrieve(self, collection: str, ids: Sequence[str],
                 with_vector: bool = True) -> list[Hit]:
        return self._timed("retrieve", self.inner.retrieve, collection, ids, with_vector)

    def set_payload(self, collection: str, point_id: str, payload: dict[str, Any]) -> None:
        self._timed("set_payload", self.inner.set_payload, collection, point_id, payload)

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        self._timed("delete", self.inner.delete, collection, ids)

    def count(self, collection: str, where: Where | None = None) -> int:
        return self._timed("count", self.inner.count, collection, where)

    def scroll(self, collection: str, offset: str | None, limit: int,
               with_vector: bool = False) -> tuple[list[Hit], str | None]:
        return self._timed("scroll", self.inner.scroll, collection, offset, limit, with_vector)

    def collections(self) -> list[str]:
        return self._timed("collections", self.inner.collections)

    def set_alias(self, alias: str, collection: str) -> None:
        self._timed("set_alias", self.inner.set_alias, alias, collection)

    def resolve(self, alias: str) -> str | None:
        return self._timed("resolve", self.inner.resolve, alias)

    def optimize(self, collection: str) -> bool:
        """Build the index where the backend has an explicit step (Qdrant Edge)."""
        return self._timed("optimize", self.inner.optimize, collection)  # type: ignore[attr-defined]

    def flush(self) -> None:
        self._timed("flush", self.inner.flush)

    def close(self) -> None:
        self.inner.close()
