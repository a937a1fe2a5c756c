"""Training tensors from a :class:`Dataset`: frozen text vectors, log-mels, histories, pairs.

Everything slow is computed once and cached under ``.coldstream/cache`` by a content hash:
MiniLM text vectors (the text tower is frozen, so caching them is exact) and rendered
music-world log-mels. Histories use the serving weights (``UserModel.weights``: action
weight x recency), so the user tower is trained on what the worker will feed it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from coldstream_data.base import ACTIONS, Dataset
from encoders.artifacts import UserSpec
from encoders.features import MelConfig, hashed_bow, log_mel, song_text
from encoders.runtime import DAY_MS

from .baselines import MiniLMEncoder
from .cache_files import save_array

CACHE = Path(".coldstream/cache")
AUDIO_SECONDS = 3.0


@dataclass(frozen=True)
class TrainData:
    """Dense arrays the tasks sample from; item rows cover the whole catalogue."""

    text: np.ndarray  # (n_items, 384) frozen MiniLM vectors
    tokens: np.ndarray  # (n_items, buckets) hashed bag of words of the same text view
    mels: np.ndarray  # (n_items, T, n_mels) log-mels, zeros where no audio
    has_audio: np.ndarray  # (n_items,) float32 0/1
    hist_items: np.ndarray  # (n_users, L) int64, padded with 0
    hist_weights: np.ndarray  # (n_users, L) float32, 0 on padding
    hist_pos: np.ndarray  # (n_users, L) bool: positive engagements (BPR targets)
    pos_user: np.ndarray  # one row per training positive
    pos_item: np.ndarray
    fingerprint: str

    @property
    def n_items(self) -> int:
        return len(self.text)

    @property
    def n_users(self) -> int:
        return len(self.hist_items)


def fingerprint(data: Dataset) -> str:
    """Hash of catalogue ids and training interactions: which data made a model."""
    h = hashlib.sha256()
    h.update("\x1e".join(data.catalogue["song_id"]).encode())
    inter = data.interactions
    for arr in (inter.user, inter.item, inter.action, inter.ts):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


def text_vectors(data: Dataset, cache: Path = CACHE) -> np.ndarray:
    return np.asarray(MiniLMEncoder(cache_dir=cache).encode(data), dtype=np.float32)


def token_view(data: Dataset, buckets: int) -> np.ndarray:
    """``hashed_bow`` of the serving text view (``features.song_text``) of every item."""
    texts = [song_text(str(r.title), str(r.artist), list(r.tags),
                       r.description if isinstance(r.description, str) else None)
             for r in data.catalogue.itertuples(index=False)]
    return hashed_bow(texts, max(buckets, 1))


def audio_mels(data: Dataset, mel: MelConfig, seconds: float = AUDIO_SECONDS,
               cache: Path = CACHE, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Log-mels of rendered music-world clips; (zeros, has_audio=0) for other sources."""
    frames = 1 + (int(seconds * mel.sample_rate) - mel.n_fft) // mel.hop_length
    if "audio_seed" not in data.catalogue:
        return (np.zeros((data.n_items, 1, mel.n_mels), dtype=np.float32),
                np.zeros(data.n_items, dtype=np.float32))
    key = hashlib.sha256(repr((mel, seconds, list(data.catalogue["song_id"]),
                               list(data.catalogue["audio_seed"]))).encode()).hexdigest()[:20]
    path = cache / f"mels-{key}.npy"
    if path.exists():
        out = np.load(path).astype(np.float32)
    else:
        from coldstream_data.music_world import render_audio

        rows = data.catalogue.to_dict("records")
        out = np.stack([log_mel(render_audio(r, mel.sample_rate, seconds), mel)[:frames]
                        for r in tqdm(rows, desc="render audio", disable=not progress)])
        save_array(path, out.astype(np.float16))
        out = out.astype(np.float32)
    return out, np.ones(data.n_items, dtype=np.float32)


def histories(data: Dataset, spec: UserSpec, length: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each user's most recent ``length`` events with serving weights, relative to their last."""
    inter = data.interactions.sorted_by_time()
    aw = np.asarray([spec.action_weights.get(a, 0.0) for a in ACTIONS], dtype=np.float32)
    pos = inter.positive()
    items = np.zeros((data.n_users, length), dtype=np.int64)
    weights = np.zeros((data.n_users, length), dtype=np.float32)
    is_pos = np.zeros((data.n_users, length), dtype=bool)
    order = np.argsort(inter.user, kind="stable")  # time order kept within each user
    users, starts = np.unique(inter.user[order], return_index=True)
    ends = np.append(starts[1:], len(order))
    for u, a, b in zip(users, starts, ends, strict=True):
        idx = order[a:b][-length:]
        age = (inter.ts[idx[-1]] - inter.ts[idx]) / DAY_MS
        n = len(idx)
        items[u, :n] = inter.item[idx]
        weights[u, :n] = aw[inter.action[idx]] * 0.5 ** (age / spec.half_life_days)
        is_pos[u, :n] = pos[idx]
    return items, weights, is_pos


def build(data: Dataset, mel: MelConfig, spec: UserSpec, use_audio: bool = True,
          bow_buckets: int = 0, cache: Path = CACHE, progress: bool = False) -> TrainData:
    """Everything the tasks need from one training view (no held-out events in ``data``)."""
    mels, has_audio = (audio_mels(data, mel, cache=cache, progress=progress) if use_audio else
                       (np.zeros((data.n_items, 1, mel.n_mels), np.float32),
                        np.zeros(data.n_items, np.float32)))
    items, weights, is_pos = histories(data, spec, spec.history_length)
    pos = data.interactions.positive()
    return TrainData(
        text=text_vectors(data, cache), tokens=token_view(data, bow_buckets),
        mels=mels, has_audio=has_audio,
        hist_items=items, hist_weights=weights, hist_pos=is_pos,
        pos_user=data.interactions.user[pos].astype(np.int64),
        pos_item=data.interactions.item[pos].astype(np.int64),
        fingerprint=fingerprint(data))
