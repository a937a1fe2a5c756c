"""Stop 47: what one Qdrant Edge flush costs at 1M points, per storage placement.

A shard of N points (float16, DIM dims, a listener's 5-key payload) is built once per
variant under ROOT; then, ROUNDS times, K random existing points are rewritten in batches of
50 and the shard is flushed. With PRESYNC=1 its files are fsynced first, as the worker's
flusher does (streams/stores/edge.py). Prints the flush's wall and CPU time (p50): the CPU
part is what the binding spends holding the GIL, the rest it waits for the disk, also with
the GIL held.

    ROOT=/tmp/fl PRESYNC=1 python edge_flush_placements.py VARIANT

VARIANT: default, payload_cached, payload_ram or vec_cold.
"""
import os
import sys
import time

import numpy as np
import qdrant_edge as qe

N = int(os.environ.get("N", 1_000_000))
DIM = int(os.environ.get("DIM", 64))
K = int(os.environ.get("K", 1000))
ROUNDS = int(os.environ.get("ROUNDS", 20))
variant = sys.argv[1]
path = os.path.join(os.environ.get("ROOT", "/tmp/fl"), f"shard_{variant}")


def config() -> "qe.EdgeConfig":
    vectors = dict(size=DIM, distance=qe.Distance.Cosine,
                   datatype=qe.VectorStorageDatatype.Float16)
    extra = {}
    if variant == "payload_cached":
        extra["payload_memory"] = qe.Memory.Cached
    if variant == "payload_ram":
        extra["on_disk_payload"] = False
    if variant == "vec_cold":
        vectors["memory"] = qe.Memory.Cold
    return qe.EdgeConfig(vectors=qe.EdgeVectorParams(**vectors), **extra)


rng = np.random.default_rng(0)


def points(ids) -> list:
    v = rng.standard_normal((len(ids), DIM)).astype(np.float32)
    return [qe.Point(int(i) + 1, v[j].tolist(), {"user_id": f"u{i}", "boundary": 0.1, "n": 3,
                                                  "arm": "b", "version": "v1"})
            for j, i in enumerate(ids)]


def presync() -> None:
    for root, _dirs, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)


if not os.path.exists(path):
    os.makedirs(path)
    shard = qe.EdgeShard.create(path, config())
    t = time.time()
    for s in range(0, N, 2000):
        shard.update(qe.UpdateOperation.upsert_points(points(range(s, min(N, s + 2000)))))
    shard.flush()
    print("built in", round(time.time() - t, 1), "s", flush=True)
else:
    shard = qe.EdgeShard.load(path)
wall, cpu = [], []
for _ in range(ROUNDS):
    for _b in range(0, K, 50):
        shard.update(qe.UpdateOperation.upsert_points(points(rng.integers(0, N, 50))))
    if os.environ.get("PRESYNC"):
        presync()
    t, c = time.perf_counter(), time.thread_time()
    shard.flush()
    wall.append((time.perf_counter() - t) * 1000)
    cpu.append((time.thread_time() - c) * 1000)
print(f"{variant} N={N} K={K} presync={bool(os.environ.get('PRESYNC'))}: flush p50 "
      f"{np.median(wall):.1f} ms (max {np.max(wall):.1f}), CPU p50 {np.median(cpu):.1f} ms",
      flush=True)
shard.close()
