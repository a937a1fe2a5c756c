"""New songs are encoded in batches: a batch gives each song what it gets alone, and a song
that fails (unreadable audio, an encoder error) fails alone while the rest of its batch goes
on. Real provisional ONNX model, real Qdrant Edge store, real WAV files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from encoders.artifacts import Registry
from encoders.backbone import digest
from encoders.runtime import LoadedModel, SongInput, load_model
from streams import pipeline
from streams.audio import Clip
from streams.errors import AudioDecodeError
from streams.events import SongEvent
from streams.ids import song_point_id, user_point_id
from streams.metrics import Metrics
from streams.settings import Settings
from streams.stores import EdgeStore, Point

NOW = 1_760_000_000_000


@pytest.fixture(scope="module")
def model(model_registry: Registry) -> LoadedModel:
    return load_model(model_registry, model_registry.current() or "")


@pytest.fixture
def audio(tmp_path: Path) -> Path:
    root = tmp_path / "audio"
    root.mkdir()
    rng = np.random.default_rng(3)
    for i, sr in enumerate((16_000, 22_050)):
        sf.write(root / f"clip{i}.wav", 0.2 * rng.standard_normal(sr * 3).astype(np.float32),
                 sr)
    (root / "broken.wav").write_bytes(b"RIFF, but not really a wave file")
    return root


def new_song(i: int, audio_uri: str | None = None, title: str = "") -> SongEvent:
    return SongEvent(schema_version=1, event_id=f"song-n{i}", song_id=f"n{i}",
                     title=title or f"New song {i}", artist=f"Artist {i % 3}",
                     tags=["jazz" if i % 2 else "metal"], description="a new song",
                     released_at=NOW, audio_uri=audio_uri)


def serving(model: LoadedModel, root: Path) -> pipeline.Serving:
    """40 warm songs with three listeners each, and 60 users with vectors near those songs
    (so both paths find listeners for a new song)."""
    store = EdgeStore(root)
    cols = pipeline.ensure_collections(store, model)
    rng = np.random.default_rng(11)
    dim = model.manifest.dim
    warm = rng.standard_normal((40, dim)).astype(np.float32)
    warm /= np.linalg.norm(warm, axis=1, keepdims=True)
    store.upsert(cols.songs, [Point(song_point_id(f"w{i}"), v, {
        "song_id": f"w{i}", "title": f"warm {i}", "is_cold": 0,
        "engagers": pipeline.pack_engagers([[f"u{(i + k) % 60}", "collect", NOW]
                                            for k in range(3)])})
        for i, v in enumerate(warm)])
    users = warm[rng.integers(0, 40, 60)] + 0.3 * rng.standard_normal((60, dim))
    users = (users / np.linalg.norm(users, axis=1, keepdims=True)).astype(np.float32)
    store.upsert(cols.users, [Point(user_point_id(f"u{i}"), v,
                                    {"user_id": f"u{i}", "boundary": -1.0})
                              for i, v in enumerate(users)])
    return pipeline.Serving(store, model, cols, pipeline.SongVectorCache())


def run(sv: pipeline.Serving, songs: list[SongEvent], settings: Settings,
        metrics: Metrics) -> list[Any]:
    """What ``Agents.on_songs`` does with a batch: read, encode together, index one by one."""
    rate = sv.model.songs.sample_rate
    waves = pipeline.read_waves(songs, rate, settings, metrics)
    vectors = pipeline.encode_songs(sv, songs, (rate, waves), settings, metrics)
    return [v if isinstance(v, Exception) else
            pipeline.index_song(sv, song, v, w if isinstance(w, Clip) else None, [],
                                pipeline.PipelineConfig(), metrics)
            for song, v, w in zip(songs, vectors, waves, strict=True)]


def stored_vectors(sv: pipeline.Serving, songs: list[SongEvent]) -> dict[str, np.ndarray]:
    recs = sv.store.retrieve(sv.cols.songs, [song_point_id(s.song_id) for s in songs],
                             with_vector=True)
    return {r.payload["song_id"]: r.vector for r in recs}


def test_a_batch_gives_each_song_what_it_gets_alone_and_a_bad_one_fails_alone(
        model: LoadedModel, audio: Path, tmp_path: Path) -> None:
    settings = Settings(audio_roots=(audio,))
    songs = [new_song(0, "clip0.wav"), new_song(1, "broken.wav"), new_song(2),
             new_song(3, "clip1.wav")]
    batched = serving(model, tmp_path / "batched")
    alone = serving(model, tmp_path / "alone")
    metrics = Metrics()
    got = run(batched, songs, settings, metrics)
    each = [run(alone, [s], settings, Metrics())[0] for s in songs]

    assert isinstance(got[1], AudioDecodeError) and isinstance(each[1], AudioDecodeError)
    for i in (0, 2, 3):
        assert got[i], f"song {i} found no listeners"
        assert [(c.user_id, c.path) for c in got[i]] == [(c.user_id, c.path) for c in each[i]]
        np.testing.assert_allclose([c.score for c in got[i]], [c.score for c in each[i]],
                                   atol=1e-5)
    vb, va = stored_vectors(batched, songs), stored_vectors(alone, songs)
    assert set(vb) == set(va) == {"n0", "n2", "n3"}  # the broken song was never upserted
    for sid in vb:
        np.testing.assert_allclose(vb[sid], va[sid], atol=1e-5)
    recs = batched.store.retrieve(batched.cols.songs, [song_point_id(s) for s in vb])
    assert {r.payload["song_id"]: r.payload["has_audio"] for r in recs} == {
        "n0": 1, "n2": 0, "n3": 1}
    # each point keeps its audio file's digest: a model swap finds its cached rows by it
    assert {r.payload["song_id"]: r.payload.get("audio_digest") for r in recs} == {
        "n0": digest((audio / "clip0.wav").read_bytes()).hex(), "n2": None,
        "n3": digest((audio / "clip1.wav").read_bytes()).hex()}
    # every song that reached the encoder is counted once, the batch's time shared among them
    encode = metrics.stage_seconds.labels(stage="encode")
    assert sum(b.get() for b in encode._buckets) == 3
    batched.store.close()
    alone.store.close()


class PoisonEncoder:
    """The real encoder, except that a song titled "poison" breaks it (as a graph bug on one
    input would): the batch call fails, and so does that song's own call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sample_rate = inner.sample_rate
        self.calls: list[int] = []

    def encode(self, songs: list[SongInput]) -> np.ndarray:
        self.calls.append(len(songs))
        if any("poison" in s.text.lower() for s in songs):
            raise RuntimeError("the graph broke on this input")
        return self.inner.encode(songs)


def test_an_encoder_failure_is_retried_song_by_song_and_only_the_culprit_fails(
        model: LoadedModel, audio: Path, tmp_path: Path) -> None:
    poisoned = replace(model, songs=PoisonEncoder(model.songs))
    sv = serving(model, tmp_path / "q")
    sv = replace(sv, model=poisoned)
    songs = [new_song(0), new_song(1, title="Poison"), new_song(2, "clip0.wav")]
    got = run(sv, songs, Settings(audio_roots=(audio,)), Metrics())
    assert isinstance(got[1], RuntimeError)
    assert got[0] and got[2]
    assert poisoned.songs.calls == [3, 1, 1, 1]  # the batch, then each song alone
    assert set(stored_vectors(sv, songs)) == {"n0", "n2"}
    sv.store.close()


def test_audio_read_at_another_rate_is_read_again_at_this_versions_rate(
        model: LoadedModel, audio: Path, tmp_path: Path) -> None:
    """An A/B arm's version may want another sample rate than the one the audio thread read
    at: its encoder must not get samples at the wrong rate."""
    settings, metrics = Settings(audio_roots=(audio,)), Metrics()
    sv = serving(model, tmp_path / "r")
    songs = [new_song(0, "clip0.wav"), new_song(1)]
    rate = sv.model.songs.sample_rate
    right = pipeline.read_waves(songs, rate, settings, metrics)
    wrong = pipeline.read_waves(songs, rate // 2, settings, metrics)
    got = pipeline.encode_songs(sv, songs, (rate // 2, wrong), settings, metrics)
    want = pipeline.encode_songs(sv, songs, (rate, right), settings, metrics)
    misread = pipeline.encode_songs(sv, songs, (rate, wrong), settings, metrics)  # trusted
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-5)
    assert float(misread[0] @ want[0]) < 0.9999  # the rate matters for a song with audio
    sv.store.close()
