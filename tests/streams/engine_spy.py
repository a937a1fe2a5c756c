"""Record what a segmented store asks its engine (Qdrant Edge) for."""

from __future__ import annotations

from typing import Any

import pytest

from streams.stores import SegmentedStore


def spy_engine_retrieve(store: SegmentedStore, monkeypatch: pytest.MonkeyPatch
                        ) -> list[tuple[list[str], bool]]:
    """Each ``retrieve`` the engine answers from now on: (ids, with_vector)."""
    calls: list[tuple[list[str], bool]] = []
    inner_retrieve = store.inner.retrieve

    def spy(collection: str, ids: list[str], with_vector: bool = True,
            with_payload: bool = True) -> list[Any]:
        calls.append((list(ids), with_vector))
        return inner_retrieve(collection, ids, with_vector, with_payload)

    monkeypatch.setattr(store.inner, "retrieve", spy)
    return calls
