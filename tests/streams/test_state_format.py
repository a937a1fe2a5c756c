"""User state carries a format version; the reader upgrades older forms."""

from __future__ import annotations

import orjson
import pytest

from streams.errors import StateFormatError
from streams.events import InteractionEvent
from streams.monotone_tables import user_generation
from streams.pipeline import PipelineConfig, apply_interaction, is_duplicate, new_user_state
from streams.state_format import (
    USER_STATE_FORMAT,
    event_key,
    pack_user_state,
    read_user_state,
)


def play(n: int) -> InteractionEvent:
    return InteractionEvent(schema_version=1, event_id=f"e{n}", user_id="u", song_id=f"s{n}",
                            action="play", ts=1_000 + n)


def test_states_are_written_in_the_current_format() -> None:
    state = apply_interaction(new_user_state(), play(0), 0, 0, PipelineConfig())
    assert new_user_state()["format"] == state["format"] == USER_STATE_FORMAT
    assert read_user_state(state) == state


def test_an_unversioned_state_is_read_and_builds_on() -> None:
    """A state as written before ``format`` (and before ``applied`` and ``seen``)."""
    old = {"history": [["s1", "play", 1_001], ["s2", "skip", 1_002]],
           "counts": {"play": 1, "skip": 1}, "offsets": {"0": 7}, "event_ids": ["e1", "e2"],
           "boundary": 0.2}
    before = dict(old)
    state = read_user_state(old)
    assert old == before  # the stored value is not modified in place
    assert state is not None and state["format"] == USER_STATE_FORMAT
    assert state["applied"] == 2 and state["seen"] == [] and state["history"] == old["history"]
    assert is_duplicate(state, play(1).model_copy(update={"event_id": "e1"}), 0, 3)
    after = apply_interaction(state, play(3), 0, 8, PipelineConfig())
    assert after["applied"] == user_generation(after) == 3
    assert after["format"] == USER_STATE_FORMAT


def test_nothing_stays_nothing_and_a_newer_format_is_refused() -> None:
    assert read_user_state(None) is None
    with pytest.raises(StateFormatError):
        read_user_state({**new_user_state(), "format": USER_STATE_FORMAT + 1})



UUID = "7f9c2ba4-e88f-4a2b-9d6c-1b2f3e4d5a6b"


def grown(n: int, cfg: PipelineConfig = PipelineConfig()) -> tuple[dict, list[str]]:
    """A state after ``n`` events with UUID event ids, and those ids."""
    state, ids = new_user_state(), []
    for i in range(n):
        ids.append(f"{UUID[:-4]}{i:04d}")
        ev = play(i).model_copy(update={"event_id": ids[-1],
                                        "action": ("play", "skip", "collect", "complete")[i % 4]})
        state = apply_interaction(state, ev, i % 2, 1_000 + i, cfg)
    return {**state, "boundary": 0.31}, ids


def test_a_format_1_record_upgrades_and_its_duplicates_are_still_seen() -> None:
    """A state as format 1 stored it (whole event ids, plain lists): read, it remembers the
    hashed ids, its long ids still catch their duplicates, and it packs like a new state."""
    old = {"history": [["s1", "play", 1_001], ["s2", "skip", 1_002]],
           "counts": {"play": 1, "skip": 1}, "offsets": {"0": 8},
           "event_ids": [UUID, "e2"], "seen": [[0, 7], [0, 8]], "boundary": 0.2,
           "applied": 2, "format": 1}
    before = dict(old)
    state = read_user_state(old)
    assert old == before and state is not None
    assert state["format"] == USER_STATE_FORMAT == 2
    assert state["event_ids"] == [event_key(UUID), "e2"] and event_key("e2") == "e2"
    assert {k: v for k, v in state.items() if k not in ("event_ids", "format")} == {
        k: v for k, v in old.items() if k not in ("event_ids", "format")}
    assert is_duplicate(state, play(9).model_copy(update={"event_id": UUID}), 0, 99)
    assert not is_duplicate(state, play(9).model_copy(update={"event_id": UUID + "x"}), 0, 99)
    assert read_user_state(pack_user_state(state)) == state


def test_the_packed_form_reads_back_exactly_and_is_smaller() -> None:
    cfg = PipelineConfig()
    state, ids = grown(80, cfg)  # full history and event-id windows, two partitions
    packed = pack_user_state(state)
    assert "history" not in packed and user_generation(packed) == state["applied"] == 80
    assert read_user_state(packed) == state
    assert read_user_state(orjson.loads(orjson.dumps(packed))) == state  # as the table holds it
    as_format_1 = {**state, "event_ids": ids[-cfg.recent_event_ids:], "format": 1}
    assert read_user_state(as_format_1) == state
    v1_bytes, packed_bytes = len(orjson.dumps(as_format_1)), len(orjson.dumps(packed))
    assert packed_bytes < 0.5 * v1_bytes, (v1_bytes, packed_bytes)
    # the pipeline goes on from a packed state as from the plain one
    nxt = play(200).model_copy(update={"event_id": "late"})
    assert apply_interaction(read_user_state(packed), nxt, 0, 5_000, cfg) == apply_interaction(
        state, nxt, 0, 5_000, cfg)


def test_an_empty_state_packs_and_reads_back() -> None:
    state = new_user_state()
    assert read_user_state(pack_user_state(state)) == state
