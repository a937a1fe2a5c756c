"""Scenario 3: ONNX Runtime vs torch eager for the text and audio towers, batch 1..64.

Both sides get one thread (``torch.set_num_threads(1)``, ONNX ``intra_op=1``, the worker's
default), so songs/s is per core. Audio includes the numpy log-mel front end on a 30 s clip,
which both paths share; the tower alone is reported too, since that is what ONNX replaces.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .common import Mode, Report, ratio, timed
from .models import DEFAULT_MODELS, loaded

TEXTS = [
    "Midnight Rain. by The Velvet Echoes. tags: jazz, piano, late night. A smooth jazz piano "
    "trio with brushed drums and an upright bass walking under a tender melody",
    "Iron Hearts. by Steelforge. tags: metal, thrash. Thrash metal shredding with double kick "
    "drums, screamed vocals and a breakdown that never lets go",
    "Sunday Morning. by Lila Park. tags: indie, folk, acoustic. Fingerpicked acoustic guitar, "
    "soft harmonies and a warm analogue room sound",
    "Neon Drive. by Kovalenko. tags: synthwave, electronic. Retro synths, gated reverb drums "
    "and an arpeggiated bassline made for night driving",
]


def clip(seconds: float = 30.0, sr: int = 16_000, seed: int = 0) -> np.ndarray:
    """A music-like test signal: a few harmonics with an envelope, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr), dtype=np.float32) / sr
    f0 = 110.0 * (1 + seed % 5)
    wave = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6))
    env = 0.5 * (1 + np.sin(2 * np.pi * 2.0 * t))
    return (0.2 * wave * env + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


@dataclass
class Bench:
    """What every batch size shares: both towers on both runtimes, tokenizer, clips, mels."""

    enc: Any
    tok: Any
    text_torch: Any
    audio_torch: Any
    waves: list[np.ndarray]
    mels: list[np.ndarray]
    min_seconds: float

    def per_s(self, fn: Callable[[], Any], b: int) -> float:
        """Items per second of ``fn`` on a batch of ``b`` (median of repeated timings)."""
        return b / float(np.median(timed(fn, self.min_seconds)))


def set_up(models: Path, n_clips: int, min_seconds: float) -> tuple[Bench, Any]:
    """Load the ONNX model (one thread) and its torch-eager twins; returns (bench, model)."""
    import torch
    from tokenizers import Tokenizer

    from encoders.features import log_mel
    from encoders.modules import MeanPooledText, SpectralSummary
    from encoders.provisional import load_minilm

    torch.set_num_threads(1)
    model = loaded(models, threads=1)
    folder = Path(models) / (model.version)
    if not folder.exists():  # Registry.path knows the real layout
        from .models import registry
        folder = registry(models).path(model.version)
    tok = Tokenizer.from_file(str(folder / model.manifest.text.tokenizer))
    tok.enable_truncation(model.manifest.text.max_length)
    tok.enable_padding()
    waves = [clip(seed=i) for i in range(n_clips)]
    mels = [log_mel(w, model.songs.audio.mel) for w in waves]
    return Bench(model.songs, tok, MeanPooledText(load_minilm()).eval(),
                 SpectralSummary().eval(), waves, mels, min_seconds), model


def text_rates(bench: Bench, texts: list[str]) -> tuple[float, float]:
    """Text tower, songs/s: (ONNX, torch)."""
    import torch

    b = len(texts)
    e = bench.tok.encode_batch(texts)
    ids = torch.tensor([x.ids for x in e])
    mask = torch.tensor([x.attention_mask for x in e])
    with torch.inference_mode():
        t_torch = bench.per_s(lambda: bench.text_torch(ids, mask), b)
    return bench.per_s(lambda: bench.enc.text.encode(texts), b), t_torch


def audio_tower_rates(bench: Bench, b: int) -> tuple[float, float]:
    """Audio tower alone (log-mel done), songs/s: (ONNX, torch)."""
    import torch

    from encoders.features import pad_frames

    mels = bench.mels[:b]
    frames, fmask = pad_frames(mels, bench.enc.audio.mel.n_mels)
    ft, fm = torch.from_numpy(frames), torch.from_numpy(fmask)
    with torch.inference_mode():
        a_torch = bench.per_s(lambda: bench.audio_torch(ft, fm), b)
    return bench.per_s(lambda: bench.enc.audio.encode_features(mels), b), a_torch


def song_rates(bench: Bench, texts: list[str]) -> tuple[float, float]:
    """The whole item tower as the worker calls it (tokenise, text, log-mel, audio, fuse),
    songs/s: (ONNX, torch)."""
    import torch

    from encoders.features import log_mel, pad_frames
    from encoders.runtime import SongInput

    b, mel_cfg, waves = len(texts), bench.enc.audio.mel, bench.waves
    songs = [SongInput(texts[i], waves[i]) for i in range(b)]

    def torch_song() -> Any:
        enc_t = bench.tok.encode_batch(texts)
        with torch.inference_mode():
            tv = bench.text_torch(torch.tensor([x.ids for x in enc_t]),
                                  torch.tensor([x.attention_mask for x in enc_t]))
            fr, fmk = pad_frames([log_mel(w, mel_cfg) for w in waves[:b]], mel_cfg.n_mels)
            av = bench.audio_torch(torch.from_numpy(fr), torch.from_numpy(fmk))
        return torch.cat([tv, av], dim=1)

    return bench.per_s(lambda: bench.enc.encode(songs), b), bench.per_s(torch_song, b)


def run(mode: Mode, batches: list[int] | None = None, models: Path = DEFAULT_MODELS,
        min_seconds: float | None = None) -> Report:
    from encoders.features import log_mel

    batches = batches or ([1, 8, 32, 64] if mode == "quick" else [1, 2, 4, 8, 16, 32, 64])
    min_seconds = min_seconds if min_seconds is not None else (1.0 if mode == "quick" else 3.0)
    start = time.perf_counter()
    bench, model = set_up(models, max(batches), min_seconds)
    rep = Report("encoders", mode, {"threads": 1, "clip_seconds": 30, "batches": batches,
                                    "model": model.version})
    mel_cfg = bench.enc.audio.mel
    mel_s = float(np.median(timed(lambda: log_mel(bench.waves[0], mel_cfg), min_seconds / 2)))
    rep.extra["log_mel_ms_per_clip"] = mel_s * 1e3
    for b in batches:
        texts = [TEXTS[i % len(TEXTS)] for i in range(b)]
        t_onnx, t_torch = text_rates(bench, texts)
        a_onnx, a_torch = audio_tower_rates(bench, b)
        song_onnx, song_torch = song_rates(bench, texts)
        rep.rows.append({
            "batch": b, "text_onnx/s": t_onnx, "text_torch/s": t_torch,
            "text_x": ratio(t_onnx, t_torch), "audio_tower_onnx/s": a_onnx,
            "audio_tower_torch/s": a_torch, "audio_x": ratio(a_onnx, a_torch),
            "audio+mel_onnx/s": 1.0 / (mel_s + 1.0 / a_onnx),
            "song_onnx/s": song_onnx, "song_torch/s": song_torch,
            "song_x": ratio(song_onnx, song_torch)})
    rep.seconds = time.perf_counter() - start
    add_goals(rep, mel_s)
    return rep


def add_goals(rep: Report, mel_s: float) -> None:
    best = max(rep.rows, key=lambda r: r["song_onnx/s"])
    rep.goal("ONNX vs torch, text tower (best batch)", ">= 2x",
             max(r["text_x"] for r in rep.rows), lambda v: v >= 2)
    rep.goal("ONNX vs torch, whole song (best batch)", ">= 2x",
             max(r["song_x"] for r in rep.rows), lambda v: v >= 2)
    rep.goal("songs/s per core, 30 s clips (text+audio+mel)", ">= 20",
             best["song_onnx/s"], lambda v: v >= 20)
    rep.goal("songs/s per core at batch 1 (the worker today)", ">= 20",
             rep.rows[0]["song_onnx/s"], lambda v: v >= 20)
    rep.notes.append(f"log-mel front end: {mel_s * 1e3:.1f} ms per 30 s clip (numpy, shared "
                     "by both paths)")
    rep.notes.append("song_*: tokenise + text tower + log-mel + audio tower (+ fuse), "
                     "the whole item tower as the worker calls it")


def song_rate(rep: Report) -> dict[str, Any]:
    """Best whole-song ONNX rate, used by the model-swap scenario to extrapolate re-embedding."""
    best = max(rep.rows, key=lambda r: r["song_onnx/s"])
    return {"batch": best["batch"], "songs_per_s": best["song_onnx/s"]}
