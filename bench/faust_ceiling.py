"""The Faust ceiling: a bare agent on the worker's own app configuration, doing nothing.

Same broker URL (and so the same offset guard and end-offset shim), same consumer settings,
same ``take_events(batch_max_events, batch_window_s)`` batching as the worker's interactions
agent; no decode, no table, no produce, no store. What it reaches is what any agent can reach
under Faust on this machine; the worker's rows are read against it, same run.

Run as ``python -m bench.faust_ceiling N OUT.json`` with the worker's environment
(:func:`streams.process.worker_env`): once N events have arrived it writes the times of the
first and the last batch to OUT.json and keeps running until stopped.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import faust
import orjson

from streams.app import base_app
from streams.process import worker_env
from streams.settings import load_settings


def main(n: int, out: Path) -> None:
    logging.basicConfig(level=logging.WARNING)
    s = load_settings()
    s.data_dir.mkdir(parents=True, exist_ok=True)
    bootstrap = s.kafka_bootstrap or ""
    app = base_app(s, bootstrap)
    topic = app.topic(s.topic_interactions, key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw", partitions=s.partitions)
    seen = {"events": 0, "first": None, "first_batch": 0, "cpu_first": 0.0}

    async def empty(stream: Any) -> None:
        async for events in stream.take_events(s.batch_max_events, s.batch_window_s):
            now = time.perf_counter()
            if seen["first"] is None:
                seen["first"], seen["first_batch"] = now, len(events)
                seen["cpu_first"] = time.process_time()  # all threads of the process
            seen["events"] += len(events)
            if seen["events"] >= n and not out.exists():
                out.write_bytes(orjson.dumps({**seen, "last": now,
                                              "cpu_last": time.process_time()}))

    app.agent(topic, name="coldstream.empty")(empty)
    faust.Worker(app, loglevel="WARNING", quiet=True,
                 override_logging=False).execute_from_commandline()


def measure(bootstrap: str, models: Path, tmp: Path, prefix: str, n: int,
            timeout: float = 300.0) -> dict[str, float]:
    """Events/s of the empty agent over ``n`` events already on ``prefix``.interactions
    (first batch to last, as the worker's rate is taken), and per CPU-second of the process
    over the same span."""
    out = tmp / "faust-ceiling.json"
    data = tmp / "faust-ceiling"
    env = worker_env(bootstrap, models, data, prefix, COLDSTREAM_APP_ID=f"{prefix}-empty")
    log_path = tmp / "faust-ceiling.log"
    log = log_path.open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "bench.faust_ceiling", str(n), str(out)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not out.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("empty agent stopped or timed out:\n"
                                   + log_path.read_text(errors="replace")[-3000:])
            time.sleep(0.1)
        time.sleep(0.05)  # the file is written in one call; let it land
        r = orjson.loads(out.read_bytes())
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    counted = r["events"] - r["first_batch"]
    span = max(r["last"] - r["first"], 1e-9)
    cpu = max(r["cpu_last"] - r["cpu_first"], 1e-9)
    return {"events": r["events"], "events/s": counted / span, "events/cpu_s": counted / cpu}


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
