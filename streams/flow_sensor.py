"""Counts how often an agent's input buffer fills up.

Faust hands every topic's records to the agents from one fetch loop. When an agent's buffer
reaches 80 % of ``stream_buffer_maxsize``, fetching its partition pauses; when a record that
was already fetched finds the buffer full, the loop waits for that agent, and the input of
every other agent waits with it. A topic whose count climbs is the one holding the others
back (``coldstream_topic_buffer_full_total``, docs/operations.md).
"""

from __future__ import annotations

from typing import Any

import faust

from .metrics import Metrics


class BufferFullSensor(faust.Sensor):
    """Faust calls :meth:`on_topic_buffer_full` at both moments above; the metric counts
    both, by topic."""

    def __init__(self, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics = metrics

    def on_topic_buffer_full(self, tp: Any) -> None:
        self.metrics.topic_buffer_full.labels(topic=tp.topic).inc()


def watch_buffers(app: faust.App, metrics: Metrics) -> BufferFullSensor:
    sensor = BufferFullSensor(metrics)
    app.sensors.add(sensor)
    return sensor
