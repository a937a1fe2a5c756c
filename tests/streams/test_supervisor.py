"""`coldstream up` restarts a worker that dies: real child processes, real /metrics."""

from __future__ import annotations

import io
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.supervisor import RestartPolicy, Supervisor, SupervisorMetrics, exit_reason


def child(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_restart_delays_double_up_to_the_cap() -> None:
    policy = RestartPolicy(first_s=1.0, max_s=30.0)
    assert [policy.delay(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]


def test_exit_reasons_are_bounded_labels() -> None:
    assert exit_reason(1) == "exit:1"
    assert exit_reason(-signal.SIGKILL) == "signal:SIGKILL"


def test_a_crashing_worker_is_restarted_with_backoff_counted_and_explained(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Crashes twice (exit 1 after an error line), then runs cleanly: two restarts."""
    runs = tmp_path / "runs"
    code = (f"import pathlib, sys; p = pathlib.Path({str(runs)!r}); "
            "n = len(p.read_text()) if p.exists() else 0; p.write_text('x' * (n + 1)); "
            "print('ERROR faust.tables.recovery: Crashed reason=ConsistencyError(10 > 7)'); "
            "sys.exit(1 if n < 2 else 0)")
    waits: list[float] = []
    out = io.StringIO()
    sup = Supervisor(child(code), env={}, output=out,
                     sleep=lambda s: waits.append(s) or False)  # type: ignore[func-returns-value]
    with caplog.at_level("ERROR", logger="streams.supervisor"):
        assert sup.run() == 0
    assert runs.read_text() == "xxx"
    assert sup.restarts == 2 and waits == [1.0, 2.0]
    assert sup.metrics.restarts.labels(reason="exit:1")._value.get() == 2
    causes = [r.getMessage() for r in caplog.records]
    assert len(causes) == 2 and all("ConsistencyError(10 > 7)" in c for c in causes)
    assert "exit:1" in causes[0] and "restart 1 in 1 s" in causes[0]
    assert out.getvalue().count("Crashed reason") == 3  # the worker's output passes through


def test_a_killed_worker_is_restarted_and_stop_ends_supervision(tmp_path: Path) -> None:
    """kill -9 of the worker: restarted; then stop() drains it (SIGTERM) and ends the loop."""
    sup = Supervisor(child("import time; print('ready', flush=True); time.sleep(60)"),
                     env={}, output=io.StringIO(), policy=RestartPolicy(first_s=0.05))
    port = sup.metrics.serve("127.0.0.1", free_port())
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(sup.run()))
    runner.start()
    try:
        first = wait_for_process(sup)
        first.send_signal(signal.SIGKILL)
        second = wait_for_process(sup, other_than=first.pid)
        assert second.poll() is None
    finally:
        sup.stop()
        runner.join(30)
    assert result == [-signal.SIGTERM]
    samples = scrape(port)
    assert samples[("coldstream_worker_restarts_total", (("reason", "signal:SIGKILL"),))] == 1
    assert samples[("coldstream_supervised_worker_up", ())] == 0


def free_port() -> int:
    from streams.broker import free_port as pick

    return pick()


def wait_for_process(sup: Supervisor, other_than: int | None = None,
                     timeout: float = 30.0):  # noqa: ANN201 - Popen
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = sup.process
        if proc is not None and proc.pid != other_than and proc.poll() is None:
            return proc
        time.sleep(0.05)
    raise TimeoutError("no worker process started")


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(body.decode()) for s in fam.samples}


def test_metrics_live_on_their_own_registry() -> None:
    a, b = SupervisorMetrics(), SupervisorMetrics()
    a.restarts.labels(reason="exit:1").inc()
    assert b.restarts.labels(reason="exit:1")._value.get() == 0


@pytest.mark.integration
def test_coldstream_up_restarts_a_killed_worker_on_the_same_broker(
        model_registry, tmp_path: Path) -> None:  # noqa: ANN001
    """The real all-in-one mode: kill -9 its worker; a new one serves the same embedded broker
    (whose in-memory log outlived the worker) and the restart is counted."""
    import os
    import subprocess

    from streams.process import WorkerProcess

    from .test_worker import send, song

    kafka, metrics, sup_metrics = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDSTREAM_")}
    env.update(COLDSTREAM_EMBEDDED_KAFKA_PORT=str(kafka), COLDSTREAM_METRICS_PORT=str(metrics),
               COLDSTREAM_SUPERVISOR_METRICS_PORT=str(sup_metrics),
               COLDSTREAM_DATA_DIR=str(tmp_path / "data"),
               COLDSTREAM_MODEL_DIR=str(model_registry.root), COLDSTREAM_LAG_INTERVAL_S="1")
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen([sys.executable, "-m", "streams.cli", "up"], env=env, stdout=log,
                          stderr=subprocess.STDOUT)
    view = WorkerProcess(env=env, data_dir=tmp_path / "data", metrics_port=metrics,
                         log_path=tmp_path / "up.log")
    bootstrap = f"127.0.0.1:{kafka}"
    try:
        view.wait_metric("coldstream_worker_ready", 1, timeout=120)
        send(bootstrap, "songs.new", [song("jazz0", "jazz", 0)])
        view.wait_metric("coldstream_songs_indexed_total", 1, timeout=60)
        workers = subprocess.run(["pgrep", "-P", str(up.pid), "-f", "streams.cli worker"],
                                 capture_output=True, text=True).stdout.split()
        assert len(workers) == 1
        os.kill(int(workers[0]), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not scrape(sup_metrics).get(
                ("coldstream_worker_restarts_total", (("reason", "signal:SIGKILL"),))):
            time.sleep(0.2)
        assert scrape(sup_metrics)[("coldstream_worker_restarts_total",
                                    (("reason", "signal:SIGKILL"),))] == 1
        send(bootstrap, "songs.new", [song("jazz1", "jazz", 1)])  # same broker, new worker
        view.wait_metric("coldstream_worker_ready", 1, timeout=120)
        view.wait_metric("coldstream_songs_indexed_total", 1, timeout=60)
        # the whole log: view.log() keeps only its last 4,000 characters, and the new worker's
        # start-up lines can push the supervisor's line out of them (a fresh-clone CI failure)
        assert "worker ended (signal:SIGKILL)" in (tmp_path / "up.log").read_text(
            errors="replace")
    finally:
        up.send_signal(signal.SIGTERM)
        assert up.wait(60) == 0
        log.close()
