"""A real Prometheus scrapes a process serving streams.metrics and answers PromQL about it.

Runs for real here (Debian's prometheus binary on loopback). The target is metrics_target.py;
swapping in a running ``coldstream worker`` only changes the address handed to
``prometheus_server``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import pytest

from .conftest import MetricsTarget, PrometheusServer
from .helpers import ALERTS, JOB, alert_rules, dashboard_exprs
from .metrics_target import EXPECTED

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def scraped(prometheus_server: Callable[..., PrometheusServer],
            metrics_target: MetricsTarget) -> PrometheusServer:
    """Prometheus with the production alert rules, after the first successful scrape."""
    server = prometheus_server([metrics_target.address], rule_files=[ALERTS])
    server.wait_for(f'up{{job="{JOB}"}} == 1')
    return server


def test_scraped_values_match_what_the_target_recorded(scraped: PrometheusServer) -> None:
    for selector, expected in EXPECTED.items():
        [sample] = scraped.query(selector)
        assert float(sample["value"][1]) == expected, selector
        assert sample["metric"]["job"] == JOB


def test_dashboard_queries_return_data(scraped: PrometheusServer) -> None:
    """Each panel query runs on the real engine and finds series (rates need two scrapes)."""
    for where, expr in dashboard_exprs():
        result = scraped.wait_for(expr, timeout=15)
        assert result, where


def test_quantiles_from_real_histograms(scraped: PrometheusServer) -> None:
    """p50 of the recorded new-song latencies (0.12, 0.2, 0.9 s) lands in the 0.15-0.25 bucket."""
    expr = ("histogram_quantile(0.5, sum by (le) "
            "(coldstream_new_song_to_candidates_seconds_bucket))")
    [sample] = scraped.wait_for(expr)
    assert 0.15 <= float(sample["value"][1]) <= 0.25


def test_alert_rules_load_and_evaluate(scraped: PrometheusServer) -> None:
    """The server loads alerts.yml and evaluates every rule without error."""
    names = {rule["alert"] for rule in alert_rules()}

    def rules() -> list[dict]:
        groups = scraped.api("/api/v1/rules")["groups"]
        return [rule for group in groups for rule in group["rules"]]

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        loaded = rules()
        if {r["name"] for r in loaded} == names and all(r["health"] == "ok" for r in loaded):
            break
        time.sleep(0.25)
    else:
        pytest.fail(f"rules not all healthy: {[(r['name'], r['health']) for r in rules()]}")
    # A healthy single worker with one model version: nothing pages at once.
    firing = [r["name"] for r in loaded if r["state"] == "firing"]
    assert firing == []


def test_model_version_series_is_countable(scraped: PrometheusServer) -> None:
    """What ColdstreamModelVersionSkew counts: one version across the (single) worker."""
    [sample] = scraped.query("count(count by (version) (coldstream_model_info))")
    assert not math.isnan(float(sample["value"][1]))
    assert float(sample["value"][1]) == 1
