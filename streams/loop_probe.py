"""How long the worker's event loop is blocked: a task that asks to wake every 10 ms.

Anything that holds the loop (a long synchronous call, a thread holding the GIL, a merge's
snapshot copy) makes the task wake late; the lateness is the stall. The longest one of each
5 s window is exported as a gauge (so a soak can read the worst stall of its own minutes,
not of start-up), every one goes into a histogram. The probe costs ~100 wake-ups a second.
"""

from __future__ import annotations

import asyncio

from .metrics import Metrics

INTERVAL_S = 0.010
WINDOW_S = 5.0


async def probe_loop(metrics: Metrics, interval: float = INTERVAL_S,
                     window: float = WINDOW_S) -> None:
    """Run until cancelled; see the module docstring."""
    loop = asyncio.get_running_loop()
    last = start = loop.time()
    worst = 0.0
    while True:
        await asyncio.sleep(interval)
        now = loop.time()
        late = max(0.0, now - last - interval)
        metrics.loop_lag.observe(late)
        worst = max(worst, late)
        if now - start >= window:
            metrics.loop_stall.set(worst)
            start, worst = now, 0.0
        last = now
