"""The whole loop: a worker serving the provisional model, a training run on the same world,
publish + announce, live adoption, and candidates made by the trained version."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from coldstream_data.music_world import generate_world
from coldstream_data.replay import replay
from encoders.artifacts import Registry
from streams.broker import EmbeddedBroker

from .test_worker import send, wait_for
from .workers import make_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_trained_version_is_published_adopted_live_and_serves(
        broker: EmbeddedBroker, private_registry: Registry, tmp_path: Path) -> None:
    registry = private_registry
    base = registry.current() or ""
    bs, p = broker.bootstrap, "trained"
    records = list(replay(generate_world("tiny"), end_at_ms=int(time.time() * 1000) - 60_000))
    songs = [r[2] for r in records if r[0] == "songs.new"]
    held_out = {s["song_id"] for s in songs[-3:]}
    # a third of the history gives the worker listeners enough to serve (the trainer reads
    # the whole world itself); all 6,000 plays took ~45 s of the test to apply
    plays = [r[2] for r in records
             if r[0] == "interactions" and r[2]["song_id"] not in held_out][::3]
    worker = make_worker(bs, registry.root, tmp_path, p).start()
    try:
        send(bs, f"{p}.songs.new", [s for s in songs if s["song_id"] not in held_out])
        send(bs, f"{p}.interactions", plays)
        worker.wait_metric("coldstream_events_total", len(plays), timeout=300,
                           topic=f"{p}.interactions.by_song", outcome="ok")
        train = subprocess.run(
            [sys.executable, "-m", "training.cli", "train", "--dataset", "world:tiny",
             "--registry", str(registry.root), "--bootstrap", bs,
             "--topic", f"{p}.model.versions", "--seeds", "1", "--epochs", "2",
             "--align-epochs", "1", "--run-dir", str(tmp_path / "run")],
            capture_output=True, text=True, timeout=600)
        assert train.returncode == 0, train.stderr[-2000:]
        trained = registry.current()
        assert trained and trained != base and registry.load(trained).parent == base
        delivery = registry.load(trained).delivery  # fitted on the held-out seed's validation
        assert delivery is not None and len(delivery.coef) == 5  # the prior is the fifth
        assert delivery.prior is not None and delivery.prior.text_dim == 384
        worker.wait_metric("coldstream_model_swaps_total", 1, result="ok", timeout=300)
        assert worker.metric("coldstream_model_info", version=trained) == 1.0

        send(bs, f"{p}.songs.new", [s for s in songs if s["song_id"] in held_out])
        cands = wait_for(bs, f"{p}.candidates", lambda c: c["song_id"] in held_out)
        assert {c["model_version"] for c in cands} == {trained}
        assert all(0.0 < c["score"] < 1.0 for c in cands)  # calibrated: a probability
        # each held-out song's predicted popularity was computed and observed
        assert worker.metric("coldstream_song_prior_count", version=trained) == len(held_out)
    finally:
        assert worker.stop() == 0
