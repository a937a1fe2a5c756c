"""The user state's format version, its compact stored form, and the reader that upgrades
older forms.

User state now lives on disk (RocksDB) and in changelogs for as long as a user exists, so a
change to its shape must be able to read every older shape. Each state carries ``format``;
:func:`read_user_state` upgrades older ones step by step (``MIGRATIONS``) when they are read,
and the next write stores the current form. States written before the field existed are
format 0.

The pipeline works on one plain form (``history`` as ``[song_id, action, ts]`` items, ``seen``
as ``[partition, offset]`` pairs; :func:`streams.pipeline.new_user_state`). From format 2 the
table stores it packed (:func:`pack_user_state`): song ids, one letter per action and
timestamp deltas in parallel lists, ``seen`` as offset deltas, long event ids as 72-bit
hashes. A full state (50 items, 64 event ids) went from 3.2 KB of JSON to 1.7 KB with the
bench's short event ids, 5.1 KB to 2.1 KB with UUIDs (20 events: 1.2 KB to 0.7 KB): every
changelog record and every RocksDB value of a touched user is that much smaller.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

from .errors import StateFormatError

#: The format this code writes.
USER_STATE_FORMAT = 2

State = dict[str, Any]

#: Event ids up to this length are kept as they are; longer ones as :func:`event_key`.
MAX_PLAIN_EVENT_ID = 16

ACTION_CODES = {"play": "p", "complete": "c", "collect": "l", "skip": "s"}
ACTIONS_BY_CODE = {v: k for k, v in ACTION_CODES.items()}


def event_key(event_id: str) -> str:
    """What the state remembers of an event id for de-duplication: the id itself when short,
    else ``#`` and 72 bits of its BLAKE2b hash (a false duplicate among a user's 64 recent
    ids is a 1 in 2^66 event)."""
    if len(event_id) <= MAX_PLAIN_EVENT_ID and not event_id.startswith("#"):
        return event_id
    digest = hashlib.blake2b(event_id.encode(), digest_size=9).digest()
    return "#" + base64.urlsafe_b64encode(digest).decode()


def _from_0(state: State) -> State:
    """Unversioned states: ``seen`` and ``applied`` may be missing (older still)."""
    counts = state.get("counts") or {}
    return {"seen": [], **state, "applied": int(state.get("applied", sum(counts.values()))),
            "format": 1}


def _from_1(state: State) -> State:
    """Format 1 kept event ids whole; format 2 remembers :func:`event_key` of each."""
    return {**state, "event_ids": [event_key(e) for e in state["event_ids"]], "format": 2}


#: format n -> a function that returns the same state in format n + 1.
MIGRATIONS: dict[int, Callable[[State], State]] = {0: _from_0, 1: _from_1}


def _deltas(values: list[int]) -> list[int]:
    return [v - p for p, v in zip([0, *values], values, strict=False)]


def _undeltas(deltas: list[int]) -> list[int]:
    out, total = [], 0
    for d in deltas:
        total += d
        out.append(total)
    return out


def pack_user_state(state: State) -> State:
    """The stored (format 2) form of a current plain state; :func:`read_user_state` inverts
    it exactly."""
    history = state["history"]
    actions = [h[1] for h in history]
    packed_actions: Any = ("".join(ACTION_CODES[a] for a in actions)
                           if all(a in ACTION_CODES for a in actions) else actions)
    parts = [p for p, _ in state["seen"]]
    return {
        "format": USER_STATE_FORMAT, "applied": state["applied"],
        "boundary": state["boundary"], "counts": state["counts"], "offsets": state["offsets"],
        "h": {"s": [h[0] for h in history], "a": packed_actions,
              "t": _deltas([h[2] for h in history])},
        "e": state["event_ids"],
        "seen": {"p": parts[0] if parts and len(set(parts)) == 1 else parts,
                 "o": _deltas([o for _, o in state["seen"]])},
    }


def _unpack(stored: State) -> State:
    h, seen = stored["h"], stored["seen"]
    actions = h["a"]
    if isinstance(actions, str):
        actions = [ACTIONS_BY_CODE[c] for c in actions]
    offsets = _undeltas(seen["o"])
    parts = seen["p"] if isinstance(seen["p"], list) else [seen["p"]] * len(offsets)
    return {
        "history": [[s, a, t] for s, a, t in zip(h["s"], actions, _undeltas(h["t"]),
                                                   strict=True)],
        "counts": stored["counts"], "offsets": stored["offsets"], "event_ids": stored["e"],
        "seen": [[p, o] for p, o in zip(parts, offsets, strict=True)],
        "boundary": stored["boundary"], "applied": stored["applied"],
        "format": USER_STATE_FORMAT,
    }


def read_user_state(state: State | None) -> State | None:
    """``state`` in the current plain form (None stays None); never modifies its argument.

    Reads the packed form (format 2 as stored), a plain state of the current format (as the
    pipeline builds it) unchanged, and older plain forms through ``MIGRATIONS``.
    """
    if state is None:
        return None
    version = int(state.get("format", 0))
    if version > USER_STATE_FORMAT:
        raise StateFormatError(f"user state format {version} is newer than this worker's "
                               f"{USER_STATE_FORMAT}")
    if "h" in state:
        return _unpack(state)
    while version < USER_STATE_FORMAT:
        state = MIGRATIONS[version](state)
        version = int(state["format"])
    return state
