"""The worker's GC policy: what each COLDSTREAM_GC_FREEZE mode does to the process's collector,
and that the worker applies it when it becomes ready. No timings (the soak measures those)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import faust
import pytest

from streams import gc_policy
from streams.metrics import Metrics
from streams.settings import Settings
from streams.worker import ColdstreamWorker


@pytest.fixture(autouse=True)
def restore_gc() -> Iterator[None]:
    """Every test leaves the collector as it found it (the freeze is process-wide)."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_default_is_freeze_at_start() -> None:
    assert Settings().gc_freeze == "start"
    with pytest.raises(ValueError, match="gc_freeze"):
        Settings(gc_freeze="always")


def test_off_leaves_cpython_defaults() -> None:
    thresholds = gc.get_threshold()
    assert gc_policy.apply_gc_policy("off") == {"mode": "off"}
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0


def test_start_freezes_what_lives_and_raises_thresholds() -> None:
    kept = [[i] for i in range(1000)]  # tracked objects alive at start-up
    done = gc_policy.apply_gc_policy("start")
    assert done["frozen"] == gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold() == gc_policy.THRESHOLDS
    assert not any(o is kept[0] for o in gc.get_objects(2))  # no collection walks it
    before = gc.get_freeze_count()
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1  # garbage made after start is still collected
    assert gc.get_freeze_count() == before


def test_worker_applies_the_setting_when_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    async def started(self: faust.Worker) -> None:
        return None

    monkeypatch.setattr(faust.Worker, "on_startup_finished", started)
    applied: list[str] = []
    monkeypatch.setattr("streams.worker.apply_gc_policy",
                        lambda mode: applied.append(mode) or {"mode": mode, "frozen": 7})
    for mode in ("off", "start"):
        worker = ColdstreamWorker.__new__(ColdstreamWorker)  # no Faust app needed for the hook
        worker.coldstream_metrics = Metrics()
        worker.gc_freeze = mode
        asyncio.run(worker.on_startup_finished())
        assert worker.coldstream_metrics.ready._value.get() == 1
        assert worker.coldstream_metrics.gc_frozen._value.get() == 7
    assert applied == ["off", "start"]
