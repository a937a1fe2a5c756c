"""The token view is identical in training and serving, and older manifests still load."""

from __future__ import annotations

import numpy as np

from encoders.artifacts import FusionSpec
from encoders.features import hashed_bow, song_text


def test_hashed_bow_is_stable_and_unit_length() -> None:
    text = song_text("Neon Pulse", "Ada Reyes", ["house", "night drive"], None)
    a, b = hashed_bow([text, "Neon pulse"], 4096), hashed_bow([text], 4096)
    assert np.array_equal(a[0], b[0])  # crc32, not Python's per-process salted hash
    assert abs(float(np.linalg.norm(a[0])) - 1.0) < 1e-6
    assert float(a[0] @ a[1]) > 0.3  # shared words share buckets
    assert hashed_bow([""], 16).sum() == 0.0


def test_fusion_spec_without_tokens_is_the_default() -> None:
    assert FusionSpec.model_validate({"kind": "graph", "graph": "fusion.onnx"}).bow_buckets is None
