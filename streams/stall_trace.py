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
import functools
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

log = logging.getLogger(__name__)

#: The checkout: frames of files under it (not in a virtualenv) are the project's own.
ROOT = str(Path(__file__).resolve().parents[1])

#: Files of the event loop's own waits and socket calls (the selector, asyncio's transports).
LOOP_IO = {"selectors.py", "selector_events.py"}

#: Innermost frames of a thread that waits (for work, I/O or a child) rather than runs.
IDLE = {("thread.py", "_worker"), ("selectors.py", "select"), ("threading.py", "wait"),
        ("subprocess.py", "_wait"), ("queues.py", "get"), ("socketserver.py", "serve_forever")}


def is_own(filename: str) -> bool:
    return filename.startswith(ROOT) and "site-packages" not in filename


@functools.lru_cache(maxsize=4096)
def shown_file(filename: str) -> tuple[str, str]:
    """(how a site names the file, its base name), computed once per file: every sample
    walks every thread's stack, so a Path per frame and sample costs the GIL."""
    path = Path(filename)
    shown = str(path.relative_to(ROOT)) if is_own(filename) else f"{path.parent.name}/{path.name}"
    return shown, path.name


def where(frame: FrameType | None) -> str:
    """``folder/file.py:function`` of a frame, the project's own files by their path in the
    checkout (line numbers left out, so that sites stay a small set, fit for a metric
    label)."""
    if frame is None:
        return "unknown"
    return f"{shown_file(frame.f_code.co_filename)[0]}:{frame.f_code.co_name}"


def base_name(frame: FrameType) -> str:
    return shown_file(frame.f_code.co_filename)[1]


def own_site(frame: FrameType | None) -> str:
    """The innermost frame of this project's code: what our code was doing, even when the
    innermost frame is a library's (faust, aiokafka, numpy)."""
    f = frame
    while f is not None:
        if is_own(f.f_code.co_filename):
            return where(f)
        f = f.f_back
    return "library:" + where(frame)


def in_loop_io(frame: FrameType | None) -> bool:
    """The loop thread inside asyncio's or the selector's own code: its wait for I/O, or a
    socket call it makes for a transport. Those calls let go of the GIL, so a loop found
    there while the probe is overdue waits to get it back (a blocking call of the loop's
    callbacks, such as a sleep or a lock, is innermost elsewhere and counts as theirs)."""
    return frame is not None and base_name(frame) in LOOP_IO


def loop_site(frame: FrameType | None) -> str:
    """What the loop thread runs: the innermost frame of the project's code, unless the
    event loop's own dispatch is reached first (work in a library's callback on the loop,
    such as a producer's compression): then ``library:<innermost frame>``."""
    f = frame
    while f is not None:
        if is_own(f.f_code.co_filename):
            return where(f)
        if (base_name(f), f.f_code.co_name) == ("base_events.py", "_run_once"):
            break
        f = f.f_back
    return "library:" + where(frame)


def is_idle(frame: FrameType | None) -> bool:
    return frame is None or (base_name(frame), frame.f_code.co_name) in IDLE


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
        samples = sum(self.innermost.values()) or sum(self.sites.values())
        parts = ", ".join(f"{s} {n}/{samples}" for s, n in self.sites.most_common(3))
        inner = ", ".join(s for s, _ in self.innermost.most_common(2))
        text = f"event loop stalled {self.seconds * 1e3:.0f} ms in {parts or 'unsampled'}"
        if inner:
            text += f" (innermost: {inner})"
        if self.gil_held:
            busy = ", ".join(f"{k}: {v}" for k, v in self.others.items())
            text += (f"; {self.gil_held} sample(s) only after the GIL was held elsewhere "
                     f"(threads running then: {busy or 'none'})")
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
        """One look at the loop thread. Found in asyncio's own I/O while the probe is overdue
        (streams.stall_trace.in_loop_io), it is not blocked by its own work: it waits for the
        GIL (or for a core). The sample then goes to the threads that were running meanwhile,
        as ``gil:<their site>`` (``gil:none running`` when none was: C code that has just let
        go of the GIL, or the machine)."""
        frames = sys._current_frames()
        loop = frames.get(self.loop_thread)
        stall.innermost[where(loop)] += 1
        me = threading.get_ident()
        others = {tid: f for tid, f in frames.items() if tid not in (me, self.loop_thread)}
        if in_loop_io(loop):
            running = {own_site(f) for f in others.values() if not is_idle(f)}
            for site in sorted(running) or ["none running"]:
                stall.sites[f"gil:{site}"] += 1
        else:
            stall.sites[loop_site(loop)] += 1
        if gil_held:
            stall.gil_held += 1
            if not stall.others:
                names = {t.ident: t.name for t in threading.enumerate()}
                stall.others = {names.get(tid, str(tid)): own_site(f)
                                for tid, f in others.items() if not is_idle(f)}


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
