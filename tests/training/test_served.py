"""The served path scored offline: capping, validation-only calibration, and a sanity floor.

Runs the worker's own candidate step (``streams.pipeline.score_song``) on a real Qdrant Edge
store, with vectors from a content oracle (one-hot subgenre) so no training is needed.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from coldstream_data.base import Dataset, Interactions
from training.served import Candidates, deliver, reached_per_window, served_metrics
from training.split import Split, cold_item_split


def brute_force(c: Candidates, order_by: np.ndarray, cap: int, threshold: float) -> np.ndarray:
    keep = np.zeros(len(c.item), dtype=bool)
    for item in np.unique(c.item):
        rows = [k for k in np.flatnonzero(c.item == item) if order_by[k] >= threshold]
        rows.sort(key=lambda k: (-order_by[k], c.user[k]))
        keep[rows[:cap]] = True
    return keep


@pytest.mark.parametrize("cap,threshold", [(1, -np.inf), (3, 0.5), (50, 0.2), (2, 2.0)])
def test_deliver_keeps_each_items_best_above_the_cut(cap: int, threshold: float) -> None:
    rng = np.random.default_rng(cap)
    n = 400
    c = Candidates(item=rng.integers(0, 30, n), user=rng.permutation(n),
                   raw=np.zeros(n), x=np.zeros((n, 4)))
    order_by = rng.integers(0, 10, n) / 10.0  # many ties: broken by user index
    got = deliver(c, order_by, 30, cap, threshold)
    assert np.array_equal(got, brute_force(c, order_by, cap, threshold))


def test_reach_per_window_counts_distinct_listeners_within_upload_windows() -> None:
    """Items 0-3 delivered to users {0,1}, {1,2}, {0}, {0}: one item a window is the
    per-item reach, all in one window the distinct count, and upload order decides which
    items share a window."""
    c = Candidates(item=np.array([0, 0, 1, 1, 2, 3]), user=np.array([0, 1, 1, 2, 0, 0]),
                   raw=np.zeros(6), x=np.zeros((6, 4)))
    keep = np.ones(6, dtype=bool)
    in_order = np.arange(4)
    assert reached_per_window(c, keep, in_order, 1) == 1.5
    assert reached_per_window(c, keep, in_order, 2) == 2.0  # {0,1,2} then {0}
    assert reached_per_window(c, keep, in_order, 4) == 3.0
    assert reached_per_window(c, keep, np.array([0, 2, 1, 3]), 2) == 2.5  # {0,1} then {0,1,2}
    keep[1] = False  # an undelivered candidate reaches nobody
    assert reached_per_window(c, keep, in_order, 4) == 3.0
    keep[2] = False
    assert reached_per_window(c, keep, in_order, 4) == 2.0


def oracle_vectors(data: Dataset, split: Split) -> tuple[np.ndarray, ...]:
    """Items: one-hot subgenre (+ noise); users: mean of their training positives' vectors."""
    sub = np.asarray(data.truth["song_subgenre"])
    rng = np.random.default_rng(0)
    items = np.eye(sub.max() + 1)[sub] + 0.05 * rng.standard_normal((len(sub), sub.max() + 1))
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    pos = split.train.subset(split.train.positive())
    users = np.zeros((data.n_users, items.shape[1]))
    np.add.at(users, pos.user, items[pos.item])
    users /= np.maximum(np.linalg.norm(users, axis=1, keepdims=True), 1e-9)
    return items.astype(np.float32), users.astype(np.float32), np.full(data.n_users, 0.6)


@pytest.fixture(scope="module")
def tiny_split(tiny_world: Dataset) -> Split:
    return cold_item_split(tiny_world, seed=0)


def test_calibration_and_cut_never_see_the_cold_test(tiny_world: Dataset, tiny_split: Split,
                                                      tmp_path) -> None:  # noqa: ANN001
    vectors = oracle_vectors(tiny_world, tiny_split)
    prior = np.random.default_rng(2).standard_normal(tiny_world.n_items)
    real = served_metrics(tiny_world, tiny_split, *vectors, workdir=tmp_path, prior=prior)
    t = tiny_split.cold_test
    rng = np.random.default_rng(1)
    noise = Interactions.build(rng.permutation(t.user), rng.permutation(t.item), t.action, t.ts)
    fake = served_metrics(tiny_world, replace(tiny_split, cold_test=noise), *vectors,
                          workdir=tmp_path, prior=prior)
    assert np.array_equal(real.calibrator.coef, fake.calibrator.coef)
    assert real.cut == fake.cut
    assert real.prior_calibrator is not None and fake.prior_calibrator is not None
    assert np.array_equal(real.prior_calibrator.coef, fake.prior_calibrator.coef)
    assert len(real.prior_calibrator.coef) == 5
    assert real.rows != fake.rows  # the cold test does change what is reported
    assert real.rows["i2i2u+u2i:equal-precision+prior"] != fake.rows[
        "i2i2u+u2i:equal-precision+prior"]


def test_the_prior_input_is_weighed_by_what_it_predicts_on_validation(
        tiny_world: Dataset, tiny_split: Split, tmp_path) -> None:  # noqa: ANN001
    """A prior that is each validation item's number of validation positives gets a clearly
    positive weight; its negation a clearly negative one (the calibration reads it)."""
    val = tiny_split.val.subset(tiny_split.val.positive())
    hits = np.bincount(val.item, minlength=tiny_world.n_items).astype(float)
    z = (hits - hits.mean()) / hits.std()
    vectors = oracle_vectors(tiny_world, tiny_split)
    up = served_metrics(tiny_world, tiny_split, *vectors, workdir=tmp_path, prior=z)
    down = served_metrics(tiny_world, tiny_split, *vectors, workdir=tmp_path, prior=-z)
    assert up.prior_calibrator is not None and down.prior_calibrator is not None
    assert up.prior_calibrator.coef[4] > 0.1 > -0.1 > down.prior_calibrator.coef[4]
    assert "calibration_with_prior" in up.as_dict()


def test_served_path_with_an_oracle_beats_chance(tiny_world: Dataset, tiny_split: Split,
                                                 tmp_path) -> None:  # noqa: ANN001
    rep = served_metrics(tiny_world, tiny_split, *oracle_vectors(tiny_world, tiny_split),
                         workdir=tmp_path)
    pos = tiny_split.cold_test.subset(tiny_split.cold_test.positive())
    users = len(np.unique(tiny_split.train.user))
    chance = len(np.unique(pos.user.astype(np.int64) * 10**6 + pos.item)) / (
        users * len(tiny_split.cold_items))
    for key in ("i2i2u:raw", "i2i2u+u2i:raw", "i2i2u+u2i:calibrated"):
        row = rep.rows[key]
        assert row["users_reached_per_item"] > 0
        assert row["delivery_precision"] > 2 * chance, (key, row, chance)
        # distinct listeners: at least one item's listeners, at most everyone with history
        assert row["users_reached_per_item"] <= row["users_reached"] <= users
    doc, rows = rep.as_dict(), rep.rows
    for suffix in ("", "_uncapped"):
        for count in ("users_reached", "users_reached_per_10_songs"):
            a, b = (rows[f"{k}{suffix.replace('_', ':')}"][count]
                    for k in ("i2i2u:raw", "i2i2u+u2i:equal-precision"))
            assert doc[f"lift_{count}_equal_precision{suffix}"] == pytest.approx(b / a - 1)
