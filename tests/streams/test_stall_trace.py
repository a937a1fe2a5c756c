"""The event-loop probe and the stall tracer on a real asyncio loop: a stall is measured, and
attributed to the function that blocked the loop, whether it ran Python code, slept, or held
the GIL in C."""

from __future__ import annotations

import asyncio
import logging
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable

import pytest

from streams.loop_probe import probe_loop
from streams.metrics import Metrics
from streams.stall_trace import Stall, StallLog, StallTracer, own_site

BLOCK_S = 0.3


def hold_the_loop_in_python(seconds: float = BLOCK_S) -> int:
    end, n = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        n += 1
    return n


def sleep_on_the_loop(seconds: float = BLOCK_S) -> None:
    time.sleep(seconds)  # releases the GIL: the loop is blocked, the process is not


def wait_in_a_library(seconds: float = BLOCK_S) -> None:
    threading.Event().wait(seconds)  # threading.py's Python code is the innermost frame


def hold_the_gil_in_c(seconds: float = BLOCK_S) -> None:
    """A builtin that loops in C without ever releasing the GIL, sized to take ``seconds``;
    then a short sleep, still on the loop, in which the watchdog gets the GIL."""
    n = int(seconds / c_seconds_per_item())
    sum(range(n))
    time.sleep(0.05)


def c_seconds_per_item(items: int = 200_000, tries: int = 5) -> float:
    """How long ``sum(range(...))`` takes per item. The fastest of a few tries: on a busy
    machine (``make test`` runs two pytest workers) a try the scheduler interrupted reads slow,
    and sizing by it made the hold in C shorter than ``seconds``."""
    fastest = float("inf")
    for _ in range(tries):
        t = time.perf_counter()
        sum(range(items))
        fastest = min(fastest, time.perf_counter() - t)
    return max(fastest, 1e-9) / items


def stalls_while(block: Callable[[], object], threshold_s: float = 0.1
                 ) -> tuple[list[Stall], Metrics]:
    """Run the probe with a tracer on a fresh loop, block the loop once, collect reports."""
    metrics, stalls = Metrics(), []

    async def scenario() -> None:
        probe = asyncio.create_task(
            probe_loop(metrics, tracer=StallTracer(stalls.append, threshold_s)))
        await asyncio.sleep(0.1)
        block()
        await asyncio.sleep(0.2 + BLOCK_S)  # ticks again after it: the stall is reported
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe

    asyncio.run(scenario())
    return stalls, metrics


def the_stall(stalls: list[Stall], site_function: str) -> Stall:
    """The one stall of at least 0.8 x BLOCK_S (others would be the machine's noise)."""
    long = [s for s in stalls if s.seconds >= 0.8 * BLOCK_S]
    assert len(long) == 1, [s.describe() for s in stalls]
    assert long[0].site == f"tests/streams/test_stall_trace.py:{site_function}", long[0].describe()
    assert long[0].seconds < 5 * BLOCK_S
    return long[0]


def test_python_code_on_the_loop_is_named_with_its_length() -> None:
    stalls, metrics = stalls_while(hold_the_loop_in_python)
    stall = the_stall(stalls, "hold_the_loop_in_python")
    assert sum(stall.sites.values()) >= 5  # sampled all along, not once
    assert stall.innermost.most_common(1)[0][0].endswith(":hold_the_loop_in_python")
    # the probe's own figures saw the same stall
    lag = metrics.registry.get_sample_value("coldstream_event_loop_lag_seconds_count")
    assert lag and lag > 0
    assert (metrics.registry.get_sample_value("coldstream_event_loop_lag_seconds_sum") or 0
            ) >= 0.8 * BLOCK_S


def test_a_sleep_on_the_loop_is_named_though_the_gil_is_free() -> None:
    stall = the_stall(stalls_while(sleep_on_the_loop)[0], "sleep_on_the_loop")
    assert stall.gil_held == 0


def test_the_site_is_our_caller_when_a_library_frame_is_innermost() -> None:
    stall = the_stall(stalls_while(wait_in_a_library)[0], "wait_in_a_library")
    assert "/threading.py:" in stall.innermost.most_common(1)[0][0], \
        stall.innermost


def test_a_c_call_holding_the_gil_is_marked_as_such() -> None:
    stall = the_stall(stalls_while(hold_the_gil_in_c)[0], "hold_the_gil_in_c")
    assert stall.gil_held >= 1  # the watchdog itself could not run until the call ended
    assert "GIL was held elsewhere" in stall.describe()


def test_work_a_library_does_on_the_loop_is_named_as_the_library() -> None:
    """A callback with no project frame (here a C function called by the loop's dispatch,
    as a producer's compression would be) is the library's, not a wait for the GIL."""
    def block() -> None:
        asyncio.get_running_loop().call_soon(time.sleep, BLOCK_S)

    stalls, _ = stalls_while(block)
    long = [s for s in stalls if s.seconds >= 0.8 * BLOCK_S]
    assert [s.site for s in long] == ["library:asyncio/events.py:_run"], \
        [s.describe() for s in stalls]


def busy_in_python(stop: threading.Event) -> None:
    while not stop.is_set():
        pass


def test_a_loop_waiting_in_its_selector_is_charged_to_the_threads_running_meanwhile() -> None:
    """The loop thread's frame is its selector: it is not running its own code but waiting
    for the GIL, so the sample names the thread that runs (an idle thread is left out)."""
    stop, idle = threading.Event(), threading.Event()
    a, b = socket.socketpair()
    sel = selectors.DefaultSelector()
    sel.register(a, selectors.EVENT_READ)
    loop = threading.Thread(target=sel.select, args=(30,), daemon=True)
    threads = [loop, threading.Thread(target=busy_in_python, args=(stop,), name="busy"),
               threading.Thread(target=idle.wait, name="idle")]
    for t in threads:
        t.start()
    try:
        time.sleep(0.1)
        tracer = StallTracer(lambda _: None)
        tracer.loop_thread = loop.ident or 0
        stall = Stall()
        tracer._sample(stall, gil_held=True)
        # the test process may run threads of its own (pytest-xdist's reader): look at ours
        idle_site = own_site(sys._current_frames()[threads[2].ident or 0])
        assert stall.sites["gil:tests/streams/test_stall_trace.py:busy_in_python"] == 1
        assert f"gil:{idle_site}" not in stall.sites, stall.sites
        assert stall.innermost.most_common(1)[0][0].endswith("selectors.py:select")
        assert {name: site for name, site in stall.others.items()
                if name in ("busy", "idle")} == {
            "busy": "tests/streams/test_stall_trace.py:busy_in_python"}
    finally:
        stop.set()
        idle.set()
        b.send(b"x")
        for t in threads:
            t.join(timeout=5)
        sel.close()
        a.close()
        b.close()


def test_an_unblocked_loop_reports_nothing() -> None:
    stalls, _ = stalls_while(lambda: None, threshold_s=1.0)
    assert stalls == []


def test_stall_log_counts_every_stall_and_logs_the_longest_once_per_window(
        caplog: pytest.LogCaptureFixture) -> None:
    counted: list[str] = []
    report = StallLog(lambda s: counted.append(s.site), every_s=3600)
    first, longer, later = Stall(0.2), Stall(0.5), Stall(0.3)
    first.sites["streams/a.py:f"] = 2
    longer.sites["streams/b.py:g"] = 3
    later.sites["streams/c.py:h"] = 1
    with caplog.at_level(logging.WARNING, logger="streams.stall_trace"):
        for stall in (first, longer, later):
            report(stall)
    assert counted == ["streams/a.py:f", "streams/b.py:g", "streams/c.py:h"]
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["event loop stalled 200 ms in streams/a.py:f 2/2"]
    report.every_s = 0.0  # the window is over: the longest stall since the last line
    with caplog.at_level(logging.WARNING, logger="streams.stall_trace"):
        report(Stall(0.1))
    assert caplog.records[-1].getMessage().startswith("event loop stalled 500 ms in "
                                                      "streams/b.py:g 3/3")
    with caplog.at_level(logging.WARNING, logger="streams.stall_trace"):
        report(Stall(0.05))  # a new window starts from nothing, not from the longest ever
    assert caplog.records[-1].getMessage().startswith("event loop stalled 50 ms in unsampled")
