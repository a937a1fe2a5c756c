"""deploy/grafana: every panel query is valid PromQL over series the worker exports.

Grafana is not installable here, so the JSON is checked structurally and its PromQL is handed
to promtool (as recording rules) for a real parse.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from .conftest import run_promtool
from .helpers import (
    DASHBOARD,
    DEPLOY,
    JOB,
    dashboard,
    dashboard_exprs,
    exported_series,
    families,
    panels,
    series_names,
)

PROVISIONING = DEPLOY / "grafana" / "provisioning"
COMPOSE = DEPLOY / "compose" / "compose.yaml"


def test_every_dashboard_expression_parses_as_promql(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule; one file, one promtool run."""
    rules = [{"record": f"coldstream:dashboard_query_{i}", "expr": expr}
             for i, (_, expr) in enumerate(dashboard_exprs())]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = run_promtool("check", "rules", path)
    assert f"SUCCESS: {len(rules)} rules found" in out.stdout


@pytest.mark.parametrize("where,expr", dashboard_exprs(), ids=[w for w, _ in dashboard_exprs()])
def test_dashboard_expression_uses_exported_series(where: str, expr: str) -> None:
    names = series_names(expr)
    assert names, f"{where}: no series in {expr!r}"
    assert names <= exported_series(), f"{where}: not exported: {names - exported_series()}"
    assert f'job="{JOB}"' in expr, f"{where}: select the worker job"


def test_dashboard_covers_every_worker_metric() -> None:
    """A metric nobody can see on the dashboard is a metric nobody watches."""
    used = {name for _, expr in dashboard_exprs() for name in series_names(expr)}
    for family in families():
        if family.name == "coldstream_build":
            continue  # build info: for humans reading /metrics, not a panel
        assert any(name.startswith(family.name) for name in used), family.name


def test_dashboard_structure() -> None:
    dash = dashboard()
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    ds_uid = _datasource()["uid"]
    for panel in panels(dash):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == ds_uid, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == ds_uid, panel["title"]


@pytest.mark.parametrize("topic", [
    "coldstream_events_total", "coldstream_stage_seconds_bucket",
    "coldstream_new_song_to_candidates_seconds_bucket", "coldstream_consumer_lag",
    "coldstream_dlq_events_total", "coldstream_boundary_checks_total",
    "coldstream_candidates_per_song", "coldstream_model_info", "coldstream_vector_store_seconds",
    "coldstream_vector_store_errors_total",
])
def test_dashboard_has_the_asked_for_panels(topic: str) -> None:
    assert any(topic in expr for _, expr in dashboard_exprs()), topic


def test_new_song_latency_quantiles_shown() -> None:
    exprs = [e for _, e in dashboard_exprs() if "new_song_to_candidates_seconds_bucket" in e]
    for phi in ("0.5", "0.95", "0.99"):
        assert any(f"histogram_quantile({phi}," in e for e in exprs), phi


def _datasource() -> dict:
    doc = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    assert doc["apiVersion"] == 1
    [ds] = doc["datasources"]
    assert ds["type"] == "prometheus"
    return ds


def test_provisioning_matches_compose_mounts() -> None:
    """The provider's path is where compose mounts the dashboards; the datasource URL is set."""
    doc = yaml.safe_load((PROVISIONING / "dashboards" / "coldstream.yml").read_text())
    [provider] = doc["providers"]
    grafana = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"]
                  if v.startswith(".."))
    assert mounts["../grafana/dashboards"] == provider["options"]["path"]
    assert mounts["../grafana/provisioning"] == "/etc/grafana/provisioning"
    url_var = _datasource()["url"].strip("${}")
    assert grafana["environment"][url_var].startswith("http://prometheus:")
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"
