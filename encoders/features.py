"""Audio and text front ends shared by training and serving, so both see identical inputs.

The log-mel front end is plain numpy (no librosa/numba import at worker start-up); training
uses the same functions, so a model never meets features it was not trained on.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft


@dataclass(frozen=True)
class MelConfig:
    """Log-mel parameters; stored in every model manifest."""

    sample_rate: int = 16_000
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 64
    fmin: float = 30.0
    fmax: float = 8_000.0
    max_seconds: float = 30.0


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(cfg: MelConfig) -> np.ndarray:
    """Triangular HTK-style mel filters, shape (n_mels, n_fft // 2 + 1), area-normalised."""
    n_bins = cfg.n_fft // 2 + 1
    freqs = np.linspace(0.0, cfg.sample_rate / 2, n_bins)
    mels = np.linspace(hz_to_mel(cfg.fmin), hz_to_mel(cfg.fmax), cfg.n_mels + 2)
    edges = mel_to_hz(mels)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / (centre - lower)
    falling = (upper - freqs[None, :]) / (upper - centre)
    bank = np.maximum(0.0, np.minimum(rising, falling))
    bank *= (2.0 / (upper - lower))
    return bank.astype(np.float32)


def resample(wave: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """soxr (libsoxr, high quality): measured 2.6x faster than scipy's resample_poly on a 30 s
    clip, where resampling had been the largest single cost of a new song."""
    if sr_in == sr_out:
        return wave.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(np.ascontiguousarray(wave, dtype=np.float32), sr_in, sr_out,
                         quality="HQ").astype(np.float32, copy=False)


def to_mono(wave: np.ndarray) -> np.ndarray:
    return wave.mean(axis=1) if wave.ndim == 2 else wave


def log_mel(wave: np.ndarray, cfg: MelConfig = MelConfig()) -> np.ndarray:
    """Mono float waveform at ``cfg.sample_rate`` -> log-mel frames, shape (frames, n_mels)."""
    wave = np.asarray(wave, dtype=np.float32)[: int(cfg.max_seconds * cfg.sample_rate)]
    if wave.size < cfg.n_fft:
        wave = np.pad(wave, (0, cfg.n_fft - wave.size))
    n_frames = 1 + (wave.size - cfg.n_fft) // cfg.hop_length
    frames = np.lib.stride_tricks.as_strided(
        wave, shape=(n_frames, cfg.n_fft),
        strides=(wave.strides[0] * cfg.hop_length, wave.strides[0]), writeable=False)
    # scipy's rfft stays in float32 (numpy's works in float64): 3.4x faster, same values
    # within 1e-6.
    spec = scipy.fft.rfft(frames * _hann(cfg.n_fft), axis=1, workers=1)
    power = spec.real**2 + spec.imag**2
    mel = power @ mel_filterbank(cfg).T
    return np.log(mel + 1e-6).astype(np.float32)


@lru_cache(maxsize=4)
def _hann(n: int) -> np.ndarray:
    return np.hanning(n).astype(np.float32)


def pad_frames(batch: Sequence[np.ndarray], n_mels: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack variable-length log-mels into (B, T, M) plus a (B, T) validity mask."""
    longest = max((m.shape[0] for m in batch), default=1) or 1
    out = np.zeros((len(batch), longest, n_mels), dtype=np.float32)
    mask = np.zeros((len(batch), longest), dtype=np.float32)
    for i, m in enumerate(batch):
        out[i, : m.shape[0]] = m
        mask[i, : m.shape[0]] = 1.0
    return out, mask


def song_text(title: str, artist: str, tags: Sequence[str], description: str | None) -> str:
    """The text view of a song, identical at training and serving time."""
    parts = [title.strip(), f"by {artist.strip()}" if artist.strip() else ""]
    if tags:
        parts.append("tags: " + ", ".join(t.strip() for t in tags))
    if description:
        parts.append(description.strip())
    return ". ".join(p for p in parts if p)


_TOKEN = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")


def hashed_bow(texts: Sequence[str], buckets: int) -> np.ndarray:
    """Bag of hashed words (crc32 mod ``buckets``), rows scaled to unit length: (B, buckets).

    The token view of a song's text: artist names, tags and rare words that a sentence
    embedding blurs; the item tower learns one vector per bucket. Stable across processes
    (crc32, not Python's salted hash), so training and serving agree.
    """
    out = np.zeros((len(texts), buckets), dtype=np.float32)
    for i, text in enumerate(texts):
        for tok in set(_TOKEN.findall(text.lower())):
            out[i, zlib.crc32(tok.encode()) % buckets] = 1.0
    norm = np.sqrt(out.sum(1, keepdims=True))
    return out / np.maximum(norm, 1.0)
