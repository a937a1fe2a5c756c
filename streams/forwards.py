"""The by-song forward: one record per destination partition and batch, not per interaction.

The interactions agent re-keys every interaction by song so that the engagement agent, on the
song's partition, keeps the song's newest listeners. Sent one record per interaction, that hop
cost a produced and a consumed record each: stop 42's GIL profile put two thirds of the
worker's GIL time in Faust, aiokafka and asyncio moving records. Here a batch's interactions
are grouped by the partition a keyed send would have picked (``streams.by_partition``: the
producer's own partitioner, so the song's engagers stay co-partitioned with ``songs.new`` and
the table) and each group goes as one record.

A forward row is ``[user_id, song_id, action, ts, song_unknown]``: only what the engagement
step reads, already validated once. Records without the :data:`FORWARDS_KEY` header are the
old one-interaction form (a worker of the previous release may have written them before an
upgrade) and are still read.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple, get_args

import orjson

from .by_partition import packed_rows
from .errors import DecodeError
from .events import Action, InteractionEvent, decode

#: Header of a record that carries a list of forward rows (its value is the format number).
FORWARDS_KEY = "coldstream-forwards"
FORWARDS = {FORWARDS_KEY: b"1"}
#: Header of an old one-interaction forward whose song had no vector when its user was updated.
SONG_UNKNOWN_KEY = "coldstream-song-unknown"
#: Rows per record at most: a batch larger than this (``COLDSTREAM_BATCH_MAX_EVENTS``) is sent
#: as several records, so a record stays far below the broker's 1 MB message limit (~60 B a row).
ROWS_PER_RECORD = 2000
ACTIONS = frozenset(get_args(Action))

class Forward(NamedTuple):
    """One interaction as the engagement step reads it."""

    user_id: str
    song_id: str
    action: str
    ts: int
    song_unknown: bool


def pack_forwards(rows: Iterable[Forward]) -> bytes:
    return orjson.dumps([[r.user_id, r.song_id, r.action, r.ts, int(r.song_unknown)]
                         for r in rows])


def unpack_forwards(value: bytes | None) -> list[Forward]:
    """A forwards record's rows, or a DecodeError naming what is wrong with it."""
    rows = packed_rows(value, "forwards", "rows")
    out = []
    for i, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 5 and isinstance(row[0], str)
                and isinstance(row[1], str) and row[2] in ACTIONS
                and type(row[3]) is int and row[4] in (0, 1)):
            raise DecodeError(f"forward row {i} is not [user_id, song_id, action, ts, 0|1]: "
                              f"{str(row)[:200]}")
        out.append(Forward(row[0], row[1], row[2], row[3], bool(row[4])))
    return out


def forward_of(event: InteractionEvent, song_unknown: bool) -> Forward:
    return Forward(event.user_id, event.song_id, event.action, event.ts, song_unknown)


def read_forwards(value: bytes | None, headers: Any, max_event_bytes: int) -> list[Forward]:
    """Either form of a by-song record, as its rows."""
    if headers and FORWARDS_KEY in headers:
        return unpack_forwards(value)
    event = decode(value, InteractionEvent, max_bytes=max_event_bytes)
    return [forward_of(event, bool(headers) and SONG_UNKNOWN_KEY in headers)]
