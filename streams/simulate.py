"""``coldstream simulate``: a closed loop on the real broker and worker, days in minutes.

A music world's history is replayed into a worker serving two A/B arms; then, day by simulated
day, new songs are published, the worker's candidates are read from ``candidates.coldstart``
by a ranker that shows each user a few a day, and the world's listeners answer from their
ground-truth taste (:mod:`streams.listeners`) with interactions written back to the broker,
which the worker learns from and attributes. Event time is a simulated clock in the past (the
contract refuses timestamps in the future), so a week passes as fast as the worker keeps up.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from .arms import assign, parse_arms
from .broker import EmbeddedBroker
from .client import consume, json_records, produce
from .listeners import Answer, Listeners, rank
from .online_stats import ArmData, compare
from .process import WorkerProcess, make_worker

DAY_MS = 86_400_000


@dataclass(frozen=True)
class SimConfig:
    n_songs: int = 600
    n_users: int = 300
    n_interactions: int = 9000
    n_genres: int = 8
    seed: int = 0
    new_songs: int = 48  # the newest songs of the world, held out and published day by day
    days: int = 6
    shown_per_day: int = 3  # the ranker's slots for new songs, per user and day
    budget_per_day: int = 10  # the worker's COLDSTREAM_MAX_CANDIDATES_PER_USER_DAY
    per_song_cap: int = 50  # the worker's COLDSTREAM_MAX_CANDIDATES_PER_SONG (split by arm weight)
    arms: str = "A=i2i2u:50,B=both:50"
    salt: str = "coldstream-ab"
    u2i_min_margin: float = 0.0  # the worker's COLDSTREAM_U2I_MIN_MARGIN
    boundary_gates_i2i2u: bool = False  # the worker's COLDSTREAM_BOUNDARY_GATES_I2I2U


QUICK = SimConfig()
DEMO = SimConfig(n_songs=3000, n_users=1000, n_interactions=60_000, n_genres=12,
                 new_songs=120, days=6)
# three times the demo world's users, songs and history; new songs in proportion
LARGE = SimConfig(n_songs=9000, n_users=3000, n_interactions=180_000, n_genres=12,
                  new_songs=360, days=6)
WORLDS = {"quick": QUICK, "demo": DEMO, "large": LARGE}


@dataclass
class World:
    history_songs: list[dict[str, Any]]
    history_interactions: list[dict[str, Any]]
    new_songs: list[dict[str, Any]]
    listeners: Listeners
    user_ids: list[str]
    start_ms: int  # the simulated clock's first day
    source: Any = None  # the generated world (coldstream_data Dataset, with its ground truth)


def world_settings(cfg: SimConfig) -> Any:
    """The generated world's settings: the tiny world's, sized by ``cfg`` (the large one is
    also the offline harness's ``world:sim-large``)."""
    from coldstream_data.music_world import world_config

    return world_config("tiny", n_songs=cfg.n_songs, n_users=cfg.n_users,
                        n_interactions=cfg.n_interactions, n_genres=cfg.n_genres, seed=cfg.seed)


def build_world(cfg: SimConfig, now_ms: int) -> World:
    """The world's history up to the first simulated day, and its newest songs held out."""
    from coldstream_data.music_world import generate_world
    from coldstream_data.replay import replay

    world = generate_world(world_settings(cfg))
    start = (now_ms - (cfg.days + 1) * DAY_MS) // DAY_MS * DAY_MS
    records = list(replay(world, end_at_ms=start - 3_600_000))
    songs = [r[2] for r in records if r[0] == "songs.new"]
    held = {s["song_id"] for s in songs[-cfg.new_songs:]}
    users = [str(u) for u in world.user_ids]
    return World(
        history_songs=[s for s in songs if s["song_id"] not in held],
        history_interactions=[r[2] for r in records
                              if r[0] == "interactions" and r[2]["song_id"] not in held],
        new_songs=[s for s in songs if s["song_id"] in held],
        listeners=Listeners(world.truth, users, list(world.catalogue["song_id"]), cfg.seed),
        user_ids=users, start_ms=start, source=world)


def history_dataset(world: World) -> Any:
    """What a trained model may learn from: the world's history as replayed to the worker,
    without the held-out new songs (the cold items) or any interaction with them, and
    without the ground truth the listeners answer from."""
    from coldstream_data.base import Dataset, Interactions

    data = world.source
    held = {s["song_id"] for s in world.new_songs}
    keep = ~data.catalogue["song_id"].isin(held).to_numpy()
    index = np.cumsum(keep) - 1  # old item index -> new one (held-out rows unused)
    inter = data.interactions.subset(keep[data.interactions.item])
    inter = Interactions(inter.user, index[inter.item].astype(np.int32), inter.action,
                         inter.ts, inter.rating)
    return Dataset(f"{data.name}-history", data.catalogue[keep].reset_index(drop=True),
                   data.user_ids, inter)


@dataclass(frozen=True)
class TrainSpec:
    """``coldstream simulate --model trained``: ``coldstream train`` on the seed's history.

    One measured seed (``--seeds 1``): a cold-item split of the history, joint epochs
    early-stopped on its validation items (at most ``epochs``, patience 2), the delivery
    calibration fitted on those validation items; then the published model is trained on the
    whole history for the selected epoch count."""

    epochs: int = 6
    variant: str = "full"
    device: str = "cpu"


def train_on_history(world: World, seed: int, registry: Path, work: Path,
                     spec: TrainSpec) -> str:
    """Train and publish into ``registry`` (a folder of its own) unless it already has a
    current version (the same seed's model, reused e.g. across margins); returns it. A
    subprocess runs ``training.cli train``: serving code never imports the trainer."""
    from coldstream_data.own import write_own
    from encoders.artifacts import Registry

    current = Registry(registry).current()
    if current is not None:
        return current
    data_dir = write_own(history_dataset(world), work / "history")
    cmd = [sys.executable, "-m", "training.cli", "train", "--dataset", str(data_dir),
           "--registry", str(registry), "--seed", str(seed), "--seeds", "1",
           "--epochs", str(spec.epochs), "--variant", spec.variant, "--device", spec.device,
           "--run-dir", str(work / "runs")]
    with open(work / "train.log", "wb") as log:
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)
    current = Registry(registry).current()
    if done.returncode or current is None:
        raise RuntimeError(f"simulate: training failed (rc {done.returncode}), see "
                           f"{work / 'train.log'}")
    return current


def total(samples: dict[tuple[str, tuple], float], name: str, **labels: str) -> float:
    return sum(v for (n, lab), v in samples.items()
               if n == name and all(dict(lab).get(k) == x for k, x in labels.items()))


async def wait_until(worker: WorkerProcess, check: Any, what: str,
                     timeout: float = 1200.0) -> dict:
    """Poll the worker's metrics until ``check(samples)`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        samples = await asyncio.to_thread(worker.samples)
        if samples and check(samples):
            return samples
        await asyncio.sleep(0.3)
    raise TimeoutError(f"simulate: {what} not reached in {timeout:.0f}s\n{worker.log()}")


class Loop:
    """One closed-loop run against a started worker."""

    def __init__(self, cfg: SimConfig, world: World, worker: WorkerProcess,
                 bootstrap: str) -> None:
        self.cfg, self.world, self.worker, self.bootstrap = cfg, world, worker, bootstrap
        self.env = worker.env
        self.received: list[dict[str, Any]] = []
        self.answers: list[Answer] = []
        self.sent_interactions = len(world.history_interactions)
        self.sent_songs = len(world.history_songs)

    async def collect(self) -> None:
        async for rec in consume(self.bootstrap, self.env["COLDSTREAM_TOPIC_CANDIDATES"],
                                 from_beginning=True):
            self.received.append(orjson.loads(rec.value))

    async def send(self, topic_env: str, kind: str, payloads: list[dict]) -> None:
        await produce(self.bootstrap, self.env[topic_env], json_records(kind, payloads))

    async def history(self) -> None:
        w = self.world
        await self.send("COLDSTREAM_TOPIC_SONGS", "songs.new", w.history_songs)
        await wait_until(self.worker, lambda s: total(
            s, "coldstream_songs_indexed_total") >= self.sent_songs, "history songs indexed")
        await self.send("COLDSTREAM_TOPIC_INTERACTIONS", "interactions",
                        w.history_interactions)
        await self.interactions_done()

    async def interactions_done(self) -> None:
        by_song = self.env["COLDSTREAM_TOPIC_INTERACTIONS_BY_SONG"]
        await wait_until(self.worker, lambda s: total(
            s, "coldstream_events_total", topic=by_song) >= self.sent_interactions,
            "interactions applied")

    async def day(self, k: int, songs: list[dict[str, Any]]) -> None:
        """Publish a day's songs, wait for their deliveries, show, answer, write back."""
        day_start = self.world.start_ms + k * DAY_MS
        songs = [{**s, "released_at": day_start + 600_000 * (j + 1)}
                 for j, s in enumerate(songs)]
        await self.send("COLDSTREAM_TOPIC_SONGS", "songs.new", songs)
        self.sent_songs += len(songs)
        proposed = self.env["COLDSTREAM_TOPIC_CANDIDATES_PROPOSED"]
        await wait_until(self.worker, lambda s: total(
            s, "coldstream_songs_indexed_total") >= self.sent_songs, f"day {k} songs indexed")
        await wait_until(self.worker, lambda s: total(s, "coldstream_events_total",
                                                      topic=proposed) >= total(
            s, "coldstream_candidates_per_song_sum"), f"day {k} proposals handled")
        await wait_until(self.worker, lambda s: len(self.received) >= total(
            s, "coldstream_deliveries_total"), f"day {k} candidates read")
        ids = {s["song_id"] for s in songs}
        today = [c for c in self.received if c["song_id"] in ids]
        shown = rank(today, self.cfg.shown_per_day, day_start + 12 * 3_600_000)
        answers = self.world.listeners.answer(shown)
        self.answers += answers
        await self.send("COLDSTREAM_TOPIC_INTERACTIONS", "interactions",
                        [interaction(a, self.cfg.seed) for a in answers])
        self.sent_interactions += len(answers)
        await self.interactions_done()

    async def run(self) -> dict[str, Any]:
        collector = asyncio.create_task(self.collect())
        try:
            await self.history()
            per_day = -(-len(self.world.new_songs) // self.cfg.days)
            for k in range(self.cfg.days):
                await self.day(k, self.world.new_songs[k * per_day:(k + 1) * per_day])
        finally:
            collector.cancel()
        return await asyncio.to_thread(self.worker.samples)


def interaction(a: Answer, seed: int) -> dict[str, Any]:
    e = a.exposure
    return {"schema_version": 1, "event_id": f"sim{seed}-{e.user_id}-{e.song_id}",
            "user_id": e.user_id, "song_id": e.song_id, "action": a.action, "ts": a.ts}


def worker_counts(samples: dict[tuple[str, tuple], float], arm: str) -> dict[str, float]:
    """What the worker itself attributed to ``arm`` (cross-checks the simulator's count)."""
    out = {"deliveries": total(samples, "coldstream_deliveries_total", arm=arm)}
    for action in ("play", "complete", "collect", "skip"):
        out[action] = total(samples, "coldstream_attributed_total", arm=arm, action=action)
    return out


def by_path(answers: list[Answer]) -> dict[str, dict[str, dict[str, float]]]:
    """Exposures and outcome rates per arm and path: where each arm's outcomes come from."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for a in answers:
        row = out.setdefault(a.exposure.arm, {}).setdefault(a.exposure.path, {"exposures": 0})
        row["exposures"] += 1
        row[a.action] = row.get(a.action, 0) + 1
    for paths in out.values():
        for row in paths.values():
            n = row["exposures"]
            for action in ("collect", "complete", "skip"):
                row[f"{action}_rate"] = row.pop(action, 0) / n
            row.pop("play", None)
    return out


def raw_margin(score: float, boundary: float, delivery: Any = None,
               prior: float = 0.0) -> float:
    """A U2I-only candidate's raw margin (U2I score - boundary, what
    ``COLDSTREAM_U2I_MIN_MARGIN`` compares): the score itself without a calibration, else
    recovered from the calibrated probability (evidence: i2i2u 0, has_seed 0, passes 1, and
    the song's ``prior`` where the calibration weighs one)."""
    if delivery is None:
        return score - boundary
    p = min(max(score, 1e-6), 1 - 1e-6)
    w = dict(zip(delivery.features, delivery.coef, strict=True))
    logit = math.log(p / (1 - p)) - delivery.intercept - w["passes"] - w.get("prior", 0) * prior
    return logit / w["u2i_margin"]


def u2i_margin_bands(answers: list[Answer], bands: int = 5, delivery: Any = None,
                     priors: dict[str, float] | None = None) -> list[dict[str, float]]:
    """U2I-only exposures in equal-count bands of their raw U2I margin over the user's
    boundary (``delivery``: the model's calibration, when its scores are calibrated;
    ``priors``: each new song's predicted popularity, when it weighs one), with each band's
    collect rate: where to put ``COLDSTREAM_U2I_MIN_MARGIN`` (read on a seed that is not
    reported)."""
    priors = priors or {}
    rows = sorted((raw_margin(a.exposure.score, a.exposure.boundary, delivery,
                              priors.get(a.exposure.song_id, 0.0)),
                   a.action == "collect") for a in answers
                  if a.exposure.path == "u2i" and a.exposure.boundary is not None)
    out = []
    for k in range(bands):
        band = rows[len(rows) * k // bands:len(rows) * (k + 1) // bands]
        if band:
            out.append({"margin_from": round(band[0][0], 4), "margin_to": round(band[-1][0], 4),
                        "exposures": len(band),
                        "collect_rate": sum(c for _, c in band) / len(band)})
    return out


def results(cfg: SimConfig, world: World, loop: Loop, samples: dict,
            delivery: Any = None, priors: dict[str, float] | None = None) -> dict[str, Any]:
    arms = parse_arms(cfg.arms)
    members: dict[str, list[str]] = {a.name: [] for a in arms}
    for u in world.user_ids:
        members[assign(u, arms, cfg.salt).name].append(u)  # type: ignore[union-attr]
    data = {a.name: ArmData.build(members[a.name],
                                  [x for x in loop.answers if x.exposure.arm == a.name],
                                  sum(1 for c in loop.received if c.get("arm") == a.name))
            for a in arms}
    doc = compare(data, len(world.new_songs), arms[0].name, arms[1].name, seed=cfg.seed)
    doc["worker"] = {a.name: worker_counts(samples, a.name) for a in arms}
    doc["by_path"] = by_path(loop.answers)
    doc["u2i_margin"] = u2i_margin_bands(loop.answers, delivery=delivery, priors=priors)
    doc["budget_dropped"] = {b: total(samples, "coldstream_budget_dropped_total", budget=b)
                             for b in ("song", "user_day")}  # all arms together
    doc["config"] = asdict(cfg)
    return doc


def served_model(cfg: SimConfig, world: World, models: Path, out: Path,
                 train: TrainSpec | None) -> dict[str, Any]:
    """Which model the worker serves: the registry's current one (``train``: first trained on
    the world's history and published there); what ``online.json`` says about it."""
    from encoders.artifacts import Registry

    started = time.monotonic()
    if train is not None:
        train_on_history(world, cfg.seed, models, out, train)
    registry = Registry(models)
    current = registry.current()
    delivery = registry.load(current).delivery if current else None
    return {"kind": "provisional" if train is None else "trained", "version": current,
            "train": None if train is None else asdict(train),
            "train_s": round(time.monotonic() - started, 1) if train else 0.0,
            "delivery": None if delivery is None else delivery.model_dump(
                exclude={"prior": {"weights"}}),  # thousands of numbers: in the manifest
            "calibration": delivery,
            "priors": new_song_priors(registry, current, world.new_songs)
            if delivery is not None and delivery.prior is not None else None}


def new_song_priors(registry: Any, version: str | None,
                    songs: list[dict[str, Any]]) -> dict[str, float]:
    """Each new song's predicted popularity as the worker computes it (its calibration's
    fifth input), to read the raw U2I margin back from a calibrated score."""
    from encoders.runtime import load_model

    from .pipeline import song_input

    model = load_model(registry, version or "")
    got = model.songs.priors([song_input(s, None).text for s in songs])
    return {} if got is None else {s["song_id"]: float(p)
                                   for s, p in zip(songs, got, strict=True)}


def run_simulation(cfg: SimConfig, models: Path, out: Path, metrics_port: int | None = None,
                   before_stop: Callable[[WorkerProcess], None] | None = None,
                   train: TrainSpec | None = None) -> dict[str, Any]:
    """Broker + worker + loop; writes ``out/online.json`` and returns its content.

    ``before_stop`` runs with the worker still up after the loop (a test scrapes it then).
    ``train``: serve a model trained on this world's history (published into ``models``,
    which must then be this seed's own registry) instead of the registry's current one.
    """
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    world = build_world(cfg, int(time.time() * 1000))
    model = served_model(cfg, world, models, out, train)
    delivery, priors = model.pop("calibration"), model.pop("priors")
    broker = EmbeddedBroker(log_path=out / "tansu.log").start()
    worker = make_worker(broker.bootstrap, models, out, f"sim{cfg.seed}", metrics_port,
                         COLDSTREAM_AB_ARMS=cfg.arms, COLDSTREAM_AB_SALT=cfg.salt,
                         COLDSTREAM_MAX_CANDIDATES_PER_USER_DAY=str(cfg.budget_per_day),
                         COLDSTREAM_MAX_CANDIDATES_PER_SONG=str(cfg.per_song_cap),
                         COLDSTREAM_U2I_MIN_MARGIN=str(cfg.u2i_min_margin),
                         COLDSTREAM_BOUNDARY_GATES_I2I2U=str(cfg.boundary_gates_i2i2u).lower(),
                         COLDSTREAM_LOG_LEVEL="warning")
    try:
        worker.start()
        loop = Loop(cfg, world, worker, broker.bootstrap)
        samples = asyncio.run(loop.run())
        if before_stop is not None:
            before_stop(worker)
    finally:
        if worker.process is not None:
            worker.stop()
        broker.stop()
    doc = results(cfg, world, loop, samples, delivery, priors)
    doc["model"] = model
    doc["wall_s"] = round(time.monotonic() - started, 1)
    (out / "online.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    return doc
