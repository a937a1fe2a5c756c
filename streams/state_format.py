"""The user state's format version, and the reader that upgrades older forms.

User state now lives on disk (RocksDB) and in changelogs for as long as a user exists, so a
change to its shape must be able to read every older shape. Each state carries ``format``;
:func:`read_user_state` upgrades older ones step by step (``MIGRATIONS``) when they are read,
and the next write stores the current form. States written before the field existed are
format 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import StateFormatError

#: The format this code writes.
USER_STATE_FORMAT = 1

State = dict[str, Any]


def _from_0(state: State) -> State:
    """Unversioned states: ``seen`` and ``applied`` may be missing (older still)."""
    counts = state.get("counts") or {}
    return {"seen": [], **state, "applied": int(state.get("applied", sum(counts.values()))),
            "format": 1}


#: format n -> a function that returns the same state in format n + 1.
MIGRATIONS: dict[int, Callable[[State], State]] = {0: _from_0}


def read_user_state(state: State | None) -> State | None:
    """``state`` in the current format (None stays None); never modifies its argument."""
    if state is None:
        return None
    version = int(state.get("format", 0))
    if version > USER_STATE_FORMAT:
        raise StateFormatError(f"user state format {version} is newer than this worker's "
                               f"{USER_STATE_FORMAT}")
    while version < USER_STATE_FORMAT:
        state = MIGRATIONS[version](state)
        version = int(state["format"])
    return state
