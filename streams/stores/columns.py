"""The indexed payload fields of one collection, as arrays over its slots.

Segmented search filters in the worker, so it keeps the fields a collection declares in
``ensure_collection`` (``pipeline.SONG_INDEXES``: ``is_cold``, ``artist``, ...) as one numpy
array each: a :class:`~.base.Where` becomes a boolean mask in microseconds per 100k points.
A field holding something else than a scalar (a list: Qdrant matches any element) marks the
column unusable and such filters go to the engine instead.

:class:`ColumnPayloads` goes one step further: a point whose whole payload sits in the columns,
exactly (a listener's ``user_id``, ``boundary`` and ``updated_at``), gets its payload back from
them, so a search's hits need no read of the engine (Qdrant Edge: ~5 us per id, 1 ms for
U2I's 200 listeners).
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
        self.names: list[str] = []  # keyword codes back to their strings
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
        """Store one payload value; absent (None) clears it. A value the column cannot hold
        as it is (a list, a float in an integer field: truncating it would change what a
        filter matches, 1e300 would not fit) sends this field's filters to the engine."""
        if value is None:
            self.values[slot] = self._absent()
        elif self._number_fits(value):
            self.values[slot] = value
        elif isinstance(value, str) and self.kind == "keyword":
            code = self.codes.setdefault(value, len(self.codes))
            if code == len(self.names):
                self.names.append(value)
            self.values[slot] = code
        else:
            self.usable = False

    def _number_fits(self, value: Any) -> bool:
        if self.kind == "keyword":
            return False
        if isinstance(value, bool | int):
            return MISSING_INT < value < 2**63
        return isinstance(value, float) and self.kind == "float"

    def equals(self, value: Any, at: slice | np.ndarray) -> np.ndarray:
        """Whether the slots ``at`` (a slice: the first n; an array: those) hold ``value``."""
        values = self.values[at]
        if self.kind == "keyword":
            code = self.codes.get(value) if isinstance(value, str) else None
            return np.zeros(len(values), bool) if code is None else values == code
        return values == value

    def at_least(self, value: float, at: slice | np.ndarray) -> np.ndarray:
        values = self.values[at]
        if self.kind == "keyword":
            return np.zeros(len(values), bool)
        ok = values >= value
        return ok & (values != MISSING_INT) if self.kind == "integer" else ok


def holds_exactly(kind: str, value: Any) -> bool:
    """Whether a column of ``kind`` gives ``value`` back as the engine would: same type and
    value (a bool is not an integer, an int in a float column would come back as a float)."""
    if kind == "keyword":
        return type(value) is str
    if kind == "float":
        return type(value) is float and value == value  # NaN: JSON has none
    return type(value) is int and MISSING_INT < value < 2**63


class ColumnPayloads:
    """Per slot, which columns make up its whole payload (a bit per column; -1: the payload
    holds something the columns do not, or nothing is known: ask the engine)."""

    def __init__(self, columns: dict[str, Column], capacity: int) -> None:
        self.columns = columns
        self.bits = {key: 1 << i for i, key in enumerate(columns)}
        self.present = np.full(capacity, -1, dtype=np.int64)

    def grow(self, capacity: int) -> None:
        old = self.present
        self.present = np.full(capacity, -1, dtype=np.int64)
        self.present[:len(old)] = old

    def wrote(self, slot: int, payload: dict[str, Any], merge: bool = False) -> None:
        """After the columns took ``payload``: the whole of it (an upsert) or merged into
        the old one (``set_payload``, as Qdrant merges keys)."""
        bits = int(self.present[slot]) if merge else 0
        for key, value in payload.items():
            col = self.columns.get(key)
            if bits < 0 or col is None or not holds_exactly(col.kind, value):
                bits = -1
                break
            bits |= self.bits[key]
        self.present[slot] = bits

    def forget(self, slot: int) -> None:
        self.present[slot] = -1

    def payloads(self, slots: list[int]) -> list[dict[str, Any] | None]:
        """Each slot's payload rebuilt from the columns; None where the engine must answer."""
        if not slots:
            return []
        idx = np.asarray(slots, dtype=np.int64)
        present = self.present[idx].tolist()
        values = {}
        for key, col in self.columns.items():
            got = col.values[idx].tolist()
            values[key] = [col.names[c] if c >= 0 else None for c in got] \
                if col.kind == "keyword" else got
        return [None if bits < 0 else
                {key: values[key][i] for key, bit in self.bits.items() if bits & bit}
                for i, bits in enumerate(present)]
