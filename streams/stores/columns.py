"""The indexed payload fields of one collection, as arrays over its slots.

Segmented search filters in the worker, so it keeps the fields a collection declares in
``ensure_collection`` (``pipeline.SONG_INDEXES``: ``is_cold``, ``artist``, ...) as one numpy
array each: a :class:`~.base.Where` becomes a boolean mask in microseconds per 100k points.
A field holding something else than a scalar (a list: Qdrant matches any element) marks the
column unusable and such filters go to the engine instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MISSING_INT = np.iinfo(np.int64).min


class Column:
    """One payload field over slots: int64, float64 or keyword codes (-1: absent)."""

    def __init__(self, kind: str, capacity: int) -> None:
        self.kind = kind
        self.usable = True
        self.codes: dict[str, int] = {}
        if kind == "float":
            self.values = np.full(capacity, np.nan, dtype=np.float64)
        else:
            self.values = np.full(capacity, MISSING_INT if kind == "integer" else -1,
                                  dtype=np.int64)

    def grow(self, capacity: int) -> None:
        old = self.values
        self.values = np.resize(old, capacity)
        self.values[len(old):] = self._absent()

    def _absent(self) -> float | int:
        return {"float": np.nan, "integer": MISSING_INT}.get(self.kind, -1)

    def set(self, slot: int, value: Any) -> None:
        """Store one payload value; absent (None) clears it."""
        if value is None:
            self.values[slot] = self._absent()
        elif isinstance(value, bool | int | float) and self.kind != "keyword":
            self.values[slot] = value
        elif isinstance(value, str) and self.kind == "keyword":
            self.values[slot] = self.codes.setdefault(value, len(self.codes))
        else:
            self.usable = False

    def equals(self, value: Any, n: int) -> np.ndarray:
        if self.kind == "keyword":
            code = self.codes.get(value) if isinstance(value, str) else None
            return np.zeros(n, bool) if code is None else self.values[:n] == code
        return self.values[:n] == value

    def at_least(self, value: float, n: int) -> np.ndarray:
        if self.kind == "keyword":
            return np.zeros(n, bool)
        values = self.values[:n]
        ok = values >= value
        return ok & (values != MISSING_INT) if self.kind == "integer" else ok
