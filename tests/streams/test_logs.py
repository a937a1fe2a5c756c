"""Repeated library warnings are folded into one line per window, with a count."""

from __future__ import annotations

import logging

from streams.logs import RepeatFolder


def record(name: str, msg: str, level: int = logging.ERROR, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_repeats_within_the_window_are_dropped_then_counted() -> None:
    now = [0.0]
    folder = RepeatFolder(window_s=10.0, clock=lambda: now[0])
    first = record("aiokafka.conn", "Unable connect to node with id %s: %s", logging.ERROR)
    assert folder.filter(first)
    passed = 0
    for _ in range(140):
        now[0] += 0.007
        passed += folder.filter(record("aiokafka.conn", "Unable connect to node with id %s: %s"))
    assert passed == 0
    now[0] = 11.0
    again = record("aiokafka.conn", "Unable connect to node with id %s: %s")
    assert folder.filter(again)
    assert "(+140 like it in the last 11 s)" in again.msg


def test_our_own_lines_info_lines_and_distinct_messages_pass() -> None:
    folder = RepeatFolder(window_s=10.0, clock=lambda: 0.0)
    for _ in range(3):
        assert folder.filter(record("streams.agents", "song %s -> %d candidates"))
        assert folder.filter(record("aiokafka.conn", "connected", logging.INFO))
    assert folder.filter(record("aiokafka.conn", "one failure"))
    assert folder.filter(record("aiokafka.conn", "another failure"))
    assert folder.filter(record("faust.transport", "one failure"))
