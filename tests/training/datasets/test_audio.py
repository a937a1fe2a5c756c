from __future__ import annotations

import numpy as np
import pytest

from coldstream_data.audio import decode_audio, load_immich_music, load_singularity_music


def test_immich_clips_are_listed_and_opus_decodes():
    data = load_immich_music()
    if data.n_items == 0:
        pytest.skip("immich-memories-music not installed")
    assert data.n_items == 28
    assert set(data.catalogue["mood"]) >= {"calm", "energetic", "happy"}
    clip = decode_audio(data.catalogue["audio_path"].iloc[0], sr=16_000, seconds=0.5)
    assert clip.shape == (8000,) and clip.dtype == np.float32 and np.abs(clip).max() > 0


def test_singularity_is_optional(tmp_path):
    assert load_singularity_music(dirs=(tmp_path / "absent",)).n_items == 0
