"""Test-side access to the worker-process helper."""

from streams.process import WorkerProcess, make_worker, worker_env

__all__ = ["WorkerProcess", "make_worker", "worker_env"]
