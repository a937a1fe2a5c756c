"""Fetch and decode ``audio_uri`` safely: it is attacker-controlled input.

Only configured schemes (``file`` by default) and files under configured roots are read;
``..`` and symlinks that leave a root are refused after full resolution; the byte size is
checked before reading; decoding stops at the duration limit and at a wall-time limit.
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np

from encoders.backbone import digest
from encoders.features import resample, to_mono

from .errors import AudioDecodeError, AudioNotAllowed, AudioTooLarge
from .settings import Settings


def resolve_audio_path(uri: str, roots: Sequence[Path], schemes: Sequence[str]) -> Path:
    """URI -> a real file path inside one of ``roots``, or AudioNotAllowed saying why."""
    if "\x00" in uri:
        raise AudioNotAllowed("audio_uri contains a NUL byte")
    parsed = urlparse(uri)
    scheme = parsed.scheme or "file"
    if len(scheme) == 1:  # a Windows drive letter is not a scheme
        raise AudioNotAllowed(f"audio_uri scheme {scheme!r} is not allowed")
    if scheme not in schemes:
        raise AudioNotAllowed(f"audio_uri scheme {scheme!r} is not allowed "
                              f"(allowed: {', '.join(schemes) or 'none'})")
    if scheme != "file":
        raise AudioNotAllowed(f"audio_uri scheme {scheme!r} has no fetcher in this build")
    if parsed.netloc not in ("", "localhost"):
        raise AudioNotAllowed(f"audio_uri host {parsed.netloc!r} is not allowed for file://")
    raw_path = unquote(parsed.path) if parsed.scheme else uri
    if not roots:
        raise AudioNotAllowed("no audio roots configured (COLDSTREAM_AUDIO_ROOTS)")
    candidate = Path(raw_path)
    for root in roots:
        real_root = Path(root).resolve()
        full = (candidate if candidate.is_absolute() else real_root / candidate).resolve()
        if full.is_relative_to(real_root):
            if not full.is_file():
                raise AudioNotAllowed(f"audio file {raw_path!r} does not exist")
            return full
    raise AudioNotAllowed(f"audio_uri {raw_path!r} resolves outside the allowed roots")


@dataclass(frozen=True)
class Clip:
    """A song's decoded audio and the digest of its file's bytes.

    The digest keys the song's frozen-backbone outputs (``encoders.backbone``) and is kept in
    the song's payload, so a model swap whose audio tower is unchanged finds the cached row
    without opening the file again (decoding and hashing the wave were most of a cached swap).
    """

    wave: np.ndarray
    key: bytes


def read_clip(path: Path, sample_rate: int, max_bytes: int, max_seconds: float,
              max_decode_s: float = 10.0) -> Clip:
    """Read the file once (its size checked before and while reading), hash its bytes,
    decode them."""
    size = path.stat().st_size
    if size > max_bytes:
        raise AudioTooLarge(f"audio file is {size} bytes, limit is {max_bytes}")
    with path.open("rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew after the check
        raise AudioTooLarge(f"audio file is over the {max_bytes}-byte limit")
    return Clip(decode_audio(io.BytesIO(data), sample_rate, max_seconds, max_decode_s),
                digest(data))


def load_audio(path: Path, sample_rate: int, max_bytes: int, max_seconds: float,
               max_decode_s: float = 10.0) -> np.ndarray:
    """Decode at most ``max_seconds`` of mono audio at ``sample_rate``."""
    return read_clip(path, sample_rate, max_bytes, max_seconds, max_decode_s).wave


def decode_audio(source: io.BytesIO, sample_rate: int, max_seconds: float,
                 max_decode_s: float) -> np.ndarray:
    """Decoding goes one second of audio at a time and gives up once it has taken
    ``max_decode_s`` of wall time: a crafted file must not hold the worker."""
    import soundfile as sf

    deadline = time.monotonic() + max_decode_s
    try:
        with sf.SoundFile(source) as f:
            sr = f.samplerate
            frames = int(min(f.frames if f.frames > 0 else 1 << 62, max_seconds * sr))
            blocks = []
            while frames > 0:
                block = f.read(min(frames, sr), dtype="float32", always_2d=False)
                if len(block) == 0:
                    break
                blocks.append(block)
                frames -= len(block)
                if time.monotonic() > deadline:
                    raise AudioDecodeError(
                        f"decoding took longer than the {max_decode_s:g} s limit")
    except AudioDecodeError:
        raise
    except Exception as exc:  # libsndfile raises RuntimeError/LibsndfileError/TypeError
        raise AudioDecodeError(f"cannot decode audio: {exc}") from None
    wave = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    wave = to_mono(np.asarray(wave))
    if wave.size == 0:
        raise AudioDecodeError("audio has no samples")
    if not np.isfinite(wave).all():
        raise AudioDecodeError("audio contains NaN or infinite samples")
    return resample(wave, sr, sample_rate)


def load_song_audio(uri: str, sample_rate: int, settings: Settings) -> Clip:
    """An event's ``audio_uri`` -> mono samples at ``sample_rate`` and the file's digest,
    within the configured roots, schemes and limits (the one place both serving and
    re-embedding read audio)."""
    path = resolve_audio_path(uri, settings.audio_roots, settings.audio_schemes)
    return read_clip(path, sample_rate, settings.audio_max_bytes, settings.audio_max_seconds,
                     settings.audio_max_decode_s)
