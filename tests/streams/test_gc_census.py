"""The census counts what the oldest generation holds, by type, and skips what is frozen."""

from __future__ import annotations

import gc
from pathlib import Path

import orjson

from streams.gc_census import append_census


class Holder:
    """A tracked type of our own, so its count is ours alone."""


def test_census_counts_long_lived_objects_by_type_and_not_frozen_ones(tmp_path: Path) -> None:
    kept = [Holder() for _ in range(5_000)]
    gc.collect()  # survivors of a full collection are in the oldest generation
    path = tmp_path / "census.jsonl"
    gc.disable()  # the young ones stay young until the census has run
    try:
        young = [Holder() for _ in range(3_000)]
        first = append_census(path, top=10_000)
    finally:
        gc.enable()
    assert dict(first["top"])["Holder"] == 5_000 and len(young) == 3_000
    gc.freeze()
    try:
        second = append_census(path, top=10_000)
        assert "Holder" not in dict(second["top"])  # frozen: no collection walks it
        assert second["frozen"] >= 5_000
    finally:
        gc.unfreeze()
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [line["generations"][2] for line in lines] == [first["generations"][2],
                                                            second["generations"][2]]
    assert len(kept) == 5_000
