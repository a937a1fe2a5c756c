"""Stop 49: page faults and CPU per new song's audio read, in a thread as the worker's audio
thread does it, with glibc's default malloc policy or the one the environment sets (run it
under each, in the same session):

    .venv/bin/python bench/results/stop49/malloc/faults_per_song.py
    GLIBC_TUNABLES=glibc.malloc.trim_threshold=...:glibc.malloc.mmap_threshold=... \\
        .venv/bin/python bench/results/stop49/malloc/faults_per_song.py

A 30 s, 44.1 kHz mono WAV (the soak's audio), read 100 times after 10 warm-up reads."""
import os
import resource
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from streams.audio import read_clip

N, WARM, RATE = 100, 10, 16_000


def main() -> None:
    path = Path(tempfile.mkdtemp()) / "song.wav"
    sf.write(path, (0.1 * np.random.default_rng(0).standard_normal(44_100 * 30)).astype(
        np.float32), 44_100, subtype="PCM_16")
    out: dict[str, float] = {}

    def reads() -> None:
        for _ in range(WARM):
            read_clip(path, RATE, 20_000_000, 30.0)
        before, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        cpu = time.thread_time()
        for _ in range(N):
            read_clip(path, RATE, 20_000_000, 30.0)
        after = resource.getrusage(resource.RUSAGE_SELF)
        out.update(minor_faults_per_read=(after.ru_minflt - before.ru_minflt) / N,
                   wall_ms_per_read=(time.perf_counter() - t) / N * 1e3,
                   thread_cpu_ms_per_read=(time.thread_time() - cpu) / N * 1e3,
                   kernel_ms_per_read=(after.ru_stime - before.ru_stime) / N * 1e3)

    worker = threading.Thread(target=reads)
    worker.start()
    worker.join()
    print({"GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES", "")} |
          {k: round(v, 2) for k, v in out.items()})


if __name__ == "__main__":
    main()
