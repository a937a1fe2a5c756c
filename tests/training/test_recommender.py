"""The fused score's I2I2U term is the served I2I2U path: kNN over the model's own vectors."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from training.baselines import ContentKNN
from training.recommender import PathFusion


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
