from __future__ import annotations

import numpy as np

from training.split import cold_item_split, first_seen


def test_no_cold_or_val_interaction_reaches_training(tiny_world):
    s = cold_item_split(tiny_world, cold_frac=0.2, val_frac=0.1, seed=3)
    assert not np.isin(s.train.item, s.cold_items).any()
    assert not np.isin(s.train.item, s.val_items).any()
    assert not np.isin(s.warm_test.item, s.cold_items).any()
    assert set(s.cold_test.item) <= set(s.cold_items)
    # items partition, interactions partition
    allitems = np.concatenate([s.warm_items, s.val_items, s.cold_items])
    assert len(np.unique(allitems)) == len(allitems)
    total = len(s.train) + len(s.warm_test) + len(s.val) + len(s.cold_test)
    assert total == len(tiny_world.interactions)
    # the training view hides truth and held-out events
    view = s.train_dataset(tiny_world)
    assert view.truth == {} and len(view.interactions) == len(s.train)


def test_cold_items_are_the_newest(tiny_world):
    s = cold_item_split(tiny_world, cold_frac=0.25, val_frac=0.1)
    first = first_seen(tiny_world)
    assert first[s.cold_items].min() >= first[s.val_items].max()
    assert first[s.val_items].min() >= first[s.warm_items].max()
    assert abs(len(s.cold_items) - 0.25 * len(np.unique(tiny_world.interactions.item))) <= 1


def test_split_is_deterministic(tiny_world):
    a, b = cold_item_split(tiny_world, seed=5), cold_item_split(tiny_world, seed=5)
    assert np.array_equal(a.cold_items, b.cold_items)
    assert np.array_equal(a.warm_test.ts, b.warm_test.ts)
