"""Deterministic ids: a replayed event overwrites instead of duplicating."""

from __future__ import annotations

import uuid

NAMESPACE = uuid.UUID("6f1c2d1e-8c7b-5a43-9f0e-3c2b1a0d9e8f")


def point_id(entity: str, entity_id: str) -> str:
    """Qdrant point id (a UUID string) for a song or user id, stable across runs and backends."""
    return str(uuid.uuid5(NAMESPACE, f"{entity}:{entity_id}"))


def song_point_id(song_id: str) -> str:
    return point_id("song", song_id)


def user_point_id(user_id: str) -> str:
    return point_id("user", user_id)


def candidate_id(song_id: str, user_id: str, model_version: str) -> str:
    """Same song, user and model version -> same candidate: downstream can de-duplicate."""
    return str(uuid.uuid5(NAMESPACE, f"candidate:{model_version}:{song_id}:{user_id}"))
