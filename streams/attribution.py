"""Per-user online state: deliveries under a daily budget, and the outcomes they earned.

Pure functions over one user's ``online_state`` value (a JSON dict), so agents stay thin and
the rules are tested without Kafka. Everything follows *event time*: a delivery happens at its
candidate's ``event_ts`` (the song's release on the stream), an outcome at its interaction's
``ts``; the budget day is the UTC day of ``event_ts``. A simulated clock therefore works the
same as a real one.

Idempotence: a delivery is known by its candidate id, so a replayed proposal is delivered
again (the same candidate) without counting against the budget twice; each outcome action is
counted at most once per delivery, whatever order the interactions arrive in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .events import CandidateEvent, InteractionEvent

DAY_MS = 86_400_000
PLAYED = frozenset({"play", "complete", "collect"})
#: Deliveries kept per user at most (the window also prunes them).
MAX_DELIVERIES = 500


def new_online_state() -> dict[str, Any]:
    return {"deliveries": [], "applied": 0}


def online_generation(state: Any) -> int | None:
    """Writes applied to a user's online state: only grows (streams.monotone_tables)."""
    if isinstance(state, dict) and state.get("applied") is not None:
        return int(state["applied"])
    return None


def event_time(cand: CandidateEvent) -> int:
    return cand.event_ts if cand.event_ts is not None else cand.created_at


@dataclass(frozen=True)
class Decision:
    candidate: CandidateEvent
    outcome: str  # "delivered", "replay" (delivered before: emit the same again), "dropped"


def deliver(state: dict[str, Any], proposals: list[CandidateEvent], per_day: int,
            window_ms: int) -> tuple[dict[str, Any], list[Decision]]:
    """Apply one user's proposals: highest scores first, at most ``per_day`` deliveries per
    event-time day (0: no cap). A delivery is never withdrawn, so a better proposal arriving
    after the day is full is dropped: the cap is first come, best first within a batch."""
    deliveries = list(state["deliveries"])
    known = {d["id"] for d in deliveries}
    per_day_count: dict[int, int] = {}
    for d in deliveries:
        per_day_count[d["ts"] // DAY_MS] = per_day_count.get(d["ts"] // DAY_MS, 0) + 1
    decisions = []
    for cand in sorted(proposals, key=lambda c: (-c.score, c.candidate_id)):
        if cand.candidate_id in known:
            decisions.append(Decision(cand, "replay"))
            continue
        ts = event_time(cand)
        day = ts // DAY_MS
        if per_day and per_day_count.get(day, 0) >= per_day:
            decisions.append(Decision(cand, "dropped"))
            continue
        per_day_count[day] = per_day_count.get(day, 0) + 1
        known.add(cand.candidate_id)
        deliveries.append({"id": cand.candidate_id, "song": cand.song_id, "ts": ts,
                           "v": cand.model_version, "path": cand.path, "arm": cand.arm,
                           "done": [], "first": None})
        decisions.append(Decision(cand, "delivered"))
    if not any(d.outcome == "delivered" for d in decisions):  # replays and drops write nothing
        return state, decisions
    return {"deliveries": prune(deliveries, window_ms),
            "applied": int(state.get("applied", 0)) + 1}, decisions


def prune(deliveries: list[dict[str, Any]], window_ms: int) -> list[dict[str, Any]]:
    """Deliveries whose window may still earn outcomes (relative to the newest), bounded."""
    if not deliveries:
        return deliveries
    newest = max(d["ts"] for d in deliveries)
    kept = [d for d in deliveries if d["ts"] >= newest - window_ms - DAY_MS]
    kept.sort(key=lambda d: d["ts"])
    return kept[-MAX_DELIVERIES:]


@dataclass(frozen=True)
class Attributed:
    """One outcome counted for one delivery."""

    action: str
    version: str
    path: str
    arm: str | None
    #: Event-time seconds from delivery to this first play (None: not the first play).
    first_play_s: float | None


def attribute(state: dict[str, Any], ev: InteractionEvent,
              window_ms: int) -> tuple[dict[str, Any], list[Attributed]]:
    """Count ``ev`` against the user's deliveries of its song within ``[ts, ts + window]``.

    An action already counted for a delivery is not counted again; the first play is the
    earliest played ``ts`` seen (a late-arriving earlier play corrects the state, though the
    histogram already observed the first one that arrived).
    """
    found: list[Attributed] = []
    deliveries = []
    for d in state["deliveries"]:
        if d["song"] != ev.song_id or not d["ts"] <= ev.ts <= d["ts"] + window_ms:
            deliveries.append(d)
            continue
        new = dict(d)
        first_play_s = None
        if ev.action in PLAYED and (d["first"] is None or ev.ts < d["first"]):
            if d["first"] is None:
                first_play_s = (ev.ts - d["ts"]) / 1000
            new["first"] = ev.ts
        if ev.action not in d["done"]:
            new["done"] = [*d["done"], ev.action]
            found.append(Attributed(ev.action, d["v"], d["path"], d["arm"], first_play_s))
        deliveries.append(new)
    if deliveries == state["deliveries"]:
        return state, found
    return {"deliveries": deliveries, "applied": int(state.get("applied", 0)) + 1}, found
