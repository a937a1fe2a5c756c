"""Stop 50: how much of each new-song stage holds the GIL, measured by what it takes from a
pure-Python loop on another thread (the worker's event loop is such a thread).

The main thread counts loop iterations for a few seconds alone, then while a second thread
repeats one stage. On this 2-core machine, with nothing else running, the share of the
loop's rate lost is about the share of the stage's wall time spent holding the GIL (a stage
that releases it leaves the loop its whole core).

    PYTHONPATH=$PWD .venv/bin/python bench/results/stop50/gil_share.py

Uses the provisional test model (``build/test-models``, made by ``make test``) and a 30 s,
44.1 kHz mono WAV, as the soak's new songs are."""
from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from encoders.artifacts import Registry
from streams import pipeline
from streams.context import WorkerContext
from streams.events import SongEvent
from streams.metrics import Metrics
from streams.settings import load_settings
from streams.stores import EdgeStore

SECONDS = 4.0


def loop_rate(seconds: float) -> float:
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(1000):
            n += 1
    return n / seconds


def share(stage: Callable[[], object]) -> dict[str, float]:
    stop, calls = threading.Event(), [0]
    cpu: list[float] = []

    def repeat() -> None:
        t = time.thread_time()
        while not stop.is_set():
            stage()
            calls[0] += 1
        cpu.append(time.thread_time() - t)

    alone = loop_rate(SECONDS)
    worker = threading.Thread(target=repeat)
    start = time.perf_counter()
    worker.start()
    beside = loop_rate(SECONDS)
    stop.set()
    worker.join()
    wall = time.perf_counter() - start
    return {"loop_rate_lost": round(1 - beside / alone, 3),
            "stage_ms_beside_loop": round(wall / calls[0] * 1e3, 2),
            "stage_cpu_ms": round(cpu[0] / calls[0] * 1e3, 2)}


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    (tmp / "audio").mkdir()
    wav = tmp / "audio" / "song.wav"
    sf.write(wav, (0.1 * np.random.default_rng(0).standard_normal(44_100 * 30)).astype(
        np.float32), 44_100, subtype="PCM_16")
    registry = Registry(Path("build/test-models"))
    settings = load_settings(data_dir=tmp / "data", model_dir=registry.root,
                             audio_roots=[tmp / "audio"])
    ctx = WorkerContext(settings, EdgeStore(tmp / "qdrant"), Metrics())
    ctx.load(registry.current() or "")
    sv, rate = ctx.serving(), ctx.serving().model.songs.sample_rate
    song = SongEvent(schema_version=1, event_id="e", song_id="s", title="Blue train",
                     artist="The band", tags=["jazz"], description="soft brushed drums",
                     audio_uri=f"file://{wav}", released_at=1_760_000_000_000)
    clip = pipeline.read_wave(song, rate, settings, ctx.metrics)
    assert not isinstance(clip, Exception), clip
    stages = {
        "audio read (decode + resample)": lambda: pipeline.read_wave(song, rate, settings,
                                                                     ctx.metrics),
        "encode (one song, audio read)": lambda: pipeline.encode_songs(
            sv, [song], (rate, [clip]), settings, ctx.metrics),
    }
    out = {name: share(stage) for name, stage in stages.items()}
    print(json.dumps(out, indent=1))
    ctx.close()


if __name__ == "__main__":
    main()
