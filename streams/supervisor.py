"""``coldstream up``: keep one worker process running, and the embedded broker outside it.

A worker can die on its own (a library crash in table recovery, an out-of-memory kill); with
nobody to restart it the pipeline simply stops. Kubernetes and compose restart their worker
containers; the all-in-one mode needs the same, so this process owns the embedded broker (its
in-memory log must outlive the worker) and restarts the worker with capped exponential
backoff, counting each restart and logging its cause in one line.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

log = logging.getLogger(__name__)

#: Log lines that say why a worker stopped (the last one seen is reported as the cause).
CAUSE_MARKERS = ("CRITICAL", "ERROR", "Error:", "Exception", "Traceback", "Killed")


@dataclass
class RestartPolicy:
    """Delay before restart ``n`` (0-based): ``first_s * 2**n`` capped at ``max_s``; a worker
    that stayed up ``healthy_after_s`` starts the sequence again."""

    first_s: float = 1.0
    max_s: float = 30.0
    healthy_after_s: float = 60.0

    def delay(self, attempt: int) -> float:
        return min(self.max_s, self.first_s * 2 ** min(attempt, 30))


class SupervisorMetrics:
    """Restarts and liveness of the supervised worker, on the supervisor's own registry
    (a restarted worker's counters start again from zero; these do not)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.restarts = Counter("coldstream_worker_restarts", "Worker processes restarted by "
                                "the supervisor, by how the previous one ended.",
                                ["reason"], registry=self.registry)
        self.up = Gauge("coldstream_supervised_worker_up",
                        "1 while the supervised worker process runs.", registry=self.registry)

    def serve(self, host: str, port: int) -> int:
        if not port:
            return 0
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return server.server_port


def exit_reason(code: int) -> str:
    """``exit:1`` or ``signal:SIGKILL``: a bounded label for how a process ended."""
    if code < 0:
        try:
            return f"signal:{signal.Signals(-code).name}"
        except ValueError:
            return f"signal:{-code}"
    return f"exit:{code}"


@dataclass
class Supervisor:
    """Run ``command`` until it exits cleanly or we are asked to stop; restart it otherwise."""

    command: Sequence[str]
    env: dict[str, str]
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    metrics: SupervisorMetrics = field(default_factory=SupervisorMetrics)
    output: IO[str] = field(default_factory=lambda: sys.stdout)
    sleep: Callable[[float], bool] | None = None  # tests: a stop-aware wait
    restarts: int = 0
    process: subprocess.Popen[str] | None = field(default=None, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)

    def stop(self) -> None:
        """Ask the worker to drain and exit (SIGTERM), and do not restart it."""
        self._stopping.set()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def run(self) -> int:
        """Supervise until a clean exit or :meth:`stop`; returns the last exit code."""
        attempt = 0
        while True:
            started = time.monotonic()
            code, cause = self._run_once()
            lived = time.monotonic() - started
            if self._stopping.is_set() or code == 0:
                return code
            if lived >= self.policy.healthy_after_s:
                attempt = 0
            delay = self.policy.delay(attempt)
            attempt += 1
            self.restarts += 1
            self.metrics.restarts.labels(reason=exit_reason(code)).inc()
            log.error("worker ended (%s) after %.0f s: %s; restart %d in %.0f s",
                      exit_reason(code), lived, cause or "no error line logged",
                      self.restarts, delay)
            if self._wait(delay):
                return code

    def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless stopped meanwhile; True when stopped."""
        if self.sleep is not None:
            return self.sleep(seconds)
        return self._stopping.wait(seconds)

    def _run_once(self) -> tuple[int, str]:
        """One worker process, its output passed through; returns (exit code, last cause)."""
        self.process = subprocess.Popen(
            list(self.command), env=self.env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
            start_new_session=True,  # Ctrl-C reaches us only; we forward one SIGTERM
            preexec_fn=die_with_parent)
        self.metrics.up.set(1)
        if self._stopping.is_set():  # stop() raced with the start
            self.process.send_signal(signal.SIGTERM)
        causes: deque[str] = deque(maxlen=1)
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.write(line)
            if any(marker in line for marker in CAUSE_MARKERS):
                causes.append(line.strip())
        code = self.process.wait()
        self.metrics.up.set(0)
        self.output.flush()
        return code, causes[0][:500] if causes else ""


def die_with_parent() -> None:
    """Linux: the worker gets SIGTERM if the supervisor itself is killed (no orphan worker
    left talking to a broker that died with us)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def worker_command() -> list[str]:
    return [sys.executable, "-m", "streams.cli", "worker"]


def worker_env(bootstrap: str, tansu: bool, session_timeout_s: float,
               heartbeat_s: float) -> dict[str, str]:
    """The supervised worker's environment: our settings plus the broker we own, with the
    embedded-broker tuning it would have chosen itself."""
    env = dict(os.environ)
    env["COLDSTREAM_KAFKA_BOOTSTRAP"] = bootstrap
    if tansu:
        env.setdefault("COLDSTREAM_BROKER_COMPAT", "tansu")
    env.setdefault("COLDSTREAM_SESSION_TIMEOUT_S", str(session_timeout_s))
    env.setdefault("COLDSTREAM_HEARTBEAT_INTERVAL_S", str(heartbeat_s))
    return env


def forward_signals(supervisor: Supervisor) -> None:
    """Ctrl-C and SIGTERM stop the worker (it drains and commits) and then us."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: supervisor.stop())
