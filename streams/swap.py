"""Adopting a new model version without downtime and without mixing vector spaces.

The old version keeps serving while the catalogue is re-embedded into the new version's own
collections in a background thread; users are recomputed from their table state with the new
song vectors. A short exclusive step then reconciles what changed meanwhile (new songs, new
listeners, users who interacted) and switches. Every candidate records the version that made it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from encoders.runtime import LoadedModel, SongInput

from . import pipeline
from .audio import load_audio, resolve_audio_path
from .errors import EventError
from .pipeline import Collections, SongVectorCache
from .settings import Settings
from .stores import Hit, Point, VectorStore, chunks, scroll_all

log = logging.getLogger(__name__)


def song_input_from_payload(payload: Mapping[str, Any], model: LoadedModel,
                            settings: Settings) -> SongInput:
    """Rebuild a song's model inputs from what the store kept of its event."""
    from encoders.features import song_text

    text = song_text(payload.get("title", ""), payload.get("artist", ""),
                     payload.get("tags", []), payload.get("description"))
    wave: np.ndarray | None = None
    uri = payload.get("audio_uri")
    if uri:
        try:
            path = resolve_audio_path(uri, settings.audio_roots, settings.audio_schemes)
            wave = load_audio(path, model.songs.sample_rate, settings.audio_max_bytes,
                              settings.audio_max_seconds, settings.audio_max_decode_s)
        except EventError as exc:  # the file moved since upload: keep the song, text only
            log.warning("re-embedding %s without audio: %s", payload.get("song_id"), exc)
    return SongInput(text, wave)


def reembed(store: VectorStore, songs: Iterable[Hit], dst: Collections, model: LoadedModel,
            settings: Settings, batch: int = 32) -> int:
    """Encode songs (points of another version) with ``model`` into ``dst``; same ids."""
    done = 0
    for page in chunks(list(songs), batch):
        vectors = model.songs.encode([song_input_from_payload(h.payload, model, settings)
                                      for h in page])
        store.upsert(dst.songs, [
            Point(h.id, v, {**h.payload, "model_version": model.version})
            for h, v in zip(page, vectors, strict=True)])
        done += len(page)
    return done


def reembed_catalogue(store: VectorStore, src: Collections, dst: Collections,
                      model: LoadedModel, settings: Settings) -> int:
    return reembed(store, scroll_all(store, src.songs), dst, model, settings)


def recompute_users(store: VectorStore, dst: Collections, model: LoadedModel,
                    states: Mapping[str, dict[str, Any]]) -> int:
    cache = SongVectorCache()
    items = list(states.items())
    for i in range(0, len(items), 256):
        pipeline.users_update(store, dst, model, cache, dict(items[i:i + 256]))
    return len(states)


def reconcile(store: VectorStore, src: Collections, dst: Collections, model: LoadedModel,
              settings: Settings) -> tuple[int, int]:
    """Bring ``dst`` up to date with what ``src`` received during the bulk pass.

    Returns (songs added, songs whose listeners changed). Runs exclusively (serving paused).
    """
    old = {h.id: h for h in scroll_all(store, src.songs)}
    new = {h.id: h for h in scroll_all(store, dst.songs)}
    missing = [h for pid, h in old.items() if pid not in new]
    added = reembed(store, missing, dst, model, settings) if missing else 0
    changed = 0
    for pid, h in old.items():
        if pid in new and new[pid].payload.get("engagers") != h.payload.get("engagers"):
            store.set_payload(dst.songs, pid, {"engagers": h.payload.get("engagers", []),
                                               "is_cold": h.payload.get("is_cold", 1)})
            changed += 1
    return added, changed
