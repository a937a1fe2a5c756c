from __future__ import annotations

import numpy as np
import pytest

from coldstream_data.base import ACTION_CODE
from coldstream_data.movielens import load_dslabs_movielens, load_ml100k, rating_to_action


def test_rating_to_action_keeps_four_and_up_positive():
    acts = rating_to_action(np.array([1, 2, 2.5, 3, 3.5, 4, 4.5, 5]))
    assert list(acts) == [ACTION_CODE[a] for a in
                          ("skip", "skip", "play", "play", "play", "complete", "complete",
                           "collect")]


def test_ml100k_from_the_recbole_wheel():
    try:
        data = load_ml100k()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    assert (data.n_items, data.n_users, len(data.interactions)) == (1682, 943, 100_000)
    assert data.catalogue.loc[0, "title"] == "Toy Story"
    assert "Animation" in data.catalogue.loc[0, "tags"]
    pos = data.interactions.positive()
    assert pos.sum() == (data.interactions.rating >= 4).sum()
    assert data.interactions.ts.min() > 8e11  # epoch ms, 1997


def test_dslabs_movielens():
    data = load_dslabs_movielens()
    assert (data.n_users, len(data.interactions)) == (671, 100_004)
    assert data.n_items == 9066
