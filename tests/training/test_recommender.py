"""The fused score's I2I2U term is the served I2I2U path: kNN over the model's own vectors."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from training.baselines import ContentKNN
from training.recommender import (
    EnsembleRecommender,
    PathFusion,
    TrainedRecommender,
    make_variant,
)


def test_i2i2u_term_equals_content_knn_over_the_same_vectors() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, 8)).astype(np.float32)
    likes = [rng.choice(40, n, replace=False) for n in (0, 1, 3, 12, 25)]
    fused = PathFusion(SimpleNamespace(name="m"), k=10)  # type: ignore[arg-type]
    fused.unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    fused.likes = likes
    knn = ContentKNN(SimpleNamespace(name="v"), k=10)  # type: ignore[arg-type]
    knn.vectors, knn.likes = fused.unit, likes
    users, items = np.arange(5), np.arange(40)
    got = fused.i2i2u(users, items)
    np.testing.assert_allclose(got, knn.score(users, items), atol=1e-6)
    assert not got[0].any()  # a user with no likes gets no I2I2U evidence
    assert np.isclose(got[1, likes[1][0]], 1.0)  # one like: its own cosine, 1


class _Fixed(TrainedRecommender):
    """A member whose "training" sets given vectors: the ensemble's arithmetic alone."""

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__(name="m")
        self.given = (rng.normal(size=(6, 4)), rng.normal(size=(9, 4)), rng.normal(size=9))
        self.fits = 0

    def fit(self, train_data: object, validation: object = None) -> None:  # type: ignore[override]
        self.users, self.items, self.bias = self.given
        self.bounds = np.zeros(6)
        self.fits += 1


def test_ensemble_scores_the_members_mean_and_averages_their_cosines() -> None:
    rng = np.random.default_rng(1)
    members = [_Fixed(rng) for _ in range(3)]
    ens = EnsembleRecommender(members)  # type: ignore[arg-type]
    ens.fit(None, None)  # type: ignore[arg-type]
    assert [m.fits for m in members] == [1, 1, 1]
    users, items = np.arange(6), np.arange(9)
    want = np.mean([m.users @ m.items.T + m.bias for m in members], axis=0)
    np.testing.assert_allclose(ens.score(users, items), want, atol=1e-9)
    unit = [m.items / np.linalg.norm(m.items, axis=1, keepdims=True) for m in members]
    np.testing.assert_allclose(ens.items @ ens.items.T,
                               np.mean([u @ u.T for u in unit], axis=0), atol=1e-9)


def test_ensemble_variant_trains_distinct_inits_of_the_named_model() -> None:
    ens = make_variant("full+ens3+paths", seed=2).model  # type: ignore[union-attr]
    assert isinstance(ens, EnsembleRecommender)
    assert [m.cfg.seed for m in ens.members] == [2, 1002, 2002]
    assert ens.members[0].cfg == make_variant("full", seed=2).cfg  # type: ignore[union-attr]
