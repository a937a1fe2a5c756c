"""Simulated listeners and the downstream ranker of ``coldstream simulate`` (pure, seeded).

The ranker reads ``candidates.coldstart`` as a real one would and shows each user at most a
few new songs per day, best score first. A listener answers a shown song by the music world's
own ground-truth rule (:func:`coldstream_data.music_world.taste_logit`): the same taste that
generated the history the model learned from, so the loop measures recovery of known taste.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from coldstream_data.base import ACTIONS
from coldstream_data.music_world import outcomes, taste_logit

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Exposure:
    user_id: str
    song_id: str
    arm: str
    score: float
    path: str
    shown_at: int  # event time, ms
    boundary: float | None = None  # the user's boundary on the candidate (U2I margin: score - it)


@dataclass(frozen=True)
class Answer:
    exposure: Exposure
    action: str
    ts: int


def rank(candidates: list[dict[str, Any]], per_user_day: int,
         shown_at: int) -> list[Exposure]:
    """The ranker: each user's best ``per_user_day`` candidates (one per song), shown now."""
    by_user: dict[str, dict[str, dict[str, Any]]] = {}
    for c in candidates:
        mine = by_user.setdefault(c["user_id"], {})
        best = mine.get(c["song_id"])
        if best is None or c["score"] > best["score"]:
            mine[c["song_id"]] = c
    shown = []
    for user_id in sorted(by_user):
        best = sorted(by_user[user_id].values(), key=lambda c: (-c["score"], c["song_id"]))
        shown += [Exposure(user_id, c["song_id"], c.get("arm") or "", c["score"], c["path"],
                           shown_at, c.get("boundary")) for c in best[:per_user_day]]
    return shown


class Listeners:
    """The world's listeners: who they are and how they answer a shown song."""

    def __init__(self, truth: dict[str, Any], user_ids: list[str], song_ids: list[str],
                 seed: int) -> None:
        self.truth = truth
        self.user_index = {u: i for i, u in enumerate(user_ids)}
        self.song_index = {s: i for i, s in enumerate(song_ids)}
        self.rng = np.random.default_rng(seed)

    def answer(self, shown: list[Exposure], noise: float = 0.6,
               mean_delay_ms: float = 2 * HOUR_MS) -> list[Answer]:
        """One action per exposure, drawn from the true fit, after a realistic delay."""
        if not shown:
            return []
        t = self.truth
        user = np.array([self.user_index[e.user_id] for e in shown])
        item = np.array([self.song_index[e.song_id] for e in shown])
        song_sub = np.asarray(t["song_subgenre"]) % 3
        z = taste_logit(t["user_taste"], t["user_mood"], t["user_fav_sub"], t["song_genre"],
                        t["song_mood"], song_sub, user, item)
        z = z + self.rng.normal(0, noise, len(shown))
        codes = outcomes(1 / (1 + np.exp(-z)), self.rng.random(len(shown)),
                         self.rng.random(len(shown)))
        delays = self.rng.exponential(mean_delay_ms, len(shown)).astype(np.int64) + 1000
        return [Answer(e, ACTIONS[int(c)], e.shown_at + int(d))
                for e, c, d in zip(shown, codes, delays, strict=True)]
