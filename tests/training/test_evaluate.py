from __future__ import annotations

import numpy as np
import pytest

from coldstream_data.base import Dataset, Interactions, make_catalogue
from training.baselines import (
    ConstantScorer,
    ContentKNN,
    PopularityScorer,
    RandomScorer,
    TagEncoder,
    TfidfEncoder,
)
from training.evaluate import Recommender, evaluate
from training.split import cold_item_split


def _id_biased_world(seed: int = 0) -> Dataset:
    """Low ids are popular, as on ml-100k: ties broken by id would look like skill."""
    rng = np.random.default_rng(seed)
    n_items, n_users, n = 400, 300, 30_000
    weight = 1.0 / (np.arange(n_items) + 1.0) ** 1.2
    item = rng.choice(n_items, n, p=weight / weight.sum())
    user = rng.integers(0, n_users, n)
    ts = rng.integers(0, 10**9, n) + item * 0  # first-seen order unrelated to id
    rating = np.full(n, 5.0)
    cat = make_catalogue(song_id=[f"{i}" for i in range(n_items)],
                         title=[f"t{i}" for i in range(n_items)])
    inter = Interactions.build(user, item, np.full(n, 2), ts, rating)
    return Dataset("id-biased", cat, np.asarray([str(u) for u in range(n_users)], dtype=object),
                   inter.sorted_by_time())


def test_constant_scorer_gets_only_chance():
    data = _id_biased_world()
    split = cold_item_split(data, cold_frac=0.3, seed=0)
    res = evaluate(data, split, ConstantScorer(), segments=("cold",), seed=0)["segments"]["cold"]
    n = res["candidates"]
    # expected recall of a random ranking is K / #candidates
    for k in (10, 20, 50):
        assert res[f"recall@{k}"] == pytest.approx(k / n, rel=0.25), (k, res[f"recall@{k}"])
    # ... whereas ordering ties by ascending id would have looked far better
    pos = split.cold_test
    lowest = np.sort(split.cold_items)[:20]
    by_id = np.mean([np.isin(np.unique(pos.item[pos.user == u]), lowest).mean()
                     for u in np.unique(pos.user)])
    assert by_id > 2 * res["recall@20"]


def test_random_and_popularity_are_chance_on_cold_items(tiny_world):
    split = cold_item_split(tiny_world, seed=0)
    chance = 20 / len(split.cold_items)
    for model in (RandomScorer(0), PopularityScorer()):
        r = evaluate(tiny_world, split, model, segments=("cold",))["segments"]["cold"]
        assert r["recall@20"] < 2.2 * chance


def test_content_baselines_recover_world_genres_better_than_chance(tiny_world):
    split = cold_item_split(tiny_world, seed=0)
    rnd = evaluate(tiny_world, split, RandomScorer(0), segments=("cold",))
    for enc in (TagEncoder(), TfidfEncoder(dims=32)):
        r = evaluate(tiny_world, split, ContentKNN(enc), segments=("cold",))
        assert (r["segments"]["cold"]["ndcg@20"]
                > 2 * rnd["segments"]["cold"]["ndcg@20"]), enc.name


def test_popularity_wins_on_warm_items(tiny_world):
    split = cold_item_split(tiny_world, seed=0)
    pop = evaluate(tiny_world, split, PopularityScorer(), segments=("warm",))
    rnd = evaluate(tiny_world, split, RandomScorer(0), segments=("warm",))
    assert pop["segments"]["warm"]["recall@50"] > rnd["segments"]["warm"]["recall@50"]


def test_boundary_gating_and_the_protocol(tiny_world):
    class Gated(ConstantScorer):
        name = "gated"

        def score(self, users, items):
            return np.tile(np.linspace(0, 1, len(items)), (len(users), 1))

        def boundary(self, users):
            return np.full(len(users), 0.5)

    model = Gated()
    assert isinstance(model, Recommender)
    split = cold_item_split(tiny_world, seed=0)
    r = evaluate(tiny_world, split, model, segments=("cold",))["segments"]["cold"]
    gated = r["delivery_gated"]
    assert gated["item_coverage"] == pytest.approx(0.5, abs=0.01)


def test_bad_score_shape_is_reported(tiny_world):
    class Broken(ConstantScorer):
        def score(self, users, items):
            return np.zeros((len(users), 3))

    with pytest.raises(ValueError, match="expected"):
        evaluate(tiny_world, cold_item_split(tiny_world), Broken(), segments=("cold",))
