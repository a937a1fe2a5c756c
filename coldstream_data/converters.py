"""Converters from public music dumps to the own-data format (see :mod:`.own`).

We do not ship or download these dumps; point the converter at your local copy.

* **Last.fm-1K** (Celma 2010): ``userid-timestamp-artid-artname-traid-traname.tsv``, tab
  separated, no header, ISO timestamps. Only scrobbles exist, and Last.fm scrobbles a track
  after half of it (or 4 min) played, so each scrobble becomes ``complete``; the catalogue is
  every distinct track (MusicBrainz id, or ``artist - title`` when the id is blank).
* **Music4All** (Santana et al. 2020): tab-separated files with a header:
  ``id_information.csv`` (id, artist, song, album_name), optional ``id_tags.csv`` /
  ``id_genres.csv`` (id, comma-separated list), optional ``id_metadata.csv`` (id, ...,
  release), ``listening_history.csv`` (user, song, timestamp), audio in ``audios/<id>.mp3``.
  Each listening-history row becomes ``play`` (no completion signal exists); positives are
  then derived with ``repeat_collect``: the n-th listen of the same song by the same user
  is also emitted as ``collect`` (default 2: a song people come back to).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from .base import ACTION_CODE, Dataset, Interactions, make_catalogue
from .own import parse_ts, write_own

LASTFM_FILE = "userid-timestamp-artid-artname-traid-traname.tsv"
LASTFM_COLUMNS = ("user_id", "ts", "artist_id", "artist", "track_id", "title")


def _fallback_id(artist: str, title: str) -> str:
    return "t-" + hashlib.sha1(f"{artist}\x1f{title}".encode()).hexdigest()[:16]


def _build(name: str, catalogue: pd.DataFrame, users: np.ndarray, songs: np.ndarray,
           actions: np.ndarray, ts: np.ndarray) -> Dataset:
    item = pd.Index(catalogue["song_id"]).get_indexer(songs)
    user_ids, user = np.unique(users.astype(str), return_inverse=True)
    inter = Interactions.build(user, item, actions, ts)
    return Dataset(name, catalogue, user_ids.astype(object), inter.sorted_by_time())


def load_lastfm1k(root: str | Path, max_rows: int | None = None) -> Dataset:
    """Last.fm-1K scrobbles -> Dataset (each scrobble a ``complete``)."""
    root = Path(root)
    path = root / LASTFM_FILE if root.is_dir() else root
    frame = pd.read_csv(path, sep="\t", header=None, names=list(LASTFM_COLUMNS), dtype=str,
                        keep_default_na=False, quoting=3, nrows=max_rows,
                        on_bad_lines="skip")
    ids = [t or _fallback_id(a, s) for t, a, s in
           zip(frame["track_id"], frame["artist"], frame["title"], strict=True)]
    frame["song_id"] = ids
    ts = parse_ts(frame["ts"])
    frame["ts_ms"] = ts
    songs = frame.groupby("song_id", sort=True).agg(
        title=("title", "first"), artist=("artist", "first"), first=("ts_ms", "min"))
    catalogue = make_catalogue(
        song_id=songs.index, title=songs["title"], artist=songs["artist"],
        released_at=np.full(len(songs), -1),
    )
    actions = np.full(len(frame), ACTION_CODE["complete"], dtype=np.int8)
    return _build("lastfm-1k", catalogue, frame["user_id"].to_numpy(),
                  frame["song_id"].to_numpy(), actions, ts)


def _read_tsv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)


def _id_lists(path: Path) -> dict[str, list[str]]:
    if not path.exists():
        return {}
    frame = _read_tsv(path)
    key, value = frame.columns[0], frame.columns[1]
    return {i: [t.strip() for t in v.split(",") if t.strip()]
            for i, v in zip(frame[key], frame[value], strict=True)}


def load_music4all(root: str | Path, repeat_collect: int = 2) -> Dataset:
    """Music4All folder -> Dataset; plays, plus a ``collect`` on the n-th repeat listen."""
    root = Path(root)
    info = _read_tsv(root / "id_information.csv")
    tags = _id_lists(root / "id_tags.csv")
    genres = _id_lists(root / "id_genres.csv")
    released: dict[str, int] = {}
    meta_path = root / "id_metadata.csv"
    if meta_path.exists():
        meta = _read_tsv(meta_path)
        if "release" in meta:
            years = pd.to_numeric(meta["release"].str[:4], errors="coerce")
            for i, y in zip(meta["id"], years, strict=True):
                if not np.isnan(y):
                    released[i] = int(pd.Timestamp(year=int(y), month=1, day=1,
                                                   tz="UTC").value // 1_000_000)
    audio = [root / "audios" / f"{i}.mp3" for i in info["id"]]
    catalogue = make_catalogue(
        song_id=info["id"], title=info["song"], artist=info["artist"],
        tags=[list(dict.fromkeys(genres.get(i, []) + tags.get(i, []))) for i in info["id"]],
        description=[f"From the album {a}." if a else None for a in info.get(
            "album_name", [""] * len(info))],
        audio_path=[str(p) if p.exists() else None for p in audio],
        released_at=[released.get(i, -1) for i in info["id"]],
    )
    hist = _read_tsv(root / "listening_history.csv")
    hist = hist[hist["song"].isin(set(info["id"]))]
    ts = parse_ts(hist["timestamp"])
    users = hist["user"].to_numpy()
    songs = hist["song"].to_numpy()
    actions = np.full(len(hist), ACTION_CODE["play"], dtype=np.int8)
    if repeat_collect > 0:
        order = np.argsort(ts, kind="stable")
        nth = pd.DataFrame({"u": users[order], "s": songs[order]}).groupby(
            ["u", "s"]).cumcount().to_numpy() + 1
        hit = order[nth == repeat_collect]
        users = np.concatenate([users, users[hit]])
        songs = np.concatenate([songs, songs[hit]])
        ts = np.concatenate([ts, ts[hit] + 1])  # just after the listen that earned it
        actions = np.concatenate([actions, np.full(len(hit), ACTION_CODE["collect"], np.int8)])
    return _build("music4all", catalogue, users, songs, actions, ts)


CONVERTERS = {"lastfm-1k": load_lastfm1k, "music4all": load_music4all}


def convert(kind: str, source: str | Path, out_dir: str | Path, fmt: str = "csv") -> Path:
    """Read a public dump and write it in the own-data format."""
    if kind not in CONVERTERS:
        raise ValueError(f"unknown dump {kind!r}; choose from {sorted(CONVERTERS)}")
    return write_own(CONVERTERS[kind](source), out_dir, fmt=fmt)
