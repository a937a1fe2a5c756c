"""The by-song forward records: grouping, the row format, and the old one-interaction form."""

from __future__ import annotations

import orjson
import pytest

from streams import forwards
from streams.by_partition import group_by_partition
from streams.errors import DecodeError
from streams.events import InteractionEvent
from streams.forwards import (
    FORWARDS,
    SONG_UNKNOWN_KEY,
    Forward,
    forward_of,
    pack_forwards,
    read_forwards,
    unpack_forwards,
)

NOW = 1_760_000_000_000


def row(i: int, unknown: bool = False) -> Forward:
    return Forward(f"u{i}", f"s{i % 7}", ("play", "skip", "collect")[i % 3], NOW + i, unknown)


def test_rows_go_one_record_per_partition_in_batch_order() -> None:
    rows = [row(i, i % 2 == 0) for i in range(20)]
    partitions = [i % 3 for i in range(20)]
    grouped = group_by_partition(rows, partitions, forwards.ROWS_PER_RECORD)
    assert [p for p, _ in grouped] == [0, 1, 2]
    for partition, part in grouped:
        assert part == [r for r, p in zip(rows, partitions, strict=True) if p == partition]
        assert unpack_forwards(pack_forwards(part)) == part  # the round trip keeps every field


def test_a_large_partition_share_is_cut_into_records_of_bounded_size() -> None:
    rows = [row(i) for i in range(10)]
    grouped = group_by_partition(rows, [1] * 10, 4)
    assert [len(part) for _, part in grouped] == [4, 4, 2]
    assert [r for _, part in grouped for r in part] == rows


@pytest.mark.parametrize("value, reason", [
    (None, "tombstone"),
    (b"{not json", "not JSON"),
    (b'{"user_id": "u0"}', "not a list of rows"),
    (b'[["u0", "s0", "play", 1]]', "row 0"),
    (b'[["u0", "s0", "play", 1, 0], ["u1", "s1", "dance", 1, 0]]', "row 1"),
    (b'[["u0", "s0", "play", "1", 0]]', "row 0"),
    (b'[["u0", "s0", "play", 1.5, 0]]', "row 0"),
    (b'[["u0", 7, "play", 1, 0]]', "row 0"),
    (b'[["u0", "s0", "play", 1, 2]]', "row 0"),
])
def test_a_malformed_forwards_record_is_refused_with_its_reason(value: bytes | None,
                                                                reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        read_forwards(value, FORWARDS, 256_000)


def test_the_old_one_interaction_form_is_still_read() -> None:
    """A worker of the previous release forwarded each interaction as itself, keyed by song,
    with a header when its song was unknown."""
    ev = InteractionEvent(schema_version=1, event_id="e1", user_id="u0", song_id="s0",
                          action="complete", ts=NOW - 1000)
    value = orjson.dumps(ev.model_dump())
    assert read_forwards(value, {}, 256_000) == [forward_of(ev, False)]
    assert read_forwards(value, {SONG_UNKNOWN_KEY: b"1"}, 256_000) == [forward_of(ev, True)]
    with pytest.raises(DecodeError):
        read_forwards(value, FORWARDS, 256_000)  # marked as rows, but it is one event
