"""End to end on real parts: Tansu broker, Qdrant Edge, ONNX model, worker process, aiokafka."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from encoders.artifacts import Registry
from streams.broker import EmbeddedBroker
from streams.client import consume, json_records, produce
from streams.events import CandidateEvent, DeadLetter
from streams.forwards import read_forwards
from streams.ids import user_point_id
from streams.pipeline import Collections
from streams.proposals import read_proposals
from streams.stores import EdgeStore

from .workers import make_worker

pytestmark = pytest.mark.integration
NOW = int(time.time() * 1000)
GENRES = {
    "jazz": ["smooth jazz piano trio, brushed drums", "bebop saxophone solo, walking bass"],
    "metal": ["heavy metal guitar riffs, double kick", "thrash metal shredding, screaming"],
}


def song(song_id: str, genre: str, i: int, released: int = NOW - 10**8) -> dict:
    return {"schema_version": 1, "event_id": f"song-{song_id}", "song_id": song_id,
            "title": f"{genre.title()} number {i}", "artist": f"The {genre} band",
            "tags": [genre], "description": GENRES[genre][i % 2], "released_at": released}


def interaction(user: str, song_id: str, action: str, n: int) -> dict:
    return {"schema_version": 1, "event_id": f"i-{user}-{song_id}-{action}", "user_id": user,
            "song_id": song_id, "action": action, "ts": NOW - 10**6 + n}


def send(bootstrap: str, topic: str, payloads: list[dict]) -> None:
    asyncio.run(produce(bootstrap, topic, json_records(topic.split(".", 1)[1], payloads)))


def read_all(bootstrap: str, topic: str, idle: float = 3.0) -> list[bytes]:
    async def run() -> list[bytes]:
        return [r.value async for r in consume(bootstrap, topic, idle_timeout=idle)]

    return asyncio.run(run())


def wait_for(bootstrap: str, topic: str, predicate, timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [orjson.loads(v) for v in read_all(bootstrap, topic, idle=1.0)]
        found = [f for f in found if predicate(f)]
        if found:
            return found
    raise TimeoutError(f"nothing matched on {topic} within {timeout}s")


def partitions_of(bootstrap: str, topic: str) -> list[tuple[int, dict, bytes]]:
    async def run() -> list[tuple[int, dict, bytes]]:
        return [(r.partition, dict(r.headers), r.value)
                async for r in consume(bootstrap, topic, idle_timeout=2)]

    return asyncio.run(run())


def user_points(data_dir: Path, version: str) -> dict[str, tuple[np.ndarray, float]]:
    store = EdgeStore(data_dir / "qdrant")
    try:
        cols = Collections.for_version(version)
        ids = [user_point_id(f"u{i}") for i in range(6)]
        return {h.payload["user_id"]: (h.vector, h.payload["boundary"])
                for h in store.retrieve(cols.users, ids)}
    finally:
        store.close()


def test_songs_and_interactions_become_candidates_and_survive_restart(
        broker: EmbeddedBroker, model_registry: Registry, tmp_path: Path) -> None:
    bs, p = broker.bootstrap, "e2e"
    worker = make_worker(bs, model_registry.root, tmp_path, p).start()
    version = model_registry.current() or ""
    try:
        catalogue = [song(f"{g}{i}", g, i) for g in GENRES for i in range(5)]
        send(bs, f"{p}.songs.new", catalogue)
        worker.wait_metric("coldstream_events_total", 10, topic=f"{p}.songs.new", outcome="ok")
        plays = [interaction(f"u{u}", f"{'jazz' if u < 3 else 'metal'}{i}",
                             "collect" if i % 2 else "complete", i)
                 for u in range(6) for i in range(5)]
        send(bs, f"{p}.interactions", plays)
        worker.wait_metric("coldstream_events_total", 30, outcome="ok",
                           topic=f"{p}.interactions.by_song")

        # a malformed event goes to the DLQ with its reason; the next valid one still works
        asyncio.run(produce(bs, f"{p}.songs.new", [(b"bad", b'{"schema_version": 1, "tit')]))
        send(bs, f"{p}.songs.new", [song("newjazz", "jazz", 0, released=NOW)])
        cands = wait_for(bs, f"{p}.candidates", lambda c: c["song_id"] == "newjazz")
        dead = wait_for(bs, f"{p}.dlq", lambda d: True)
        worker.wait_metric("coldstream_events_total", len(cands), outcome="delivered",
                           topic=f"{p}.candidates.proposed")
        time.sleep(1.0)
        assert worker.metric("coldstream_events_total", outcome="delivered",
                             topic=f"{p}.candidates.proposed") == len(cands)
    finally:
        rc = worker.stop()
    assert rc == 0, worker.log()  # SIGTERM drains and exits cleanly

    # the song's candidates were proposed packed, one record per partition, each on the
    # partition a send keyed by its user picks (where its delivery record is kept), and each
    # counted once as delivered
    delivered = {orjson.loads(v)["candidate_id"]: partition
                 for partition, _h, v in partitions_of(bs, f"{p}.candidates")}
    proposals = partitions_of(bs, f"{p}.candidates.proposed")
    proposed = {c.candidate_id: partition for partition, headers, value in proposals
                for c in read_proposals(value, headers, 256_000)}
    assert proposed == delivered
    assert sorted(partition for partition, _h, _v in proposals) == sorted(
        set(delivered.values()))

    events = [CandidateEvent.model_validate(c) for c in cands]
    users = {c.user_id for c in events}
    assert users and users <= {"u0", "u1", "u2"}, users  # only the jazz listeners
    for c in events:
        assert c.model_version == version and c.path in {"i2i2u", "u2i", "both"}
        assert c.explanation and c.boundary is not None
        assert c.path == "u2i" or set(c.seed_song_ids) <= {f"jazz{i}" for i in range(5)}
    letter = DeadLetter.model_validate(dead[0])
    assert letter.error_kind == "decode" and "invalid JSON" in letter.error_message
    assert base64.b64decode(letter.original_b64) == b'{"schema_version": 1, "tit'
    assert letter.source_topic == f"{p}.songs.new"

    before = user_points(worker.data_dir, version)
    assert set(before) == {f"u{i}" for i in range(6)}
    jazz_vec, jazz_boundary = before["u0"]
    assert np.linalg.norm(jazz_vec) == pytest.approx(1.0, abs=1e-4)
    assert 0.0 < jazz_boundary < 1.0

    # restart: resumes from committed offsets with table state intact
    worker.start()
    try:
        send(bs, f"{p}.interactions", [interaction("u0", "jazz1", "collect", 1)])  # duplicate
        worker.wait_metric("coldstream_events_total", 1, topic=f"{p}.interactions",
                           outcome="duplicate")
        send(bs, f"{p}.interactions", [interaction("u0", f"metal{i}", "collect", 10 + i)
                                       for i in range(3)])
        worker.wait_metric("coldstream_events_total", 3, topic=f"{p}.interactions",
                           outcome="ok")
        time.sleep(1.5)
        assert worker.metric("coldstream_events_total", topic=f"{p}.songs.new",
                             outcome="ok") is None  # nothing replayed
    finally:
        assert worker.stop() == 0
    after = user_points(worker.data_dir, version)
    moved = float(after["u0"][0] @ jazz_vec)
    assert moved < 0.999, "new interactions must move the user's vector"
    assert after["u3"][0] @ before["u3"][0] == pytest.approx(1.0, abs=1e-5)  # others untouched


def test_interactions_before_their_songs_still_build_user_vectors(
        broker: EmbeddedBroker, model_registry: Registry, tmp_path: Path) -> None:
    """songs.new and interactions are different topics: a listener may arrive first."""
    bs, p = broker.bootstrap, "late"
    worker = make_worker(bs, model_registry.root, tmp_path, p).start()
    version = model_registry.current() or ""
    try:
        send(bs, f"{p}.interactions", [interaction("u0", f"jazz{i}", "collect", i)
                                       for i in range(8)])
        worker.wait_metric("coldstream_events_total", 8, topic=f"{p}.interactions.by_song",
                           outcome="ok")

        # the forwards say their song was unknown, and every song's forward went to the
        # partition a keyed send of that song goes to (where its songs.new record lands)
        forwarded = {row.song_id: (partition, row.song_unknown)
                     for partition, headers, value in partitions_of(
                         bs, f"{p}.interactions.by_song")
                     for row in read_forwards(value, headers, 256_000)}
        send(bs, f"{p}.songs.new", [song(f"jazz{i}", "jazz", i) for i in range(8)])
        keyed = {orjson.loads(value)["song_id"]: (partition, True)
                 for partition, _h, value in partitions_of(bs, f"{p}.songs.new")}
        assert forwarded == keyed and len(keyed) == 8
        assert len({partition for partition, _ in keyed.values()}) > 1, "one partition only"
        worker.wait_metric("coldstream_user_updates_total", 2, timeout=60)
        time.sleep(1.5)
    finally:
        assert worker.stop() == 0
    users = user_points(worker.data_dir, version)
    assert "u0" in users, "the user's vector is built once the songs are indexed"
    assert np.linalg.norm(users["u0"][0]) == pytest.approx(1.0, abs=1e-4)


def test_new_songs_arriving_together_are_handled_together_and_a_bad_one_alone(
        broker: EmbeddedBroker, model_registry: Registry, tmp_path: Path) -> None:
    """Four new songs in one fetch (a 2 s batch window keeps them in one batch): the one whose
    audio escapes the audio root goes to the DLQ with that reason; the other three, one with
    real audio, are indexed and proposed."""
    import soundfile as sf

    bs, p = broker.bootstrap, "batch"
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "tune.wav",
             0.2 * np.random.default_rng(0).standard_normal(22_050 * 3).astype(np.float32),
             22_050)
    worker = make_worker(bs, model_registry.root, tmp_path, p,
                         COLDSTREAM_AUDIO_ROOTS=orjson.dumps([str(audio)]).decode(),
                         COLDSTREAM_SONGS_BATCH_WINDOW_S="2.0").start()
    try:
        send(bs, f"{p}.songs.new", [song(f"jazz{i}", "jazz", i) for i in range(4)])
        worker.wait_metric("coldstream_events_total", 4, topic=f"{p}.songs.new", outcome="ok")
        send(bs, f"{p}.interactions", [interaction(f"u{u}", f"jazz{i}", "collect", i)
                                       for u in range(3) for i in range(4)])
        worker.wait_metric("coldstream_events_total", 12, outcome="ok",
                           topic=f"{p}.interactions.by_song")
        new = [song("new-a", "jazz", 0, released=NOW),
               {**song("new-bad", "jazz", 1, released=NOW), "audio_uri": "../../etc/passwd"},
               {**song("new-audio", "jazz", 1, released=NOW), "audio_uri": "tune.wav"},
               song("new-b", "jazz", 1, released=NOW)]
        send(bs, f"{p}.songs.new", new)
        worker.wait_metric("coldstream_events_total", 7, topic=f"{p}.songs.new", outcome="ok")
        dead = wait_for(bs, f"{p}.dlq", lambda d: True)
        cands = [c for sid in ("new-a", "new-audio", "new-b")
                 for c in wait_for(bs, f"{p}.candidates", lambda c, s=sid: c["song_id"] == s)]
        assert worker.metric("coldstream_events_total", topic=f"{p}.songs.new",
                             outcome="dlq") == 1
    finally:
        assert worker.stop() == 0, worker.log()
    letter = DeadLetter.model_validate(dead[0])
    assert len(dead) == 1 and letter.error_kind == "audio_not_allowed"
    assert "outside" in letter.error_message
    assert orjson.loads(base64.b64decode(letter.original_b64))["song_id"] == "new-bad"
    assert {c["song_id"] for c in cands} == {"new-a", "new-audio", "new-b"}
