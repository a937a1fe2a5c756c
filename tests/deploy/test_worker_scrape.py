"""A real Prometheus scrapes a real ``coldstream worker`` (embedded broker, embedded store).

The end-to-end version of test_prometheus_integration: same ``prometheus_server`` fixture, but
the target is the worker process a user would run, so it proves the worker binds its metrics
endpoint from COLDSTREAM_METRICS_* and exports the series the alerts and dashboard query.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import PrometheusServer, free_port
from .helpers import ALERTS, JOB, dashboard_exprs

pytestmark = pytest.mark.integration
READY_TIMEOUT_S = 90.0


def worker_command() -> list[str]:
    script = Path(sys.executable).with_name("coldstream")
    if script.exists():
        return [str(script), "worker"]
    return [sys.executable, "-c", "from streams.cli import main; main()", "worker"]


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One worker on the embedded broker and store; yields its metrics address."""
    home = tmp_path_factory.mktemp("worker")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDSTREAM_")}
    env.update(COLDSTREAM_DATA_DIR=str(home / "data"), COLDSTREAM_METRICS_HOST="127.0.0.1",
               COLDSTREAM_METRICS_PORT=str(port),
               COLDSTREAM_STALL_TRACE_MS="1")  # every late wake-up is traced: the series exists
    log = home / "worker.log"
    with log.open("wb") as out:
        # Own session: if SIGTERM does not stop it, its group (it and its broker) is killed.
        process = subprocess.Popen(worker_command(), env=env, cwd=home, stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        print(f"worker log tail:\n{tail}")


@pytest.fixture(scope="module")
def scraped_worker(prometheus_server: Callable[..., PrometheusServer],
                   worker: str) -> PrometheusServer:
    server = prometheus_server([worker], rule_files=[ALERTS])
    server.wait_for(f'up{{job="{JOB}"}} == 1', timeout=READY_TIMEOUT_S)
    return server


def test_worker_is_scraped_and_reports_its_model(scraped_worker: PrometheusServer) -> None:
    [info] = scraped_worker.wait_for("coldstream_model_info")
    assert info["metric"]["version"], "the worker names the model version it serves"
    assert info["metric"]["job"] == JOB
    [build] = scraped_worker.wait_for("coldstream_build_info")
    assert build["metric"]["version"]


def test_worker_becomes_ready(scraped_worker: PrometheusServer) -> None:
    scraped_worker.wait_for("coldstream_worker_ready == 1", timeout=READY_TIMEOUT_S)


def test_dashboard_queries_run_against_a_worker(scraped_worker: PrometheusServer) -> None:
    """Every panel query executes on the real engine against real worker series."""
    started = time.monotonic()
    for where, expr in dashboard_exprs():
        try:
            scraped_worker.query(expr)
        except Exception as exc:  # HTTP 400 carries the engine's error
            pytest.fail(f"{where}: {expr!r}: {exc}")
    assert time.monotonic() - started < 30, "queries should be instant on one worker"


def test_worker_traces_its_event_loop_stalls_by_site(scraped_worker: PrometheusServer) -> None:
    """The stall tracer runs in the worker (here at a 1 ms threshold, so that the ordinary
    lateness of a busy start-up is traced) and its series reach Prometheus, by site."""
    traced = scraped_worker.wait_for("coldstream_event_loop_stalls_traced_total > 0",
                                     timeout=READY_TIMEOUT_S)
    assert all(row["metric"]["site"] for row in traced)
    assert scraped_worker.wait_for("coldstream_event_loop_stalls_traced_seconds_total > 0")
