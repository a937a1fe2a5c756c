"""What the stall tracer costs (stop 39): a fixed Python workload in two threads (the worker's
work and audio threads) while the event loop runs the 10 ms probe, with and without the
tracer at the worker's default (100 ms threshold, polled every 25 ms) and at 40 ms (polled
every 10 ms); runs alternated, medians of wall and process CPU time.

    .venv/bin/python bench/results/stop39/stall_trace_overhead.py"""
import asyncio
import contextlib
import statistics
import time

from streams.loop_probe import probe_loop
from streams.metrics import Metrics
from streams.stall_trace import StallTracer


def work(n=3_000_000):
    x = 0
    for i in range(n):
        x += i & 7
    return x


CONFIGS = {"off": None, "100 ms": (0.1, 0.025), "40 ms": (0.04, 0.01)}


async def once(config: str) -> tuple[float, float]:
    setting = CONFIGS[config]
    tracer = (StallTracer(lambda s: None, setting[0], poll_s=setting[1]) if setting else None)
    probe = asyncio.create_task(probe_loop(Metrics(), tracer=tracer))
    await asyncio.sleep(0.05)
    t, c = time.perf_counter(), time.process_time()
    await asyncio.gather(*(asyncio.to_thread(work) for _ in range(2)))
    dt = (time.perf_counter() - t, time.process_time() - c)
    probe.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await probe
    return dt


res = {k: [] for k in CONFIGS}
for r in range(16):
    order = list(CONFIGS) if r % 2 else list(CONFIGS)[::-1]
    for k in order:
        res[k].append(asyncio.run(once(k)))
for i, name in enumerate(("wall", "cpu")):
    m = {k: statistics.median(x[i] for x in v) for k, v in res.items()}
    print(name, {k: round(x, 3) for k, x in m.items()},
          {f"{k}/off": round(m[k] / m["off"], 3) for k in m if k != "off"})
