"""The provisional model: real ONNX graphs from real MiniLM weights, parity and registry rules."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from encoders.artifacts import ArtifactError, Registry
from encoders.export import check_parity
from encoders.features import MelConfig, log_mel, mel_filterbank
from encoders.modules import MeanPooledText, SpectralSummary
from encoders.provisional import load_minilm
from encoders.runtime import SongInput, load_model


def tone(freq: float, seconds: float = 3.0, sr: int = 16_000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_text_vectors_match_torch_minilm(model_registry: Registry) -> None:
    model = load_model(model_registry, model_registry.current() or "")
    texts = ["smooth jazz piano at midnight", "brutal death metal blast beats", "ok"]
    onnx_vecs = model.songs.text.encode(texts)
    tok = model.songs.text.tokenizer.encode_batch(texts)
    ids = torch.tensor([e.ids for e in tok])
    mask = torch.tensor([e.attention_mask for e in tok])
    with torch.no_grad():
        torch_vecs = MeanPooledText(load_minilm())(ids, mask).numpy()
    assert np.abs(onnx_vecs - torch_vecs).max() < 1e-4
    assert onnx_vecs[0] @ onnx_vecs[1] < 0.5  # real semantics, not a random projection


def test_song_vectors_are_unit_and_audio_changes_them(model_registry: Registry) -> None:
    model = load_model(model_registry, model_registry.current() or "")
    vecs = model.songs.encode([SongInput("Blue night. tags: jazz", tone(220)),
                               SongInput("Blue night. tags: jazz", tone(3000)),
                               SongInput("Blue night. tags: jazz")])
    assert vecs.shape == (3, model.manifest.dim)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert vecs[0] @ vecs[1] < 0.999  # different timbre -> different vector
    assert vecs[0] @ vecs[2] > 0.5   # same text keeps them close


def test_audio_tower_parity_with_variable_length() -> None:
    mels = [log_mel(tone(440, 2.0)), log_mel(tone(880, 1.0))]
    from encoders.features import pad_frames

    frames, mask = pad_frames(mels, MelConfig().n_mels)
    path = Path("build") / "test-audio.onnx"
    path.parent.mkdir(exist_ok=True)
    from encoders.export import export_onnx

    module = SpectralSummary()
    example = {"logmel": torch.from_numpy(frames), "mask": torch.from_numpy(mask)}
    export_onnx(module, example, path, "audio_vector",
                {"logmel": {0: "batch", 1: "frames"}, "mask": {0: "batch", 1: "frames"}})
    assert check_parity(module, example, path) < 1e-4


def test_mel_filterbank_covers_the_band() -> None:
    bank = mel_filterbank(MelConfig())
    assert bank.shape == (64, 513) and (bank.sum(axis=1) > 0).all()


def test_registry_refuses_broken_artifacts(model_registry: Registry, tmp_path: Path) -> None:
    version = model_registry.current() or ""
    reg = Registry(tmp_path)
    shutil.copytree(model_registry.path(version), reg.path(version))
    reg.promote(version)
    assert reg.current() == version and reg.versions() == [version]
    with (reg.path(version) / "audio.onnx").open("ab") as fh:
        fh.write(b"corrupt")
    with pytest.raises(ArtifactError, match="sha256"):
        reg.load(version)
    with pytest.raises(ArtifactError):
        reg.promote(version)
    manifest = json.loads((reg.path(version) / "manifest.json").read_text())
    manifest["version"] = "other"
    (reg.path(version) / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="manifest says"):
        reg.load(version)
    with pytest.raises(ArtifactError, match="no manifest"):
        reg.load("missing")


def test_staging_is_atomic(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    with pytest.raises(RuntimeError), reg.staging("v1") as folder:
        (folder / "x").write_text("half")
        raise RuntimeError("crash mid-write")
    assert reg.versions() == [] and not reg.path("v1").exists()
