"""Shared fixtures: one real provisional ONNX model and one real Tansu broker per session."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from encoders.artifacts import Registry
from encoders.provisional import ensure_model
from streams.broker import EmbeddedBroker

CACHE = Path(__file__).resolve().parent.parent / "build" / "test-models"


@pytest.fixture(scope="session")
def model_registry() -> Registry:
    """The provisional model, exported once and reused across sessions (build/ is ignored).
    ``make test`` runs two pytest workers: the first to get here builds it, the other waits."""
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    with open(CACHE.parent / "test-models.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        registry = Registry(CACHE)
        try:
            ensure_model(registry)
            registry.load(registry.current() or "")
        except Exception:
            shutil.rmtree(CACHE, ignore_errors=True)
            registry = Registry(CACHE)
            ensure_model(registry)
    return registry


@pytest.fixture
def private_registry(model_registry: Registry, tmp_path: Path) -> Registry:
    """A registry of this test's own holding the provisional model as CURRENT (tests that
    publish or corrupt versions must not touch the shared one)."""
    base = model_registry.current() or ""
    registry = Registry(tmp_path / "models")
    shutil.copytree(model_registry.path(base), registry.path(base))
    registry.promote(base)
    return registry


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with EmbeddedBroker(log_path=log) as b:
        yield b


@pytest.fixture(autouse=True)
def _reap_workers() -> Iterator[None]:
    """A failed test must not leave a worker running into the next one."""
    from streams.process import STARTED

    yield
    for worker in list(STARTED):
        if worker.process is not None and worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait(10)
        STARTED.remove(worker)


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing may download weights at run time."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    os.environ.pop("COLDSTREAM_KAFKA_BOOTSTRAP", None)
