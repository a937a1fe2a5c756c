"""The agents' decoding and dead-letter rules (the Kafka path: test_worker, test_bad_input)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from streams.agents import decode_refresh
from streams.dlq import dead_letter, error_kind
from streams.errors import AudioTooLarge, DecodeError, StoreError


def record(value: bytes | None) -> SimpleNamespace:
    return SimpleNamespace(value=value)


def test_refresh_records_decode_or_fail_with_a_reason() -> None:
    assert decode_refresh(None, record(b'{"user_id": "u1"}')) == "u1"  # type: ignore[arg-type]
    for bad in (b"{", b"[]", b'{"user": "u1"}', b'{"user_id": 7}', None):
        with pytest.raises(DecodeError):
            decode_refresh(None, record(bad))  # type: ignore[arg-type]


def test_one_error_kind_rule_for_the_record_and_the_metric() -> None:
    assert error_kind(AudioTooLarge("big")) == "audio_too_large"
    assert error_kind(StoreError("down")) == "store"
    assert error_kind(KeyError("bug")) == "internal"
    letter = dead_letter(b"x", "songs.new", 0, 1, KeyError("bug"))
    assert letter.error_kind == "internal" and letter.error_message.startswith("KeyError")
