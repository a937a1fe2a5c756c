"""A third-party client end to end: librdkafka (confluent-kafka) producers with every codec,
a real worker, and a librdkafka consumer group reading candidates like a downstream ranker.

Real parts throughout: the embedded Tansu broker, one worker process for all codecs, the
confluent-kafka wheel's librdkafka, the JSON Schemas a ranker validates against.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import jsonschema
import orjson
import pytest

from bench.codecs import read_wire
from encoders.artifacts import Registry
from streams.broker import EmbeddedBroker, ensure_topics
from streams.settings import Settings

from .test_worker import interaction, song
from .workers import make_worker

ck = pytest.importorskip("confluent_kafka")

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
SCHEMA = json.loads((ROOT / "deploy" / "schemas" / "candidates.coldstart.schema.json")
                    .read_text())


def producer_for(bs: str, codec: str) -> ck.Producer:
    """A librdkafka producer as a user's service would configure it."""
    return ck.Producer({"bootstrap.servers": bs, "compression.type": codec, "linger.ms": 5,
                        "acks": "all", "enable.idempotence": False})


def produce(producer: ck.Producer, topic: str, key_field: str, payloads: list[dict]) -> None:
    errors: list[str] = []
    for p in payloads:
        producer.produce(topic, orjson.dumps(p), p[key_field].encode(),
                         on_delivery=lambda err, _msg: err and errors.append(str(err)))
    assert producer.flush(30) == 0 and not errors, errors


def first_candidate(consumer: ck.Consumer, song_id: str, timeout: float = 60.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = consumer.poll(0.05)
        if msg is not None and not msg.error() and orjson.loads(msg.value())["song_id"] == song_id:
            return time.monotonic()
    raise TimeoutError(f"no candidate for {song_id} within {timeout:.0f} s")


def test_librdkafka_producers_with_every_codec_reach_a_librdkafka_ranker(
        broker: EmbeddedBroker, model_registry: Registry, tmp_path: Path,
        record_property: pytest.RecordProperty) -> None:
    bs, p = broker.bootstrap, "rdk"
    topics = {"songs": f"{p}.songs.new", "interactions": f"{p}.interactions",
              "candidates": f"{p}.candidates"}
    worker = make_worker(bs, model_registry.root, tmp_path, p).start()
    # a watcher of our own (no group: assigned every partition at its end) times each new
    # song's first candidate
    watcher = ck.Consumer({"bootstrap.servers": bs, "group.id": f"{p}-watch",
                           "fetch.wait.max.ms": 10, "enable.auto.commit": False})
    watcher.assign([ck.TopicPartition(topics["candidates"], i, ck.OFFSET_END)
                    for i in range(4)])
    watcher.poll(0.5)
    latency_ms: dict[str, float] = {}
    jazz_listeners: set[str] = set()
    try:
        for n, codec in enumerate(CODECS, start=1):
            producer = producer_for(bs, codec)
            songs = [song(f"{codec}-{g}{i}", g, i) for g in ("jazz", "metal") for i in range(4)]
            produce(producer, topics["songs"], "song_id", songs)
            listeners = {g: [f"{codec}-{g[0]}{u}" for u in range(3)] for g in ("jazz", "metal")}
            jazz_listeners.update(listeners["jazz"])
            plays = [interaction(user, f"{codec}-{g}{i}", "collect", i)
                     for g, users in listeners.items() for user in users for i in range(4)]
            produce(producer, topics["interactions"], "user_id", plays)
            worker.wait_metric("coldstream_events_total", 8 * n, topic=topics["songs"],
                               outcome="ok")
            worker.wait_metric("coldstream_events_total", 24 * n, topic=f"{p}.interactions.by_song",
                               outcome="ok")
            sent = time.monotonic()
            produce(producer, topics["songs"], "song_id", [song(f"{codec}-new", "jazz", 1)])
            try:
                arrived = first_candidate(watcher, f"{codec}-new")
            except TimeoutError:
                raise AssertionError(f"{worker.samples()}\n{worker.log()}") from None
            latency_ms[codec] = round((arrived - sent) * 1000)
        assert worker.metric("coldstream_events_total", topic=topics["songs"],
                             outcome="dlq") is None  # every codec decoded, none dead-lettered
        assert worker.metric("coldstream_unreadable_batches_total", topic=topics["songs"],
                             cause="codec") is None
    finally:
        watcher.close()
        assert worker.stop() == 0, worker.log()
    # the worker's own output is compressed with COLDSTREAM_KAFKA_COMPRESSION (default zstd)
    wire = asyncio.run(read_wire(bs, topics["candidates"]))
    assert set(wire) == {Settings().kafka_compression} == {"zstd"}, wire
    record_property("first_candidate_ms", latency_ms)
    print(f"\nfirst candidate (ms) per producer codec: {latency_ms}")

    # a downstream ranker: a librdkafka consumer group reading the worker's compressed output
    ranker = ck.Consumer({"bootstrap.servers": bs, "group.id": f"{p}-ranker",
                          "auto.offset.reset": "earliest", "enable.auto.commit": False,
                          "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000})
    ranker.subscribe([topics["candidates"]])
    validator = jsonschema.Draft202012Validator(SCHEMA)
    reached: dict[str, set[str]] = {}
    new = {f"{c}-new" for c in CODECS}
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and not new <= reached.keys():
            msg = ranker.poll(0.5)
            if msg is None or msg.error():
                continue
            value = orjson.loads(msg.value())
            validator.validate(value)
            assert msg.key().decode() == value["user_id"], (msg.key(), value)
            reached.setdefault(value["song_id"], set()).add(value["user_id"])
        ranker.commit(asynchronous=False)
        committed = ranker.committed(ranker.assignment(), timeout=10)
    finally:
        ranker.close()
    assert new <= reached.keys(), reached.keys()
    for song_id in new:  # the new songs are jazz: their candidates are jazz listeners
        assert reached[song_id] <= jazz_listeners, (song_id, reached[song_id] - jazz_listeners)
    assert sum(tp.offset for tp in committed if tp.offset > 0) > 0  # the group committed


def kcat(bs: str, env: dict[str, str], *args: str, data: str | None = None,
         ) -> subprocess.CompletedProcess:
    return subprocess.run(["kcat", "-b", bs, "-m", "5", *args], input=data, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("kcat") is None,
                    reason="kcat not installed: deploy/scripts/install-kcat.sh")
def test_kcat_needs_a_newer_librdkafka_than_debian_ships(broker: EmbeddedBroker,
                                                         tmp_path: Path) -> None:
    """Debian's kcat 1.7.1 links librdkafka 2.0.2, whose ApiVersions request fails against
    the embedded broker; the same binary on the wheel's librdkafka produces and consumes lz4."""
    bs, topic = broker.bootstrap, "kcat.check"
    asyncio.run(ensure_topics(bs, [topic], 1))
    stock = kcat(bs, dict(os.environ), "-L", "-t", topic)
    if stock.returncode == 0:  # a newer Debian librdkafka: nothing to work around any more
        assert topic in stock.stdout
    else:
        assert "ApiVersionRequest failed" in stock.stderr, stock.stderr

    libs = Path(ck.__file__).resolve().parent.parent / "confluent_kafka.libs"
    bundled = next(libs.glob("librdkafka*.so*"))
    (tmp_path / "librdkafka.so.1").symlink_to(bundled)
    env = {**os.environ, "LD_LIBRARY_PATH": str(tmp_path)}
    version = kcat(bs, env, "-V").stdout
    assert f"librdkafka {ck.libversion()[0]}" in version, version
    sent = kcat(bs, env, "-P", "-t", topic, "-z", "lz4", "-K:", data="u1:one\nu2:two\n")
    assert sent.returncode == 0, sent.stderr
    got = kcat(bs, env, "-C", "-t", topic, "-o", "beginning", "-e", "-K:")
    assert got.returncode == 0 and got.stdout.split() == ["u1:one", "u2:two"], got
