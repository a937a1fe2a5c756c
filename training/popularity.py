"""The popularity prior the worker serves: how popular a new song will be, from its content.

:class:`training.recommender.PopularityPrior` predicts it from the baselines' content features,
for harness scoring. A worker cannot compute those (the music worlds' hand-made audio features
come from the world's generator), so the prior it serves reads only what its item tower
computes for every new song anyway: the MiniLM text vector and the hashed words the model's
token view keeps. Ridge (alpha 10, as the harness's prior) from those to a popularity target of
the warm items, z-scored over the catalogue and folded into one weight vector and intercept
(:class:`encoders.artifacts.PriorSpec`): in the worker the prior is one dot product, and the
delivery calibration weighs it as a fifth input (``streams.pipeline.EVIDENCE``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coldstream_data.base import Dataset
from encoders.artifacts import PriorSpec

from .data import token_view
from .recommender import PRIOR_TARGETS, pick_on_validation, popularity_targets
from .selection import ValidationView
from .train import TrainResult

ALPHA = 10.0


def prior_features(data: Dataset, result: TrainResult) -> np.ndarray:
    """(items, text_dim + bow_buckets): the text tower's vectors, then the words the trained
    token view keeps (the others zero, so their ridge weights are zero)."""
    text = result.tasks.teacher.detach().cpu().numpy().astype(np.float32)
    buckets = result.cfg.bow_buckets
    if not buckets:
        return text
    mask = result.towers.item.bow_mask.detach().cpu().numpy().astype(np.float32)
    return np.concatenate([text, token_view(data, buckets) * mask], axis=1)


def fit_prior(x: np.ndarray, target: np.ndarray, warm: np.ndarray) -> tuple[np.ndarray, float]:
    """Ridge from ``x`` to ``log1p(target)`` over the ``warm`` rows; returns weights and
    intercept folded so that ``x @ w + b`` is z-scored over every row of ``x``."""
    from sklearn.linear_model import Ridge

    ridge = Ridge(alpha=ALPHA).fit(x[warm], np.log1p(target[warm]))
    fit = x @ ridge.coef_ + ridge.intercept_
    mean, sd = float(fit.mean()), float(fit.std()) + 1e-9
    return (ridge.coef_ / sd).astype(np.float32), (float(ridge.intercept_) - mean) / sd


def pick_prior(x: np.ndarray, train: Dataset, validation: ValidationView
               ) -> tuple[str, np.ndarray]:
    """The target whose prior alone ranks the validation items best (NDCG@20), and that
    prior for every item (z-scored, fitted on ``train``'s warm items)."""
    targets = popularity_targets(train)
    warm = targets["events"] > 0
    z: dict[str, np.ndarray] = {}

    def use(name: str) -> None:
        w, b = fit_prior(x, targets[name], warm)
        z["now"] = x @ w + b

    target = pick_on_validation(validation, lambda users, items: np.broadcast_to(
        z["now"][items], (len(users), len(items))), PRIOR_TARGETS, use)
    return target, z["now"]  # pick_on_validation leaves the chosen one applied


def served_prior(data: Dataset, result: TrainResult, target: str,
                 fitted_on: str = "") -> PriorSpec:
    """The published model's prior: fitted on its own training data, to ``target``."""
    x = prior_features(data, result)
    targets = popularity_targets(data)
    w, b = fit_prior(x, targets[target], targets["events"] > 0)
    text_dim = int(result.tasks.teacher.shape[1])
    return PriorSpec(weights=[round(float(v), 7) for v in w], intercept=round(b, 7),
                     text_dim=text_dim, bow_buckets=x.shape[1] - text_dim, target=target,
                     fitted_on=fitted_on)


def trained_result(model: Any) -> TrainResult | None:
    """The :class:`TrainResult` behind a harness model (None for one without towers)."""
    result = getattr(model, "result", None)
    return result if isinstance(result, TrainResult) else None
