from __future__ import annotations

import numpy as np
import pytest

from coldstream_data.base import ACTION_CODE
from coldstream_data.converters import LASTFM_FILE, convert, load_lastfm1k, load_music4all
from coldstream_data.own import load_dir, load_own, write_own


def test_own_csv_round_trip_keeps_everything(tiny_world, tmp_path):
    write_own(tiny_world, tmp_path)
    back = load_dir(tmp_path)
    ids = tiny_world.catalogue["song_id"].to_numpy()
    assert list(back.catalogue["song_id"]) == list(ids)
    assert back.catalogue["tags"].tolist() == tiny_world.catalogue["tags"].tolist()
    assert np.array_equal(back.interactions.ts, tiny_world.interactions.ts)
    assert np.array_equal(back.catalogue["song_id"].to_numpy()[back.interactions.item],
                          ids[tiny_world.interactions.item])
    assert np.array_equal(back.truth["song_genre"], tiny_world.truth["song_genre"])


def test_own_format_accepts_iso_times_and_rejects_unknown_songs(tmp_path):
    (tmp_path / "c.csv").write_text(
        "song_id,title,artist,tags,description,audio_path\n"
        "a,Song A,X,rock|live,,\nb,Song B,Y,,about b,/tmp/b.wav\n")
    (tmp_path / "i.csv").write_text(
        "user_id,song_id,action,ts\nu1,a,play,2024-01-01T00:00:00Z\nu1,b,collect,1704067201000\n")
    data = load_own(tmp_path / "c.csv", tmp_path / "i.csv")
    assert data.catalogue.loc[0, "tags"] == ["rock", "live"]
    assert data.catalogue.loc[1, "audio_path"] == "/tmp/b.wav"
    assert list(data.interactions.ts) == [1704067200000, 1704067201000]
    assert list(data.interactions.positive()) == [False, True]
    (tmp_path / "bad.csv").write_text("user_id,song_id,action,ts\nu1,zzz,play,1\n")
    with pytest.raises(ValueError, match="zzz"):
        load_own(tmp_path / "c.csv", tmp_path / "bad.csv")
    (tmp_path / "bad2.csv").write_text("user_id,song_id,action,ts\nu1,a,like,1\n")
    with pytest.raises(ValueError, match="like"):
        load_own(tmp_path / "c.csv", tmp_path / "bad2.csv")


def test_lastfm1k_fixture(tmp_path):
    rows = [
        "user_000001\t2009-05-04T23:08:57Z\tart-1\tDeep Dish\ttr-1\tFuck Me Im Famous",
        "user_000001\t2009-05-04T13:54:10Z\tart-2\tUmmet Ozcan\t\tOctave",
        "user_000002\t2009-05-05T10:00:00Z\tart-1\tDeep Dish\ttr-1\tFuck Me Im Famous",
    ]
    (tmp_path / LASTFM_FILE).write_text("\n".join(rows) + "\n")
    data = load_lastfm1k(tmp_path)
    assert data.n_items == 2 and data.n_users == 2 and len(data.interactions) == 3
    assert set(data.interactions.action) == {ACTION_CODE["complete"]}
    assert np.all(np.diff(data.interactions.ts) >= 0)
    assert "tr-1" in set(data.catalogue["song_id"])
    blank = data.catalogue[data.catalogue["title"] == "Octave"].iloc[0]
    assert blank["song_id"].startswith("t-") and blank["artist"] == "Ummet Ozcan"
    out = convert("lastfm-1k", tmp_path, tmp_path / "own")
    assert len(load_dir(out).interactions) == 3


def test_music4all_fixture(tmp_path):
    (tmp_path / "id_information.csv").write_text(
        "id\tartist\tsong\talbum_name\n0009fFIM1eYThaPg\tCheryl\tHold On\tHold On\n"
        "0010xmHR6UICBOYT\tOasis\tWonderwall\t(What's the Story) Morning Glory?\n")
    (tmp_path / "id_genres.csv").write_text(
        "id\tgenres\n0009fFIM1eYThaPg\tpop\n0010xmHR6UICBOYT\trock,britpop\n")
    (tmp_path / "id_tags.csv").write_text("id\ttags\n0010xmHR6UICBOYT\t90s,rock\n")
    (tmp_path / "id_metadata.csv").write_text(
        "id\tspotify_id\tpopularity\trelease\n0009fFIM1eYThaPg\tx\t50\t2017\n"
        "0010xmHR6UICBOYT\ty\t80\t1995\n")
    (tmp_path / "audios").mkdir()
    (tmp_path / "audios" / "0010xmHR6UICBOYT.mp3").write_bytes(b"")
    (tmp_path / "listening_history.csv").write_text(
        "user\tsong\ttimestamp\nu1\t0010xmHR6UICBOYT\t2019-02-20 14:56\n"
        "u1\t0010xmHR6UICBOYT\t2019-02-21 09:00\nu2\t0009fFIM1eYThaPg\t2019-02-20 15:00\n"
        "u2\tunknown_song_id0\t2019-02-20 16:00\n")
    data = load_music4all(tmp_path)
    cat = data.catalogue.set_index("song_id")
    assert cat.loc["0010xmHR6UICBOYT", "tags"] == ["rock", "britpop", "90s"]
    assert cat.loc["0010xmHR6UICBOYT", "audio_path"].endswith("0010xmHR6UICBOYT.mp3")
    assert cat.loc["0009fFIM1eYThaPg", "audio_path"] is None
    assert cat.loc["0010xmHR6UICBOYT", "released_at"] == 788918400000  # 1995-01-01
    actions = sorted(data.interactions.action.tolist())
    # three plays, plus a collect on u1's second listen of Wonderwall; unknown song dropped
    assert actions == sorted([ACTION_CODE["play"]] * 3 + [ACTION_CODE["collect"]])
