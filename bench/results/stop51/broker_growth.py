"""Stop 51: does the embedded broker's CPU grow with a topic's history, per storage engine?

Tansu 0.6's object-store engine (``memory://``) lists every stored batch of a partition on
each fetch that has data (stop 44). Its Postgres engine reads records through an index on
(partition, offset). Here one producer offers ``rate`` records/s (the soak's interaction
size, 50 ms linger, 4 partitions) for ``seconds`` while one consumer reads them as they come
(fetch wait 10 ms, as the soak's candidate reader). Every 10 s: the broker's cores (and the
Postgres server's, for ``postgres://``), and the produce -> consume latency p50 / p99.

    PYTHONPATH=$PWD .venv/bin/python bench/results/stop51/broker_growth.py STORAGE [RATE] [SECONDS]
"""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.broker import EmbeddedBroker, ensure_topics

TICK = 100  # Linux clock ticks per second


def cpu_s(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(f[11]) + int(f[12])
    return total / TICK


def postgres_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-f", "postgres"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


async def main(storage: str, rate: float, seconds: float) -> None:
    with EmbeddedBroker(storage=storage, log_path=Path("/tmp/pg51/tansu.log")) as broker:
        topic = f"growth{int(time.time())}"
        await ensure_topics(broker.bootstrap, [topic], 4)
        prod = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks=1, linger_ms=50)
        cons = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=10)
        await prod.start()
        await cons.start()
        pids = [broker.process.pid] + (postgres_pids() if storage.startswith("postgres") else [])
        lat: list[float] = []
        stop = asyncio.Event()

        async def read() -> None:
            while not stop.is_set():
                got = await cons.getmany(timeout_ms=50)
                now = time.time() * 1e3
                for recs in got.values():
                    lat.extend(now - r.timestamp for r in recs)

        reader = asyncio.create_task(read())
        payload = b'{"schema_version":1,"event_id":"soak123456","user_id":"u123456",' \
                  b'"song_id":"s654321","action":"play","ts":1700000000123,"played_ms":30000}'
        t0, i, rows = time.perf_counter(), 0, []
        c0, w0 = cpu_s(pids), t0
        while (now := time.perf_counter()) - t0 < seconds:
            while i < int((now - t0) * rate):
                await prod.send(topic, payload, key=f"u{i % 9973}".encode())
                i += 1
            if now - w0 >= 10:
                c1 = cpu_s(pids)
                ms = np.asarray(lat) if lat else np.zeros(1)
                cores = round((c1 - c0) / (now - w0), 3)
                rows.append({"t_s": round(now - t0), "broker_cores": cores,
                             "p50_ms": round(float(np.median(ms)), 1),
                             "p99_ms": round(float(np.percentile(ms, 99)), 1), "n": len(lat)})
                print(json.dumps(rows[-1]), flush=True)
                lat.clear()
                c0, w0 = c1, now
            await asyncio.sleep(0.01)
        stop.set()
        await reader
        await prod.stop()
        await cons.stop()
    print(json.dumps({"storage": storage.split("@")[-1], "rate": rate, "rows": rows}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 2000,
                     float(sys.argv[3]) if len(sys.argv) > 3 else 120))
