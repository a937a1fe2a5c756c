from __future__ import annotations

import numpy as np

from coldstream_data.base import ACTIONS
from coldstream_data.music_world import SIZES, generate_world, render_audio, world_config


def test_same_seed_same_world_and_other_seed_differs(tiny_world):
    again = generate_world("tiny")
    for f in ("user", "item", "action", "ts"):
        assert np.array_equal(getattr(tiny_world.interactions, f), getattr(again.interactions, f))
    assert tiny_world.catalogue.equals(again.catalogue)
    other = generate_world("tiny", seed=1)
    assert not np.array_equal(other.truth["song_genre"], tiny_world.truth["song_genre"])


def test_tiny_sizes_and_every_action_occurs(tiny_world):
    cfg = SIZES["tiny"]
    assert tiny_world.n_items == cfg.n_songs and tiny_world.n_users == cfg.n_users
    assert len(tiny_world.interactions) == cfg.n_interactions
    assert set(np.unique(tiny_world.interactions.action)) == set(range(len(ACTIONS)))
    assert np.all(np.diff(tiny_world.interactions.ts) >= 0)
    # no interaction before the song exists
    rel = tiny_world.catalogue["released_at"].to_numpy()
    assert np.all(tiny_world.interactions.ts >= rel[tiny_world.interactions.item])


def test_large_config_meets_the_scale_floor():
    cfg = world_config("large")
    assert cfg.n_songs >= 100_000 and cfg.n_users >= 10_000 and cfg.n_interactions >= 1_000_000


def test_popularity_gives_a_long_tail(tiny_world):
    counts = np.sort(np.bincount(tiny_world.interactions.item, minlength=tiny_world.n_items))[::-1]
    top = counts[: len(counts) // 5].sum() / counts.sum()
    assert top > 0.35  # top 20% of songs get well over 20% of the plays
    assert (counts > 0).mean() > 0.8  # yet most songs are heard at least once


def test_users_positives_follow_their_true_taste(tiny_world):
    w, inter = tiny_world, tiny_world.interactions
    pos = inter.positive()
    genre = w.truth["song_genre"][inter.item[pos]]
    n_g = w.truth["user_taste"].shape[1]
    hist = np.zeros((w.n_users, n_g))
    np.add.at(hist, (inter.user[pos], genre), 1)
    active = hist.sum(1) >= 5
    top_true = w.truth["user_taste"][active].argmax(1)
    top_seen = hist[active].argmax(1)
    assert (top_true == top_seen).mean() > 0.7  # chance is ~1/6


def test_text_tags_carry_the_genre_but_noisily(tiny_world):
    names = tiny_world.truth["genre_names"]
    genre = tiny_world.truth["song_genre"]
    has = np.array([names[g] in tags for g, tags in zip(genre, tiny_world.catalogue["tags"],
                                                       strict=True)])
    assert 0.6 < has.mean() < 0.98


def test_render_audio_is_deterministic_and_genre_dependent(tiny_world):
    cat = tiny_world.catalogue
    row = cat.iloc[0]
    a = render_audio(row, sr=8000, seconds=1.0)
    assert a.dtype == np.float32 and a.shape == (8000,)
    assert np.array_equal(a, render_audio(row.to_dict(), sr=8000, seconds=1.0))
    assert np.abs(a).max() <= 1.0 and np.sqrt(np.mean(a**2)) > 0.01
    other = cat[cat["genre"] != row["genre"]].iloc[0]
    assert not np.allclose(a, render_audio(other, sr=8000, seconds=1.0))
