"""Any Dataset -> ``songs.new`` and ``interactions`` events, in time order, in the contract.

The dicts match ``streams.events`` (schema_version 1) without importing ``streams``:
training must not depend on the live pipeline. Event ids are uuid5 of the dataset name and
the row, so replaying the same source twice produces the same ids and the pipeline drops the
duplicates. A song is announced at its release time, or 1 ms before its first interaction
when the source has no release time (MovieLens), and never after its first interaction.
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from .base import ACTIONS, Dataset

SCHEMA_VERSION = 1
SONGS_TOPIC = "songs.new"
INTERACTIONS_TOPIC = "interactions"
NAMESPACE = uuid.UUID("2b7d6c1a-0f3e-5e49-8d1a-6c0b9e4f7a21")
MAX_TAGS, MAX_TAG_LEN, MAX_TEXT = 64, 64, 512

Record = tuple[str, str, dict[str, Any]]


def event_id(source: str, kind: str, *parts: object) -> str:
    return str(uuid.uuid5(NAMESPACE, ":".join([source, kind, *map(str, parts)])))


def release_times(data: Dataset) -> np.ndarray:
    """Release ms per item: the catalogue's, capped at (first interaction - 1 ms)."""
    rel = data.catalogue["released_at"].to_numpy(dtype=np.int64).copy()
    first = np.full(data.n_items, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, data.interactions.item, data.interactions.ts)
    seen = first < np.iinfo(np.int64).max
    unknown = rel < 0
    rel[unknown & seen] = first[unknown & seen] - 1
    rel[seen] = np.minimum(rel[seen], first[seen] - 1)
    rel[rel < 0] = 0
    return rel


def song_event(data: Dataset, i: int, released_at: int) -> dict[str, Any]:
    row = data.catalogue.iloc[i]
    tags = [str(t)[:MAX_TAG_LEN] for t in row["tags"] if str(t)][:MAX_TAGS]
    event: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "event_id": event_id(data.name, "song", row["song_id"]),
        "song_id": str(row["song_id"]),
        "title": str(row["title"])[:MAX_TEXT] or str(row["song_id"]),
        "artist": str(row["artist"] or "")[:MAX_TEXT],
        "tags": tags,
        "released_at": int(released_at),
    }
    if isinstance(row["description"], str) and row["description"]:
        event["description"] = row["description"][:20_000]
    if isinstance(row["audio_path"], str) and row["audio_path"]:
        event["audio_uri"] = Path(row["audio_path"]).resolve().as_uri()
    return event


def _songs(data: Dataset, shift: int) -> Iterator[tuple[int, int, Record]]:
    rel = release_times(data) + shift
    for i in np.argsort(rel, kind="stable"):
        ev = song_event(data, int(i), int(rel[i]))
        yield int(rel[i]), 0, (SONGS_TOPIC, ev["song_id"], ev)


def _interactions(data: Dataset, shift: int) -> Iterator[tuple[int, int, Record]]:
    inter = data.interactions
    song_ids = data.catalogue["song_id"].to_numpy()
    for j in np.argsort(inter.ts, kind="stable"):
        user = str(data.user_ids[inter.user[j]])
        ts = int(inter.ts[j]) + shift
        ev = {
            "schema_version": SCHEMA_VERSION,
            "event_id": event_id(data.name, "interaction", int(j)),
            "user_id": user,
            "song_id": str(song_ids[inter.item[j]]),
            "action": ACTIONS[int(inter.action[j])],
            "ts": ts,
        }
        yield ts, 1, (INTERACTIONS_TOPIC, user, ev)


def replay(data: Dataset, end_at_ms: int | None = None) -> Iterator[Record]:
    """(topic, key, payload) in time order; songs first on equal timestamps.

    ``end_at_ms`` shifts every timestamp so the last event lands there (e.g. now), which
    lets 1997 MovieLens ratings look fresh to a pipeline that reasons about recency.
    """
    shift = 0
    if end_at_ms is not None:
        last = max(int(data.interactions.ts.max()) if len(data.interactions) else 0,
                   int(release_times(data).max()) if data.n_items else 0)
        shift = int(end_at_ms) - last
    merged = heapq.merge(_songs(data, shift), _interactions(data, shift),
                         key=lambda e: (e[0], e[1]))
    for _, _, record in merged:
        yield record


def write_jsonl(records: Iterator[Record], path: str | Path) -> int:
    """One ``{"topic", "key", "value"}`` object per line; returns the count."""
    n = 0
    with open(path, "wb") as fh:
        for topic, key, value in records:
            fh.write(orjson.dumps({"topic": topic, "key": key, "value": value}))
            fh.write(b"\n")
            n += 1
    return n
