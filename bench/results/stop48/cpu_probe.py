"""Stop 48: a fixed piece of CPU work, timed every few seconds, beside a soak. If the machine
itself runs slower at times (a shared VM), this work's CPU time rises with the bench's cores;
if the soak's processes only warm up, it stays flat.

    .venv/bin/python bench/results/stop48/cpu_probe.py OUT.csv SECONDS [EVERY_S]"""
import sys, time

import numpy as np

out, seconds = sys.argv[1], float(sys.argv[2])
every = float(sys.argv[3]) if len(sys.argv) > 3 else 5.0
a = np.random.default_rng(0).standard_normal((192, 192))


def work() -> None:
    total = 0
    for i in range(150_000):  # interpreter work, as most of the worker's
        total += i * i % 7
    for _ in range(20):  # and a little BLAS
        a @ a


t0 = time.perf_counter()
with open(out, "w") as f:
    f.write("t_s,cpu_ms,wall_ms\n")
    while time.perf_counter() - t0 < seconds:
        c, w = time.process_time(), time.perf_counter()
        work()
        f.write(f"{w - t0:.1f},{(time.process_time() - c) * 1e3:.2f},"
                f"{(time.perf_counter() - w) * 1e3:.2f}\n")
        f.flush()
        time.sleep(every)
