"""Live-pipeline plumbing: embedded broker, a pre-filled catalogue, a real worker process.

The catalogue is written straight into the worker's Qdrant Edge store before it starts (the
worker only reads it), so a realistic size costs seconds instead of encoding every song
through Kafka. Song vectors come from the real model: a few hundred distinct song texts are
encoded and each song is one of them plus a little noise, which keeps genres clustered the
way real catalogues are.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from encoders.runtime import HistoryItem, LoadedModel, SongInput
from streams import pipeline
from streams.broker import EmbeddedBroker, ensure_topics
from streams.events import SongEvent
from streams.ids import song_point_id, user_point_id
from streams.process import WorkerProcess, make_worker
from streams.stores import EdgeStore, Point

from .common import Report
from .models import loaded

GENRES = {
    "jazz": "smooth jazz piano trio with brushed drums and a walking upright bass",
    "metal": "thrash metal shredding, double kick drums and screamed vocals",
    "folk": "fingerpicked acoustic guitar, soft harmonies and a warm room sound",
    "synthwave": "retro analogue synths, gated reverb drums and an arpeggiated bassline",
    "hiphop": "boom bap drums, vinyl crackle samples and a laid back rap flow",
    "classical": "a string quartet playing a slow romantic adagio",
    "reggae": "offbeat skank guitar, deep dub bass and a one drop rhythm",
    "techno": "pounding four on the floor kick, hypnotic acid lines for the warehouse",
    "country": "pedal steel, twangy telecaster and a story about a small town",
    "latin": "salsa piano montuno, congas, timbales and a brass section",
    "ambient": "slowly evolving drones and field recordings, no beat",
    "punk": "fast three chord guitars, shouted choruses and a two minute song",
}
WORDS = ["midnight", "river", "neon", "golden", "broken", "summer", "electric", "silent",
         "wild", "paper", "velvet", "iron", "falling", "lonely", "burning", "crystal"]
ACTIONS = ["collect", "complete", "play", "play", "skip"]
NOW = int(time.time() * 1000)


@dataclass
class Catalogue:
    """Songs (with genre), users (with favourite genre and history) as written to the store."""

    songs: list[dict[str, Any]]
    song_genre: np.ndarray
    users: list[str]
    user_genre: np.ndarray
    vectors: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)

    def songs_of(self, genre: int) -> np.ndarray:
        return np.flatnonzero(self.song_genre == genre)


def song_event(i: int, genre: int, *, new: bool = False, audio_uri: str | None = None,
               prefix: str = "s") -> dict[str, Any]:
    name = list(GENRES)[genre]
    rng = np.random.default_rng(i + (10**6 if new else 0))
    w1, w2 = rng.choice(WORDS, 2, replace=False)
    sid = f"{prefix}{i}"
    ev = {"schema_version": 1, "event_id": f"song-{sid}", "song_id": sid,
          "title": f"{w1.title()} {w2.title()}", "artist": f"The {name} collective {i % 40}",
          "tags": [name], "description": f"{GENRES[name]}, {w1} {w2}",
          "released_at": NOW - (0 if new else 10**8)}
    if audio_uri:
        ev["audio_uri"] = audio_uri
    return ev


def build_catalogue(model: LoadedModel, n_songs: int, n_users: int, history: int = 20,
                    distinct: int = 240, seed: int = 0) -> Catalogue:
    rng = np.random.default_rng(seed)
    g = len(GENRES)
    t = time.perf_counter()
    base_ids = list(range(distinct))
    base = model.songs.encode([SongInput(_text(song_event(i, i % g))) for i in base_ids])
    encode_s = time.perf_counter() - t
    song_genre = np.arange(n_songs) % g
    pick = (np.arange(n_songs) // g * g + song_genre) % distinct  # same genre as the song
    vecs = base[pick] + 0.05 * rng.standard_normal((n_songs, base.shape[1])).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    songs = [song_event(i, int(song_genre[i])) for i in range(n_songs)]
    users = [f"u{i}" for i in range(n_users)]
    cat = Catalogue(songs, song_genre, users, np.arange(n_users) % g, vecs.astype(np.float32))
    cat.seconds["encode_distinct_texts"] = encode_s
    return cat


def _text(ev: dict[str, Any]) -> str:
    from encoders.features import song_text

    return song_text(ev["title"], ev["artist"], ev["tags"], ev["description"])


def write_catalogue(cat: Catalogue, model: LoadedModel, data_dir: Path, history: int = 20,
                    seed: int = 0, batch: int = 512) -> dict[str, float]:
    """Songs with engagers (so I2I2U has seeds) and users with vector + boundary (U2I)."""
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    engagers: dict[int, list[list[Any]]] = {}
    user_points = []
    for u, uid in enumerate(cat.users):
        mine = cat.songs_of(int(cat.user_genre[u]))
        hist = rng.choice(mine, min(history, len(mine)), replace=False)
        items = [HistoryItem(cat.songs[s]["song_id"], str(rng.choice(ACTIONS)),
                             NOW - int(rng.integers(0, 30 * 86_400_000))) for s in hist]
        for s, h in zip(hist, items, strict=True):
            if h.action in pipeline.POSITIVE_ACTIONS:
                engagers.setdefault(int(s), []).append([uid, h.action, h.ts])
        mat = cat.vectors[hist]
        vec = model.users.user_vector(mat, model.users.weights(items, NOW))
        if vec is None:
            continue
        pos = mat[[h.action in pipeline.POSITIVE_ACTIONS for h in items]]
        boundary = model.users.boundary(vec, pos)
        user_points.append(Point(user_point_id(uid), vec, {
            "user_id": uid, "boundary": float(boundary), "updated_at": NOW,
            "model_version": model.version, "events": len(items)}))
    store = EdgeStore(data_dir / "qdrant")
    try:
        cols = pipeline.ensure_collections(store, model)
        points = []
        for i, ev in enumerate(cat.songs):
            eng = sorted(engagers.get(i, []), key=lambda e: e[2])[-100:]
            points.append(Point(song_point_id(ev["song_id"]), cat.vectors[i],
                                pipeline.song_payload(SongEvent.model_validate(ev),
                                                      model.version, eng, False)))
        for j in range(0, len(points), batch):
            store.upsert(cols.songs, points[j:j + batch])
        for j in range(0, len(user_points), batch):
            store.upsert(cols.users, user_points[j:j + batch])
        store.flush()
    finally:
        store.close()
    return {"write_catalogue_s": time.perf_counter() - t0}


def write_wavs(root: Path, n: int = 4, seconds: float = 30.0, sr: int = 44_100) -> list[str]:
    """30 s mono WAVs at 44.1 kHz (the worker resamples to 16 kHz, as for real uploads)."""
    import soundfile as sf

    from .encoders import clip

    root.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        name = f"clip{i}.wav"
        sf.write(root / name, clip(seconds, sr, seed=i), sr, subtype="PCM_16")
        names.append(name)
    return names


# ---------------------------------------------------------------------------------------------
# The worker process
# ---------------------------------------------------------------------------------------------


def topics(prefix: str) -> dict[str, str]:
    return {"songs": f"{prefix}.songs.new", "interactions": f"{prefix}.interactions",
            "by_song": f"{prefix}.interactions.by_song", "candidates": f"{prefix}.candidates",
            "versions": f"{prefix}.model.versions", "dlq": f"{prefix}.dlq"}


def Worker(bootstrap: str, models: Path, data_dir: Path, prefix: str,  # noqa: N802
           audio_root: Path | None = None, extra_env: dict[str, str] | None = None,
           ) -> WorkerProcess:
    """``coldstream worker`` against our broker (the same launcher as the tests and the demo),
    quiet. Its consumers use the short fetch long-poll of :mod:`streams.compat`."""
    extra = {"COLDSTREAM_LOG_LEVEL": "warning", **(extra_env or {})}
    if audio_root is not None:
        extra["COLDSTREAM_AUDIO_ROOTS"] = orjson.dumps([str(audio_root)]).decode()
    worker = make_worker(bootstrap, Path(models).resolve(), Path(data_dir).parent, prefix,
                         **extra)
    worker.data_dir = Path(data_dir)
    worker.env["COLDSTREAM_DATA_DIR"] = str(data_dir)
    worker.log_path = Path(data_dir).parent / f"{prefix}-worker.log"
    return worker


def stage_table(samples: dict[tuple[str, tuple], float],
                name: str = "coldstream_stage_seconds") -> dict[str, dict[str, float]]:
    """Per-label mean and bucket-estimated p50/p95 (ms) of a Prometheus histogram."""
    out: dict[str, dict[str, float]] = {}
    buckets: dict[str, list[tuple[float, float]]] = {}
    for (n, labels), v in samples.items():
        lab = dict(labels)
        key = lab.get("stage", "all")
        if n == f"{name}_bucket":
            buckets.setdefault(key, []).append((float(lab["le"]), v))
        elif n == f"{name}_sum":
            out.setdefault(key, {})["sum"] = v
        elif n == f"{name}_count":
            out.setdefault(key, {})["count"] = v
    for key, d in out.items():
        cnt = d.get("count", 0)
        d["mean_ms"] = 1e3 * d.get("sum", 0) / cnt if cnt else float("nan")
        bs = sorted(buckets.get(key, []))
        for q in (50, 95):
            le = next((b for b, c in bs if cnt and c >= cnt * q / 100), float("inf"))
            d[f"p{q}_le_ms"] = le * 1e3
    return out


@dataclass
class Stage:
    """What a live scenario runs on: a temp folder, a catalogue already in the worker's store,
    an embedded broker with the scenario's topics."""

    tmp: Path
    model: LoadedModel
    cat: Catalogue
    bootstrap: str
    topics: dict[str, str]


@contextmanager
def live_stage(rep: Report, models: Path, prefix: str, n_songs: int, n_users: int,
               extra_topics: tuple[str, ...] = ()) -> Iterator[Stage]:
    """The set-up the live scenarios share; removes everything it made on exit."""
    model = loaded(models)
    tmp = Path(tempfile.mkdtemp(prefix=f"coldstream-bench-{prefix}-"))
    names = topics(prefix)
    try:
        cat = build_catalogue(model, n_songs, n_users)
        rep.extra.update(cat.seconds, **write_catalogue(cat, model, tmp / "data"))
        with EmbeddedBroker(log_path=tmp / "tansu.log") as broker:
            asyncio.run(ensure_topics(broker.bootstrap, [*names.values(), *extra_topics], 4))
            yield Stage(tmp, model, cat, broker.bootstrap, names)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
