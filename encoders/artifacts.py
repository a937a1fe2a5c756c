"""Model artifacts: a versioned directory of ONNX graphs plus a manifest that describes them.

Layout of a registry (``COLDSTREAM_MODEL_DIR``)::

    versions/<version>/manifest.json   version, dims, preprocessing, hashes, metrics, parent
    versions/<version>/*.onnx          the graphs the manifest names
    CURRENT                            the version workers serve (atomically replaced)
    ENDED_EXPERIMENTS                  A/B experiments ended (one key a line; workers stop them)

Serving rebuilds everything from the manifest and never imports ``training``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .features import MelConfig

MANIFEST = "manifest.json"
CURRENT = "CURRENT"
ENDED = "ENDED_EXPERIMENTS"


class ArtifactError(Exception):
    """A model directory is missing, incomplete, corrupt or inconsistent."""


class TextSpec(BaseModel):
    graph: str
    tokenizer: str
    max_length: int = 128
    dim: int


class AudioSpec(BaseModel):
    graph: str
    dim: int
    mel: dict[str, Any] = Field(default_factory=lambda: MelConfig().__dict__)

    def mel_config(self) -> MelConfig:
        return MelConfig(**self.mel)


class FusionSpec(BaseModel):
    """How text and audio vectors become the song vector.

    ``concat``: weighted concatenation, L2-normalised (the provisional model).
    ``graph``: an ONNX item tower with inputs text_vector, audio_vector, has_audio and, when
    ``bow_buckets`` is set, tokens = ``features.hashed_bow(texts, bow_buckets)``.
    """

    kind: Literal["concat", "graph"] = "concat"
    text_weight: float = 0.8
    audio_weight: float = 0.6
    graph: str | None = None
    bow_buckets: int | None = None


class UserSpec(BaseModel):
    """How a user's history becomes a user vector and an interest boundary.

    ``weighted_mean``: recency- and action-weighted mean of engaged song vectors; the boundary
    is a low quantile of the user's recent positive scores minus a margin.
    ``graph``: ONNX user and boundary towers (trained DSSM).
    """

    kind: Literal["weighted_mean", "graph"] = "weighted_mean"
    half_life_days: float = 30.0
    action_weights: dict[str, float] = Field(
        default_factory=lambda: {"play": 0.5, "complete": 1.0, "collect": 1.5, "skip": -0.5})
    boundary_quantile: float = 0.2
    boundary_margin: float = 0.05
    boundary_floor: float = 0.1
    graph: str | None = None
    boundary_graph: str | None = None
    history_length: int = 50


class PriorSpec(BaseModel):
    """How popular a new song will be, predicted from content the worker computes for it
    anyway: ``z = weights . [MiniLM text vector, hashed words] + intercept``, z-scored over
    the training catalogue (``training/popularity.py``). Only words the model's token view
    keeps carry a weight; the rest are zero."""

    weights: list[float]  # text_dim + bow_buckets
    intercept: float
    text_dim: int
    bow_buckets: int
    target: str = ""  # what it learned to predict (training.recommender.PRIOR_TARGETS)
    fitted_on: str = ""


class DeliverySpec(BaseModel):
    """One scale for both candidate paths: P(the listener engages | the candidate's evidence).

    I2I2U strength (a mean of similarity x engagement) and a U2I cosine are on different
    scales, so taking their max ranks one path's candidates above the other's for no reason.
    A logistic regression over the evidence, fitted on validation items only
    (``training/served.py``), maps both to a probability; the worker ranks, caps and scores
    candidates by it. Absent in older manifests: the worker then keeps the raw score. With a
    ``prior``, the evidence has a fifth input, the song's predicted popularity.
    """

    features: list[str] = Field(
        default_factory=lambda: ["i2i2u", "has_seed", "u2i_margin", "passes"])
    coef: list[float]
    intercept: float
    fitted_on: str = ""
    prior: PriorSpec | None = None


class Manifest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: str
    created_at: int
    dim: int
    text: TextSpec
    audio: AudioSpec
    fusion: FusionSpec = Field(default_factory=FusionSpec)
    user: UserSpec = Field(default_factory=UserSpec)
    delivery: DeliverySpec | None = None
    parent: str | None = None
    data_fingerprint: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    hashes: dict[str, str] = Field(default_factory=dict)
    notes: str = ""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def new_version(prefix: str = "v") -> str:
    """Sortable, unique-enough version name: v20261126T104512-3f2a."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return f"{prefix}{stamp}-{os.urandom(2).hex()}"


class Registry:
    """Versions on disk; publishing is an atomic rename, promotion an atomic pointer swap."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"

    def path(self, version: str) -> Path:
        return self.versions_dir / version

    def versions(self) -> list[str]:
        if not self.versions_dir.exists():
            return []
        return sorted(p.name for p in self.versions_dir.iterdir()
                      if (p / MANIFEST).exists() and not p.name.startswith("."))

    def current(self) -> str | None:
        pointer = self.root / CURRENT
        if not pointer.exists():
            return None
        version = pointer.read_text().strip()
        return version or None

    def promote(self, version: str) -> None:
        self.load(version)  # refuse to point at a broken artifact
        tmp = self.root / f".{CURRENT}.{os.getpid()}"
        tmp.write_text(version + "\n")
        os.replace(tmp, self.root / CURRENT)

    def end_experiment(self, key: str) -> None:
        """Record that the A/B experiment ``key`` (an opaque one-line string) is over."""
        if "\n" in key or not key:
            raise ValueError(f"experiment key {key!r} must be one non-empty line")
        ended = sorted(self.ended_experiments() | {key})
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{ENDED}.{os.getpid()}"
        tmp.write_text("".join(f"{k}\n" for k in ended))
        os.replace(tmp, self.root / ENDED)

    def ended_experiments(self) -> set[str]:
        path = self.root / ENDED
        if not path.exists():
            return set()
        return {line.strip() for line in path.read_text().splitlines() if line.strip()}

    def previous(self, version: str) -> str | None:
        return self.load(version).parent

    @contextmanager
    def staging(self, version: str) -> Iterator[Path]:
        """Write a version into a hidden folder; it appears under its name only when complete."""
        if self.path(version).exists():
            raise ArtifactError(f"version {version} already exists")
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.versions_dir / f".staging-{version}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            yield tmp
            os.rename(tmp, self.path(version))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def load(self, version: str) -> Manifest:
        """Read and verify a manifest: every file present and matching its hash."""
        folder = self.path(version)
        try:
            raw = json.loads((folder / MANIFEST).read_text())
            manifest = Manifest.model_validate(raw)
        except FileNotFoundError:
            raise ArtifactError(f"model {version}: no manifest in {folder}") from None
        except (ValueError, TypeError) as exc:
            raise ArtifactError(f"model {version}: unreadable manifest: {exc}") from None
        if manifest.version != version:
            raise ArtifactError(f"model {version}: manifest says version {manifest.version}")
        for name, digest in manifest.hashes.items():
            file = folder / name
            if not file.exists():
                raise ArtifactError(f"model {version}: missing file {name}")
            if sha256_file(file) != digest:
                raise ArtifactError(f"model {version}: {name} does not match its sha256")
        return manifest


def write_manifest(folder: Path, manifest: Manifest) -> Manifest:
    """Hash every file in ``folder`` into the manifest and write it (last, so it marks done)."""
    hashes = {p.name: sha256_file(p) for p in sorted(folder.iterdir())
              if p.is_file() and p.name != MANIFEST}
    manifest = manifest.model_copy(update={"hashes": hashes})
    (folder / MANIFEST).write_text(manifest.model_dump_json(indent=2))
    return manifest
