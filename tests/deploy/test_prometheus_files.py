"""deploy/prometheus: configs and rules pass promtool, and alerts watch series that exist."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from streams.metrics import Metrics

from .conftest import PROMTOOL, run_promtool
from .helpers import ALERTS, DEPLOY, JOB, alert_rules, exported_series, series_names

CONFIGS = [DEPLOY / "prometheus" / "prometheus.yml", DEPLOY / "compose" / "prometheus.yml"]
REQUIRED_ALERTS = {
    "ColdstreamWorkerDown", "ColdstreamConsumerLagGrowing", "ColdstreamDLQSpike",
    "ColdstreamNewSongLatencyHigh", "ColdstreamNoCandidates", "ColdstreamModelVersionSkew",
    "ColdstreamCollectRateCollapsed",
}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.parent.name)
def test_promtool_check_config(config: Path) -> None:
    """Also checks the rule files each config references (compose reuses alerts.yml)."""
    out = run_promtool("check", "config", config)
    assert "SUCCESS" in out.stdout + out.stderr


def test_promtool_check_rules() -> None:
    run_promtool("check", "rules", ALERTS)


def test_alert_unit_tests() -> None:
    """promtool evaluates every alert over synthetic series: fires when it should, not before."""
    run_promtool("test", "rules", DEPLOY / "prometheus" / "tests" / "alerts_test.yml")


def test_every_alert_has_a_unit_test() -> None:
    tests = yaml.safe_load((DEPLOY / "prometheus" / "tests" / "alerts_test.yml").read_text())
    tested = {case["alertname"] for t in tests["tests"] for case in t.get("alert_rule_test", [])}
    assert {rule["alert"] for rule in alert_rules()} <= tested


def test_required_alerts_exist_with_runbook_fields() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert rules.keys() >= REQUIRED_ALERTS
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"page", "warning"}, name
        assert rule["annotations"].get("summary") and rule["annotations"].get("description"), name


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_refers_only_to_exported_series(rule: dict[str, str]) -> None:
    names = series_names(rule["expr"])
    assert names, f"no series found in {rule['expr']!r}"
    missing = names - exported_series()
    assert not missing, f"not exported by streams.metrics: {missing}"


def test_alerts_select_the_worker_job() -> None:
    for rule in alert_rules():
        if "up" in series_names(rule["expr"]):
            assert f'job="{JOB}"' in rule["expr"], rule["alert"]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.parent.name)
def test_configs_scrape_the_worker_job(config: Path) -> None:
    doc = yaml.safe_load(config.read_text())
    assert JOB in [job["job_name"] for job in doc["scrape_configs"]]


def test_exposition_passes_promtool_lint() -> None:
    """`promtool check metrics` lints names, units and help text of the worker's /metrics."""
    if PROMTOOL is None:
        pytest.skip("promtool not installed: run deploy/scripts/install-prometheus.sh")
    from .metrics_target import record_samples

    metrics = Metrics()
    record_samples(metrics)
    proc = subprocess.run([PROMTOOL, "check", "metrics"], input=generate_latest(metrics.registry),
                          capture_output=True, timeout=30, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()


def test_series_name_extraction() -> None:
    """The lexical extractor the name checks rely on."""
    expr = ('sum by (job, le) (rate(a_bucket{x="y{z}"}[5m] offset 1h)) > 1e3 '
            'unless on (job) b_total * 2 and absent(up{job="w"}) or vector(0)')
    assert series_names(expr) == {"a_bucket", "b_total", "up"}
