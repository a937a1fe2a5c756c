"""The broker going away for 30 s: the same worker process reconnects and resumes by itself.

Real parts only: Tansu storing to S3 (moto's S3 server on loopback, in its memory), a real
worker process, Qdrant Edge. The broker is killed (SIGKILL: a crash, no goodbye) and started
again on the same port and storage while the worker keeps running; nothing is lost and nothing
is indexed twice.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from encoders.artifacts import Registry
from streams.broker import EmbeddedBroker, free_port, wait_for_port
from streams.ids import song_point_id
from streams.pipeline import Collections
from streams.stores import EdgeStore

from .test_reliability import drained
from .test_worker import read_all, send, song
from .workers import make_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]
OUTAGE_S = 30.0


@pytest.fixture
def s3_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """moto's S3 server on 127.0.0.1 with a ``tansu`` bucket; yields Tansu's AWS_* variables."""
    boto3 = pytest.importorskip("boto3")
    moto = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    if not Path(moto).exists():
        pytest.skip("moto[server] is not installed (pip install -e '.[dev]')")
    port = free_port()
    proc = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=(tmp_path / "moto.log").open("ab"), stderr=subprocess.STDOUT)
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT": f"http://127.0.0.1:{port}",
               "AWS_ALLOW_HTTP": "true"}
        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT"], region_name="us-east-1",
                     aws_access_key_id="test", aws_secret_access_key="test",
                     ).create_bucket(Bucket="tansu")
        yield env
    finally:
        proc.terminate()
        proc.wait(10)


def test_worker_rides_out_a_30s_broker_outage_and_loses_nothing(
        s3_env: dict[str, str], model_registry: Registry, tmp_path: Path) -> None:
    p = "outage"
    broker = EmbeddedBroker(storage="s3://tansu/", env=s3_env,
                            log_path=tmp_path / "tansu.log").start()
    bs = broker.bootstrap
    worker = make_worker(bs, model_registry.root, tmp_path, p).start()
    before = [song(f"jazz{i}", "jazz", i) for i in range(8)]
    after = [song(f"metal{i}", "metal", i) for i in range(8)]
    try:
        send(bs, f"{p}.songs.new", before)
        worker.wait_metric("coldstream_songs_indexed_total", len(before), timeout=90)
        drained(worker, [f"{p}.songs.new"], settle=1.0)  # offsets committed before the outage

        assert broker.process is not None
        broker.process.kill()  # the broker crashes; the worker keeps running, disconnected
        broker.process.wait(10)
        down = time.monotonic()
        time.sleep(OUTAGE_S)
        assert worker.process is not None and worker.process.poll() is None, worker.log()
        broker.start()  # same port, same S3 storage
        outage = time.monotonic() - down

        send(bs, f"{p}.songs.new", after)
        worker.wait_metric("coldstream_songs_indexed_total", len(before) + len(after),
                           timeout=120)
        recovered = time.monotonic() - down - outage
        drained(worker, [f"{p}.songs.new"], settle=1.0)
        indexed = worker.metric("coldstream_songs_indexed_total")
        # committed offsets survived the restart: nothing from before the outage was replayed
        assert indexed == len(before) + len(after), worker.log()
        # the log survived the restart: a fresh reader sees every song, once
        assert len(read_all(bs, f"{p}.songs.new", idle=1.0)) == len(before) + len(after)
        print(f"\noutage {outage:.1f}s, broker back -> all new songs indexed in "
              f"{recovered:.1f}s, songs_indexed_total={indexed}")
    finally:
        rc = worker.stop()
        broker.stop()
    assert rc == 0, worker.log()  # the same process, never restarted, exits cleanly
    # aiokafka repeats its connection errors ~140 times a second; the worker folds repeats
    # into one line per 10 s per message, so a 30 s outage stays readable
    client_lines = [ln for ln in worker.log_path.read_text().splitlines() if " aiokafka" in ln]
    assert any("like it in the last" in ln for ln in client_lines)
    assert len(client_lines) < 100, len(client_lines)

    store = EdgeStore(worker.data_dir / "qdrant")
    try:
        songs = Collections.for_version(model_registry.current() or "").songs
        ids = [song_point_id(s["song_id"]) for s in before + after]
        assert store.count(songs) == len(ids)  # every song, once
        assert len(store.retrieve(songs, ids)) == len(ids)
    finally:
        store.close()
