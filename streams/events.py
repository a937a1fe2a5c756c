"""The event contract, declared once: what producers send and what Coldstream emits.

Every event is a JSON object (orjson) with ``schema_version`` and ``event_id``. Decoding is
strict at the edge: anything that does not fit raises an :class:`~streams.errors.EventError`
subclass whose message says exactly what is wrong, and the worker routes it to the DLQ.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic import ValidationError as PydanticValidationError

from .errors import DecodeError, EventValidationError, SchemaVersionError

SCHEMA_VERSION = 1
#: Clock skew we tolerate on producer timestamps before calling them "in the future".
FUTURE_TOLERANCE_MS = 24 * 3600 * 1000

Id = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=False)]
Text = Annotated[str, StringConstraints(max_length=512)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64)]
EpochMs = Annotated[int, Field(ge=0, description="Unix epoch milliseconds")]
Action = Literal["play", "complete", "collect", "skip"]
Path = Literal["i2i2u", "u2i", "both"]


class Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    schema_version: Literal[1] = Field(description="Contract version; only 1 exists.")
    event_id: Id = Field(description="Producer-chosen unique id; used to drop duplicates.")


class SongEvent(Event):
    """``songs.new``, keyed by song_id: a song that has just been uploaded."""

    song_id: Id
    title: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    artist: Text
    tags: list[Tag] = Field(default_factory=list, max_length=64)
    description: Annotated[str, StringConstraints(max_length=20_000)] | None = None
    audio_uri: Annotated[str, StringConstraints(max_length=2048)] | None = None
    released_at: EpochMs


class InteractionEvent(Event):
    """``interactions``, keyed by user_id: a listener did something with a song."""

    user_id: Id
    song_id: Id
    action: Action
    ts: EpochMs
    played_ms: Annotated[int, Field(ge=0)] | None = None


class CandidateEvent(Event):
    """``candidates.coldstart``, keyed by user_id: deliver this new song to this user, and why."""

    candidate_id: Id
    song_id: Id
    user_id: Id
    score: float
    boundary: float | None
    path: Path
    seed_song_ids: list[str]
    model_version: str
    created_at: EpochMs
    explanation: str
    arm: str | None = Field(None, description="A/B arm of the user (none: no experiment). "
                            "Absent in records written before arms existed.")
    event_ts: EpochMs | None = Field(
        None, description="Event time of the delivery (the song's released_at): the per-user "
        "daily budget and the attribution window follow it. Absent in older records.")


class ModelVersionEvent(Event):
    """``model.versions``: a published model that workers should adopt."""

    version: str
    uri: str
    created_at: EpochMs
    metrics: dict[str, float] = Field(default_factory=dict)


class DeadLetter(Event):
    """``coldstream.dlq``: an input we could not process, with everything needed to replay it."""

    original_b64: str = Field(description="Original value bytes, base64 (cut at 512 KiB).")
    original_size: int = Field(description="Size of the original value in bytes.")
    source_topic: str
    source_partition: int
    source_offset: int
    error_kind: str
    error_message: str
    failed_at: EpochMs


E = TypeVar("E", bound=Event)

#: Topic role -> record type, used to publish JSON Schemas.
CONTRACT: dict[str, type[Event]] = {
    "songs.new": SongEvent,
    "interactions": InteractionEvent,
    "candidates.coldstart": CandidateEvent,
    "model.versions": ModelVersionEvent,
    "coldstream.dlq": DeadLetter,
}


def now_ms() -> int:
    return int(time.time() * 1000)


def decode(raw: bytes | None, model: type[E], *, max_bytes: int = 256_000,
           now: int | None = None) -> E:
    """Bytes -> validated event, or an EventError saying precisely why not."""
    if raw is None:
        raise DecodeError("empty message value (tombstone)")
    if len(raw) > max_bytes:
        raise DecodeError(f"event is {len(raw)} bytes, limit is {max_bytes}")
    try:
        obj: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON: {exc}") from None
    return from_object(obj, model, now=now)


def from_object(obj: Any, model: type[E], *, now: int | None = None) -> E:
    """A parsed JSON value -> validated event (the part of :func:`decode` after the bytes:
    records that pack several events parse once and validate each)."""
    if not isinstance(obj, dict):
        raise DecodeError(f"expected a JSON object, got {type(obj).__name__}")
    version = obj.get("schema_version")
    if version != SCHEMA_VERSION:
        raise SchemaVersionError(
            f"schema_version {version!r} is not supported (expected {SCHEMA_VERSION})"
        )
    try:
        event = model.model_validate(obj)
    except PydanticValidationError as exc:
        raise EventValidationError(_describe(exc)) from None
    _check_timestamps(event, now if now is not None else now_ms())
    return event


def encode(event: Event) -> bytes:
    return orjson.dumps(event.model_dump(mode="json"))


def _describe(exc: PydanticValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def _check_timestamps(event: Event, now: int) -> None:
    fields = event.__dict__  # not getattr(event, name, None): on a model without the field
    for name in ("released_at", "ts"):  # pydantic raises and catches an AttributeError, 3% of
        value = fields.get(name)  # the worker's samples at 100k users (ingest profile)
        if value is not None and value > now + FUTURE_TOLERANCE_MS:
            raise EventValidationError(f"{name}: {value} is in the future (now {now})")
