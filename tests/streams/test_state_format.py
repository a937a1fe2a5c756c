"""User state carries a format version; the reader upgrades older forms."""

from __future__ import annotations

import pytest

from streams.errors import StateFormatError
from streams.events import InteractionEvent
from streams.monotone_tables import user_generation
from streams.pipeline import PipelineConfig, apply_interaction, is_duplicate, new_user_state
from streams.state_format import USER_STATE_FORMAT, read_user_state


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
    assert after["applied"] == user_generation(after) == 3 and after["format"] == 1


def test_nothing_stays_nothing_and_a_newer_format_is_refused() -> None:
    assert read_user_state(None) is None
    with pytest.raises(StateFormatError):
        read_user_state({**new_user_state(), "format": USER_STATE_FORMAT + 1})

