"""Fixtures for the deployment tests: promtool, a real Prometheus server, a metrics target.

``prometheus_server(targets)`` starts Debian's ``prometheus`` binary on loopback with a temp
storage dir and a 1 s scrape interval. Targets are plain ``host:port`` strings, so a test can
point it at ``metrics_target`` (a subprocess serving ``streams.metrics.Metrics``) today and at a
running ``coldstream worker`` (its COLDSTREAM_METRICS_PORT) tomorrow.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from .helpers import JOB, REPO

STARTUP_TIMEOUT_S = 30.0

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
INSTALL_HINT = "run deploy/scripts/install-prometheus.sh (Debian package `prometheus`)"


def free_port() -> int:
    """An unused loopback port (the OS picks; a tiny race with other processes is accepted)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run promtool, failing the test with its output when it exits non-zero."""
    if PROMTOOL is None:
        pytest.skip(f"promtool not installed: {INSTALL_HINT}")
    proc = subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, f"promtool {' '.join(map(str, args))}:\n{proc.stdout}{proc.stderr}"
    return proc


@dataclass
class PrometheusServer:
    """A running Prometheus and the few HTTP API calls the tests need."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    config: Path

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; returns the vector's samples (``metric`` labels and ``value``)."""
        data = self.api("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def wait_for(self, expr: str, timeout: float = STARTUP_TIMEOUT_S,
                 until: Callable[[list[dict[str, Any]]], bool] = bool) -> list[dict[str, Any]]:
        """Poll ``expr`` until ``until(result)`` holds; bounded, with the server log on failure."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(expr)
            if until(result):
                return result
            time.sleep(0.25)
        pytest.fail(f"{expr!r} not satisfied after {timeout}s: {result}\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def prometheus_config(targets: Sequence[str], rule_files: Sequence[Path] = (),
                      interval: str = "1s") -> dict[str, Any]:
    """The scrape config the fixture writes: one job named like production's."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval,
                   "scrape_timeout": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": list(targets)}]}],
    }


@pytest.fixture(scope="module")
def prometheus_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., PrometheusServer]]:
    """Factory: ``prometheus_server(["127.0.0.1:9464"], rule_files=[ALERTS])``; stops them all.

    Module-scoped: Prometheus hands new targets to its scraper in 5 s batches, so the first
    scrape costs ~6 s; a module shares one server rather than paying that per test.
    """
    tmp_path = tmp_path_factory.mktemp("prometheus")
    if PROMETHEUS is None:
        pytest.skip(f"prometheus server not installed: {INSTALL_HINT}")
    started: list[PrometheusServer] = []

    def start(targets: Sequence[str], *, rule_files: Sequence[Path] = (),
              interval: str = "1s") -> PrometheusServer:
        home = tmp_path / f"prometheus-{len(started)}"
        home.mkdir()
        config = home / "prometheus.yml"
        config.write_text(yaml.safe_dump(prometheus_config(targets, rule_files, interval)))
        port = free_port()
        log = home / "prometheus.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={home / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=home)
        server = PrometheusServer(f"http://127.0.0.1:{port}", process, log, config)
        started.append(server)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited with {process.returncode}:\n{server.log_tail()}")
            try:
                with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return server
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus not ready in {STARTUP_TIMEOUT_S}s:\n{server.log_tail()}")
            time.sleep(0.1)

    yield start
    for server in started:
        _stop(server.process)


@dataclass
class MetricsTarget:
    """A subprocess serving ``streams.metrics.Metrics`` with the samples in metrics_target.py."""

    address: str
    process: subprocess.Popen[str] = field(repr=False)


@pytest.fixture(scope="module")
def metrics_target() -> Iterator[MetricsTarget]:
    """Start tests/deploy/metrics_target.py on a free loopback port; wait until it serves."""
    port = free_port()
    script = Path(__file__).with_name("metrics_target.py")
    process = subprocess.Popen([sys.executable, str(script), str(port)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=REPO)
    assert process.stdout is not None
    line = process.stdout.readline()  # blocks until the endpoint is bound (or the script died)
    if not line.startswith("serving"):
        err = process.stderr.read() if process.stderr else ""
        _stop(process)
        pytest.fail(f"metrics target did not start: {line}{err}")
    try:
        yield MetricsTarget(f"127.0.0.1:{port}", process)
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[Any]) -> None:
    """Close stdin, terminate, then kill: this one process only, never a process group."""
    if process.stdin:
        process.stdin.close()
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    for stream in (process.stdout, process.stderr):
        if stream:
            stream.close()
