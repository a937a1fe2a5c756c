"""The packed proposals: the record format, its refusals, and the old one-candidate form."""

from __future__ import annotations

import orjson
import pytest

from streams.errors import DecodeError, EventValidationError, SchemaVersionError
from streams.events import CandidateEvent, encode, now_ms
from streams.proposals import PROPOSALS, pack_proposals, read_proposals, unpack_proposals


def candidate(i: int, **changes: object) -> CandidateEvent:
    fields = dict(schema_version=1, event_id=f"c{i}", candidate_id=f"c{i}", song_id="s9",
                  user_id=f"u{i}", score=0.5 + i / 100, boundary=None if i % 2 else 0.3,
                  path=("i2i2u", "u2i", "both")[i % 3], seed_song_ids=[f"s{i}"] * (i % 3),
                  model_version="v1", created_at=now_ms() - i, explanation=f"because {i}",
                  arm="b" if i % 2 else None, event_ts=now_ms() - 1000 if i % 2 else None)
    return CandidateEvent(**{**fields, **changes})


def test_packed_candidates_round_trip_with_every_field() -> None:
    cands = [candidate(i) for i in range(7)]
    value = pack_proposals([encode(c) for c in cands])
    assert isinstance(orjson.loads(value), list)  # one JSON array, readable by any client
    assert read_proposals(value, PROPOSALS, 256_000) == cands


def test_the_old_one_candidate_form_is_still_read() -> None:
    """A worker of an earlier release proposed each candidate as its own record, with no
    header; such records may be left in the topic across an upgrade."""
    cand = candidate(3)
    assert read_proposals(encode(cand), {}, 256_000) == [cand]
    assert read_proposals(encode(cand), None, 256_000) == [cand]
    with pytest.raises(DecodeError, match="not a list"):
        read_proposals(encode(cand), PROPOSALS, 256_000)  # marked as packed, but it is one


def mangled(i: int, **changes: object) -> bytes:
    return orjson.dumps({**orjson.loads(encode(candidate(i))), **changes})


@pytest.mark.parametrize("value, error, reason", [
    (None, DecodeError, "tombstone"),
    (b"[{not json", DecodeError, "not JSON"),
    (b'{"candidate_id": "c0"}', DecodeError, "not a list"),
    (b"[" + encode(candidate(0)) + b", 7]", DecodeError, "candidate 1: expected a JSON object"),
    (b"[" + mangled(0, score="high") + b"]", EventValidationError, "candidate 0: score"),
    (b"[" + encode(candidate(0)) + b"," + mangled(1, path="radio") + b"]",
     EventValidationError, "candidate 1: path"),
    (b"[" + mangled(0, schema_version=2) + b"]", SchemaVersionError, "candidate 0: schema"),
    (b"[" + orjson.dumps({k: v for k, v in orjson.loads(encode(candidate(0))).items()
                          if k != "user_id"}) + b"]", EventValidationError,
     "candidate 0: user_id: Field required"),
])
def test_a_malformed_proposals_record_is_refused_naming_the_candidate(
        value: bytes | None, error: type, reason: str) -> None:
    with pytest.raises(error, match=reason):
        unpack_proposals(value)


def test_an_empty_song_packs_to_an_empty_record() -> None:
    assert unpack_proposals(pack_proposals([])) == []
