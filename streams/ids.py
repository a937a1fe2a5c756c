"""Deterministic ids: a replayed event overwrites instead of duplicating."""

from __future__ import annotations

import hashlib
import uuid

NAMESPACE = uuid.UUID("6f1c2d1e-8c7b-5a43-9f0e-3c2b1a0d9e8f")
_NAMESPACE_BYTES = NAMESPACE.bytes


def uuid5_str(name: str) -> str:
    """``str(uuid.uuid5(NAMESPACE, name))``, the same string 3x faster (0.85 against 2.60 us,
    ``bench/results/stop48/ids_timeit.py``):
    the worker makes thousands of ids a second (every listener a new song reaches, every
    interaction's user), and building ``UUID`` objects was ~2.6 % of its GIL time in the 1M
    soak (``bench/results/stop48``). SHA-1 of namespace + name, version 5, RFC 4122 variant."""
    x = hashlib.sha1(_NAMESPACE_BYTES + name.encode()).hexdigest()
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{'89ab'[int(x[16], 16) & 3]}{x[17:20]}-{x[20:32]}"


def point_id(entity: str, entity_id: str) -> str:
    """Qdrant point id (a UUID string) for a song or user id, stable across runs and backends."""
    return uuid5_str(f"{entity}:{entity_id}")


def song_point_id(song_id: str) -> str:
    return point_id("song", song_id)


def user_point_id(user_id: str) -> str:
    return point_id("user", user_id)


def candidate_id(song_id: str, user_id: str, model_version: str) -> str:
    """Same song, user and model version -> same candidate: downstream can de-duplicate."""
    return uuid5_str(f"candidate:{model_version}:{song_id}:{user_id}")
