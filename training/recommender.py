"""The trained model as a harness :class:`~training.evaluate.Recommender` (+ ablations).

``score`` is the serving rule (user vector . song vector) and ``boundary`` the boundary
tower's threshold, both computed by the same towers that are exported.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from coldstream_data.base import Dataset

from .tasks import TrainConfig
from .train import TrainResult, train

#: Ablation name -> how it differs from the full model.
VARIANTS: dict[str, dict] = {
    "full": {},
    "no-contrastive": {"contrastive_weight": 0.0},
    "no-boundary": {"boundary_weight": 0.0},
    "audio-only": {"use_text": False},
    "text-only": {"use_audio": False, "align_epochs": 0},
    "no-tokens": {"bow_buckets": 0},
}


class TrainedRecommender:
    """Trains on ``fit``'s training view, then scores with the learned vectors."""

    def __init__(self, cfg: TrainConfig | None = None, name: str = "coldstream",
                 progress: bool = False, device: str = "auto") -> None:
        self.cfg, self.name, self.progress = cfg or TrainConfig(), name, progress
        self.device = device
        self.result: TrainResult | None = None

    def fit(self, train_data: Dataset) -> None:
        self.result = train(train_data, self.cfg, device=self.device, progress=self.progress)
        self.items, self.users, self.bounds = self.result.tasks.embed_all()

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.users[users] @ self.items[items].T


class GatedRecommender(TrainedRecommender):
    """Adds the boundary tower's per-user delivery threshold."""

    def boundary(self, users: np.ndarray) -> np.ndarray:
        return self.bounds[users]


def make_variant(variant: str, epochs: int | None = None, seed: int = 0,
                 progress: bool = False) -> TrainedRecommender:
    """A name from :data:`VARIANTS` (full, no-contrastive, no-boundary, audio-only, ...)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {sorted(VARIANTS)}")
    cfg = replace(TrainConfig(seed=seed), **VARIANTS[variant])
    if epochs is not None:
        cfg = replace(cfg, epochs=epochs)
    cls = TrainedRecommender if cfg.boundary_weight == 0 else GatedRecommender
    return cls(cfg, name=f"coldstream[{variant}]", progress=progress)
