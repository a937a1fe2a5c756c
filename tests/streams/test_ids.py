"""Point and candidate ids: the fast UUIDv5 is exactly the standard library's, for any name,
so stores written before it keep their ids."""

from __future__ import annotations

import random
import uuid

import pytest

from streams.ids import NAMESPACE, candidate_id, song_point_id, user_point_id, uuid5_str


@pytest.mark.parametrize("name", ["", "user:u1", "song:é漢字 \\x00", "candidate:v1:s:u" * 30])
def test_the_fast_uuid5_is_the_standard_one(name: str) -> None:
    assert uuid5_str(name) == str(uuid.uuid5(NAMESPACE, name))


def test_the_fast_uuid5_matches_on_random_names() -> None:
    rng = random.Random(0)
    alphabet = "abcXYZ019:-_ é漢🎵"
    for _ in range(5_000):  # every variant nibble and version position gets exercised
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert uuid5_str(name) == str(uuid.uuid5(NAMESPACE, name))


def test_ids_are_stable_and_distinct_per_entity() -> None:
    assert song_point_id("x") == str(uuid.uuid5(NAMESPACE, "song:x"))
    assert user_point_id("x") == str(uuid.uuid5(NAMESPACE, "user:x"))
    assert song_point_id("x") != user_point_id("x")
    assert candidate_id("s", "u", "v1") == str(uuid.uuid5(NAMESPACE, "candidate:v1:s:u"))
    assert candidate_id("s", "u", "v1") != candidate_id("s", "u", "v2")
