"""Does a call hold the GIL? (stop 40) A thread runs it while the main thread sleeps 1 ms at a
time; the longest gap between the main thread's wake-ups says how long it could not run.

    .venv/bin/python bench/results/stop40/gil_release_check.py > bench/results/stop40/gil_release_check.txt"""
import io
import random
import threading
import time

import cramjam
import numpy as np
import orjson
import soundfile as sf
import soxr

from streams.audio import decode_audio


def probe(name, fn, reps):
    th = threading.Thread(target=lambda: [fn() for _ in range(reps)])
    t0 = time.perf_counter()
    th.start()
    maxgap, last = 0.0, time.perf_counter()
    while th.is_alive():
        time.sleep(0.001)
        now = time.perf_counter()
        maxgap, last = max(maxgap, now - last), now
    per_call = (time.perf_counter() - t0) / reps
    print(f"{name}: {per_call * 1e3:.1f} ms per call, main thread's longest gap {maxgap * 1e3:.1f} ms")


random.seed(0)
candidates = b"".join(orjson.dumps({"user_id": f"u{random.randint(0, 10**6)}", "song_id": f"s{i}",
                                    "score": random.random(), "path": "u2i",
                                    "explanation": "x" * random.randint(10, 80)})
                      for i in range(40_000))
probe(f"cramjam zstd, {len(candidates) / 1e6:.1f} MB of candidate JSON",
      lambda: cramjam.zstd.compress(candidates), 20)
sr = 44_100
wave = np.random.default_rng(0).standard_normal(sr * 30).astype(np.float32) * 0.1
probe("soxr HQ, 30 s 44.1 -> 16 kHz", lambda: soxr.resample(wave, sr, 16_000, quality="HQ"), 5)
for fmt, reps in (("WAV", 5), ("FLAC", 5), ("OGG", 3)):
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format=fmt)
    data = buf.getvalue()
    probe(f"decode_audio, 30 s {fmt}", lambda: decode_audio(io.BytesIO(data), 16_000, 30, 10), reps)
