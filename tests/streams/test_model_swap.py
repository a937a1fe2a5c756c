"""A running worker adopts a new model version without a restart and refuses a broken one."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from encoders.artifacts import Manifest, Registry, write_manifest
from streams.broker import EmbeddedBroker
from streams.pipeline import Collections
from streams.stores import EdgeStore

from .test_worker import interaction, send, song, wait_for
from .workers import make_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def derive_version(registry: Registry, parent: str, version: str,
                   **sections: dict[str, Any]) -> None:
    """A new version with the same graphs; ``sections`` updates manifest parts by name
    (``user={"boundary_margin": 0.2}``: another user-model rule)."""
    with registry.staging(version) as folder:
        for f in registry.path(parent).iterdir():
            if f.name != "manifest.json":
                shutil.copy(f, folder / f.name)
        manifest = registry.load(parent)
        write_manifest(folder, manifest.model_copy(update={
            "version": version, "parent": parent, "created_at": int(time.time() * 1000),
            **{name: getattr(manifest, name).model_copy(update=update)
               for name, update in sections.items()}}))


def test_worker_swaps_versions_live_and_refuses_broken_ones(
        broker: EmbeddedBroker, private_registry: Registry, tmp_path: Path) -> None:
    registry = private_registry
    base = registry.current() or ""
    bs, p = broker.bootstrap, "swap"
    worker = make_worker(bs, registry.root, tmp_path, p).start()
    try:
        send(bs, f"{p}.songs.new", [song(f"jazz{i}", "jazz", i) for i in range(6)])
        send(bs, f"{p}.interactions", [interaction(f"u{u}", f"jazz{i}", "collect", i)
                                       for u in range(3) for i in range(4)])
        worker.wait_metric("coldstream_events_total", 12, topic=f"{p}.interactions.by_song",
                           outcome="ok")

        derive_version(registry, base, "v2-test", user={"boundary_margin": 0.2})
        registry.promote("v2-test")
        send(bs, f"{p}.model.versions", [{
            "schema_version": 1, "event_id": "mv-v2", "version": "v2-test",
            "uri": str(registry.path("v2-test")), "created_at": int(time.time() * 1000),
            "metrics": {}}])
        worker.wait_metric("coldstream_model_swaps_total", 1, result="ok", timeout=90)
        assert worker.metric("coldstream_model_info", version="v2-test") == 1.0

        send(bs, f"{p}.songs.new", [song("jazz-new", "jazz", 1)])
        cands = wait_for(bs, f"{p}.candidates", lambda c: c["song_id"] == "jazz-new")
        assert {c["model_version"] for c in cands} == {"v2-test"}

        # a version whose file was corrupted after promotion is refused; v2 keeps serving
        derive_version(registry, "v2-test", "v3-broken")
        with (registry.path("v3-broken") / "audio.onnx").open("ab") as fh:
            fh.write(b"garbage")
        (registry.root / "CURRENT").write_text("v3-broken\n")
        worker.wait_metric("coldstream_model_swaps_total", 1, result="refused", timeout=60)
        assert worker.metric("coldstream_model_info", version="v2-test") == 1.0
        send(bs, f"{p}.songs.new", [song("jazz-after", "jazz", 0)])
        after = wait_for(bs, f"{p}.candidates", lambda c: c["song_id"] == "jazz-after")
        assert {c["model_version"] for c in after} == {"v2-test"}
    finally:
        assert worker.stop() == 0

    store = EdgeStore(worker.data_dir / "qdrant")
    try:
        old, new = Collections.for_version(base), Collections.for_version("v2-test")
        assert store.count(new.songs) == store.count(old.songs) + 2 == 8
        assert store.count(new.users) == 3  # users were recomputed in the new space
        assert store.resolve("songs") == new.songs
    finally:
        store.close()
    assert json.loads((registry.path("v2-test") / "manifest.json").read_text())["parent"] == base
    assert isinstance(registry.load("v2-test"), Manifest)
