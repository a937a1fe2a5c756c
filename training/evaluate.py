"""One harness for every scorer: fit on the split's training view, rank held-out items.

Any object with ``name``, ``fit(train_dataset)`` and ``score(users, items) -> matrix``
plugs in (the trainer's models included). A scorer may also offer ``boundary(users)``: a
per-user threshold; then new items are delivered where ``score >= boundary`` and the
delivery metrics describe that gate. Without one, the top-20 list is the delivery.

Segments: ``cold`` ranks only the new items (no one has interacted with them in training),
``warm`` the training items for held-out pairs the user had not seen, ``all`` both, and
``val`` the validation slice (for model selection; never reported as a result; selection
itself goes through :mod:`training.selection`, which cannot see the cold test). Users are
those with at least one training interaction and one relevant item in the segment.
"""

from __future__ import annotations

import time
from typing import Any, Protocol, runtime_checkable

import numpy as np
from tqdm.auto import tqdm

from coldstream_data.base import Dataset, Interactions

from .metrics import delivery_metrics, ranking_metrics, topk_random_ties
from .selection import fit_on_view, validation_view
from .split import Split

KS: tuple[int, ...] = (10, 20, 50)
DELIVERY_K = 20


@runtime_checkable
class Recommender(Protocol):
    """What the harness needs from a model."""

    name: str

    def fit(self, train: Dataset) -> None: ...

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(len(users), len(items)) scores; higher is better; ties are fine."""
        ...


def _pairs(inter: Interactions, n_items: int) -> np.ndarray:
    return inter.user.astype(np.int64) * n_items + inter.item


def _segment(split: Split, name: str) -> tuple[np.ndarray, Interactions, bool]:
    """Candidates, target interactions, and whether train-seen pairs are excluded."""
    if name == "cold":
        return split.cold_items, split.cold_test, False
    if name == "val":
        return split.val_items, split.val, False
    if name == "warm":
        return split.warm_items, split.warm_test, True
    if name == "all":
        both = np.concatenate([split.warm_items, split.cold_items])
        target = Interactions.build(
            *(np.concatenate([getattr(split.warm_test, f), getattr(split.cold_test, f)])
              for f in ("user", "item", "action", "ts", "rating")))
        return np.sort(both), target, True
    raise ValueError(f"unknown segment {name!r}")


def evaluate_segment(data: Dataset, split: Split, model: Recommender, segment: str,
                     ks: tuple[int, ...] = KS, seed: int = 0, max_users: int | None = None,
                     batch: int = 256, progress: bool = False) -> dict[str, Any]:
    """Ranking and delivery metrics of a fitted model on one segment."""
    n_items = data.n_items
    cands, target, exclude_seen = _segment(split, segment)
    col = np.full(n_items, -1, dtype=np.int64)
    col[cands] = np.arange(len(cands))
    seen = np.unique(_pairs(split.train, n_items))
    pos = target.subset(target.positive())
    pos_pairs = np.unique(_pairs(pos, n_items))
    if exclude_seen:
        pos_pairs = pos_pairs[~np.isin(pos_pairs, seen)]
    users = np.unique(split.train.user)
    if max_users is not None and len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    row = np.full(data.n_users, -1, dtype=np.int64)
    row[users] = np.arange(len(users))
    relevant = np.zeros((len(users), len(cands)), dtype=bool)
    pu, pi = pos_pairs // n_items, pos_pairs % n_items
    keep = (row[pu] >= 0) & (col[pi] >= 0)
    relevant[row[pu[keep]], col[pi[keep]]] = True
    attention = np.bincount(col[target.item][col[target.item] >= 0], minlength=len(cands))

    rng = np.random.default_rng(seed)
    kmax = max(max(ks), DELIVERY_K)
    topk = np.empty((len(users), min(kmax, len(cands))), dtype=np.int64)
    gated = np.zeros_like(relevant) if hasattr(model, "boundary") else None
    t0 = time.perf_counter()
    starts = range(0, len(users), batch)
    for s in tqdm(starts, desc=f"{model.name}:{segment}", disable=not progress, leave=False):
        u = users[s: s + batch]
        scores = np.asarray(model.score(u, cands), dtype=np.float64)
        if scores.shape != (len(u), len(cands)):
            raise ValueError(f"{model.name}.score returned {scores.shape}, "
                             f"expected {(len(u), len(cands))}")
        if exclude_seen:
            sp = seen[(seen >= u.min() * n_items) & (seen < (u.max() + 1) * n_items)]
            su, si = sp // n_items, sp % n_items
            ok = (col[si] >= 0) & np.isin(su, u)
            scores[np.searchsorted(u, su[ok]), col[si[ok]]] = -np.inf
        topk[s: s + len(u)] = topk_random_ties(scores, topk.shape[1], rng)
        if gated is not None:
            gated[s: s + len(u)] = scores >= np.asarray(model.boundary(u))[:, None]  # type: ignore[attr-defined]
    score_s = time.perf_counter() - t0

    result: dict[str, Any] = {
        "users": int((relevant.sum(1) > 0).sum()),
        "candidates": int(len(cands)),
        "positives": int(relevant.sum()),
        **ranking_metrics(topk, relevant, ks),
    }
    listed = np.zeros_like(relevant)
    np.put_along_axis(listed, topk[:, :DELIVERY_K], True, axis=1)
    result["delivery_top20"] = delivery_metrics(listed, relevant, attention)
    if gated is not None:
        result["delivery_gated"] = delivery_metrics(gated, relevant, attention)
    result["score_s"] = round(score_s, 3)
    return result


def evaluate(data: Dataset, split: Split, model: Recommender,
             segments: tuple[str, ...] = ("cold", "warm", "all"), ks: tuple[int, ...] = KS,
             seed: int = 0, max_users: int | None = None, progress: bool = False
             ) -> dict[str, Any]:
    """Fit ``model`` on the training view (no truth, no held-out events) and score it.

    A model with ``wants_validation`` also gets the split's :class:`ValidationView` (training
    + validation items, never the cold test) for early stopping and tuning.
    """
    t0 = time.perf_counter()
    fit_on_view(model, split.train_dataset(data), validation_view(split))
    fit_s = time.perf_counter() - t0
    report: dict[str, Any] = {"model": model.name, "fit_s": round(fit_s, 3), "segments": {}}
    for seg in segments:
        report["segments"][seg] = evaluate_segment(data, split, model, seg, ks=ks, seed=seed,
                                                   max_users=max_users, progress=progress)
    return report


def split_summary(split: Split) -> dict[str, int]:
    return {
        "train": len(split.train), "warm_test": len(split.warm_test), "val": len(split.val),
        "cold_test": len(split.cold_test), "warm_items": len(split.warm_items),
        "val_items": len(split.val_items), "cold_items": len(split.cold_items),
        "seed": split.seed,
    }
