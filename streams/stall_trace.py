"""Where the event loop is when it stalls: a watchdog thread samples the loop thread's stack.

``coldstream_event_loop_stall_seconds`` (streams.loop_probe) says how long the loop was
blocked, not by what. The soaks' 100-250 ms stalls were neither collections nor merges, and a
sampling profiler of the whole process buries a few stalls a minute under the steady work.
So the loop probe ticks this tracer at every wake-up, and a daemon thread checks every
``poll_s`` whether the last tick is older than ``threshold_s``. While it is, the thread reads
the loop thread's Python stack (``sys._current_frames``) at each poll; when the loop ticks
again, the stall is reported once, with the sites the samples found.

What it can see: the loop thread's frame whenever this thread holds the GIL. If the loop runs
Python code, or waits for a GIL that another thread's Python code hands over every switch
interval, the samples name the loop's own function. A C call that holds the GIL throughout (a
store flush, a collection) keeps this thread from running too: it then wakes late by about
the stall, and those samples are marked ``gil_held``, with where the other threads were.
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

log = logging.getLogger(__name__)

#: Top-level folders whose frames count as the project's own (the site of a stall).
OWN_PACKAGES = ("streams", "encoders", "training", "bench")


def where(frame: FrameType | None) -> str:
    """``folder/file.py:function`` of a frame (line numbers left out, so that sites stay a
    small set, fit for a metric label)."""
    if frame is None:
        return "unknown"
    path = Path(frame.f_code.co_filename)
    return f"{path.parent.name}/{path.name}:{frame.f_code.co_name}"


def own_site(frame: FrameType | None) -> str:
    """The innermost frame of this project's code: what our code was doing, even when the
    innermost frame is a library's (faust, aiokafka, numpy)."""
    f = frame
    while f is not None:
        if Path(f.f_code.co_filename).parent.name in OWN_PACKAGES:
            return where(f)
        f = f.f_back
    return "library:" + where(frame)


@dataclass
class Stall:
    """One stall: how long, and what the loop thread was found doing meanwhile."""

    seconds: float = 0.0
    sites: collections.Counter[str] = field(default_factory=collections.Counter)
    innermost: collections.Counter[str] = field(default_factory=collections.Counter)
    gil_held: int = 0  # samples taken only after this thread itself woke far too late
    others: dict[str, str] = field(default_factory=dict)  # thread name -> site, first sample

    @property
    def site(self) -> str:
        """The site most samples found ("unsampled" if the stall ended before the first)."""
        return self.sites.most_common(1)[0][0] if self.sites else "unsampled"

    def describe(self) -> str:
        samples = sum(self.sites.values())
        parts = ", ".join(f"{s} {n}/{samples}" for s, n in self.sites.most_common(3))
        inner = ", ".join(s for s, _ in self.innermost.most_common(2))
        text = f"event loop stalled {self.seconds * 1e3:.0f} ms in {parts or 'unsampled'}"
        if inner:
            text += f" (innermost: {inner})"
        if self.gil_held:
            busy = ", ".join(f"{k}: {v}" for k, v in self.others.items())
            text += (f"; {self.gil_held} sample(s) only after the GIL was held elsewhere "
                     f"(other threads: {busy})")
        return text


class StallTracer:
    """Watchdog thread; :meth:`tick` from the loop, ``report`` called (from the watchdog
    thread) once per stall of ``threshold_s`` or more."""

    def __init__(self, report: Callable[[Stall], None], threshold_s: float = 0.1,
                 poll_s: float = 0.01, tick_interval_s: float = 0.01) -> None:
        self.report = report
        self.threshold_s = threshold_s
        self.poll_s = poll_s
        self.tick_interval_s = tick_interval_s  # the loop's ticks when it is not blocked
        self.loop_thread = threading.get_ident()
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="coldstream-stall-trace",
                                        daemon=True)

    def start(self, loop_thread: int | None = None) -> StallTracer:
        self.loop_thread = loop_thread or threading.get_ident()
        self._last = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def tick(self) -> None:
        """The loop is running (a float store: atomic, no lock)."""
        self._last = time.monotonic()

    def _watch(self) -> None:
        stall: Stall | None = None
        since = 0.0  # the tick the open stall started from
        woke = time.monotonic()
        while not self._stop.wait(self.poll_s):
            now = time.monotonic()
            self_late = now - woke - self.poll_s
            woke = now
            last = self._last
            if stall is not None and last != since:
                stall.seconds = max(0.0, last - since - self.tick_interval_s)
                self.report(stall)
                stall = None
            if now - last >= self.threshold_s:
                if stall is None:
                    stall, since = Stall(), last
                self._sample(stall, gil_held=self_late >= self.threshold_s / 2)

    def _sample(self, stall: Stall, gil_held: bool) -> None:
        frames = sys._current_frames()
        loop = frames.get(self.loop_thread)
        stall.sites[own_site(loop)] += 1
        stall.innermost[where(loop)] += 1
        if gil_held:
            stall.gil_held += 1
            if not stall.others:
                names = {t.ident: t.name for t in threading.enumerate()}
                me = threading.get_ident()
                stall.others = {names.get(tid, str(tid)): own_site(f)
                                for tid, f in frames.items()
                                if tid not in (me, self.loop_thread)}


class StallLog:
    """The worker's ``report``: every stall counted by site (count and seconds), and at most
    one log line per ``every_s``, for the longest stall since the previous line."""

    def __init__(self, count: Callable[[Stall], None], every_s: float = 10.0) -> None:
        self.count = count
        self.every_s = every_s
        self._logged = float("-inf")
        self._worst: Stall | None = None

    def __call__(self, stall: Stall) -> None:
        self.count(stall)
        if self._worst is None or stall.seconds > self._worst.seconds:
            self._worst = stall
        now = time.monotonic()
        if now - self._logged >= self.every_s:
            log.warning("%s", self._worst.describe())
            self._logged, self._worst = now, None
