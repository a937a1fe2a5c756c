"""An agent's input buffer filling up is counted per topic, and loses nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from encoders.artifacts import Registry
from streams.broker import EmbeddedBroker

from .test_worker import interaction, send
from .workers import make_worker

pytestmark = pytest.mark.integration


def test_a_full_input_buffer_is_counted_by_topic_and_every_event_still_handled(
        broker: EmbeddedBroker, model_registry: Registry, tmp_path: Path) -> None:
    bs, p = broker.bootstrap, "bufull"
    # A buffer of 2 records (Faust's own setting, from the environment; its high-water mark
    # is 1), and one interaction per batch: records arrive while the agent is busy.
    worker = make_worker(bs, model_registry.root, tmp_path, p, STREAM_BUFFER_MAXSIZE="2",
                         COLDSTREAM_BATCH_MAX_EVENTS="1").start()
    try:
        events = [interaction(f"u{i % 40}", f"s{i % 7}", "play", i) for i in range(300)]
        send(bs, f"{p}.interactions", [{**e, "event_id": f"e{i}"} for i, e in enumerate(events)])
        worker.wait_metric("coldstream_events_total", 300, topic=f"{p}.interactions",
                           outcome="ok", timeout=90)
        full = worker.metric("coldstream_topic_buffer_full_total", topic=f"{p}.interactions")
        quiet = worker.metric("coldstream_topic_buffer_full_total", topic=f"{p}.songs.new")
        forwards = worker.metric("coldstream_stage_seconds_count", stage="forward")
    finally:
        assert worker.stop() == 0
    assert full is not None and full >= 1
    assert quiet is None  # no songs were sent: nothing filled there
    assert forwards is not None and forwards >= 1  # each batch's forwards are timed
