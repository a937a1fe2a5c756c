from __future__ import annotations

import orjson
import pytest

from coldstream_data.base import Dataset, Interactions, make_catalogue
from coldstream_data.replay import replay, write_jsonl

events = pytest.importorskip("streams.events")


def _check(records) -> None:
    last_ts = -1
    announced: set[str] = set()
    for topic, key, value in records:
        model = {"songs.new": events.SongEvent, "interactions": events.InteractionEvent}[topic]
        ev = events.decode(orjson.dumps(value), model)  # strict contract validation
        ts = ev.released_at if topic == "songs.new" else ev.ts
        assert ts >= last_ts
        last_ts = ts
        if topic == "songs.new":
            assert key == ev.song_id
            announced.add(ev.song_id)
        else:
            assert key == ev.user_id
            assert ev.song_id in announced  # a song is announced before anyone plays it


def test_world_replay_validates_and_is_time_ordered(tiny_world):
    records = list(replay(tiny_world))
    assert len(records) == tiny_world.n_items + len(tiny_world.interactions)
    _check(records)
    ids = [v["event_id"] for _, _, v in records]
    assert len(set(ids)) == len(ids)
    assert ids == [v["event_id"] for _, _, v in replay(tiny_world)]  # deterministic


def test_ratings_map_to_actions_and_release_falls_back_to_first_play(tmp_path):
    cat = make_catalogue(song_id=["m1", "m2"], title=["A", "B"], tags=[["x" * 80], []])
    inter = Interactions.build([0, 1, 0], [0, 0, 1], [1, 3, 0],
                               [1_000_000, 2_000_000, 3_000_000], [4.0, 2.0, 3.0])
    data = Dataset("fixture", cat, __import__("numpy").asarray(["u1", "u2"], dtype=object),
                   inter)
    records = list(replay(data, end_at_ms=1_700_000_000_000))
    _check(records)
    assert [r[0] for r in records] == ["songs.new", "interactions", "interactions",
                                       "songs.new", "interactions"]
    assert [r[2].get("action") for r in records if r[0] == "interactions"] == [
        "complete", "skip", "play"]
    assert records[-1][2]["ts"] == 1_700_000_000_000
    assert records[0][2]["tags"] == ["x" * 64]
    n = write_jsonl(iter(records), tmp_path / "e.jsonl")
    lines = (tmp_path / "e.jsonl").read_bytes().splitlines()
    assert n == len(lines) == 5 and orjson.loads(lines[0])["topic"] == "songs.new"
