"""Shared readers for the deploy files, and the names the worker really exports.

The source of truth is code, not a list kept by hand: series names come from
``streams.metrics.Metrics()``'s registry and setting names from ``streams.settings.Settings``.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.metrics_core import Metric

from streams.metrics import Metrics
from streams.settings import Settings
from streams.supervisor import SupervisorMetrics

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
#: The scrape job name every config, alert and panel agrees on.
JOB = "coldstream-worker"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "coldstream.json"

#: Sample-name suffixes prometheus_client exposes per metric type.
_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
}
#: Series Prometheus itself attaches to every target.
SCRAPE_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})


def families() -> list[Metric]:
    """The worker's series and those of the supervisor that `coldstream up` runs around it."""
    return [*Metrics().registry.collect(), *SupervisorMetrics().registry.collect()]


@cache
def exported_series() -> frozenset[str]:
    """Every sample name a worker's /metrics can carry, even before a labelled child exists."""
    names = {f.name + suffix for f in families() for suffix in _SUFFIXES[f.type]}
    return frozenset(names | SCRAPE_SERIES)


# --- PromQL -----------------------------------------------------------------------------------
_KEYWORDS = frozenset({"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
                       "group_right", "offset", "bool", "inf", "nan"})


def series_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (a lexical pass: promtool checks the grammar).

    Strings, label matchers, ranges and grouping clauses are blanked out first; what remains
    as a bare identifier not followed by ``(`` is a metric name.
    """
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\boffset\s+-?\w+", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.$])([A-Za-z_:][\w:]*)(\s*\()?", s):
        name, call = m.groups()
        if not call and name.lower() not in _KEYWORDS:
            names.add(name)
    # {__name__="x"} selects by name too
    names.update(re.findall(r'__name__\s*=\s*"([^"]+)"', expr))
    return names


# --- Alerts -----------------------------------------------------------------------------------
def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


# --- Grafana ----------------------------------------------------------------------------------
#: What Grafana substitutes for its built-in variables, with values PromQL accepts.
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h",
                    "__range_s": "3600", "__interval_ms": "60000"}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    out = []
    for panel in dash["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def substitute(expr: str, dash: dict[str, Any]) -> str:
    """Replace Grafana variables as Grafana would for 'All'; unknown ones fail loudly."""
    values = dict(GRAFANA_BUILTINS)
    for var in dash.get("templating", {}).get("list", []):
        values[var["name"]] = var.get("allValue") or ".*"

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise KeyError(f"unknown Grafana variable ${name} in {expr!r}")
        return values[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", repl, expr)


def dashboard_exprs() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and query variable, variables substituted."""
    dash = dashboard()
    out = []
    for panel in panels(dash):
        for target in panel.get("targets", []):
            where = f"panel {panel['id']} {panel['title']!r} target {target['refId']}"
            out.append((where, substitute(target["expr"], dash)))
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query.strip())
            assert m, f"variable {var['name']}: only label_values(selector, label) is checked"
            out.append((f"variable ${var['name']}", substitute(m.group(1), dash)))
    return out


# --- Settings ---------------------------------------------------------------------------------
def setting_env_names() -> frozenset[str]:
    prefix = Settings.model_config.get("env_prefix", "")
    return frozenset(f"{prefix}{name}".upper() for name in Settings.model_fields)


SETTING_RE = re.compile(r"COLDSTREAM_[A-Z0-9_]*[A-Z0-9]")
_SETTING_OR_GLOB_RE = re.compile(r"(COLDSTREAM_[A-Z0-9_]*[A-Z0-9])(_\*)?")


def unknown_settings(text: str) -> set[str]:
    """COLDSTREAM_* names in ``text`` that are no setting; a ``_*`` glob must prefix one."""
    known = setting_env_names()
    unknown = set()
    for m in _SETTING_OR_GLOB_RE.finditer(text):
        name, glob = m.groups()
        ok = any(k.startswith(name + "_") for k in known) if glob else name in known
        if not ok:
            unknown.add(name + (glob or ""))
    return unknown


def repo_path(path: Path) -> str:
    return str(path.relative_to(REPO))
