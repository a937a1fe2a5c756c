"""The model the bench measures: the provisional ONNX model, exported once under build/."""

from __future__ import annotations

import os
from pathlib import Path

from encoders.artifacts import Registry
from encoders.backbone import BackboneCache
from encoders.provisional import ensure_model
from encoders.runtime import LoadedModel, load_model

DEFAULT_MODELS = Path("build/bench-models")


def registry(path: Path = DEFAULT_MODELS) -> Registry:
    """A registry with a current version (the provisional model is built on first use)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    reg = Registry(path)
    ensure_model(reg)
    return reg


def loaded(path: Path = DEFAULT_MODELS, threads: int = 1,
           cache: BackboneCache | None = None) -> LoadedModel:
    reg = registry(path)
    return load_model(reg, reg.current() or "", threads, cache)
