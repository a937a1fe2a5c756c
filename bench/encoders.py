"""Scenario 3: ONNX Runtime vs torch eager for the text and audio towers, batch 1..64.

Both sides get one thread (``torch.set_num_threads(1)``, ONNX ``intra_op=1``, the worker's
default), so songs/s is per core. Audio includes the numpy log-mel front end on a 30 s clip,
which both paths share; the tower alone is reported too, since that is what ONNX replaces.
"""

# Every lambda below is called at once, inside its own loop iteration.
# ruff: noqa: B023
from __future__ import annotations

import time
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


def run(mode: Mode, batches: list[int] | None = None, models: Path = DEFAULT_MODELS,
        min_seconds: float | None = None) -> Report:
    import torch
    from tokenizers import Tokenizer

    from encoders.features import log_mel, pad_frames
    from encoders.modules import MeanPooledText, SpectralSummary
    from encoders.provisional import load_minilm

    batches = batches or ([1, 8, 32, 64] if mode == "quick" else [1, 2, 4, 8, 16, 32, 64])
    min_seconds = min_seconds if min_seconds is not None else (1.0 if mode == "quick" else 3.0)
    start = time.perf_counter()
    torch.set_num_threads(1)
    model = loaded(models, threads=1)
    enc = model.songs
    folder = Path(models) / (model.version)
    rep = Report("encoders", mode, {"threads": 1, "clip_seconds": 30, "batches": batches,
                                    "model": model.version})
    if not folder.exists():  # Registry.path knows the real layout
        from .models import registry
        folder = registry(models).path(model.version)
    tok = Tokenizer.from_file(str(folder / model.manifest.text.tokenizer))
    tok.enable_truncation(model.manifest.text.max_length)
    tok.enable_padding()
    text_torch = MeanPooledText(load_minilm()).eval()
    audio_torch = SpectralSummary().eval()
    mel_cfg = enc.audio.mel
    waves = [clip(seed=i) for i in range(max(batches))]
    front = timed(lambda: log_mel(waves[0], mel_cfg), min_seconds / 2)
    mel_s = float(np.median(front))
    rep.extra["log_mel_ms_per_clip"] = mel_s * 1e3
    mels = [log_mel(w, mel_cfg) for w in waves]

    def per_s(samples: list[float], b: int) -> float:
        return b / float(np.median(samples))

    for b in batches:
        texts = [TEXTS[i % len(TEXTS)] for i in range(b)]
        e = tok.encode_batch(texts)
        ids = torch.tensor([x.ids for x in e])
        mask = torch.tensor([x.attention_mask for x in e])
        with torch.inference_mode():
            t_torch = per_s(timed(lambda: text_torch(ids, mask), min_seconds), b)
            frames, fmask = pad_frames(mels[:b], mel_cfg.n_mels)
            ft, fm = torch.from_numpy(frames), torch.from_numpy(fmask)
            a_torch = per_s(timed(lambda: audio_torch(ft, fm), min_seconds), b)
        t_onnx = per_s(timed(lambda: enc.text.encode(texts), min_seconds), b)
        a_onnx = per_s(timed(lambda: enc.audio.encode_features(mels[:b]), min_seconds), b)
        # the whole item tower as the worker calls it: tokenise, text, log-mel, audio, fuse
        from encoders.runtime import SongInput
        songs = [SongInput(texts[i], waves[i]) for i in range(b)]
        song_onnx = per_s(timed(lambda: enc.encode(songs), min_seconds), b)

        def torch_song(texts: list[str] = texts, b: int = b) -> Any:
            enc_t = tok.encode_batch(texts)
            with torch.inference_mode():
                tv = text_torch(torch.tensor([x.ids for x in enc_t]),
                                torch.tensor([x.attention_mask for x in enc_t]))
                fr, fmk = pad_frames([log_mel(w, mel_cfg) for w in waves[:b]], mel_cfg.n_mels)
                av = audio_torch(torch.from_numpy(fr), torch.from_numpy(fmk))
            return torch.cat([tv, av], dim=1)

        song_torch = per_s(timed(torch_song, min_seconds), b)
        rep.rows.append({
            "batch": b, "text_onnx/s": t_onnx, "text_torch/s": t_torch,
            "text_x": ratio(t_onnx, t_torch), "audio_tower_onnx/s": a_onnx,
            "audio_tower_torch/s": a_torch, "audio_x": ratio(a_onnx, a_torch),
            "audio+mel_onnx/s": 1.0 / (mel_s + 1.0 / a_onnx),
            "song_onnx/s": song_onnx, "song_torch/s": song_torch,
            "song_x": ratio(song_onnx, song_torch)})
    rep.seconds = time.perf_counter() - start
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
    return rep


def song_rate(rep: Report) -> dict[str, Any]:
    """Best whole-song ONNX rate, used by the model-swap scenario to extrapolate re-embedding."""
    best = max(rep.rows, key=lambda r: r["song_onnx/s"])
    return {"batch": best["batch"], "songs_per_s": best["song_onnx/s"]}
