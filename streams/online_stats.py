"""Per-arm results of a closed-loop run, with 95 % bootstrap intervals over users (pure).

The unit of the experiment is the user (arms split users), so intervals resample users within
each arm, zero-exposure users included. Users reached per song counts the (song, user)
exposures of new songs divided by the number of new songs; the lift between arms compares it
per user of each arm, so an arm that drew a few more users by hash gains nothing from that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .listeners import Answer

RATES = ("collect", "complete", "skip")


@dataclass
class ArmData:
    """Per-user counts of one arm (rows: users of the arm)."""

    users: list[str]
    exposures: np.ndarray
    actions: dict[str, np.ndarray]  # action -> per-user count
    deliveries: int

    @classmethod
    def build(cls, users: list[str], answers: list[Answer], deliveries: int) -> ArmData:
        row = {u: i for i, u in enumerate(users)}
        exposures = np.zeros(len(users))
        actions = {a: np.zeros(len(users)) for a in ("play", "complete", "collect", "skip")}
        for ans in answers:
            i = row[ans.exposure.user_id]
            exposures[i] += 1
            actions[ans.action][i] += 1
        return cls(users, exposures, actions, deliveries)


def summarize(exposures: np.ndarray, actions: dict[str, np.ndarray],
              n_songs: int) -> dict[str, float]:
    shown = float(exposures.sum())
    out = {"users_reached_per_song": shown / n_songs,
           "reach_per_user_per_song": shown / n_songs / max(1, len(exposures))}
    for a in RATES:
        out[f"{a}_rate"] = float(actions[a].sum()) / shown if shown else 0.0
    return out


def resample(data: ArmData, rng: np.random.Generator, n_songs: int) -> dict[str, float]:
    idx = rng.integers(0, len(data.users), len(data.users))
    return summarize(data.exposures[idx], {a: v[idx] for a, v in data.actions.items()}, n_songs)


def lift(b: float, a: float) -> float:
    return b / a - 1 if a else float("nan")


def interval(values: list[float]) -> list[float]:
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    if not len(arr):
        return [float("nan"), float("nan")]
    return [float(np.percentile(arr, 2.5)), float(np.percentile(arr, 97.5))]


def compare(arms: dict[str, ArmData], n_songs: int, control: str, treatment: str,
            resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The online.json body: per-arm figures, the treatment's lift over control, CIs."""
    rng = np.random.default_rng(seed)
    point = {name: {**summarize(d.exposures, d.actions, n_songs), "deliveries": d.deliveries,
                    "exposures": int(d.exposures.sum()), "users": len(d.users)}
             for name, d in arms.items()}
    boots: dict[str, list[dict[str, float]]] = {name: [] for name in arms}
    for _ in range(resamples):
        for name, d in arms.items():
            boots[name].append(resample(d, rng, n_songs))
    metrics = ["users_reached_per_song", *(f"{a}_rate" for a in RATES)]
    ci: dict[str, Any] = {name: {m: interval([b[m] for b in boots[name]]) for m in metrics}
                          for name in arms}
    a, b = boots[control], boots[treatment]
    ci["lift_users_reached"] = interval([lift(y["reach_per_user_per_song"],
                                              x["reach_per_user_per_song"])
                                         for x, y in zip(a, b, strict=True)])
    ci["lift_collect_rate"] = interval([lift(y["collect_rate"], x["collect_rate"])
                                        for x, y in zip(a, b, strict=True)])
    pa, pb = point[control], point[treatment]
    return {"arms": point, "control": control, "treatment": treatment,
            "lift_users_reached": lift(pb["reach_per_user_per_song"],
                                       pa["reach_per_user_per_song"]),
            "lift_collect_rate": lift(pb["collect_rate"], pa["collect_rate"]),
            "ci95": ci, "new_songs": n_songs, "resamples": resamples}
