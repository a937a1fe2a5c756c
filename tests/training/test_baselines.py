from __future__ import annotations

import numpy as np

from coldstream_data.base import Dataset
from training.baselines import TagPopularityScorer, WorldAudioEncoder, make_baseline
from training.metrics import knn_purity
from training.split import cold_item_split


def test_rendered_audio_alone_separates_genres(tiny_world):
    sub = tiny_world.catalogue.iloc[:120].reset_index(drop=True)
    small = Dataset("sub", sub, tiny_world.user_ids[:0],
                    tiny_world.interactions.subset(np.zeros(len(tiny_world.interactions), bool)))
    vec = WorldAudioEncoder(seconds=1.0, sr=8000).encode(small)
    labels = tiny_world.truth["song_genre"][:120]
    chance = np.mean([(labels == g).mean() ** 2 for g in np.unique(labels)]) * len(
        np.unique(labels))
    assert knn_purity(vec, labels, k=5) > 2 * chance


def test_tag_popularity_scores_new_items_from_metadata_only(tiny_world):
    split = cold_item_split(tiny_world, seed=0)
    model = TagPopularityScorer()
    model.fit(split.train_dataset(tiny_world))
    s = model.score(np.array([0, 1]), split.cold_items)
    assert s.shape == (2, len(split.cold_items)) and np.ptp(s[0]) > 0
    assert np.array_equal(s[0], s[1])  # not personalised


def test_every_named_baseline_builds():
    for name in ("random", "popularity", "tag-popularity", "item-knn-cf", "tag-knn",
                 "tfidf-knn", "minilm-knn", "audio-knn", "constant"):
        assert hasattr(make_baseline(name), "score")
