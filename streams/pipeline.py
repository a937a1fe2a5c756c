"""Pipeline steps: song -> vector -> upsert -> candidates; interaction -> user state.

No Faust import: everything here is testable without Kafka. Agents call these functions (the
blocking ones through the work thread) and only add I/O (consuming, producing, committing).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import orjson

from encoders.artifacts import DeliverySpec
from encoders.features import song_text
from encoders.runtime import LoadedModel, SongInput

from .arms import Arm, arm_caps, assign
from .audio import Clip, load_song_audio
from .events import CandidateEvent, InteractionEvent, SongEvent, now_ms
from .ids import candidate_id, song_point_id, user_point_id
from .metrics import Metrics
from .settings import Settings
from .state_format import USER_STATE_FORMAT, event_key
from .stores import Hit, Point, VectorStore, Where

log = logging.getLogger(__name__)

#: How strongly an action ties a listener to a seed song in I2I2U (skip: no tie).
ENGAGEMENT = {"collect": 1.0, "complete": 0.8, "play": 0.4}
POSITIVE_ACTIONS = frozenset(ENGAGEMENT)
SONG_INDEXES = {"is_cold": "integer", "artist": "keyword", "released_at": "integer",
                "model_version": "keyword"}
#: Every key of the listener payload :func:`users_update` writes is indexed, so that the whole
#: payload sits in the segmented store's columns: U2I's hits then need no read of the engine
#: (``streams.stores.columns``). One key outside them sends all of a search's hits to the
#: engine: until stop 50, ``model_version`` and ``events`` did, 200 listeners per new song.
USER_INDEXES = {"user_id": "keyword", "boundary": "float", "updated_at": "integer",
                "model_version": "keyword", "events": "integer"}


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
    u2i_min_margin: float = 0.0
    boundary_gates_i2i2u: bool = False
    arms: tuple[Arm, ...] = ()
    ab_salt: str = "coldstream-ab"


def ensure_collections(store: VectorStore, model: LoadedModel) -> Collections:
    check_delivery(model.manifest.delivery)  # refuse a model before it serves, not per song
    cols = Collections.for_version(model.version)
    store.ensure_collection(cols.songs, model.manifest.dim, SONG_INDEXES)
    store.ensure_collection(cols.users, model.manifest.dim, USER_INDEXES)
    return cols


# ---------------------------------------------------------------------------------------------
# Songs
# ---------------------------------------------------------------------------------------------


def song_input(song: SongEvent | Mapping[str, Any], clip: Clip | None,
               audio_key: bytes | None = None) -> SongInput:
    """A song's model inputs from its event, or from the payload the store kept of it: its
    text and its audio (decoded, or only the file's digest when its output is cached)."""
    fields = dict(song) if isinstance(song, SongEvent) else song
    text = song_text(fields.get("title", ""), fields.get("artist", ""), fields.get("tags", []),
                     fields.get("description"))
    if clip is not None:
        return SongInput(text, clip.wave, clip.key)
    return SongInput(text, None, audio_key)


def pack_engagers(engagers: list[list[Any]]) -> str:
    """A song's listener list as it is kept in the song's payload: one JSON string.

    Measured on Qdrant Edge: setting a payload of 100 ``[user, action, ts]`` lists costs
    ~3 ms, the same list as one string ~0.13 ms; the engagement agent writes one per changed
    song per batch, so the nested form capped it below 2,000 events/s.
    """
    return orjson.dumps(engagers).decode()


def engagers_of(payload: Mapping[str, Any]) -> list[list[Any]]:
    """The listener list of a song payload, packed (:func:`pack_engagers`) or, as points
    written before it, a plain list."""
    value = payload.get("engagers") or []
    return orjson.loads(value) if isinstance(value, str) else value


def song_payload(song: SongEvent, version: str, engagers: list[list[Any]],
                 has_audio: bool, audio_key: bytes | None = None) -> dict:
    """Payload of a song point. ``engagers`` comes from the song's table entry, so a replayed
    songs.new keeps the listeners already recorded. ``audio_digest`` (the audio file's digest)
    lets a model swap reuse the song's cached audio-tower output without reading the file."""
    payload = {"song_id": song.song_id, "title": song.title, "artist": song.artist,
               "tags": list(song.tags), "released_at": song.released_at,
               "description": song.description, "audio_uri": song.audio_uri,
               "is_cold": 0 if engagers else 1, "engagers": pack_engagers(engagers),
               "model_version": version,
               "has_audio": int(has_audio)}
    if audio_key is not None:
        payload["audio_digest"] = audio_key.hex()
    return payload


def upsert_song(store: VectorStore, cols: Collections, song: SongEvent, vector: np.ndarray,
                version: str, clip: Clip | None, engagers: list[list[Any]]) -> str:
    pid = song_point_id(song.song_id)
    store.upsert(cols.songs, [Point(pid, vector, song_payload(
        song, version, engagers, clip is not None, clip.key if clip else None))])
    return pid


@dataclass
class Scored:
    """One user's evidence for one new song, from either path."""

    user_id: str
    i2i2u: float = 0.0
    u2i: float | None = None
    boundary: float | None = None
    seeds: list[tuple[str, str, float]] = field(default_factory=list)  # (song_id, title, sim)
    arm: str | None = None
    u2i_allowed: bool = True  # False in an A/B arm that serves I2I2U only
    prior: float = 0.0  # the song's predicted popularity (z-scored; 0 without a prior)

    @property
    def boundary_checked(self) -> bool:
        """U2I is served to this user and both the score and the boundary are known."""
        return self.u2i_allowed and self.u2i is not None and self.boundary is not None

    @property
    def passes_boundary(self) -> bool:
        return self.boundary_checked and self.u2i > self.boundary

    @property
    def fails_boundary(self) -> bool:
        """Scored by U2I (where it is served) and at or below the user's boundary."""
        return self.boundary_checked and self.u2i <= self.boundary

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
        for user_id, action, _ts in engagers_of(hit.payload):
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


#: The evidence a :class:`~encoders.artifacts.DeliverySpec` is fitted over, in order. The
#: last, the song's predicted popularity, only where the spec carries a prior (older
#: manifests weigh the first four).
EVIDENCE = ("i2i2u", "has_seed", "u2i_margin", "passes", "prior")
BASE_EVIDENCE = EVIDENCE[:4]


def evidence(s: Scored) -> np.ndarray:
    """I2I2U strength, whether a seed exists, the U2I margin over the user's own boundary,
    whether it passes, and the song's predicted popularity: what the calibration weighs."""
    margin = ((s.u2i - s.boundary) if s.u2i_allowed and s.u2i is not None
              and s.boundary is not None else 0.0)  # an I2I2U-only arm has no U2I evidence
    return np.array([s.i2i2u, float(bool(s.seeds)), margin, float(s.passes_boundary),
                     s.prior])


def calibrated(s: Scored, spec: DeliverySpec) -> float:
    """P(engaged) on the one scale both paths share."""
    z = float(evidence(s)[:len(spec.coef)] @ np.asarray(spec.coef)) + spec.intercept
    return 1.0 / (1.0 + math.exp(-z))


def check_delivery(spec: DeliverySpec | None) -> None:
    """A manifest's calibration must weigh exactly the evidence this worker computes: the
    four base inputs, or all five when it carries the prior that computes the fifth."""
    if spec is None:
        return
    wanted = EVIDENCE if spec.prior is not None else BASE_EVIDENCE
    if tuple(spec.features) != wanted or len(spec.coef) != len(wanted):
        raise ValueError(f"delivery calibration over {spec.features} "
                         f"({'with' if spec.prior else 'without'} a prior), this worker "
                         f"computes {list(wanted)}")


def explain(s: Scored) -> str:
    parts = []
    if s.seeds:
        names = ", ".join(f"'{title or sid}'" for sid, title, _ in s.seeds[:3])
        parts.append(f"you engaged with similar songs {names}")
    if s.passes_boundary:
        parts.append(f"it matches your taste ({s.u2i:.2f} > your boundary {s.boundary:.2f})")
    return "; ".join(parts) or "no evidence"


def apply_arms(scored: dict[str, Scored], cfg: PipelineConfig,
               served: frozenset[str] | None = None) -> None:
    """Name each user's A/B arm; an I2I2U-only arm's users lose their U2I evidence. With
    ``served`` (the arms of the version scoring: streams.context.servings), users of other
    arms are dropped: another version serves them, from its own vector space."""
    for uid, s in list(scored.items()):
        arm = assign(s.user_id, cfg.arms, cfg.ab_salt)
        if arm is not None:
            s.arm, s.u2i_allowed = arm.name, arm.uses_u2i
        if served is not None and s.arm not in served:
            del scored[uid]


def deliverable(s: Scored, u2i_min_margin: float = 0.0,
                boundary_gates_i2i2u: bool = False) -> bool:
    """Evidence enough to deliver: an I2I2U tie, or a U2I score over the user's boundary (by
    at least ``u2i_min_margin`` when U2I is the only evidence: U2I admission). With
    ``boundary_gates_i2i2u``, where U2I is served (not an I2I2U-only arm) an I2I2U tie is held
    back too when the user's own score is at or below the user's boundary: the boundary then
    says "not this listener's taste" for both paths."""
    if s.seeds:
        return not (boundary_gates_i2i2u and s.fails_boundary)
    return s.passes_boundary and (s.u2i or 0.0) - (s.boundary or 0.0) >= u2i_min_margin


def select(scored: dict[str, Scored], cap: int, delivery: DeliverySpec | None = None,
           metrics: Metrics | None = None, u2i_min_margin: float = 0.0,
           caps: dict[str, int] | None = None,
           boundary_gates_i2i2u: bool = False) -> list[tuple[Scored, float]]:
    """Keep users with evidence (I2I2U tie or U2I pass), best first, within the song's budget;
    each with its score: calibrated when the model carries a calibration, else raw. With
    ``caps`` (A/B arms: :func:`streams.arms.arm_caps`) each arm has its own share."""
    keep = [(s, calibrated(s, delivery) if delivery else s.score)
            for s in scored.values()
            if deliverable(s, u2i_min_margin, boundary_gates_i2i2u)]
    keep.sort(key=lambda t: (-t[1], t[0].user_id))
    taken: dict[str | None, int] = {}
    out = []
    for s, score in keep:
        own = (caps or {}).get(s.arm or "")
        budget, limit = (s.arm, own) if own is not None else (None, cap)  # None: shared cap
        if taken.get(budget, 0) < limit:
            taken[budget] = taken.get(budget, 0) + 1
            out.append((s, score))
    if metrics is not None and len(keep) > len(out):
        metrics.budget_dropped.labels(budget="song").inc(len(keep) - len(out))
    return out


def score_song(store: VectorStore, cols: Collections, song_id: str, vector: np.ndarray,
               cfg: PipelineConfig, metrics: Metrics | None = None) -> dict[str, Scored]:
    """Every listener either path finds for a new song, with both paths' evidence (uncapped;
    the offline harness scores this same step, ``training/served.py``)."""
    pid = song_point_id(song_id)
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
    return scored


def candidates_for_song(store: VectorStore, cols: Collections, song: SongEvent,
                        vector: np.ndarray, version: str, cfg: PipelineConfig,
                        metrics: Metrics | None = None,
                        delivery: DeliverySpec | None = None,
                        served: frozenset[str] | None = None,
                        prior: float = 0.0) -> list[CandidateEvent]:
    """Both paths, merged, de-duplicated per user, capped (on one calibrated scale when the
    model has one; ``prior``: the song's predicted popularity, its fifth input), explained;
    each user's A/B arm applied and named (only the ``served`` arms' users, when given: the
    per-song cap is then per version)."""
    scored = score_song(store, cols, song.song_id, vector, cfg, metrics)
    for s in scored.values():
        s.prior = prior
    apply_arms(scored, cfg, served)
    created = now_ms()
    return [CandidateEvent(
        schema_version=1, event_id=candidate_id(song.song_id, s.user_id, version),
        candidate_id=candidate_id(song.song_id, s.user_id, version), song_id=song.song_id,
        user_id=s.user_id, score=round(float(score), 6),
        boundary=None if s.boundary is None else round(s.boundary, 6), path=s.path,
        seed_song_ids=[sid for sid, _, _ in s.seeds], model_version=version,
        created_at=created, explanation=explain(s), arm=s.arm, event_ts=song.released_at,
    ) for s, score in select(scored, cfg.max_candidates_per_song, delivery, metrics,
                             cfg.u2i_min_margin,
                             arm_caps(cfg.arms, cfg.max_candidates_per_song) if cfg.arms
                             else None, cfg.boundary_gates_i2i2u)]


# ---------------------------------------------------------------------------------------------
# Users
# ---------------------------------------------------------------------------------------------


def new_user_state() -> dict[str, Any]:
    return {"history": [], "counts": {}, "offsets": {}, "event_ids": [], "seen": [],
            "boundary": None, "applied": 0, "format": USER_STATE_FORMAT}


def is_duplicate(state: dict[str, Any], event: InteractionEvent, partition: int,
                 offset: int) -> bool:
    """Replays (an offset already applied) and producer duplicates (same event_id) change
    nothing.

    Records can arrive out of order: a re-read after Faust dropped one (streams.offsets)
    delivers it after later ones. So an offset below the watermark is a replay only if it is
    among the recent offsets applied, or older than all of them (a replay beyond the window).
    """
    if event_key(event.event_id) in state["event_ids"]:
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
        "event_ids": [*state["event_ids"], event_key(event.event_id)][-cfg.recent_event_ids:],
        "seen": [*state.get("seen", []), [partition, offset]][-cfg.recent_event_ids:],
        "boundary": state.get("boundary"),
        # events applied: only grows, so table recovery can tell a stale changelog record
        # (streams.monotone_tables); states written before it existed count their actions
        "applied": int(state.get("applied", sum(state["counts"].values()))) + 1,
        "format": USER_STATE_FORMAT,  # streams.state_format: readers upgrade older forms
    }


class SongVectorCache:
    """Song vectors of one model version, least recently used evicted first.

    Song vectors never change within a version, so the worker keeps them in process: one
    float32 matrix with a row per song (128 MB for 262,144 songs at dim 128, 512 MB at dim
    512), so a batch gathers all its users' histories with one fancy index instead of stacking
    arrays song by song. A song the store does not have yet is not remembered (it may be
    indexed any moment) and is asked for again next time.

    The matrix is allocated at its capacity on first use, zeroed by the kernel page by page
    as rows are first written, so memory is still taken as songs arrive. It used to double
    instead: each doubling copied the whole matrix inside an interactions batch, under the
    worker's gate. At 131,072 songs x 512 that batch's window took 0.9-1.2 s instead of
    about 0.3 s, in every 1M soak, and new songs waited behind it (docs/benchmarks.md, stop 51).
    """

    def __init__(self, capacity: int = 262_144) -> None:
        self.capacity = capacity
        self._row: OrderedDict[str, int] = OrderedDict()
        self._free: list[int] = []  # rows of forgotten songs, reused from the next call on
        self._used = 0  # rows handed out so far (the high-water mark)
        self.matrix = np.zeros((0, 0), dtype=np.float32)

    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, song_id: object) -> bool:
        """Whether the song's vector is held (no store call: only what :meth:`rows` kept)."""
        return song_id in self._row

    def rows(self, store: VectorStore, collection: str,
             song_ids: Sequence[str]) -> dict[str, int]:
        """Row of each song of ``song_ids`` the store knows, in :attr:`matrix`; valid until
        the next call (then rows of forgotten songs are reused)."""
        found: dict[str, int] = {}
        missing = []
        touch = self._row.move_to_end
        for sid in song_ids:
            row = self._row.get(sid)
            if row is None:
                missing.append(sid)
            else:
                touch(sid)
                found[sid] = row
        if missing:
            by_pid = {song_point_id(s): s for s in missing}
            for rec in store.retrieve(collection, list(by_pid), with_vector=True,
                                      with_payload=False):
                if rec.vector is not None:
                    sid = by_pid[rec.id]
                    found[sid] = self._put(sid, rec.vector)
            while len(self._row) > self.capacity:  # forget the least recently used
                self._free.append(self._row.popitem(last=False)[1])
        return found

    def get_many(self, store: VectorStore, collection: str,
                 song_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Vector (a copy) of each song the store knows."""
        rows = self.rows(store, collection, song_ids)
        return {sid: self.matrix[row].copy() for sid, row in rows.items()}

    def _put(self, sid: str, vector: np.ndarray) -> int:
        vec = np.asarray(vector, dtype=np.float32).reshape(-1)
        if self.matrix.shape[1] != vec.shape[0]:
            self.clear()
            self.matrix = np.zeros((0, vec.shape[0]), dtype=np.float32)
        if self._free:
            row = self._free.pop()
        else:
            row, self._used = self._used, self._used + 1
            if row >= len(self.matrix):  # the capacity at once (pages come as rows are
                # written), then by need when one batch needs more rows than that
                size = max(self.capacity, row + 1024)
                grown = np.zeros((size, vec.shape[0]), dtype=np.float32)
                grown[:len(self.matrix)] = self.matrix
                self.matrix = grown
        self._row[sid] = row
        self.matrix[row] = vec
        return row

    def clear(self) -> None:
        self._row.clear()
        self._free.clear()
        self._used = 0
        self.matrix = np.zeros((0, self.matrix.shape[1]), dtype=np.float32)


@dataclass
class Histories:
    """Many users' histories, padded to one (U, L) grid of cache rows (padding weighs 0)."""

    rows: np.ndarray  # (U, L) int64, row in the cache's matrix
    weights: np.ndarray  # (U, L) float32
    positive: np.ndarray  # (U, L) bool
    lengths: np.ndarray  # (U,)


def gather_histories(model: LoadedModel, states: Sequence[dict[str, Any]],
                     rows: Mapping[str, int], now: int) -> Histories:
    """Each user's history items whose song vector is known, in history order, as arrays:
    one pass over the items of the whole batch, no per-user numpy call."""
    known = [[h for h in st["history"] if h[0] in rows] for st in states]
    lengths = np.array([len(k) for k in known], dtype=np.int64)
    width = int(lengths.max()) if len(lengths) else 0
    mask = np.arange(width) < lengths[:, None]
    flat = [h for k in known for h in k]
    grid_rows = np.zeros((len(states), width), dtype=np.int64)
    weights = np.zeros((len(states), width), dtype=np.float32)
    positive = np.zeros((len(states), width), dtype=bool)
    if flat:
        sids, actions, ts = zip(*flat, strict=True)
        grid_rows[mask] = [rows[s] for s in sids]
        weights[mask] = model.users.weights_of(actions, ts, now)
        positive[mask] = [a in POSITIVE_ACTIONS for a in actions]
    return Histories(grid_rows, weights, positive, lengths)


def user_vectors(model: LoadedModel, matrix: np.ndarray,
                 h: Histories) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U, dim) vectors, mask of users who have one, (U,) boundaries: one matrix operation
    per batch, the same as :meth:`UserModel.user_vector` and ``boundary`` user by user."""
    vectors = matrix[h.rows] if h.rows.size else np.zeros(
        (*h.rows.shape, model.manifest.dim), dtype=np.float32)
    vecs, ok = model.users.user_vectors(vectors, h.weights, h.lengths)
    floor = model.users.spec.boundary_floor
    boundaries = np.full(len(ok), floor, dtype=np.float64)
    if ok.any():
        boundaries[ok] = model.users.boundaries(vecs[ok], vectors[ok], h.positive[ok])
    return vecs, ok, boundaries


def users_update(store: VectorStore, cols: Collections, model: LoadedModel,
                 cache: SongVectorCache, states: dict[str, dict[str, Any]],
                 now: int | None = None) -> dict[str, float]:
    """Recompute many users' vectors and boundaries from their states; one vector fetch and
    one upsert for the batch (idempotent: a pure function of state). Returns boundaries."""
    now = now if now is not None else now_ms()
    wanted = list({s for st in states.values() for s, _a, _t in st["history"]})
    rows = cache.rows(store, cols.songs, wanted)
    users = list(states)
    hist = gather_histories(model, [states[u] for u in users], rows, now)
    vecs, ok, bounds = user_vectors(model, cache.matrix, hist)
    points = [Point(user_point_id(u), vecs[i], {
        "user_id": u, "boundary": float(bounds[i]), "updated_at": now,
        "model_version": model.version, "events": int(sum(states[u]["counts"].values()))})
        for i, u in enumerate(users) if ok[i]]
    store.upsert(cols.users, points)
    return {u: float(bounds[i]) for i, u in enumerate(users)}


class Engagement(Protocol):
    """What the listener list reads of an interaction (an event or a by-song forward row)."""

    @property
    def user_id(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def ts(self) -> int: ...


def update_engagers(engagers: list[list[Any]], event: Engagement,
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
                      {"engagers": pack_engagers(engagers), "is_cold": 0 if engagers else 1})


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


#: Each song's audio at one sample rate: samples and digest, None (no audio_uri) or why it
#: failed.
Waves = list["Clip | None | Exception"]


def read_wave(song: SongEvent, sample_rate: int, settings: Settings,
              metrics: Metrics) -> Clip | None | Exception:
    """A song's audio, or None (no audio_uri), or why it could not be read (the caller
    dead-letters that song alone). The songs agent runs it before taking the worker's gate,
    in a thread of its own, so decoding overlaps the other agents' work."""
    if not song.audio_uri:
        return None
    try:
        with metrics.stage("audio"):
            return load_song_audio(song.audio_uri, sample_rate, settings)
    except Exception as exc:  # kept as this song's result: the rest of its batch goes on
        return exc


def read_waves(songs: Sequence[SongEvent], sample_rate: int, settings: Settings,
               metrics: Metrics) -> Waves:
    return [read_wave(song, sample_rate, settings, metrics) for song in songs]


def encode_songs(sv: Serving, songs: Sequence[SongEvent], waves: tuple[int, Waves] | None,
                 settings: Settings, metrics: Metrics) -> list[np.ndarray | Exception]:
    """Each new song's vector in ``sv``'s space, or why it has none. The item tower runs once
    for the whole batch: a backlog is worked off faster per song than one by one.

    ``waves`` is (sample rate, each song's audio) read beforehand; audio at another rate than
    this version's is read again here. The encode stage charges each song an equal share of
    the batch's time: the histogram's sum stays the time spent and its count the songs.
    No store call here, so a store failure never makes the batch encode again.
    """
    rate = sv.model.songs.sample_rate
    audio = (waves[1] if waves is not None and waves[0] == rate
             else read_waves(songs, rate, settings, metrics))
    out: list[np.ndarray | Exception] = list(audio)  # type: ignore[arg-type]
    inputs = {i: song_input(song, wave) for i, (song, wave) in enumerate(zip(songs, audio,
                                                                             strict=True))
              if not isinstance(wave, Exception)}
    if not inputs:
        return out
    start = time.perf_counter()
    vectors = encode_each_on_failure(sv.model, list(inputs.values()))
    share = (time.perf_counter() - start) / len(inputs)
    for _ in inputs:
        metrics.stage_seconds.labels(stage="encode").observe(share)
    for i, vector in zip(inputs, vectors, strict=True):
        out[i] = vector
    return out


def index_song(sv: Serving, song: SongEvent, vector: np.ndarray, clip: Clip | None,
               engagers: list[list[Any]], cfg: PipelineConfig, metrics: Metrics,
               served: frozenset[str] | None = None) -> list[CandidateEvent]:
    """Upsert one encoded song (``clip``: its audio, when it has some) and propose it (to the
    ``served`` arms' users, when given). One song's store calls: the unit a store failure
    retries."""
    with metrics.stage("upsert"):
        upsert_song(sv.store, sv.cols, song, vector, sv.model.version, clip, engagers)
    prior = song_prior(sv.model, song)
    if prior is not None:
        metrics.song_prior.labels(version=sv.model.version).observe(prior)
    with metrics.stage("search"):
        return candidates_for_song(sv.store, sv.cols, song, vector, sv.model.version, cfg,
                                   metrics, sv.model.manifest.delivery, served, prior or 0.0)


def song_prior(model: LoadedModel, song: SongEvent) -> float | None:
    """The song's predicted popularity where the model carries a prior, else None (its text
    vector comes from the backbone cache: the encoder has just computed it)."""
    delivery = model.manifest.delivery
    if delivery is None or delivery.prior is None:
        return None
    priors = model.songs.priors([song_input(song, None).text])
    return None if priors is None else float(priors[0])


def encode_each_on_failure(model: LoadedModel,
                           inputs: list[SongInput]) -> list[np.ndarray | Exception]:
    """One encoder call for the batch; if it fails, one call per song, so a song that breaks
    the graph fails alone (it comes back as its exception) and not its whole batch."""
    if len(inputs) > 1:
        try:
            return list(model.songs.encode(inputs))
        except Exception:  # retried one by one below, where each failure is kept
            log.warning("a batch of %d songs failed to encode; encoding them one by one",
                        len(inputs), exc_info=True)
    out: list[np.ndarray | Exception] = []
    for one in inputs:
        try:
            out.append(model.songs.encode([one])[0])
        except Exception as exc:  # the caller dead-letters this song with its reason
            out.append(exc)
    return out


def refresh_users(sv: Serving, states: dict[str, dict[str, Any]],
                  metrics: Metrics) -> dict[str, float]:
    """:func:`users_update`, timed and counted."""
    with metrics.stage("user_update"):
        boundaries = users_update(sv.store, sv.cols, sv.model, sv.cache, states)
    metrics.users_updated.inc(len(states))
    return boundaries


def unknown_songs(sv: Serving, song_ids: Iterable[str]) -> set[str]:
    """Which of ``song_ids`` have no vector in this version yet: a user updated now is
    computed without them (their arrival must refresh that user)."""
    wanted = set(song_ids)
    return wanted - set(sv.cache.rows(sv.store, sv.cols.songs, list(wanted)))


def write_known_engagers(sv: Serving, by_song: dict[str, list[list[Any]]]) -> None:
    """Listener lists of several songs; songs not indexed yet get theirs on arrival."""
    known = sv.cache.rows(sv.store, sv.cols.songs, list(by_song))
    for song_id, engagers in by_song.items():
        if song_id in known:
            write_engagers(sv.store, sv.cols, song_id, engagers)
