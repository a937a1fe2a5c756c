"""Run a real ``coldstream worker`` process and read its Prometheus metrics.

Used by the demo, the benchmarks and the integration tests: they all drive the same worker a
user would run, over its real interfaces (Kafka topics and /metrics).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from .broker import free_port

#: Every worker process started here and not yet stopped (tests reap leftovers).
STARTED: list[WorkerProcess] = []


@dataclass(eq=False)  # identity: STARTED tracks processes, not equal-looking configs
class WorkerProcess:
    env: dict[str, str]
    data_dir: Path
    metrics_port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    module: str = "streams.cli"  # a launcher module with the same CLI (the bench uses one)

    def start(self, ready_timeout: float = 90.0,
              on_spawn: Callable[[int], None] | None = None) -> WorkerProcess:
        """Start and wait until ready; ``on_spawn(pid)`` runs first (e.g. to put the process
        under a memory limit before it loads anything)."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", self.module, "worker"],
                                        env=self.env, stdout=log, stderr=subprocess.STDOUT)
        STARTED.append(self)
        if on_spawn is not None:
            on_spawn(self.process.pid)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited {self.process.returncode}:\n{self.log()}")
            if self.metric("coldstream_worker_ready") == 1.0:
                return self
            time.sleep(0.3)
        raise TimeoutError(f"worker not ready after {ready_timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def samples(self) -> dict[tuple[str, tuple], float]:
        try:
            body = urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).read().decode()
        except OSError:
            return {}
        out = {}
        for fam in text_string_to_metric_families(body):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def metric(self, name: str, **labels: str) -> float | None:
        return self.samples().get((name, tuple(sorted(labels.items()))))

    def wait_metric(self, name: str, at_least: float, timeout: float = 60.0,
                    **labels: str) -> float:
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.metric(name, **labels)
            if value is not None and value >= at_least:
                return value
            time.sleep(0.2)
        raise TimeoutError(f"{name}{labels} = {value}, wanted >= {at_least}\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)
            raise
        finally:
            if self in STARTED and self.process.poll() is not None:
                STARTED.remove(self)


#: Settings the caller's environment passes on to test and bench workers: run a test file
#: with ``COLDSTREAM_TABLE_STORE=rocksdb`` to run its workers on the RocksDB store (or a
#: soak with ``COLDSTREAM_GC_FREEZE=off`` to measure without the GC policy).
INHERITED = frozenset({"COLDSTREAM_TABLE_STORE", "COLDSTREAM_GC_FREEZE"})


def worker_env(bootstrap: str, models: Path, data_dir: Path, prefix: str,
               **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("COLDSTREAM_") or k in INHERITED}
    env.update({
        "COLDSTREAM_KAFKA_BOOTSTRAP": bootstrap, "COLDSTREAM_BROKER_COMPAT": "tansu",
        # Embedded-broker tuning, for a Tansu broker owned by the caller.
        "COLDSTREAM_SESSION_TIMEOUT_S": "6", "COLDSTREAM_HEARTBEAT_INTERVAL_S": "1",
        "COLDSTREAM_DATA_DIR": str(data_dir), "COLDSTREAM_MODEL_DIR": str(models),
        "COLDSTREAM_APP_ID": f"{prefix}-app", "COLDSTREAM_LAG_INTERVAL_S": "1",
        "COLDSTREAM_TOPIC_SONGS": f"{prefix}.songs.new",
        "COLDSTREAM_TOPIC_INTERACTIONS": f"{prefix}.interactions",
        "COLDSTREAM_TOPIC_INTERACTIONS_BY_SONG": f"{prefix}.interactions.by_song",
        "COLDSTREAM_TOPIC_USER_REFRESH": f"{prefix}.users.refresh",
        "COLDSTREAM_TOPIC_CANDIDATES_PROPOSED": f"{prefix}.candidates.proposed",
        "COLDSTREAM_TOPIC_CANDIDATES": f"{prefix}.candidates",
        "COLDSTREAM_TOPIC_MODEL_VERSIONS": f"{prefix}.model.versions",
        "COLDSTREAM_TOPIC_DLQ": f"{prefix}.dlq",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
    })
    env.update(extra)
    return env


def make_worker(bootstrap: str, models: Path, tmp: Path, prefix: str,
                metrics_port: int | None = None, **extra: str) -> WorkerProcess:
    port = metrics_port or free_port()
    data = tmp / "data"
    env = worker_env(bootstrap, models, data, prefix, COLDSTREAM_METRICS_PORT=str(port), **extra)
    return WorkerProcess(env=env, data_dir=data, metrics_port=port, log_path=tmp / "worker.log")
