"""ONNX Runtime encoders built from a manifest: what the live worker calls.

``SongEncoder.encode`` turns song texts and (optional) waveforms into unit vectors in the
model's space; ``UserModel`` turns a user's engagement history into a vector and an interest
boundary. Both depend only on the manifest, never on ``training``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .artifacts import ArtifactError, Manifest, Registry, sha256_file
from .backbone import BackboneCache, backbone_id, digest
from .features import MelConfig, hashed_bow, log_mel, pad_frames

DAY_MS = 86_400_000


def make_session(path: Path, threads: int = 1) -> ort.InferenceSession:
    """CPU session tuned for a streaming worker: few threads, full graph optimisation."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ArtifactError(f"cannot load ONNX graph {path.name}: {exc}") from None


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


def file_hash(folder: Path, manifest: Manifest, name: str) -> str:
    """A graph file's sha256: from the manifest when it lists it, else read from disk."""
    return manifest.hashes.get(name) or sha256_file(folder / name)


class TextEncoder:
    """Tokenizer + ONNX text tower -> unit vectors (B, dim). The tower is frozen MiniLM: with
    a cache, each text runs once across every version that ships the same graph."""

    def __init__(self, folder: Path, manifest: Manifest, threads: int = 1,
                 cache: BackboneCache | None = None) -> None:
        from tokenizers import Tokenizer

        spec = manifest.text
        self.dim = spec.dim
        self.tokenizer = Tokenizer.from_file(str(folder / spec.tokenizer))
        self.tokenizer.enable_truncation(spec.max_length)
        self.tokenizer.enable_padding()
        self.session = make_session(folder / spec.graph, threads)
        self.cache = cache
        self.backbone = backbone_id("text", file_hash(folder, manifest, spec.graph),
                                    file_hash(folder, manifest, spec.tokenizer),
                                    str(spec.max_length)) if cache is not None else ""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self.cache is None or not texts:
            return self.run(texts)
        return self.cache.lookup(self.backbone, [digest(t) for t in texts],
                                 lambda idx: self.run([texts[i] for i in idx]))

    def run(self, texts: Sequence[str]) -> np.ndarray:
        """The graph itself, no cache."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        enc = self.tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        return self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]


class AudioEncoder:
    """Log-mel front end + ONNX audio tower -> unit vectors (B, dim). With a cache, a wave's
    output is reused by every version whose audio graph and mel settings are the same."""

    def __init__(self, folder: Path, manifest: Manifest, threads: int = 1,
                 cache: BackboneCache | None = None) -> None:
        self.dim = manifest.audio.dim
        self.mel: MelConfig = manifest.audio.mel_config()
        self.session = make_session(folder / manifest.audio.graph, threads)
        self.cache = cache
        self.backbone = backbone_id("audio", file_hash(folder, manifest, manifest.audio.graph),
                                    repr(sorted(manifest.audio.mel.items()))
                                    ) if cache is not None else ""

    def vectors(self, waves: Sequence[np.ndarray | None],
                keys: Sequence[bytes | None] | None = None) -> np.ndarray:
        """Waves -> audio vectors: log-mel and tower, or the cached rows.

        ``keys`` (the audio files' digests) replace hashing the waves; a song given by its
        key alone (wave None) must have its row cached (:meth:`cached`).
        """
        def run(idx: list[int]) -> np.ndarray:
            if any(waves[i] is None for i in idx):
                raise LookupError("audio given by its digest alone is not in the cache")
            return self.encode_features([self.features(waves[i]) for i in idx])  # type: ignore[arg-type]

        if self.cache is None:
            return run(list(range(len(waves))))
        given = keys or [None] * len(waves)
        return self.cache.lookup(self.backbone, [k or wave_key(w) for k, w in
                                                 zip(given, waves, strict=True)], run)

    def cached(self, key: bytes) -> bool:
        """Whether this tower's output for the audio with digest ``key`` is kept."""
        return self.cache is not None and self.cache.has(self.backbone, key)

    def features(self, wave: np.ndarray) -> np.ndarray:
        return log_mel(wave, self.mel)

    def encode_features(self, mels: Sequence[np.ndarray]) -> np.ndarray:
        if not mels:
            return np.zeros((0, self.dim), dtype=np.float32)
        frames, mask = pad_frames(mels, self.mel.n_mels)
        return self.session.run(None, {"logmel": frames, "mask": mask})[0]


def wave_key(wave: np.ndarray | None) -> bytes:
    """The cache key of audio known only by its samples (no file digest)."""
    if wave is None:
        raise LookupError("audio without samples or digest")
    return digest(np.ascontiguousarray(wave, dtype=np.float32).tobytes())


@dataclass(frozen=True)
class SongInput:
    """A song's model inputs. Audio is given by its samples, its file's digest, or both; the
    digest alone serves when the audio tower's output for it is cached (a model swap)."""

    text: str
    wave: np.ndarray | None = None  # mono float32 at the model's sample rate
    audio_key: bytes | None = None  # digest of the audio file's bytes

    @property
    def has_audio(self) -> bool:
        return self.wave is not None or self.audio_key is not None


class SongEncoder:
    """Item tower: text + audio -> song vector in the model's space."""

    def __init__(self, folder: Path, manifest: Manifest, threads: int = 1,
                 cache: BackboneCache | None = None) -> None:
        self.manifest = manifest
        self.version = manifest.version
        self.dim = manifest.dim
        self.text = TextEncoder(folder, manifest, threads, cache)
        self.audio = AudioEncoder(folder, manifest, threads, cache)
        spec = manifest.fusion
        self.fusion = make_session(folder / spec.graph, threads) if spec.kind == "graph" else None
        if spec.kind == "graph" and not spec.graph:
            raise ArtifactError("fusion kind 'graph' needs a graph file")
        prior = manifest.delivery.prior if manifest.delivery else None
        if prior is not None and len(prior.weights) != prior.text_dim + prior.bow_buckets:
            raise ArtifactError(f"prior has {len(prior.weights)} weights, not text_dim + "
                                f"bow_buckets = {prior.text_dim + prior.bow_buckets}")
        if prior is not None and prior.text_dim != self.text.dim:
            raise ArtifactError(f"prior reads {prior.text_dim}-d text vectors, the text "
                                f"tower gives {self.text.dim}")
        self.prior = prior
        self.prior_weights = (np.asarray(prior.weights, dtype=np.float32)
                              if prior is not None else None)

    @property
    def sample_rate(self) -> int:
        return self.audio.mel.sample_rate

    def encode(self, songs: Sequence[SongInput]) -> np.ndarray:
        texts = [s.text for s in songs]
        text_vecs = self.text.encode(texts)
        has_audio = np.array([s.has_audio for s in songs], dtype=np.float32)
        audio_vecs = np.zeros((len(songs), self.audio.dim), dtype=np.float32)
        idx = [i for i, s in enumerate(songs) if s.has_audio]
        if idx:
            audio_vecs[idx] = self.audio.vectors([songs[i].wave for i in idx],
                                                 [songs[i].audio_key for i in idx])
        return self.combine(text_vecs, audio_vecs, has_audio, texts)

    def priors(self, texts: Sequence[str]) -> np.ndarray | None:
        """Each song's predicted popularity (z-scored), or None when this version carries no
        prior. The text tower's output is the one :meth:`encode` cached for the same text."""
        if self.prior is None:
            return None
        return self.prior_from(self.text.encode(list(texts)), texts)

    def prior_from(self, text_vecs: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """:meth:`priors` over text vectors already computed."""
        assert self.prior is not None and self.prior_weights is not None
        w, dim = self.prior_weights, self.prior.text_dim
        z = text_vecs @ w[:dim] + self.prior.intercept
        if self.prior.bow_buckets:
            z = z + hashed_bow(texts, self.prior.bow_buckets) @ w[dim:]
        return z.astype(np.float32)

    def fuse(self, text_vecs: np.ndarray, mels: Sequence[np.ndarray | None],
             texts: Sequence[str] | None = None) -> np.ndarray:
        """Combine text vectors with the audio (log-mels) of those songs that have audio.

        ``texts`` is needed only by fusion graphs with a token view (``bow_buckets``).
        """
        has_audio = np.array([m is not None for m in mels], dtype=np.float32)
        audio_vecs = np.zeros((len(mels), self.audio.dim), dtype=np.float32)
        idx = [i for i, m in enumerate(mels) if m is not None]
        if idx:
            audio_vecs[idx] = self.audio.encode_features([mels[i] for i in idx])
        return self.combine(text_vecs, audio_vecs, has_audio, texts)

    def combine(self, text_vecs: np.ndarray, audio_vecs: np.ndarray, has_audio: np.ndarray,
                texts: Sequence[str] | None = None) -> np.ndarray:
        """The trainable head: fusion graph (or fixed concat) over the backbone outputs."""
        if self.fusion is not None:
            feeds = {"text_vector": text_vecs, "audio_vector": audio_vecs,
                     "has_audio": has_audio[:, None]}
            if self.manifest.fusion.bow_buckets:
                if texts is None:
                    raise ValueError(f"model {self.version} needs the song texts to fuse")
                feeds["tokens"] = hashed_bow(texts, self.manifest.fusion.bow_buckets)
            out = self.fusion.run(None, feeds)[0]
            return l2_normalize(out)
        spec = self.manifest.fusion
        fused = np.concatenate(
            [spec.text_weight * text_vecs,
             spec.audio_weight * audio_vecs * has_audio[:, None]], axis=1)
        return l2_normalize(fused)


@dataclass(frozen=True)
class HistoryItem:
    song_id: str
    action: str
    ts: int


class UserModel:
    """User tower + interest boundary (provisional rule or trained ONNX towers)."""

    def __init__(self, folder: Path, manifest: Manifest, threads: int = 1) -> None:
        self.spec = manifest.user
        self.dim = manifest.dim
        self.tower = None
        self.boundary_tower = None
        if self.spec.kind == "graph":
            if not (self.spec.graph and self.spec.boundary_graph):
                raise ArtifactError("user kind 'graph' needs graph and boundary_graph")
            self.tower = make_session(folder / self.spec.graph, threads)
            self.boundary_tower = make_session(folder / self.spec.boundary_graph, threads)

    def weights(self, history: Sequence[HistoryItem], now: int) -> np.ndarray:
        """Action weight x recency decay (half-life) for each history item."""
        return self.weights_of([h.action for h in history], [h.ts for h in history], now)

    def weights_of(self, actions: Sequence[str], ts: Sequence[int], now: int) -> np.ndarray:
        """:meth:`weights` over plain columns: element-wise, so the items of many users can go
        in one call (no per-item objects on the worker's hot path)."""
        get = self.spec.action_weights.get
        action_w = np.array([get(a, 0.0) for a in actions], dtype=np.float64)
        age_days = np.maximum(0, now - np.asarray(ts, dtype=np.int64)) / DAY_MS
        return (action_w * 0.5 ** (age_days / self.spec.half_life_days)).astype(np.float32)

    def user_vector(self, vectors: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
        """History song vectors (L, dim) and weights (L,) -> unit user vector, or None."""
        if len(vectors) == 0:
            return None
        if self.tower is not None:
            out = self.tower.run(None, {"history": vectors[None].astype(np.float32),
                                        "weights": weights[None].astype(np.float32)})[0][0]
            return l2_normalize(out)
        v = (weights[:, None] * vectors).sum(axis=0)
        if np.linalg.norm(v) < 1e-9:
            return None
        return l2_normalize(v)

    def user_vectors(self, vectors: np.ndarray, weights: np.ndarray,
                     lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Many users at once: padded histories (U, L, dim), weights (U, L) and each user's
        length -> (U, dim) unit vectors and a mask of the users who have one.

        The same result as :meth:`user_vector` user by user (padding weighs nothing in the
        weighted mean; a graph tower sees each user's own length), in one matrix operation.
        """
        n_users = len(lengths)
        out = np.zeros((n_users, self.dim), dtype=np.float32)
        ok = np.zeros(n_users, dtype=bool)
        if self.tower is not None:
            for i, n in enumerate(lengths):
                v = self.user_vector(vectors[i, :n], weights[i, :n])
                if v is not None:
                    out[i], ok[i] = v, True
            return out, ok
        summed = np.einsum("ul,uld->ud", weights, vectors)
        norms = np.linalg.norm(summed, axis=1)
        ok = (lengths > 0) & (norms >= 1e-9)
        out[ok] = l2_normalize(summed[ok])
        return out, ok

    def boundaries(self, user_vecs: np.ndarray, vectors: np.ndarray,
                   positive: np.ndarray) -> np.ndarray:
        """:meth:`boundary` for many users: ``positive`` (U, L) marks each user's positive
        history items in ``vectors`` (U, L, dim). A user without any is scored against one
        zero vector, as the per-user path does."""
        if self.boundary_tower is not None:
            return np.array([self.boundary(u, vectors[0, :0]) for u in user_vecs])
        scores = np.einsum("uld,ud->ul", vectors, user_vecs).astype(np.float64)
        q = masked_quantile(scores, positive, self.spec.boundary_quantile)
        return np.maximum(self.spec.boundary_floor, q - self.spec.boundary_margin)

    def boundary(self, user_vec: np.ndarray, positive_vectors: np.ndarray) -> float:
        """Score an item must beat to be delivered to this user."""
        if self.boundary_tower is not None:
            return float(self.boundary_tower.run(
                None, {"user_vector": user_vec[None].astype(np.float32)})[0].reshape(-1)[0])
        if len(positive_vectors) == 0:
            return self.spec.boundary_floor
        scores = positive_vectors @ user_vec
        q = float(np.quantile(scores, self.spec.boundary_quantile))
        return max(self.spec.boundary_floor, q - self.spec.boundary_margin)


def masked_quantile(values: np.ndarray, mask: np.ndarray, q: float) -> np.ndarray:
    """Row-wise ``np.quantile(row[mask_row], q)`` (linear interpolation, numpy's default) for
    rows of different lengths in one sort; a row with nothing masked in gives 0."""
    big = np.finfo(np.float64).max
    s = np.sort(np.where(mask, values, big), axis=1)
    n = np.maximum(mask.sum(axis=1), 1)
    h = (n - 1) * q
    lo = np.floor(h).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    if s.shape[1] == 0:
        return np.zeros(len(s))
    a = np.take_along_axis(s, lo[:, None], axis=1)[:, 0]
    b = np.take_along_axis(s, hi[:, None], axis=1)[:, 0]
    out = a + (h - lo) * (b - a)
    return np.where(mask.any(axis=1), out, 0.0)


@dataclass
class LoadedModel:
    """Everything a worker needs for one model version."""

    manifest: Manifest
    songs: SongEncoder
    users: UserModel

    @property
    def version(self) -> str:
        return self.manifest.version


def load_model(registry: Registry, version: str, threads: int = 1,
               cache: BackboneCache | None = None) -> LoadedModel:
    """Open a version's graphs; ``cache`` (shared by versions) keeps frozen-backbone outputs."""
    manifest = registry.load(version)
    folder = registry.path(version)
    return LoadedModel(manifest, SongEncoder(folder, manifest, threads, cache),
                       UserModel(folder, manifest, threads))
