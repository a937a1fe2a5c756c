"""The in-memory table store keeps values as bytes: reads are copies, and the collector
tracks nothing per value."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import faust
import pytest

from streams.packed_tables import SCHEME, PackedMemoryStore, PackedValues
from streams.state_format import pack_user_state
from streams.table_store import register, store_url

from .test_monotone_tables import Record


def user_state(i: int) -> dict[str, Any]:
    """A full packed user state (50 history items), as the worker stores it."""
    history = [[f"s{i}-{k}", "play", 1_700_000_000_000 + k] for k in range(50)]
    return pack_user_state({
        "history": history, "counts": {"play": 50}, "offsets": {"0": i},
        "event_ids": [f"e{k}" for k in range(50)], "seen": [[0, k] for k in range(50)],
        "boundary": 0.25, "applied": 50})


def test_values_read_back_equal_and_as_copies() -> None:
    values = PackedValues()
    state = user_state(1)
    values["u1"] = state
    assert values["u1"] == state and "u1" in values and len(values) == 1
    read = values["u1"]
    read["counts"]["play"] = 999  # a read is a copy: the table changes only on a write
    assert values["u1"]["counts"] == {"play": 50}
    values["u2"] = {1: (1, 2)}  # as JSON: key as a string, tuple as a list
    assert values["u2"] == {"1": [1, 2]}
    assert values.pop("u2") == {"1": [1, 2]} and values.pop("gone", None) is None
    with pytest.raises(KeyError):
        values.pop("gone")
    del values["u1"]
    assert not values and values.nbytes() == 0


def test_the_collector_tracks_nothing_per_value() -> None:
    """A plain dict of the same states keeps ~9 tracked objects per user (dicts and lists);
    this keeps none."""
    states = [user_state(i) for i in range(2_000)]
    values = PackedValues()
    gc.collect()
    before = len(gc.get_objects())
    for i, state in enumerate(states):
        values[f"u{i}"] = state
    del states
    gc.collect()
    assert len(gc.get_objects()) - before < 100
    assert not gc.is_tracked(values.raw)
    assert len(values) == 2_000 and values["u7"] == user_state(7)


def test_a_value_costs_its_size_not_an_encoder_buffer() -> None:
    """orjson's own result keeps a 4 KiB buffer per value (a 100-byte state cost 4 KiB)."""
    values = PackedValues()
    tracemalloc.start()
    try:
        for i in range(1_000):
            values[f"u{i}"] = {"applied": i, "boundary": 0.5}
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert values.nbytes() < 40_000
    assert held < 3 * values.nbytes() + 150_000  # values + the dict's slots, not 4 MB


def test_recovery_applies_writes_and_deletions_in_order() -> None:
    register()
    app = faust.App("packed-test", store=store_url("memory"))
    assert store_url("memory") == f"{SCHEME}://"
    table = app.Table("t", key_type=str)
    store = table.data
    assert isinstance(store, PackedMemoryStore) and isinstance(store.data, PackedValues)
    store.apply_changelog_batch(
        [Record("a", {"n": 1}), Record("b", [1]), Record("a", None),
         Record("b", None), Record("b", [2], partition=1)],
        to_key=lambda k: k, to_value=lambda v: v)
    assert dict(store.items()) == {"b": [2]}
    assert store._key_partition == {"b": 1}
