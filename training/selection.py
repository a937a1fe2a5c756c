"""Model selection on validation items only: the one door through which choices are made.

A :class:`ValidationView` is built from a :class:`~training.split.Split` by *dropping* the
cold test: it holds the training interactions, the validation items and their
interactions, and nothing else. Early stopping (the trainer's validation hook), the token
cutoff, learning rates, loss weights and every baseline's knobs are chosen by
:func:`val_metrics` on such a view, so no cold-test item id or interaction can reach a
choice; ``tests/training/test_selection.py`` checks this structurally and by swapping the
cold test for garbage.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from coldstream_data.base import Dataset, Interactions

from .metrics import ranking_metrics, topk_random_ties
from .split import Split

#: The selection metric (the issue's: validation NDCG@20).
SELECT_K = 20
Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ValidationView:
    """What selection may see. No field refers to the cold test."""

    train: Interactions
    val: Interactions
    items: np.ndarray  # validation item ids: the candidates ranked during selection

    def __post_init__(self) -> None:
        if len(self.val) and not np.isin(self.val.item, self.items).all():
            raise ValueError("validation interactions outside the validation items")
        if np.isin(self.train.item, self.items).any():
            raise ValueError("validation items appear in training interactions")


def validation_view(split: Split) -> ValidationView:
    """The split minus its cold test (items and interactions)."""
    return ValidationView(train=split.train, val=split.val, items=split.val_items)


def val_metrics(view: ValidationView, score: Scorer, seed: int = 0, batch: int = 512
                ) -> dict[str, float]:
    """Recall@20 / NDCG@20 of ranking the validation items, users as in the harness."""
    pos = view.val.subset(view.val.positive())
    users = np.intersect1d(np.unique(view.train.user), np.unique(pos.user))
    if len(users) == 0 or len(view.items) == 0:
        return {"recall@20": float("nan"), "ndcg@20": float("nan")}
    col = {int(i): c for c, i in enumerate(view.items)}
    row = {int(u): r for r, u in enumerate(users)}
    relevant = np.zeros((len(users), len(view.items)), dtype=bool)
    for u, i in zip(pos.user, pos.item, strict=True):
        r = row.get(int(u))
        if r is not None:
            relevant[r, col[int(i)]] = True
    rng = np.random.default_rng(seed)
    k = min(SELECT_K, len(view.items))
    top = np.concatenate([topk_random_ties(np.asarray(score(users[s: s + batch], view.items),
                                                      dtype=np.float64), k, rng)
                          for s in range(0, len(users), batch)])
    m = ranking_metrics(top, relevant, (SELECT_K,))
    return {"recall@20": m[f"recall@{SELECT_K}"], "ndcg@20": m[f"ndcg@{SELECT_K}"]}


class EarlyStopping:
    """Keep the best state by validation NDCG@20; stop after ``patience`` epochs without gain."""

    def __init__(self, patience: int = 2) -> None:
        self.patience = patience
        self.best = -np.inf
        self.best_epoch = 0
        self.best_state: Any = None
        self.bad = 0
        self.curve: list[float] = []

    def update(self, epoch: int, value: float, state: Callable[[], Any]) -> bool:
        """Record one epoch; True when training should stop."""
        self.curve.append(value)
        if value > self.best:
            self.best, self.best_epoch, self.bad = value, epoch, 0
            self.best_state = copy.deepcopy(state())
        else:
            self.bad += 1
        return self.bad >= self.patience


class Tuned:
    """Grid search on validation items: fit every candidate, keep the best by val NDCG@20.

    ``budget`` (the grid size) is the same for the model and every baseline; each candidate
    also early-stops on the same view. The cold test is never passed in: ``fit`` takes the
    training dataset and a :class:`ValidationView`.
    """

    wants_validation = True

    def __init__(self, name: str, candidates: Sequence[Callable[[], Any]],
                 labels: Sequence[str] | None = None) -> None:
        self.name = name
        self.candidates = list(candidates)
        self.labels = list(labels or [str(i) for i in range(len(self.candidates))])
        self.chosen: str | None = None
        self.val: dict[str, float] = {}
        self.model: Any = None

    def fit(self, train: Dataset, validation: ValidationView) -> None:
        best = -np.inf
        for label, make in zip(self.labels, self.candidates, strict=True):
            t0 = time.perf_counter()
            model = make()
            fit_on_view(model, train, validation)
            score = val_metrics(validation, model.score)["ndcg@20"]
            self.val[label] = round(float(score), 5)
            self.val[f"{label}:fit_s"] = round(time.perf_counter() - t0, 2)
            if score > best or self.model is None:
                best, self.model, self.chosen = score, model, label

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.model.score(users, items)

    def __getattr__(self, name: str) -> Any:  # boundary(), result, ... of the chosen model
        if name in ("model", "candidates") or self.__dict__.get("model") is None:
            raise AttributeError(name)
        return getattr(self.__dict__["model"], name)


def fit_on_view(model: Any, train: Dataset, validation: ValidationView | None) -> None:
    """``fit(train, validation)`` for models that select on validation, else ``fit(train)``."""
    if validation is not None and getattr(model, "wants_validation", False):
        model.fit(train, validation)
    else:
        model.fit(train)
