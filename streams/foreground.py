"""Event work in flight, so that background work (a model swap) can give way to it.

The worker is one process with one GIL. While a swap ran on a loaded worker, every stage of
every event ran 2-4x slower: the swap's thread took the GIL between the events' steps. So the
event handlers mark their blocking calls (work and audio threads) and a new song's whole
handling as foreground, and the swap's thread waits, before each store call, until none is
in flight, for at most ``max_wait_s`` (a swap still ends under a load that never pauses).

While background work runs, the GIL's switch interval is also shortened (Python's default is
5 ms): the event loop releases the GIL at every socket call and then waits up to one interval
to get it back from a busy thread (the "convoy effect"), many times per event.

Same run of the swap soak (``bench/swap_soak.py``: 20k songs, 200 interactions/s, 2 new
songs/s): new songs sent during a swap, p50 / p99, 548 / 2,479 ms when the swap never waited,
219 / 456 ms when it gave way for up to 200 ms (110 / 241 ms before the swap); the swap took
29 s and 47 s. A 50 ms bound gave 287-467 / 657-1,437 ms in two runs.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Foreground:
    """A count of foreground calls in flight; :meth:`give_way` waits for it to reach zero."""

    def __init__(self, max_wait_s: float = 0.2,
                 on_wait: Callable[[float], None] | None = None,
                 switch_interval_s: float | None = None) -> None:
        self.max_wait_s = max_wait_s
        self.switch_interval_s = switch_interval_s  # during background work; None: unchanged
        self.on_wait = on_wait  # told each wait's seconds (the worker counts them)
        self._lock = threading.Lock()
        self._in_flight = 0
        self._idle = threading.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @contextmanager
    def active(self) -> Iterator[None]:
        """Mark the enclosed call (and its time in the executor's queue) as foreground."""
        with self._lock:
            self._in_flight += 1
            self._idle.clear()
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1
                if not self._in_flight:
                    self._idle.set()

    @contextmanager
    def background(self) -> Iterator[None]:
        """Background work runs in the enclosed block: the GIL changes hands sooner."""
        before = sys.getswitchinterval()
        if self.switch_interval_s:
            sys.setswitchinterval(self.switch_interval_s)
        try:
            yield
        finally:
            sys.setswitchinterval(before)

    def give_way(self) -> float:
        """Background threads: wait until no foreground call is in flight, at most
        ``max_wait_s``; returns the seconds waited. Costs ~1 us when nothing is in flight."""
        if self._idle.is_set() or self.max_wait_s <= 0:
            return 0.0
        start = time.perf_counter()
        self._idle.wait(self.max_wait_s)
        waited = time.perf_counter() - start
        if self.on_wait is not None:
            self.on_wait(waited)
        return waited
