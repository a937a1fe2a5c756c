"""Tables whose recovery never rolls a key back to an older state.

A changelog is last-write-wins, and without transactions (Tansu has none) a member that lost
its partitions can still write: records its producer buffered before a pause (GC, SIGSTOP, a
starved VM) go out after it wakes, and it may finish the batch it was handling before it
learns it was expelled. The new owner has already re-read those events and written newer
states, so the stale record lands *after* them and the next recovery took it as the truth
(seen once: a user's count recovered as 16 of 17 after a paused member woke up; this is the
explanation that fits that run, not one traced record by record, see docs/reliability.md).

A table here names a *generation* for its values: a number that only grows as events are
applied to a key (for a user: the events applied). Recovery keeps, per key, the record with
the highest generation seen so far; a lower one is stale and skipped. Equal generations hold
the same events, and the later record wins as before. Values without a generation (None) keep
the plain last-write-wins rule.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from .table_store import DurableTable

log = logging.getLogger(__name__)

#: value -> its generation (None: no ordering known, last write wins).
Generation = Callable[[Any], int | None]


def user_generation(state: Any) -> int | None:
    """Events applied to a user state (``applied``; older states: the sum of their counts)."""
    if not isinstance(state, dict):
        return None
    applied = state.get("applied")
    if applied is None and isinstance(state.get("counts"), dict):
        applied = sum(state["counts"].values())
    return int(applied) if applied is not None else None


def fresh_records(batch: Iterable[Any], current: Mapping[Any, Any], generation: Generation,
                  key_of: Callable[[Any], Any]) -> tuple[list[Any], int]:
    """The records of ``batch`` to apply, in order, and how many were stale.

    ``current`` holds the values already in the table; a deletion (value None) always applies.
    """
    best: dict[Any, int] = {}
    fresh, stale = [], 0
    for event in batch:
        key = key_of(event.key)
        if event.message.value is None:
            best.pop(key, None)
            fresh.append(event)
            continue
        gen = generation(event.value)
        if key not in best:
            known = current.get(key)
            mark = generation(known) if known is not None else None
            if mark is not None:
                best[key] = mark
        if gen is not None and key in best and gen < best[key]:
            stale += 1
            continue
        if gen is not None:
            best[key] = gen
        fresh.append(event)
    return fresh, stale


class MonotoneTable(DurableTable):
    """A Faust table whose changelog replay skips records older than the key's state."""

    #: Called with the table name and the number of stale records skipped (metrics); one
    #: hook per process, set by the worker.
    on_stale: ClassVar[Callable[[str, int], None] | None] = None

    def __init__(self, *args: Any, generation: Generation, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.generation = generation

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        fresh, stale = fresh_records(batch, self.data, self.generation, self._to_key)
        if stale:
            log.info("%s: skipped %d stale changelog record(s) (older than the key's state)",
                     self.name, stale)
            hook = MonotoneTable.on_stale  # the class's plain function, not a bound method
            if hook is not None:
                hook(self.name, stale)
        super().apply_changelog_batch(fresh)
