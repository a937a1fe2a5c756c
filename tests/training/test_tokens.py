"""The token view is identical in training and serving, older manifests still load, and a
word counts only on songs the model can learn it from."""

from __future__ import annotations

import numpy as np
import torch

from encoders.artifacts import FusionSpec
from encoders.features import hashed_bow, song_text
from training.data import TrainData
from training.tasks import Tasks, Towers, TrainConfig


def test_hashed_bow_is_stable_and_unit_length() -> None:
    text = song_text("Neon Pulse", "Ada Reyes", ["house", "night drive"], None)
    a, b = hashed_bow([text, "Neon pulse"], 4096), hashed_bow([text], 4096)
    assert np.array_equal(a[0], b[0])  # crc32, not Python's per-process salted hash
    assert abs(float(np.linalg.norm(a[0])) - 1.0) < 1e-6
    assert float(a[0] @ a[1]) > 0.3  # shared words share buckets
    assert hashed_bow([""], 16).sum() == 0.0


def test_fusion_spec_without_tokens_is_the_default() -> None:
    assert FusionSpec.model_validate({"kind": "graph", "graph": "fusion.onnx"}).bow_buckets is None


def _train_data(tokens: np.ndarray, trained_items: list[int]) -> TrainData:
    """Two users whose histories hold only ``trained_items``; 384-d text, no audio."""
    n = len(tokens)
    hist = np.zeros((2, 8), dtype=np.int64)
    hist[0, :len(trained_items[:8])] = trained_items[:8]
    hist[1, :len(trained_items[8:16])] = trained_items[8:16]
    weights = (np.arange(8) < np.array([[min(8, len(trained_items))],
                                        [max(0, len(trained_items) - 8)]])).astype(np.float32)
    users = np.repeat([0, 1], [8, len(trained_items) - 8])
    return TrainData(text=np.zeros((n, 384), np.float32), tokens=tokens.astype(np.float32),
                     mels=np.zeros((n, 1, 8), np.float32), has_audio=np.zeros(n, np.float32),
                     hist_items=hist, hist_weights=weights, hist_pos=weights > 0,
                     pos_user=users, pos_item=np.asarray(trained_items), fingerprint="t")


def test_a_word_only_untrained_songs_carry_is_not_used() -> None:
    """Bucket 0: on 12 songs nobody played (new songs); bucket 1: on the 12 played songs."""
    tokens = np.zeros((30, 4))
    tokens[18:30, 0] = 1.0
    tokens[:12, 1] = 1.0
    data = _train_data(tokens, list(range(12)))
    for warm_only, used in ((True, [0.0, 1.0]), (False, [1.0, 1.0])):
        cfg = TrainConfig(bow_buckets=4, token_min_items=10, token_df_warm=warm_only)
        towers = Towers(cfg, n_mels=8)
        Tasks(towers, data, cfg, torch.device("cpu"))
        assert towers.item.bow_mask[:2].tolist() == used
