"""A :class:`VectorStore` around another, every call routed through one method.

Subclasses decide what happens around a call (:class:`~.metered.MeteredStore`: timing and
error translation; :class:`~.faults.FaultInjectingStore`: test faults) by overriding
:meth:`StoreWrapper.call`; the interface stays explicit and typed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from .base import Hit, Point, VectorStore, Where

T = TypeVar("T")


class StoreWrapper:
    def __init__(self, inner: VectorStore) -> None:
        self.inner = inner

    def call(self, op: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)``, the backend's ``op``; subclasses add behaviour around it."""
        return fn(*args)

    def ensure_collection(self, name: str, dim: int, indexes: dict[str, str]) -> None:
        self.call("ensure_collection", self.inner.ensure_collection, name, dim, indexes)

    def upsert(self, collection: str, points: Sequence[Point]) -> None:
        self.call("upsert", self.inner.upsert, collection, points)

    def search(self, collection: str, vector: np.ndarray, limit: int,
               where: Where | None = None) -> list[Hit]:
        return self.call("search", self.inner.search, collection, vector, limit, where)

    def retrieve(self, collection: str, ids: Sequence[str], with_vector: bool = True,
                 with_payload: bool = True) -> list[Hit]:
        return self.call("retrieve", self.inner.retrieve, collection, ids, with_vector,
                         with_payload)

    def set_payload(self, collection: str, point_id: str, payload: dict[str, Any]) -> None:
        self.call("set_payload", self.inner.set_payload, collection, point_id, payload)

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        self.call("delete", self.inner.delete, collection, ids)

    def count(self, collection: str, where: Where | None = None) -> int:
        return self.call("count", self.inner.count, collection, where)

    def scroll(self, collection: str, offset: str | None, limit: int,
               with_vector: bool = False) -> tuple[list[Hit], str | None]:
        return self.call("scroll", self.inner.scroll, collection, offset, limit, with_vector)

    def collections(self) -> list[str]:
        return self.call("collections", self.inner.collections)

    def set_alias(self, alias: str, collection: str) -> None:
        self.call("set_alias", self.inner.set_alias, alias, collection)

    def resolve(self, alias: str) -> str | None:
        return self.call("resolve", self.inner.resolve, alias)

    def optimize(self, collection: str) -> bool:
        """Build the index where the backend has an explicit step (Qdrant Edge)."""
        return self.call("optimize", self.inner.optimize, collection)  # type: ignore[attr-defined]

    def flush(self) -> None:
        self.call("flush", self.inner.flush)

    def close(self) -> None:
        self.inner.close()
