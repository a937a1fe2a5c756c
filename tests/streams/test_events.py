"""The event contract: valid events decode; each kind of bad input gets a precise error."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.errors import DecodeError, EventError, EventValidationError, SchemaVersionError
from streams.events import CONTRACT, InteractionEvent, SongEvent, decode, encode

NOW = 1_700_000_000_000


def song(**over: object) -> dict:
    base = {"schema_version": 1, "event_id": "e1", "song_id": "s1", "title": "Blue",
            "artist": "Ana", "tags": ["jazz"], "description": "soft", "released_at": NOW}
    base.update(over)
    return base


def test_valid_song_round_trips() -> None:
    ev = decode(orjson.dumps(song()), SongEvent, now=NOW)
    assert ev.song_id == "s1" and ev.tags == ["jazz"]
    assert decode(encode(ev), SongEvent, now=NOW) == ev


def test_unicode_edge_cases_survive() -> None:
    title = "Ünïcødé 🎵 \u200b RTL \u202e مرحبا"
    ev = decode(orjson.dumps(song(title=title)), SongEvent, now=NOW)
    assert ev.title == title


@pytest.mark.parametrize("raw, error, words", [
    (b'{"schema_version": 1, "event_id"', DecodeError, "invalid JSON"),
    (b"[1, 2]", DecodeError, "JSON object"),
    (None, DecodeError, "tombstone"),
    (orjson.dumps(song(schema_version=2)), SchemaVersionError, "schema_version 2"),
    (orjson.dumps({k: v for k, v in song().items() if k != "title"}), EventValidationError,
     "title"),
    (orjson.dumps(song(released_at="yesterday")), EventValidationError, "released_at"),
    (orjson.dumps(song(released_at=-5)), EventValidationError, "released_at"),
    (orjson.dumps(song(released_at=NOW + 10 * 86_400_000)), EventValidationError, "future"),
    (orjson.dumps(song(tags="jazz")), EventValidationError, "tags"),
    (orjson.dumps(song(song_id="")), EventValidationError, "song_id"),
])
def test_bad_songs_are_rejected_with_reason(raw: bytes | None, error: type, words: str) -> None:
    with pytest.raises(error) as info:
        decode(raw, SongEvent, now=NOW)
    assert words in str(info.value)


def test_oversized_event_is_rejected_before_parsing() -> None:
    raw = orjson.dumps(song(description="x" * 5000))
    with pytest.raises(DecodeError, match="limit is 1000"):
        decode(raw, SongEvent, max_bytes=1000, now=NOW)


def test_interaction_action_must_be_known() -> None:
    bad = {"schema_version": 1, "event_id": "i", "user_id": "u", "song_id": "s",
           "action": "like", "ts": NOW}
    with pytest.raises(EventValidationError, match="action"):
        decode(orjson.dumps(bad), InteractionEvent, now=NOW)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.from_type(dict).map(lambda d: orjson.dumps(d)))
def test_any_bytes_either_decode_or_raise_event_error(raw: bytes) -> None:
    with contextlib.suppress(EventError):  # any other exception fails the test
        decode(raw, InteractionEvent, now=NOW)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(list(song()) + ["extra"]),
                       st.none() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20)
                       | st.lists(st.text())))
def test_mutated_songs_never_raise_anything_but_event_error(fields: dict) -> None:
    payload = song()
    payload.update(fields)
    try:
        ev = decode(orjson.dumps(payload), SongEvent, now=NOW)
    except EventError:
        return
    assert isinstance(ev.title, str) and ev.released_at >= 0


def test_published_json_schemas_match_the_models() -> None:
    """deploy/schemas/*.json is what producers validate against: it must not drift."""
    folder = Path(__file__).resolve().parents[2] / "deploy" / "schemas"
    for topic, model in CONTRACT.items():
        published = json.loads((folder / f"{topic}.schema.json").read_text())
        assert published == model.model_json_schema(), f"regenerate {topic}: coldstream schemas"
