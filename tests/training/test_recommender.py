"""The fused score's I2I2U term is the served I2I2U path: kNN over the model's own vectors."""

from __future__ import annotations

from types import SimpleNamespace
from unittest.mock import patch

import numpy as np

from coldstream_data.base import Dataset, Interactions
from training.baselines import ContentKNN
from training.recommender import (
    PRIOR_TARGETS,
    EnsembleRecommender,
    PathFusion,
    PopularityPrior,
    TextPathFusion,
    TrainedRecommender,
    make_variant,
    popularity_rate,
)
from training.selection import Tuned, val_metrics, validation_view
from training.split import cold_item_split
from training.tasks import TrainConfig


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


def test_text_path_adds_minilm_knn_weighed_by_delta() -> None:
    """The third path is content kNN over the frozen text vectors, on top of the two paths."""
    rng = np.random.default_rng(3)
    model, text = rng.normal(size=(30, 6)), rng.normal(size=(30, 12))
    likes = [rng.choice(30, n, replace=False) for n in (2, 5, 11)]
    zero = SimpleNamespace(name="m", score=lambda u, i: np.zeros((len(u), len(i))))
    fused = TextPathFusion(zero, k=4)  # type: ignore[arg-type]
    fused.unit = model / np.linalg.norm(model, axis=1, keepdims=True)
    fused.text = text / np.linalg.norm(text, axis=1, keepdims=True)
    fused.likes = likes
    fused.prior = np.zeros(30, dtype=np.float32)
    knn = ContentKNN(SimpleNamespace(name="t"), k=4)  # type: ignore[arg-type]
    knn.vectors, knn.likes = fused.text, likes
    users, items = np.arange(3), np.arange(10, 30)
    fused.set_weights((0.5, 0.0, 2.0))
    expected = 0.5 * fused.i2i2u(users, items) + 2.0 * knn.score(users, items)
    np.testing.assert_allclose(fused.score(users, items), expected, atol=1e-5)
    assert fused.name == "m+paths+text" and fused.chosen.endswith("delta=2.0")
    other = np.arange(0, 10)  # the memo is per (users, items): another slice is recomputed
    np.testing.assert_allclose(fused.similarity("text", fused.text, users, other),
                               knn.score(users, other), atol=1e-6)
    fused.set_weights((0.0, 0.0, 0.0))  # delta 0: PathFusion's score, nothing from text
    assert not fused.score(users, items).any()
    assert next(iter(fused.grid())) == (0.0, 0.0, 0.0)  # the neutral option is tried first


def test_tune_reaches_the_model_inside_the_fused_variants() -> None:
    fused = make_variant("full+paths+text", tune=True)
    assert isinstance(fused, TextPathFusion) and isinstance(fused.model, Tuned)
    assert not isinstance(make_variant("full+paths+text").model, Tuned)


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


def test_popularity_rate_counts_events_per_day_since_each_items_first() -> None:
    day = 86_400_000
    # item 0: 4 events over 8 days; item 1: 2 events, first 1 day before the last event;
    # item 2: one event at the very end (floored to one day); item 3: never seen
    item = [0, 0, 0, 0, 1, 1, 2]
    ts = [0, day, 2 * day, 8 * day, 7 * day, 8 * day, 8 * day]
    inter = Interactions.build([0] * 7, item, [0] * 7, ts)
    counts, rate = popularity_rate(inter, 4)
    np.testing.assert_array_equal(counts, [4, 2, 1, 0])
    np.testing.assert_allclose(rate, [0.5, 2.0, 1.0, 0.0])


def test_prior_target_is_the_one_that_ranks_validation_items_best(tiny_world: Dataset) -> None:
    split = cold_item_split(tiny_world, seed=0)
    view = validation_view(split)
    train = split.train_dataset(tiny_world)
    ndcg = {}
    for target in PRIOR_TARGETS:  # each target alone, the way fit_prior weighs them
        only = PopularityPrior(TrainedRecommender(TrainConfig(seed=0), name="m"))
        with_only = patch("training.recommender.PRIOR_TARGETS", (target,))
        with with_only:
            only.fit_prior(train, view)
        assert only.target == target
        ndcg[target] = val_metrics(view, lambda u, i, p=only.prior: np.broadcast_to(
            p[i], (len(u), len(i))))["ndcg@20"]
    rec = PopularityPrior(TrainedRecommender(TrainConfig(seed=0), name="m"))
    rec.fit_prior(train, view)
    assert ndcg[rec.target] == max(ndcg.values())
    assert len(set(ndcg.values())) > 1  # the targets do rank differently here
    blind = PopularityPrior(TrainedRecommender(TrainConfig(seed=0), name="m"))
    blind.fit_prior(train)  # no validation: the first target, not a choice
    assert blind.target == PRIOR_TARGETS[0]
