"""The cold-item split: the benchmark's only notion of "new", fixed by seed and time.

Items are ordered by their first interaction. The newest ``cold_frac`` are the test's new
items and the ``val_frac`` before them a validation slice of new-ish items for model
selection; every interaction of either is hidden from training. Of the remaining (warm)
items' interactions a seeded ``warm_test_frac`` is held out to measure warm ranking.
Positives are collect/complete, or rating >= 4 where the source has ratings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coldstream_data.base import Dataset, Interactions


@dataclass(frozen=True)
class Split:
    """Item sets and the four disjoint interaction sets of one split."""

    train: Interactions
    warm_test: Interactions
    val: Interactions
    cold_test: Interactions
    warm_items: np.ndarray
    val_items: np.ndarray
    cold_items: np.ndarray
    seed: int

    def train_dataset(self, data: Dataset) -> Dataset:
        """What a model may fit on: the full catalogue (content is known at upload) and the
        training interactions only; ground truth is stripped."""
        return data.with_interactions(self.train)


def first_seen(data: Dataset) -> np.ndarray:
    """Epoch ms of each item's first interaction (int64 max for never-seen items)."""
    first = np.full(data.n_items, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, data.interactions.item, data.interactions.ts)
    return first


def cold_item_split(data: Dataset, cold_frac: float = 0.2, val_frac: float = 0.1,
                    warm_test_frac: float = 0.1, seed: int = 0) -> Split:
    """Temporal cold-item split; ties in first-seen time are broken by a seeded shuffle."""
    if not 0 < cold_frac < 1 or not 0 <= val_frac < 1 or cold_frac + val_frac >= 1:
        raise ValueError("need 0 < cold_frac, 0 <= val_frac and cold_frac + val_frac < 1")
    rng = np.random.default_rng(seed)
    first = first_seen(data)
    seen = np.flatnonzero(first < np.iinfo(np.int64).max)
    shuffled = rng.permutation(seen)
    ordered = shuffled[np.argsort(first[shuffled], kind="stable")]
    n_cold = max(1, int(round(cold_frac * len(ordered))))
    n_val = int(round(val_frac * len(ordered)))
    cold = np.sort(ordered[len(ordered) - n_cold:])
    val = np.sort(ordered[len(ordered) - n_cold - n_val: len(ordered) - n_cold])
    warm = np.sort(ordered[: len(ordered) - n_cold - n_val])
    inter = data.interactions
    is_cold = np.isin(inter.item, cold)
    is_val = np.isin(inter.item, val)
    is_warm = ~(is_cold | is_val)
    held = is_warm & (rng.random(len(inter)) < warm_test_frac)
    return Split(
        train=inter.subset(is_warm & ~held),
        warm_test=inter.subset(held),
        val=inter.subset(is_val),
        cold_test=inter.subset(is_cold),
        warm_items=warm, val_items=val, cold_items=cold, seed=seed,
    )
