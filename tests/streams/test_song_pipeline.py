"""A batch of new songs goes through its three stages overlapped, not one after another.

``Agents.songs_to_candidates`` decodes the next songs' audio while a song's vectors are worked
under the gate, and sends a song's candidates while the next song's vectors are worked. These
drive the real handler, model and store (the harness of ``test_late_listeners``), with the
stages instrumented so that a handler running them in sequence waits for something that never
comes: each wait gives up after a few seconds and the test fails, it does not hang.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from encoders.artifacts import Registry
from streams import pipeline
from streams.errors import AudioDecodeError

from .test_late_listeners import Worker, new_song

WAIT_S = 3.0


class Stages:
    """When each song reached the vector work, and what waited on it."""

    def __init__(self) -> None:
        self.vectors_started: dict[str, threading.Event] = {}
        self.missed: list[str] = []
        self.emitted: list[str] = []

    def started(self, song_id: str) -> threading.Event:
        return self.vectors_started.setdefault(song_id, threading.Event())


def instrument(monkeypatch: pytest.MonkeyPatch, worker: Worker, stages: Stages,
               audio_waits_for: dict[str, str], emit_waits_for: dict[str, str],
               bad_audio: frozenset[str] = frozenset()) -> None:
    """``audio_waits_for[a] = b``: song a's audio is read only once b's vectors are being
    worked; ``emit_waits_for[a] = b``: a's candidates are sent only once b's are."""
    read_wave, encode_songs = pipeline.read_wave, pipeline.encode_songs

    def slow_read(song: Any, *args: Any) -> Any:
        other = audio_waits_for.get(song.song_id)
        if other and not stages.started(other).wait(WAIT_S):
            stages.missed.append(f"{song.song_id}'s audio waited for {other}'s vectors")
        if song.song_id in bad_audio:
            return AudioDecodeError("cannot decode audio: not a sound file")
        return read_wave(song, *args)

    def marked_encode(sv: Any, songs: Any, *args: Any) -> Any:
        for song in songs:
            stages.started(song.song_id).set()
        return encode_songs(sv, songs, *args)

    emit_song = worker.agents.emit_song

    async def held_emit(event: Any, song: Any, *args: Any) -> None:
        other = emit_waits_for.get(song.song_id)
        deadline = time.monotonic() + WAIT_S
        while other and not stages.started(other).is_set():
            if time.monotonic() > deadline:
                stages.missed.append(f"{song.song_id}'s emit waited for {other}'s vectors")
                break
            await asyncio.sleep(0.01)
        stages.emitted.append(song.song_id)
        await emit_song(event, song, *args)

    monkeypatch.setattr(pipeline, "read_wave", slow_read)
    monkeypatch.setattr(pipeline, "encode_songs", marked_encode)
    monkeypatch.setattr(worker.agents, "emit_song", held_emit)


def test_audio_and_sends_overlap_the_vector_work_of_other_songs(
        model_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    worker, stages = Worker(model_registry, tmp_path), Stages()
    instrument(monkeypatch, worker, stages,
               audio_waits_for={"s1": "s0", "s2": "s1"}, emit_waits_for={"s0": "s1"})
    batch = [new_song(f"s{i}") for i in range(3)]
    try:
        outcomes = asyncio.run(worker.agents.on_songs(batch))
    finally:
        worker.close()
    assert stages.missed == []
    assert outcomes == ["ok", "ok", "ok"]
    assert stages.emitted == ["s0", "s1", "s2"]  # in the batch's order


def test_songs_whose_audio_is_ready_together_are_encoded_together(
        model_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    worker = Worker(model_registry, tmp_path)
    calls: list[list[str]] = []
    encode_songs = pipeline.encode_songs

    def recorded(sv: Any, songs: Any, *args: Any) -> Any:
        calls.append([s.song_id for s in songs])
        return encode_songs(sv, songs, *args)

    monkeypatch.setattr(pipeline, "encode_songs", recorded)
    batch = [new_song(f"s{i}") for i in range(4)]

    async def no_audio(fn: Any, song: Any, *args: Any) -> None:
        return None  # done at once: every read is over when the handler first looks

    monkeypatch.setattr(worker.ctx, "read_audio", no_audio)
    try:
        assert asyncio.run(worker.agents.on_songs(batch)) == ["ok"] * 4
    finally:
        worker.close()
    assert calls == [["s0", "s1", "s2", "s3"]]


def test_a_song_that_fails_between_others_is_dead_lettered_alone(
        model_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    worker, stages = Worker(model_registry, tmp_path), Stages()
    instrument(monkeypatch, worker, stages, audio_waits_for={"s2": "s0"},
               emit_waits_for={}, bad_audio=frozenset({"s1"}))
    batch = [new_song(f"s{i}") for i in range(3)]
    for event, _song in batch:
        event.message.topic = "songs.new"
        event.key = None
    try:
        outcomes = asyncio.run(worker.agents.on_songs(batch))
    finally:
        worker.close()
    assert stages.missed == []
    assert outcomes == ["ok", None, "ok"]
    assert stages.emitted == ["s0", "s2"]
    (dead,) = worker.topics.dlq.sent
    record = orjson.loads(dead[1])
    assert record["error_kind"] == "audio_decode"
    assert orjson.loads(base64.b64decode(record["original_b64"]))["song_id"] == "s1"


def test_a_failure_in_the_vector_work_leaves_nothing_running(
        model_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    worker, stages = Worker(model_registry, tmp_path), Stages()
    # s2's audio is still being read when s1's vectors fail
    instrument(monkeypatch, worker, stages, audio_waits_for={"s2": "never"},
               emit_waits_for={})
    encode_songs = pipeline.encode_songs

    def broken(sv: Any, songs: Any, *args: Any) -> Any:
        if any(s.song_id == "s1" for s in songs):
            raise RuntimeError("the encoder broke")
        return encode_songs(sv, songs, *args)

    monkeypatch.setattr(pipeline, "encode_songs", broken)
    batch = [new_song(f"s{i}") for i in range(3)]

    async def main() -> set[asyncio.Task]:
        with pytest.raises(RuntimeError, match="the encoder broke"):
            await worker.agents.on_songs(batch)
        return asyncio.all_tasks() - {asyncio.current_task()}

    try:
        assert asyncio.run(main()) == set()
    finally:
        worker.close()
