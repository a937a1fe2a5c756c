"""Pipeline steps: song -> vector -> upsert -> candidates; interaction -> user state.

No Faust import: everything here is testable without Kafka. Agents call these functions (the
blocking ones through the work thread) and only add I/O (consuming, producing, committing).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from encoders.features import song_text
from encoders.runtime import HistoryItem, LoadedModel, SongInput

from .audio import load_song_audio
from .events import CandidateEvent, InteractionEvent, SongEvent, now_ms
from .ids import candidate_id, song_point_id, user_point_id
from .metrics import Metrics
from .settings import Settings
from .stores import Hit, Point, VectorStore, Where

#: How strongly an action ties a listener to a seed song in I2I2U (skip: no tie).
ENGAGEMENT = {"collect": 1.0, "complete": 0.8, "play": 0.4}
POSITIVE_ACTIONS = frozenset(ENGAGEMENT)
SONG_INDEXES = {"is_cold": "integer", "artist": "keyword", "released_at": "integer",
                "model_version": "keyword"}
USER_INDEXES = {"boundary": "float", "updated_at": "integer"}


@dataclass(frozen=True)
class Collections:
    """Per-model-version collections: vector spaces are never mixed."""

    songs: str
    users: str

    @classmethod
    def for_version(cls, version: str) -> Collections:
        safe = re.sub(r"[^A-Za-z0-9_]", "_", version)
        return cls(songs=f"songs__{safe}", users=f"users__{safe}")


@dataclass(frozen=True)
class PipelineConfig:
    similar_songs_k: int = 20
    u2i_users_k: int = 200
    max_candidates_per_song: int = 50
    recent_items_per_user: int = 50
    engagers_per_song: int = 100
    recent_event_ids: int = 64
    similarity_margin: float = 0.1
    min_similarity: float = 0.3


def ensure_collections(store: VectorStore, model: LoadedModel) -> Collections:
    cols = Collections.for_version(model.version)
    store.ensure_collection(cols.songs, model.manifest.dim, SONG_INDEXES)
    store.ensure_collection(cols.users, model.manifest.dim, USER_INDEXES)
    return cols


# ---------------------------------------------------------------------------------------------
# Songs
# ---------------------------------------------------------------------------------------------


def song_input(song: SongEvent | Mapping[str, Any], wave: np.ndarray | None) -> SongInput:
    """A song's model inputs from its event, or from the payload the store kept of it."""
    fields = dict(song) if isinstance(song, SongEvent) else song
    return SongInput(song_text(fields.get("title", ""), fields.get("artist", ""),
                               fields.get("tags", []), fields.get("description")), wave)


def song_payload(song: SongEvent, version: str, engagers: list[list[Any]],
                 has_audio: bool) -> dict:
    """Payload of a song point. ``engagers`` comes from the song's table entry, so a replayed
    songs.new keeps the listeners already recorded."""
    return {"song_id": song.song_id, "title": song.title, "artist": song.artist,
            "tags": list(song.tags), "released_at": song.released_at,
            "description": song.description, "audio_uri": song.audio_uri,
            "is_cold": 0 if engagers else 1, "engagers": engagers, "model_version": version,
            "has_audio": int(has_audio)}


def upsert_song(store: VectorStore, cols: Collections, song: SongEvent, vector: np.ndarray,
                version: str, has_audio: bool, engagers: list[list[Any]]) -> str:
    pid = song_point_id(song.song_id)
    store.upsert(cols.songs, [Point(pid, vector, song_payload(song, version, engagers,
                                                               has_audio))])
    return pid


@dataclass
class Scored:
    """One user's evidence for one new song, from either path."""

    user_id: str
    i2i2u: float = 0.0
    u2i: float | None = None
    boundary: float | None = None
    seeds: list[tuple[str, str, float]] = field(default_factory=list)  # (song_id, title, sim)

    @property
    def passes_boundary(self) -> bool:
        return self.u2i is not None and self.boundary is not None and self.u2i > self.boundary

    @property
    def path(self) -> str:
        if self.seeds and self.passes_boundary:
            return "both"
        return "u2i" if self.passes_boundary else "i2i2u"

    @property
    def score(self) -> float:
        return max(self.i2i2u, self.u2i if self.passes_boundary else 0.0)


def i2i2u(similar: Sequence[Hit], into: dict[str, Scored], margin: float = 0.1,
          min_similarity: float = 0.3) -> None:
    """Known similar songs -> their engaged listeners.

    Only seeds close to the best match count (within ``margin`` of it and above
    ``min_similarity``): a listener of a merely related genre is not evidence. A listener's
    score is the mean of their three strongest ties (similarity x engagement), so more seeds
    help without saturating.
    """
    if not similar:
        return
    best = max(h.score for h in similar)
    strengths: dict[str, list[float]] = {}
    for hit in similar:
        sim = hit.score
        if sim < min_similarity or sim < best - margin:
            continue
        for user_id, action, _ts in hit.payload.get("engagers", []):
            strength = sim * ENGAGEMENT.get(action, 0.0)
            if strength <= 0:
                continue
            s = into.setdefault(user_id, Scored(user_id))
            strengths.setdefault(user_id, []).append(strength)
            if len(s.seeds) < 5:
                s.seeds.append((hit.payload["song_id"], hit.payload.get("title", ""), sim))
    for user_id, values in strengths.items():
        top = sorted(values, reverse=True)[:3]
        into[user_id].i2i2u = sum(top) / 3.0


def u2i(users: Sequence[Hit], into: dict[str, Scored], metrics: Metrics | None = None) -> None:
    """Users whose vector scores the song; gate later by each user's own boundary."""
    for hit in users:
        s = into.setdefault(hit.payload["user_id"], Scored(hit.payload["user_id"]))
        s.u2i = hit.score
        s.boundary = float(hit.payload.get("boundary", 1.0))
        if metrics is not None:
            metrics.boundary_checks.labels(result="pass" if s.passes_boundary else "fail").inc()


def explain(s: Scored) -> str:
    parts = []
    if s.seeds:
        names = ", ".join(f"'{title or sid}'" for sid, title, _ in s.seeds[:3])
        parts.append(f"you engaged with similar songs {names}")
    if s.passes_boundary:
        parts.append(f"it matches your taste ({s.u2i:.2f} > your boundary {s.boundary:.2f})")
    return "; ".join(parts) or "no evidence"


def select(scored: dict[str, Scored], cap: int) -> list[Scored]:
    """Keep users with evidence (I2I2U tie or U2I pass), best first, within the song's budget."""
    keep = [s for s in scored.values() if s.seeds or s.passes_boundary]
    keep.sort(key=lambda s: (-s.score, s.user_id))
    return keep[:cap]


def candidates_for_song(store: VectorStore, cols: Collections, song: SongEvent,
                        vector: np.ndarray, version: str, cfg: PipelineConfig,
                        metrics: Metrics | None = None) -> list[CandidateEvent]:
    """Both paths, merged, de-duplicated per user, capped, explained."""
    pid = song_point_id(song.song_id)
    similar = store.search(cols.songs, vector, cfg.similar_songs_k,
                           Where(equals={"is_cold": 0}, exclude_ids=frozenset([pid])))
    users = store.search(cols.users, vector, cfg.u2i_users_k)
    scored: dict[str, Scored] = {}
    i2i2u(similar, scored, cfg.similarity_margin, cfg.min_similarity)
    u2i(users, scored, metrics)
    missing = [s.user_id for s in scored.values() if s.boundary is None]
    if missing:  # report each I2I2U listener's boundary and own score too
        by_pid = {user_point_id(u): u for u in missing}
        for rec in store.retrieve(cols.users, list(by_pid), with_vector=True):
            s = scored[by_pid[rec.id]]
            s.boundary = float(rec.payload.get("boundary", 1.0))
            if rec.vector is not None:
                s.u2i = float(rec.vector @ vector)
    created = now_ms()
    return [CandidateEvent(
        schema_version=1, event_id=candidate_id(song.song_id, s.user_id, version),
        candidate_id=candidate_id(song.song_id, s.user_id, version), song_id=song.song_id,
        user_id=s.user_id, score=round(float(s.score), 6),
        boundary=None if s.boundary is None else round(s.boundary, 6), path=s.path,
        seed_song_ids=[sid for sid, _, _ in s.seeds], model_version=version,
        created_at=created, explanation=explain(s),
    ) for s in select(scored, cfg.max_candidates_per_song)]


# ---------------------------------------------------------------------------------------------
# Users
# ---------------------------------------------------------------------------------------------


def new_user_state() -> dict[str, Any]:
    return {"history": [], "counts": {}, "offsets": {}, "event_ids": [], "seen": [],
            "boundary": None, "applied": 0}


def is_duplicate(state: dict[str, Any], event: InteractionEvent, partition: int,
                 offset: int) -> bool:
    """Replays (an offset already applied) and producer duplicates (same event_id) change
    nothing.

    Records can arrive out of order: a re-read after Faust dropped one (streams.offsets)
    delivers it after later ones. So an offset below the watermark is a replay only if it is
    among the recent offsets applied, or older than all of them (a replay beyond the window).
    """
    if event.event_id in state["event_ids"]:
        return True
    last = state["offsets"].get(str(partition))
    if last is None or offset > last:
        return False
    seen = [o for p, o in state.get("seen", ()) if p == partition]
    return not seen or offset in seen or offset < min(seen)


def apply_interaction(state: dict[str, Any], event: InteractionEvent, partition: int,
                      offset: int, cfg: PipelineConfig) -> dict[str, Any]:
    """Return the new user state (a pure function of old state and event)."""
    history = [*state["history"], [event.song_id, event.action, event.ts]]
    history.sort(key=lambda h: h[2])
    counts = dict(state["counts"])
    counts[event.action] = counts.get(event.action, 0) + 1
    watermark = max(offset, state["offsets"].get(str(partition), -1))
    return {
        "history": history[-cfg.recent_items_per_user:],
        "counts": counts,
        "offsets": {**state["offsets"], str(partition): watermark},
        "event_ids": [*state["event_ids"], event.event_id][-cfg.recent_event_ids:],
        "seen": [*state.get("seen", []), [partition, offset]][-cfg.recent_event_ids:],
        "boundary": state.get("boundary"),
        # events applied: only grows, so table recovery can tell a stale changelog record
        # (streams.monotone_tables); states written before it existed count their actions
        "applied": int(state.get("applied", sum(state["counts"].values()))) + 1,
    }


class SongVectorCache:
    """LRU of song vectors for one model version: song vectors never change within a version."""

    def __init__(self, capacity: int = 50_000) -> None:
        self.capacity = capacity
        self._data: OrderedDict[str, np.ndarray] = OrderedDict()

    def get_many(self, store: VectorStore, collection: str,
                 song_ids: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        missing = []
        for sid in song_ids:
            vec = self._data.get(sid)
            if vec is None:
                missing.append(sid)
            else:
                self._data.move_to_end(sid)
                found[sid] = vec
        if missing:
            by_pid = {song_point_id(s): s for s in missing}
            for rec in store.retrieve(collection, list(by_pid), with_vector=True):
                sid = by_pid[rec.id]
                found[sid] = self._data[sid] = rec.vector
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)
        return found

    def clear(self) -> None:
        self._data.clear()


def users_update(store: VectorStore, cols: Collections, model: LoadedModel,
                 cache: SongVectorCache, states: dict[str, dict[str, Any]],
                 now: int | None = None) -> dict[str, float]:
    """Recompute many users' vectors and boundaries from their states; one vector fetch and
    one upsert for the batch (idempotent: a pure function of state). Returns boundaries."""
    now = now if now is not None else now_ms()
    wanted = sorted({s for st in states.values() for s, _a, _t in st["history"]})
    vectors = cache.get_many(store, cols.songs, wanted)
    floor = model.users.spec.boundary_floor
    boundaries: dict[str, float] = {}
    points = []
    for user_id, state in states.items():
        known = [HistoryItem(s, a, t) for s, a, t in state["history"] if s in vectors]
        user_vec = None
        if known:
            mat = np.stack([vectors[h.song_id] for h in known])
            user_vec = model.users.user_vector(mat, model.users.weights(known, now))
        if user_vec is None:
            boundaries[user_id] = floor
            continue
        positives = np.stack([vectors[h.song_id] for h in known
                              if h.action in POSITIVE_ACTIONS]
                             or [np.zeros(model.manifest.dim, dtype=np.float32)])
        boundaries[user_id] = model.users.boundary(user_vec, positives)
        points.append(Point(user_point_id(user_id), user_vec, {
            "user_id": user_id, "boundary": float(boundaries[user_id]), "updated_at": now,
            "model_version": model.version, "events": int(sum(state["counts"].values()))}))
    store.upsert(cols.users, points)
    return boundaries


def update_engagers(engagers: list[list[Any]], event: InteractionEvent,
                    limit: int) -> list[list[Any]]:
    """Newest positive listeners of a song; a skip withdraws the listener's tie."""
    kept = [e for e in engagers if e[0] != event.user_id]
    if event.action in POSITIVE_ACTIONS:
        kept.append([event.user_id, event.action, event.ts])
    kept.sort(key=lambda e: e[2])
    return kept[-limit:]


def write_engagers(store: VectorStore, cols: Collections, song_id: str,
                   engagers: list[list[Any]]) -> None:
    store.set_payload(cols.songs, song_point_id(song_id),
                      {"engagers": engagers, "is_cold": 0 if engagers else 1})


# ---------------------------------------------------------------------------------------------
# Steps the agents run in the work thread (streams.executor)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Serving:
    """What serves right now: one model version, its collections and its song-vector cache.

    Taken on the event loop while the handler holds the worker's gate, so a model switch
    (which takes the gate) never lands in the middle of a step.
    """

    store: VectorStore
    model: LoadedModel
    cols: Collections
    cache: SongVectorCache


def process_song(sv: Serving, song: SongEvent, engagers: list[list[Any]], cfg: PipelineConfig,
                 settings: Settings, metrics: Metrics) -> list[CandidateEvent]:
    """Audio -> vector -> upsert -> candidates; each stage timed by its histogram."""
    wave: np.ndarray | None = None
    if song.audio_uri:
        with metrics.stage("audio"):
            wave = load_song_audio(song.audio_uri, sv.model.songs.sample_rate, settings)
    with metrics.stage("encode"):
        vector = sv.model.songs.encode([song_input(song, wave)])[0]
    with metrics.stage("upsert"):
        upsert_song(sv.store, sv.cols, song, vector, sv.model.version, wave is not None,
                    engagers)
    with metrics.stage("search"):
        return candidates_for_song(sv.store, sv.cols, song, vector, sv.model.version, cfg,
                                   metrics)


def refresh_users(sv: Serving, states: dict[str, dict[str, Any]],
                  metrics: Metrics) -> dict[str, float]:
    """:func:`users_update`, timed and counted."""
    with metrics.stage("user_update"):
        boundaries = users_update(sv.store, sv.cols, sv.model, sv.cache, states)
    metrics.users_updated.inc(len(states))
    return boundaries


def write_known_engagers(sv: Serving, by_song: dict[str, list[list[Any]]]) -> None:
    """Listener lists of several songs; songs not indexed yet get theirs on arrival."""
    known = sv.cache.get_many(sv.store, sv.cols.songs, list(by_song))
    for song_id, engagers in by_song.items():
        if song_id in known:
            write_engagers(sv.store, sv.cols, song_id, engagers)
