"""A model swap's store calls give way to event work in flight, and never wait for ever."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from streams.context import WorkerContext
from streams.foreground import Foreground
from streams.metrics import Metrics
from streams.settings import load_settings
from streams.stores import EdgeStore, Point
from streams.stores.yielding import YieldingStore


def hold(foreground: Foreground, seconds: float, log: list[str]) -> threading.Thread:
    """A foreground call that lasts ``seconds`` in another thread; returns once it began."""
    began = threading.Event()

    def event_work() -> None:
        with foreground.active():
            began.set()
            time.sleep(seconds)
            log.append("event done")

    thread = threading.Thread(target=event_work)
    thread.start()
    began.wait()
    return thread


def test_give_way_waits_for_event_work_in_flight() -> None:
    waits: list[float] = []
    fg = Foreground(max_wait_s=30.0, on_wait=waits.append)
    assert fg.give_way() == 0.0  # nothing in flight: no wait, nothing counted
    log: list[str] = []
    thread = hold(fg, 0.2, log)
    assert fg.in_flight == 1
    waited = fg.give_way()
    log.append("background ran")
    thread.join()
    assert log == ["event done", "background ran"]
    assert fg.in_flight == 0
    assert waits == [waited] and waited > 0


def test_give_way_is_bounded_under_load_that_never_pauses() -> None:
    fg = Foreground(max_wait_s=0.05)
    with fg.active():  # an event that outlasts the bound
        waited = fg.give_way()
        assert fg.in_flight == 1
    assert waited >= 0.04
    assert Foreground(max_wait_s=0.0).give_way() == 0.0  # 0: off


def test_nested_and_failed_foreground_calls_are_counted_out() -> None:
    fg = Foreground()
    try:
        with fg.active(), fg.active():
            assert fg.in_flight == 2
            raise RuntimeError("a failed event")
    except RuntimeError:
        pass
    assert fg.in_flight == 0 and fg.give_way() == 0.0


def test_yielding_store_calls_the_engine_after_event_work(tmp_path: Path) -> None:
    fg = Foreground(max_wait_s=30.0)
    engine = EdgeStore(tmp_path / "qdrant")
    store = YieldingStore(engine, fg)
    store.ensure_collection("songs", 4, {})
    log: list[str] = []
    thread = hold(fg, 0.2, log)
    store.upsert("songs", [Point("00000000-0000-0000-0000-000000000001",
                                 np.ones(4, np.float32), {"x": 1})])
    log.append("swap wrote")
    thread.join()
    assert log == ["event done", "swap wrote"]
    assert engine.count("songs") == 1
    engine.close()


def test_worker_event_calls_are_foreground(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    ctx = WorkerContext(settings, EdgeStore(tmp_path / "qdrant"), Metrics())
    seen: dict[str, Any] = {}

    async def main() -> None:
        seen["work"] = await ctx.run(lambda: ctx.foreground.in_flight)
        seen["audio"] = await ctx.read_audio(lambda: ctx.foreground.in_flight)

    asyncio.run(main())
    assert seen == {"work": 1, "audio": 1}
    assert ctx.foreground.in_flight == 0
    assert ctx.foreground.max_wait_s == settings.swap_give_way_ms / 1e3
    ctx.close()


def test_background_work_shortens_the_switch_interval_and_restores_it() -> None:
    import sys

    before = sys.getswitchinterval()
    fg = Foreground(switch_interval_s=0.0005)
    try:
        with fg.background():
            assert sys.getswitchinterval() == 0.0005
            raise RuntimeError("a failed swap")
    except RuntimeError:
        pass
    assert sys.getswitchinterval() == before
    with Foreground().background():  # None: unchanged
        assert sys.getswitchinterval() == before
