"""The vector-store interface and the value types every backend speaks.

Point ids are UUIDs derived from entity ids (:mod:`streams.ids`), so replays overwrite.
Flags are stored as 0/1 integers: Qdrant Edge stores bools as ints and ``MatchValue(True)``
finds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True)
class Point:
    id: str
    vector: np.ndarray | list[float]
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    payload: dict[str, Any]
    vector: np.ndarray | None = None


def make_hit(point_id: Any, payload: dict[str, Any] | None, score: float = 1.0,
             vector: Any = None) -> Hit:
    """The one place a backend's record becomes a :class:`Hit` (retrieve/scroll score 1.0)."""
    return Hit(str(point_id), float(score), dict(payload or {}),
               None if vector is None else np.asarray(vector, dtype=np.float32))


@dataclass(frozen=True)
class Where:
    """A conjunctive payload filter: equal values, lower bounds, excluded point ids."""

    equals: dict[str, int | str] = field(default_factory=dict)
    at_least: dict[str, float] = field(default_factory=dict)
    exclude_ids: frozenset[str] = frozenset()


class VectorStore(Protocol):
    """What the pipeline needs from a vector database."""

    def ensure_collection(self, name: str, dim: int, indexes: dict[str, str]) -> None: ...
    def upsert(self, collection: str, points: Sequence[Point]) -> None: ...
    def search(self, collection: str, vector: np.ndarray, limit: int,
               where: Where | None = None) -> list[Hit]: ...
    def retrieve(self, collection: str, ids: Sequence[str], with_vector: bool = True,
                 with_payload: bool = True) -> list[Hit]: ...
    def set_payload(self, collection: str, point_id: str, payload: dict[str, Any]) -> None: ...
    def delete(self, collection: str, ids: Sequence[str]) -> None: ...
    def count(self, collection: str, where: Where | None = None) -> int: ...
    def scroll(self, collection: str, offset: str | None, limit: int,
               with_vector: bool = False) -> tuple[list[Hit], str | None]: ...
    def collections(self) -> list[str]: ...
    def set_alias(self, alias: str, collection: str) -> None: ...
    def resolve(self, alias: str) -> str | None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


def as_list(vector: np.ndarray | list[float]) -> list[float]:
    return vector.tolist() if isinstance(vector, np.ndarray) else list(vector)


def scroll_all(store: VectorStore, collection: str, page: int = 256,
               with_vector: bool = False) -> Iterable[Hit]:
    """Every point of a collection, page by page."""
    offset: str | None = None
    while True:
        hits, offset = store.scroll(collection, offset, page, with_vector)
        yield from hits
        if offset is None:
            return


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last may be shorter), read as they come: a
    1M-point scroll is never held whole."""
    page: list[T] = []
    for item in items:
        page.append(item)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page
