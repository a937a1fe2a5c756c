"""The growing segment's rows filed by the sealed segment's IVF lists (Milvus's interim index
for growing segments, in its simplest form).

A search probes a few dozen of about a thousand lists; it needs the growing rows filed under
those. Testing every growing row's list per query was a pass over all of them (50,000 rows
at 1M points: ~0.2 ms a query, a tenth of the search). Here each list keeps its rows in an
array of its own, so a query gathers only what it reads. Filing, moving and removing a row
is O(1) (swap with the list's last row); a bulk change rebuilds all lists in one sort.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


class ListedRows:
    """Row -> list (``list_of``, 0: not listed yet) and list -> its rows."""

    def __init__(self) -> None:
        self.list_of = np.zeros(1024, dtype=np.int32)
        self._pos = np.zeros(1024, dtype=np.int64)  # row -> its index in its list's array
        self._rows: list[np.ndarray] = [np.zeros(8, dtype=np.int64)]
        self._count = np.zeros(1, dtype=np.int64)
        self.n = 0  # rows filed (0 .. n-1)

    def reset(self, lists: np.ndarray, n_lists: int) -> None:
        """File rows 0 .. len(lists)-1 under ``lists`` (1 + IVF list; 0: not listed), with
        ``n_lists`` lists in the index; forgets every earlier row."""
        lists = np.asarray(lists, dtype=np.int32)
        self.n = len(lists)
        cap = max(1024, 2 * self.n)
        self.list_of = np.zeros(cap, dtype=np.int32)
        self.list_of[:self.n] = lists
        self._count = np.bincount(lists, minlength=n_lists + 1).astype(np.int64)
        order = np.argsort(lists, kind="stable")
        starts = np.concatenate([[0], np.cumsum(self._count)])
        self._rows = []
        for b, count in enumerate(self._count):
            bucket = np.zeros(max(8, 2 * int(count)), dtype=np.int64)
            bucket[:count] = order[starts[b]:starts[b] + count]
            self._rows.append(bucket)
        self._pos = np.zeros(cap, dtype=np.int64)
        self._pos[order] = np.arange(self.n) - starts[lists[order]]

    def file(self, row: int, listed: int) -> None:
        """Put ``row`` (an existing one, or the next new one: ``n``) under list ``listed``."""
        if row >= self.n:
            assert row == self.n, "rows are filed in order"
            if row == len(self.list_of):
                self.list_of = np.concatenate([self.list_of, np.zeros_like(self.list_of)])
                self._pos = np.concatenate([self._pos, np.zeros_like(self._pos)])
            self.n += 1
        elif self.list_of[row] == listed:
            return
        else:
            self._remove(row)
        if listed >= len(self._rows):  # a list past those of the last reset
            self._rows += [np.zeros(8, dtype=np.int64) for _ in range(listed + 1 - len(self._rows))]
            self._count = np.concatenate([self._count, np.zeros(listed + 1 - len(self._count),
                                                                dtype=np.int64)])
        bucket, count = self._rows[listed], int(self._count[listed])
        if count == len(bucket):
            bucket = self._rows[listed] = np.concatenate([bucket, np.zeros_like(bucket)])
        bucket[count] = row
        self._count[listed] = count + 1
        self.list_of[row], self._pos[row] = listed, count

    def _remove(self, row: int) -> None:
        """Take ``row`` out of its list: the list's last row takes its place."""
        listed = int(self.list_of[row])
        bucket, last = self._rows[listed], int(self._count[listed]) - 1
        moved = int(bucket[last])
        bucket[self._pos[row]] = moved
        self._pos[moved] = self._pos[row]
        self._count[listed] = last

    def rows_in(self, lists: Iterable[int]) -> np.ndarray:
        """The rows filed under ``lists`` (1 + IVF list; 0: the unlisted rows)."""
        parts = [self._rows[b][:self._count[b]] for b in lists if b < len(self._rows)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
