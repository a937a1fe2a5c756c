"""How long the worker's event loop is blocked: a task that asks to wake every 10 ms.

Anything that holds the loop (a long synchronous call, a thread holding the GIL, a merge's
snapshot copy) makes the task wake late; the lateness is the stall. The longest one of each
5 s window is exported as a gauge (so a soak can read the worst stall of its own minutes,
not of start-up), every one goes into a histogram. The probe costs ~100 wake-ups a second.

Garbage collections hold the GIL, so each one stalls the loop: :class:`GcTimer` times them
(``gc.callbacks``) and the probe exports the longest per generation of the same window, so a
stall can be told apart from a collection.
"""

from __future__ import annotations

import asyncio
import gc
import time

from .metrics import Metrics
from .stall_trace import StallTracer

INTERVAL_S = 0.010
WINDOW_S = 5.0


class GcTimer:
    """The longest collection per generation since the last :meth:`take`."""

    def __init__(self) -> None:
        self.worst = [0.0, 0.0, 0.0]
        self._start = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            gen = info["generation"]
            self.worst[gen] = max(self.worst[gen], time.perf_counter() - self._start)

    def take(self) -> list[float]:
        worst, self.worst = self.worst, [0.0, 0.0, 0.0]
        return worst


async def probe_loop(metrics: Metrics, interval: float = INTERVAL_S,
                     window: float = WINDOW_S, tracer: StallTracer | None = None) -> None:
    """Run until cancelled; see the module docstring. ``tracer`` (streams.stall_trace), if
    given, is started on this thread and ticked at every wake-up."""
    timer = GcTimer()
    gc.callbacks.append(timer)
    if tracer is not None:
        tracer.start()
    try:
        await _probe(metrics, interval, window, timer, tracer)
    finally:
        gc.callbacks.remove(timer)
        if tracer is not None:
            tracer.stop()


async def _probe(metrics: Metrics, interval: float, window: float, timer: GcTimer,
                 tracer: StallTracer | None) -> None:
    loop = asyncio.get_running_loop()
    last = start = loop.time()
    worst = 0.0
    while True:
        await asyncio.sleep(interval)
        if tracer is not None:
            tracer.tick()
        now = loop.time()
        late = max(0.0, now - last - interval)
        metrics.loop_lag.observe(late)
        worst = max(worst, late)
        if now - start >= window:
            metrics.loop_stall.set(worst)
            for gen, seconds in enumerate(timer.take()):
                metrics.gc_pause.labels(generation=str(gen)).set(seconds)
            start, worst = now, 0.0
        last = now
