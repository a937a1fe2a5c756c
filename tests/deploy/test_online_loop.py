"""A short closed loop with both A/B arms on the real broker and worker, scraped by a real
Prometheus: the online series exist, and the worker's attribution agrees with the listeners."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from encoders.artifacts import Registry
from streams.process import WorkerProcess
from streams.simulate import SimConfig, run_simulation

from .conftest import PrometheusServer, free_port
from .helpers import ALERTS, JOB

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY = SimConfig(n_songs=240, n_users=80, n_interactions=3000, n_genres=6, new_songs=12,
                 days=2, budget_per_day=0)  # no budget: delivered by the songs agent


def test_closed_loop_both_arms_scraped_by_prometheus(
        prometheus_server: Callable[..., PrometheusServer], model_registry: Registry,
        tmp_path: Path) -> None:
    port = free_port()
    server = prometheus_server([f"127.0.0.1:{port}"], rule_files=[ALERTS])
    scraped: dict[str, list] = {}

    def scrape(worker: WorkerProcess) -> None:
        for expr in (f'sum by (arm) (coldstream_deliveries_total{{job="{JOB}"}})',
                     f'sum by (arm, action) (coldstream_attributed_total{{job="{JOB}"}})',
                     f'sum by (arm) (coldstream_time_to_first_play_seconds_count{{job="{JOB}"}})'):
            scraped[expr] = server.wait_for(expr, timeout=30)
        # wait for a scrape after the loop's last write, so totals are final
        final = sum(v for (n, _), v in worker.samples().items()
                    if n == "coldstream_attributed_total")
        server.wait_for(f'sum(coldstream_attributed_total{{job="{JOB}"}}) == {final}',
                        timeout=30)

    doc = run_simulation(TINY, model_registry.root, tmp_path / "sim", metrics_port=port,
                         before_stop=scrape)
    assert (tmp_path / "sim" / "online.json").exists()
    deliveries = scraped[f'sum by (arm) (coldstream_deliveries_total{{job="{JOB}"}})']
    assert {s["metric"]["arm"] for s in deliveries} == {"A", "B"}
    assert all(float(s["value"][1]) > 0 for s in deliveries)
    assert scraped[f'sum by (arm, action) (coldstream_attributed_total{{job="{JOB}"}})']
    for arm, mine in doc["arms"].items():
        assert mine["deliveries"] > 0 and mine["exposures"] > 0
        worker = doc["worker"][arm]
        assert worker["deliveries"] == mine["deliveries"]  # every delivery read by the ranker
        # each exposure got one answer; the worker attributed each exactly once
        answered = sum(worker[a] for a in ("play", "complete", "collect", "skip"))
        assert answered == mine["exposures"]
        assert worker["collect"] == round(mine["collect_rate"] * mine["exposures"])
    assert doc["lift_users_reached"] == doc["lift_users_reached"]  # a number, not NaN
