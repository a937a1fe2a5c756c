"""Trained towers -> a version folder the worker loads (``encoders.runtime.load_model``).

Every graph goes through ``encoders.export.export_onnx`` (dynamo exporter, dynamic batch and
length axes, ONNX-vs-torch parity <= 1e-4). The frozen MiniLM text tower is identical for
every version, so it is exported once into the cache and copied (its hash still goes into
each manifest).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch

from encoders.artifacts import (
    AudioSpec,
    DeliverySpec,
    FusionSpec,
    Manifest,
    TextSpec,
    UserSpec,
    write_manifest,
)
from encoders.export import export_onnx
from encoders.modules import MeanPooledText
from encoders.provisional import TEXT_DIM, export_audio_tower, export_text_tower, load_minilm

from .data import CACHE
from .train import TrainResult


def text_tower(folder: Path, cache: Path = CACHE) -> str:
    """Copy the cached frozen text tower (export it the first time)."""
    cached = cache / "text-tower"
    if not (cached / "text.onnx").exists():
        tmp = cache / f".text-tower-{time.time_ns()}"
        tmp.mkdir(parents=True)
        export_text_tower(MeanPooledText(load_minilm()), tmp)
        if not (cached / "text.onnx").exists():  # a torn copy goes; a whole one stays
            shutil.rmtree(cached, ignore_errors=True)
        try:
            tmp.rename(cached)
        except OSError:  # another process (a second pytest worker) put the same tower there
            shutil.rmtree(tmp, ignore_errors=True)
    for name in ("text.onnx", "tokenizer.json"):
        shutil.copy(cached / name, folder / name)
    return "text.onnx"


def export_towers(result: TrainResult, folder: Path) -> dict[str, str]:
    """Audio, fusion (item), user and boundary graphs, each parity-checked."""
    t = result.towers.cpu().eval()
    cfg = result.cfg
    torch.manual_seed(0)
    if cfg.audio_graph:  # a kept tower: the same bytes, so its backbone id is the same
        shutil.copy(cfg.audio_graph, folder / "audio.onnx")
        names = {"audio": "audio.onnx"}
    else:
        names = {"audio": export_audio_tower(t.audio, folder, result.mel.n_mels)}
    has = torch.tensor([[1.0], [0.0], [1.0]])
    example = {"text_vector": torch.randn(3, TEXT_DIM) * 0.05,
               "audio_vector": torch.nn.functional.normalize(
                   torch.randn(3, cfg.audio_dim), dim=-1) * has,
               "has_audio": has}
    if cfg.bow_buckets:
        example["tokens"] = (torch.rand(3, cfg.bow_buckets) < 0.003).float()
    export_onnx(t.item, example, folder / "fusion.onnx", "song_vector",
                {k: {0: "batch"} for k in example})
    names["fusion"] = "fusion.onnx"
    hist = torch.nn.functional.normalize(torch.randn(1, 7, cfg.dim), dim=-1)
    export_onnx(t.user, {"history": hist, "weights": torch.rand(1, 7)}, folder / "user.onnx",
                "user_vector", {"history": {0: "batch", 1: "length"},
                                "weights": {0: "batch", 1: "length"}})
    names["user"] = "user.onnx"
    export_onnx(t.boundary, {"user_vector": hist[:, :2].reshape(2, cfg.dim)},
                folder / "boundary.onnx", "boundary", {"user_vector": {0: "batch"}})
    names["boundary"] = "boundary.onnx"
    return names


def write_version(result: TrainResult, folder: Path, version: str, parent: str | None,
                  metrics: dict[str, float], notes: str = "",
                  delivery: DeliverySpec | None = None) -> Manifest:
    """Every file of one version plus its manifest (written last, hashing the rest)."""
    text = text_tower(folder)
    graphs = export_towers(result, folder)
    spec: UserSpec = result.user_spec.model_copy(
        update={"kind": "graph", "graph": graphs["user"], "boundary_graph": graphs["boundary"]})
    manifest = Manifest(
        version=version, created_at=int(time.time() * 1000), dim=result.cfg.dim,
        text=TextSpec(graph=text, tokenizer="tokenizer.json", dim=TEXT_DIM),
        audio=AudioSpec(graph=graphs["audio"], dim=result.cfg.audio_dim,
                        mel=result.mel.__dict__),
        fusion=FusionSpec(kind="graph", graph=graphs["fusion"],
                          bow_buckets=result.cfg.bow_buckets or None), user=spec,
        delivery=delivery, parent=parent, data_fingerprint=result.fingerprint, metrics=metrics,
        notes=notes or f"trained: {result.cfg.dict()}")
    return write_manifest(folder, manifest)
