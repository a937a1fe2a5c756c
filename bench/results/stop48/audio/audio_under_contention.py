"""Stop 48: a new song's audio read (30 s WAV at 44.1 kHz -> 16 kHz, as the scale soak sends)
alone and beside a thread that holds the GIL part of the time, as the worker's event loop and
work thread do under load. Every C call that lets go of the GIL (libsndfile through cffi:
seek, tell and read per block; soxr; sha256) must win it back, and under contention each
win can wait up to the switch interval (5 ms). Compares decode block lengths.

    .venv/bin/python bench/results/stop48/audio/audio_under_contention.py"""
import io, statistics, sys, tempfile, threading, time
from pathlib import Path

import numpy as np
import soundfile as sf

from streams import audio

BUSY_MS, IDLE_MS = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0, 1.0


def busy_thread(stop: threading.Event) -> None:
    """Python work for BUSY_MS, then a sleep of IDLE_MS (the GIL free), until stopped."""
    while not stop.is_set():
        end = time.perf_counter() + BUSY_MS / 1e3
        while time.perf_counter() < end:
            pass
        time.sleep(IDLE_MS / 1e3)


def timed(path: Path, block_s: float, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        audio.read_clip(path, 16_000, 50_000_000, 30.0, block_seconds=block_s)
        out.append((time.perf_counter() - t) * 1e3)
    return out


def main() -> None:
    root = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    path = root / "clip.wav"
    sf.write(path, (0.1 * rng.standard_normal(30 * 44_100)).astype(np.float32), 44_100,
             subtype="PCM_16")
    print(f"competitor: {BUSY_MS:g} ms busy, {IDLE_MS:g} ms idle")
    for block_s in (1.0, 30.0, 1.0, 30.0):
        alone = timed(path, block_s, 20)
        stop = threading.Event()
        th = threading.Thread(target=busy_thread, args=(stop,))
        th.start()
        contended = timed(path, block_s, 20)
        stop.set(); th.join()
        print(f"block {block_s:4g} s: alone p50 {statistics.median(alone):6.1f} ms, "
              f"beside the busy thread p50 {statistics.median(contended):6.1f} ms "
              f"(max {max(contended):6.1f})")


if __name__ == "__main__":
    main()
