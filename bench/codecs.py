"""Scenario: Kafka compression codecs, for the worker's candidates and for producers' input.

1. Worker output: the same new songs through a worker per ``COLDSTREAM_KAFKA_COMPRESSION``
   value; bytes on the wire of ``candidates.coldstart`` (the record batches a consumer fetches,
   parsed from the fetch responses) and first-candidate latency. Baseline: ``none``, same run.
   This chose the default.
2. Producer input: one worker (default codec) and new songs written with each codec; latency
   and bytes per song on the wire. Baseline: ``none``.
3. CPU: build and decode a batch of real candidate events with each codec, in process.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import struct
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.consumer import fetcher as aiokafka_fetcher
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from streams.broker import EmbeddedBroker
from streams.settings import Settings

from . import live
from .common import Mode, Report, ms, ratio, timed
from .latency import paced_round_trip
from .models import DEFAULT_MODELS, loaded

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
#: Kafka's batch attribute bits 0-2 -> codec.
CODEC_IDS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
HEADER = 61  # bytes of a v2 record batch header


def parse_batches(raw: bytes) -> Iterator[tuple[tuple[int, int], str, int, int]]:
    """((base offset, crc), codec, records, bytes) of each whole v2 batch in a record set."""
    pos = 0
    while pos + HEADER <= len(raw):
        base, length = struct.unpack_from(">qi", raw, pos)
        size = 12 + length
        if pos + size > len(raw):
            break  # a fetch may end in a partial batch; the next fetch returns it whole
        crc, attrs = struct.unpack_from(">Ih", raw, pos + 17)
        count = struct.unpack_from(">i", raw, pos + 57)[0]
        yield (base, crc), CODEC_IDS.get(attrs & 7, "?"), count, size
        pos += size


@contextlib.contextmanager
def recording_fetches(seen: dict) -> Iterator[None]:
    """Capture the raw record sets aiokafka's fetcher receives (what crossed the wire)."""
    real = aiokafka_fetcher.MemoryRecords

    def capture(raw: bytes) -> object:
        for key, codec, count, size in parse_batches(bytes(raw)):
            seen[key] = (codec, count, size)
        return real(raw)

    aiokafka_fetcher.MemoryRecords = capture
    try:
        yield
    finally:
        aiokafka_fetcher.MemoryRecords = real


async def read_wire(bs: str, topic: str, idle: float = 2.0) -> dict[str, dict[str, int]]:
    """Per codec: batches, records and bytes of every batch in ``topic``."""
    seen: dict = {}
    with recording_fetches(seen):
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bs, group_id=None,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            quiet_since = time.monotonic()
            while time.monotonic() - quiet_since < idle:
                if any((await consumer.getmany(timeout_ms=200)).values()):
                    quiet_since = time.monotonic()
        finally:
            await consumer.stop()
    out: dict[str, dict[str, int]] = {}
    for codec, count, size in seen.values():
        row = out.setdefault(codec, {"batches": 0, "records": 0, "bytes": 0})
        row["batches"] += 1
        row["records"] += count
        row["bytes"] += size
    return out


def cpu_cost(values: list[bytes], per_batch: int) -> dict[str, dict[str, float]]:
    """Build + decode one batch of ``per_batch`` real candidate values, per codec (us)."""
    chunk = values[:per_batch]
    out = {}
    for cid, codec in CODEC_IDS.items():
        def build(cid: int = cid) -> bytes:
            b = DefaultRecordBatchBuilder(magic=2, compression_type=cid, is_transactional=0,
                                          producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                          batch_size=16 * 1024 * 1024)
            for i, v in enumerate(chunk):
                b.append(i, timestamp=None, key=b"u", value=v, headers=[])
            return bytes(b.build())

        raw = build()
        enc = timed(build, min_seconds=0.3)
        dec = timed(lambda raw=raw: [r.value for r in DefaultRecordBatch(raw)], min_seconds=0.3)
        out[codec] = {"bytes": len(raw), "build_us": min(enc) * 1e6, "decode_us": min(dec) * 1e6}
    return out


async def candidate_values(bs: str, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bs, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        values: list[bytes] = []
        for _ in range(10):
            for records in (await consumer.getmany(timeout_ms=300)).values():
                values += [r.value for r in records]
        return values
    finally:
        await consumer.stop()


def new_songs(prefix: str, n: int) -> list[tuple[str, bytes]]:
    return [(ev["song_id"], orjson.dumps(ev)) for ev in (
        live.song_event(i, i % len(live.GENRES), new=True, prefix=prefix) for i in range(n))]


@dataclass
class OutputRuns:
    """The worker's own output codec: first-candidate latency and candidate bytes per codec."""

    latency: dict[str, list[float]] = field(default_factory=dict)
    wire: dict[str, dict[str, int]] = field(default_factory=dict)
    values: list[bytes] = field(default_factory=list)  # uncompressed candidates, for CPU cost


def measure_output(bs: str, models: Path, data: Path, orders: list[list[str]], n_new: int,
                   rate: float) -> OutputRuns:
    out = OutputRuns()
    for r, order in enumerate(orders):
        for codec in order:
            prefix = f"co{r}{codec}"
            t = live.topics(prefix)
            worker = live.Worker(bs, models, data, prefix,
                                 extra_env={"COLDSTREAM_KAFKA_COMPRESSION": codec})
            worker.start()
            try:
                sent, got = asyncio.run(paced_round_trip(
                    bs, t["songs"], t["candidates"], new_songs(f"{prefix}-", n_new), rate))
            finally:
                worker.stop()
            out.latency.setdefault(codec, []).extend(got[k] - sent[k] for k in got)
            wire = asyncio.run(read_wire(bs, t["candidates"])).get(codec, {})
            total = out.wire.setdefault(codec, {"batches": 0, "records": 0, "bytes": 0})
            for key, value in wire.items():
                total[key] += value
            if codec == "none" and not out.values:
                out.values = asyncio.run(candidate_values(bs, t["candidates"]))
    return out


def measure_input(bs: str, models: Path, data: Path, orders: list[list[str]], n_new: int,
                  rate: float) -> tuple[dict[str, list[float]], dict[str, dict[str, int]]]:
    """Producers' codecs into one worker at the default: latency and song bytes per codec."""
    prefix = "ci"
    t = live.topics(prefix)
    latency: dict[str, list[float]] = {}
    worker = live.Worker(bs, models, data, prefix)
    worker.start()
    try:
        for r, order in enumerate(orders):
            for codec in order:
                sent, got = asyncio.run(paced_round_trip(
                    bs, t["songs"], t["candidates"], new_songs(f"ci{r}-{codec}-", n_new), rate,
                    compression=None if codec == "none" else codec))
                latency.setdefault(codec, []).extend(got[k] - sent[k] for k in got)
    finally:
        worker.stop()
    return latency, asyncio.run(read_wire(bs, t["songs"]))


def codec_rows(what: str, latency: dict[str, list[float]], wire: dict[str, dict[str, int]],
               counts_candidates: bool) -> list[dict]:
    """One row per codec with same-run ratios against ``none``."""
    base = wire.get("none", {})
    base_per = ratio(base.get("bytes"), base.get("records"))
    base_p50 = ms(latency.get("none", []))["p50_ms"]
    rows = []
    for codec in CODECS:
        w, lat = wire.get(codec, {}), ms(latency.get(codec, []))
        per = ratio(w.get("bytes"), w.get("records"))
        rows.append({"what": f"{what} {codec}",
                     "candidates": w.get("records") if counts_candidates else None,
                     "batches": w.get("batches"), "bytes": w.get("bytes"),
                     "bytes_per_candidate": per, "x_bytes": ratio(per, base_per),
                     **lat, "x_p50": ratio(lat["p50_ms"], base_p50)})
    return rows


def run(mode: Mode, n_new: int | None = None, rate: float = 2.0, n_songs: int | None = None,
        n_users: int | None = None, models: Path = DEFAULT_MODELS, rounds: int = 2) -> Report:
    n_new = n_new or (20 if mode == "quick" else 100)
    n_songs = n_songs or (2_000 if mode == "quick" else 20_000)
    n_users = n_users or (1_000 if mode == "quick" else 10_000)
    rep = Report("codecs", mode, {"new_songs_per_codec": n_new * rounds, "rounds": rounds,
                                  "rate_per_s": rate,
                                  "catalogue_songs": n_songs, "users": n_users,
                                  "default": Settings().kafka_compression,
                                  "input": "text-only new songs"})
    start = time.perf_counter()
    model = loaded(models)
    tmp = Path(tempfile.mkdtemp(prefix="coldstream-bench-codecs-"))
    orders = [list(CODECS), list(reversed(CODECS))][:rounds]  # interleaved: drift cancels
    try:
        cat = live.build_catalogue(model, n_songs, n_users)
        rep.extra.update(live.write_catalogue(cat, model, tmp / "data"))
        with EmbeddedBroker(log_path=tmp / "tansu.log") as broker:
            out = measure_output(broker.bootstrap, models, tmp / "data", orders, n_new, rate)
            in_lat, in_wire = measure_input(broker.bootstrap, models, tmp / "data", orders,
                                            n_new, rate)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rep.rows += codec_rows("worker output", out.latency, out.wire, counts_candidates=True)
    rep.rows += codec_rows("producer input", in_lat, in_wire, counts_candidates=False)
    if out.values:
        base = out.wire.get("none", {})
        per_batch = max(1, round(ratio(base.get("records"), base.get("batches")) or 1))
        rep.extra["cpu_per_batch"] = {"records": per_batch, **cpu_cost(out.values, per_batch)}
        rep.extra["cpu_per_batch_50"] = cpu_cost(out.values, min(50, len(out.values)))
    rep.notes.append("bytes: whole v2 record batches as fetched (headers included); "
                     "bytes_per_candidate of the input rows is per song")
    rep.seconds = time.perf_counter() - start
    return rep
