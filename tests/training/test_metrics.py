from __future__ import annotations

import math

import numpy as np
import pytest

from training.metrics import (
    delivery_metrics,
    knn_purity,
    long_tail_mask,
    ranking_metrics,
    topk_random_ties,
)


def test_hand_computed_ranking_metrics():
    # user 0: relevant {1, 3}; ranked [1, 0, 3] -> hits at ranks 1 and 3
    # user 1: relevant {2}; ranked [0, 1, 3] -> no hit
    # user 2: nothing relevant -> not averaged
    relevant = np.array([[0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 0]], dtype=bool)
    topk = np.array([[1, 0, 3], [0, 1, 3], [0, 1, 2]])
    m = ranking_metrics(topk, relevant, ks=(1, 3))
    assert m["recall@1"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["precision@1"] == pytest.approx((1 + 0) / 2)
    assert m["hit@1"] == pytest.approx(0.5)
    assert m["ndcg@1"] == pytest.approx(0.5)
    assert m["recall@3"] == pytest.approx((2 / 2 + 0) / 2)
    assert m["precision@3"] == pytest.approx((2 / 3) / 2)
    dcg = 1 + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3)
    assert m["ndcg@3"] == pytest.approx((dcg / idcg + 0) / 2)


def test_ties_are_broken_at_random_not_by_position():
    rng = np.random.default_rng(0)
    scores = np.zeros((2000, 10))
    scores[:, 7] = 1.0  # one clear winner; the rest tie
    top = topk_random_ties(scores, 3, rng)
    assert np.all(top[:, 0] == 7)
    second = np.bincount(top[:, 1], minlength=10)
    assert second[7] == 0
    assert second[[i for i in range(10) if i != 7]].min() > 150  # ~222 each, not all id 0


def test_nan_scores_rank_last():
    top = topk_random_ties(np.array([[np.nan, 0.1, 0.5]]), 3, np.random.default_rng(0))
    assert top.tolist() == [[2, 1, 0]]


def test_delivery_metrics_by_hand():
    delivered = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], dtype=bool)
    relevant = np.array([[1, 0, 0, 0], [0, 0, 0, 1]], dtype=bool)
    pop = np.array([10.0, 2.0, 1.0, 1.0])  # item 0 is the head (top 20% -> 1 item)
    d = delivery_metrics(delivered, relevant, pop)
    assert d["deliveries"] == 3
    assert d["users_reached_per_item"] == pytest.approx(3 / 4)
    assert d["delivery_precision"] == pytest.approx(1 / 3)
    assert d["delivery_recall"] == pytest.approx(1 / 2)
    assert d["item_coverage"] == pytest.approx(2 / 4)
    assert d["users_reached"] == 2
    assert d["long_tail_share"] == pytest.approx(1 / 3)
    assert d["popularity_lift"] == pytest.approx((2 * 10 + 2) / 3 / pop.mean())
    assert long_tail_mask(pop).tolist() == [False, True, True, True]


def test_knn_purity():
    v = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]])
    assert knn_purity(v, np.array([0, 0, 1, 1]), k=1) == 1.0
    assert knn_purity(v, np.array([0, 1, 0, 1]), k=1) == 0.0


def test_users_reached_counts_distinct_listeners_not_deliveries():
    """Three deliveries to one listener reach one listener; a listener with none is not
    reached, so the item-side and user-side readings of reach differ."""
    delivered = np.array([[1, 1, 1], [0, 0, 0], [0, 0, 1]], dtype=bool)
    d = delivery_metrics(delivered, np.zeros_like(delivered), np.ones(3))
    assert d["users_reached"] == 2
    assert d["users_reached_per_item"] == pytest.approx(4 / 3)
