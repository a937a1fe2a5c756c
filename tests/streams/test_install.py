"""The serving install: no torch in the worker, one clear line without a model, pinned clients.

Real processes: the worker CLI with torch made unimportable (an install without ``[train]``),
and with an installed-version lookup that reports an untested aiokafka.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from encoders.artifacts import Registry
from streams.broker import EmbeddedBroker
from streams.versions import OVERRIDE, PROVEN, UntestedClientVersions, check_client_versions

from .workers import make_worker

ROOT = Path(__file__).resolve().parents[2]
TRAIN_ONLY = ("torch", "sentence_transformers", "sklearn", "matplotlib", "onnxscript")
LAUNCHER = "tests.streams.launcher"


def run_cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", LAUNCHER, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_importing_the_worker_and_its_cli_imports_no_training_library() -> None:
    code = ("import sys, streams.worker, streams.cli, coldstream.cli\n"  # the whole command
            f"print(sorted(m for m in {TRAIN_ONLY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.integration
def test_a_worker_without_torch_serves_a_published_model_and_names_the_fix_without_one(
        broker: EmbeddedBroker, model_registry: Registry, tmp_path: Path) -> None:
    block = {"LAUNCH_BLOCK_MODULES": ",".join(TRAIN_ONLY)}
    for sub in ("served", "empty"):
        (tmp_path / sub).mkdir()
    worker = make_worker(broker.bootstrap, model_registry.root, tmp_path / "served", "notorch",
                         **block)
    worker.module = LAUNCHER
    worker.start()  # ready: tables recovered, agents consuming, the ONNX model loaded
    assert worker.stop() == 0, worker.log()

    empty = make_worker(broker.bootstrap, tmp_path / "no-models", tmp_path / "empty", "nomodel",
                        **block)
    out = run_cli(empty.env, "worker")
    assert out.returncode == 1, out.stdout + out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("coldstream: no published model in"), out.stderr
    assert "pip install 'coldstream[train]'" in last and "Traceback" not in out.stderr


def test_untested_client_versions_are_refused_with_the_versions_and_the_override() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDSTREAM_")}
    env["LAUNCH_FAKE_VERSIONS"] = "aiokafka=0.15.0"
    out = run_cli(env, "worker", timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    message = out.stderr.strip().splitlines()[-1]
    assert "aiokafka 0.15.0 (proven: 0.14.0)" in message and OVERRIDE in message, out.stderr
    assert "faust-streaming" not in message  # only what differs is named


def test_the_version_check_names_every_mismatch_and_the_override_lets_it_pass() -> None:
    def lookup(name: str) -> str:
        return {"faust-streaming": "0.16.0", "mode-streaming": "0.7.1"}.get(name, "0.14.0")

    with pytest.raises(UntestedClientVersions, match=r"faust-streaming 0\.16\.0 \(proven"):
        check_client_versions(False, lookup)
    assert check_client_versions(True, lookup) == {"faust-streaming": "0.16.0"}
    assert check_client_versions(False) == {}  # this environment has the proven versions
    assert PROVEN == {"faust-streaming": "0.15.3", "mode-streaming": "0.7.1",
                      "aiokafka": "0.14.0"}
