"""audio_uri is attacker-controlled: only allowed schemes and roots, with limits."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streams.audio import load_audio, resolve_audio_path
from streams.errors import AudioDecodeError, AudioNotAllowed, AudioTooLarge


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "audio"
    r.mkdir()
    sr = 22_050
    t = np.arange(sr * 2) / sr
    sf.write(r / "tone.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr)
    (tmp_path / "secret.wav").write_bytes(b"not for you")
    return r


def test_relative_and_file_uris_inside_root_resolve(root: Path) -> None:
    assert resolve_audio_path("tone.wav", [root], ["file"]) == (root / "tone.wav").resolve()
    uri = (root / "tone.wav").as_uri()
    assert resolve_audio_path(uri, [root], ["file"]) == (root / "tone.wav").resolve()


@pytest.mark.parametrize("uri, words", [
    ("../secret.wav", "outside"),
    ("/etc/passwd", "outside"),
    ("file:///etc/passwd", "outside"),
    ("file://evil.example/tone.wav", "host"),
    ("http://example.com/x.wav", "scheme 'http'"),
    ("s3://bucket/x.wav", "scheme 's3'"),
    ("tone.wav\x00.txt", "NUL"),
    ("missing.wav", "does not exist"),
    ("file:///%2E%2E/secret.wav", "outside"),
])
def test_escapes_and_foreign_schemes_are_refused(root: Path, uri: str, words: str) -> None:
    with pytest.raises(AudioNotAllowed, match=words):
        resolve_audio_path(uri, [root], ["file"])


def test_symlink_escaping_the_root_is_refused(root: Path) -> None:
    os.symlink(root.parent / "secret.wav", root / "link.wav")
    with pytest.raises(AudioNotAllowed, match="outside"):
        resolve_audio_path("link.wav", [root], ["file"])


def test_no_roots_means_no_audio(root: Path) -> None:
    with pytest.raises(AudioNotAllowed, match="no audio roots"):
        resolve_audio_path("tone.wav", [], ["file"])


def test_load_resamples_and_cuts_at_duration(root: Path) -> None:
    wave = load_audio(root / "tone.wav", 16_000, max_bytes=10**7, max_seconds=1.0)
    assert wave.dtype == np.float32 and wave.shape == (16_000,)


def test_size_limit_and_decode_errors(root: Path) -> None:
    with pytest.raises(AudioTooLarge):
        load_audio(root / "tone.wav", 16_000, max_bytes=100, max_seconds=30)
    bad = root / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    with pytest.raises(AudioDecodeError):
        load_audio(bad, 16_000, max_bytes=10**7, max_seconds=30)


def test_decoding_stops_at_the_wall_time_limit(root: Path) -> None:
    with pytest.raises(AudioDecodeError, match="longer than the 0 s limit"):
        load_audio(root / "tone.wav", 16_000, max_bytes=10**7, max_seconds=30, max_decode_s=0)
    assert load_audio(root / "tone.wav", 16_000, max_bytes=10**7, max_seconds=30,
                      max_decode_s=60).size > 0
