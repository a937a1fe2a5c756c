"""Proposed candidates packed per destination partition: one record per partition and song.

A new song's candidates go to ``coldstream.candidates.proposed``, on each user's partition,
so that the delivery agent there applies the per-user daily budget and records the delivery
for attribution. Sent one record per candidate, keyed by user, a song cost 50 produced and
50 consumed records: at 10 new songs/s beside 500 interactions/s, half of the records the
worker consumed (1,020 a second at 1M; 560-570 packed, stop 49). Here a
song's candidates are grouped by the partition a send keyed by the user would pick
(:mod:`streams.by_partition`) and each group goes as one record: a JSON array of candidates,
each exactly as on ``candidates.coldstart``, marked by the :data:`PROPOSALS_KEY` header.

Records without that header are the one-candidate form a worker of an earlier release wrote
(it may have left some in the topic before an upgrade); they are still read.
"""

from __future__ import annotations

from typing import Any

from .by_partition import packed_rows
from .errors import EventError
from .events import CandidateEvent, decode, from_object, now_ms

#: Header of a record that carries an array of candidates (its value is the format number).
PROPOSALS_KEY = "coldstream-proposals"
PROPOSALS = {PROPOSALS_KEY: b"1"}
#: Candidates per record at most (about 0.5 KB each): a record stays far below the broker's
#: 1 MB message limit however many listeners and serving versions a song has.
CANDIDATES_PER_RECORD = 200


def pack_proposals(values: list[bytes]) -> bytes:
    """Already encoded candidates (the bytes also sent to ``candidates.coldstart``) as one
    JSON array, without decoding and encoding them again."""
    return b"[" + b",".join(values) + b"]"


def unpack_proposals(value: bytes | None) -> list[CandidateEvent]:
    """A packed record's candidates, each validated as the contract says, or an EventError
    naming the candidate that is wrong and why."""
    items = packed_rows(value, "proposals", "candidates")
    now, out = now_ms(), []
    for i, item in enumerate(items):
        try:
            out.append(from_object(item, CandidateEvent, now=now))
        except EventError as exc:
            raise type(exc)(f"candidate {i}: {exc}") from None
    return out


def read_proposals(value: bytes | None, headers: Any, max_event_bytes: int
                   ) -> list[CandidateEvent]:
    """Either form of a proposals record, as its candidates."""
    if headers and PROPOSALS_KEY in headers:
        return unpack_proposals(value)
    return [decode(value, CandidateEvent, max_bytes=max_event_bytes)]
