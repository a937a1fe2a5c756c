"""The serving commands of ``coldstream``: up, worker, demo, produce, tail, ab, schemas.

:mod:`coldstream.cli` adds the training and bench commands; this package never imports them.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer

from .logs import setup_logging
from .settings import Settings, load_settings

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Coldstream: get brand-new songs to the right listeners in seconds.")


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except Exception as exc:  # pydantic's message names the bad variable
        typer.echo(f"invalid COLDSTREAM_* setting: {exc}", err=True)
        raise typer.Exit(2) from None


def bootstrap_or_exit(settings: Settings, bootstrap: str | None) -> str:
    server = bootstrap or settings.kafka_bootstrap
    if not server:
        typer.echo("no broker: pass --bootstrap or set COLDSTREAM_KAFKA_BOOTSTRAP", err=True)
        raise typer.Exit(2)
    return server


def run_or_explain(settings: Settings) -> None:
    """Run a worker; a known failure (store locked, broken model) ends with one clear line."""
    from .errors import ColdstreamError
    from .worker import run_worker

    try:
        run_worker(settings)
    except ColdstreamError as exc:
        typer.echo(f"coldstream: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command()
def worker() -> None:
    """Run one worker (starts the embedded broker when COLDSTREAM_KAFKA_BOOTSTRAP is unset)."""
    settings = settings_or_exit()
    setup_logging(settings.log_level)
    run_or_explain(settings)


@app.command()
def up() -> None:
    """Broker, vector store and a supervised worker in the foreground (embedded unless
    configured): a worker that dies is restarted with capped backoff."""
    from contextlib import ExitStack

    from . import supervisor as sup
    from .worker import start_embedded_broker

    settings = settings_or_exit()
    setup_logging(settings.log_level)
    if settings.embedded_broker:
        typer.echo("starting embedded Tansu broker, Qdrant Edge store and one worker; "
                   "Ctrl-C stops everything")
    with ExitStack() as stack:
        bootstrap = settings.kafka_bootstrap or start_embedded_broker(settings, stack)
        env = sup.worker_env(bootstrap, settings.tansu_compat,
                             settings.effective_session_timeout_s, settings.effective_heartbeat_s)
        supervisor = sup.Supervisor(sup.worker_command(), env,
                                    policy=sup.RestartPolicy(max_s=settings.restart_backoff_max_s))
        port = supervisor.metrics.serve(settings.metrics_host, settings.supervisor_metrics_port)
        if port:
            typer.echo(f"supervisor metrics on http://{settings.metrics_host}:{port}/metrics")
        sup.forward_signals(supervisor)
        code = supervisor.run()
    raise typer.Exit(code)


@app.command()
def produce(
    topic: str,
    file: Annotated[Path | None, typer.Argument(help="JSONL file; stdin when omitted")] = None,
    bootstrap: Annotated[str | None, typer.Option(help="host:port")] = None,
    key_field: Annotated[str | None, typer.Option(help="Field used as message key")] = None,
    retry_for: Annotated[float, typer.Option(
        help="Seconds to keep retrying while the broker is unreachable")] = 30.0,
) -> None:
    """Send JSON events (one per line) to a topic, keyed for co-partitioning."""
    from .broker import client_config
    from .client import json_records
    from .client import produce as send

    settings = settings_or_exit()
    server = bootstrap_or_exit(settings, bootstrap)
    stream = file.open("rb") if file else sys.stdin.buffer
    payloads = (orjson.loads(line) for line in stream if line.strip())
    n = asyncio.run(send(server, topic, json_records(topic, payloads, key_field),
                         retry_for=retry_for, **client_config(settings)))
    typer.echo(f"sent {n} events to {topic}", err=True)


@app.command()
def tail(
    topic: str,
    bootstrap: Annotated[str | None, typer.Option(help="host:port")] = None,
    from_beginning: Annotated[bool, typer.Option(help="Start at the oldest record")] = True,
    max_messages: Annotated[int | None, typer.Option("--max", help="Stop after N")] = None,
    idle_timeout: Annotated[float | None, typer.Option(help="Stop after N idle seconds")] = None,
) -> None:
    """Print a topic's records as JSON lines (e.g. candidates.coldstart)."""
    from .broker import client_config
    from .client import consume

    settings = settings_or_exit()
    server = bootstrap_or_exit(settings, bootstrap)

    async def run() -> None:
        async for rec in consume(server, topic, from_beginning=from_beginning,
                                 idle_timeout=idle_timeout, max_messages=max_messages,
                                 **client_config(settings)):
            sys.stdout.write(rec.value.decode("utf-8", "replace") + "\n")
            sys.stdout.flush()

    asyncio.run(run())


@app.command()
def demo(
    songs: Annotated[int, typer.Option(help="New songs to publish")] = 12,
    keep_running: Annotated[bool, typer.Option(help="Keep the worker up at the end")] = False,
) -> None:
    """Run everything on embedded defaults with a small real catalogue and show candidates."""
    from .demo import run_demo

    settings = settings_or_exit()
    setup_logging("warning")
    run_demo(settings, new_songs=songs, keep_running=keep_running)


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(help="Folder for online.json")] = Path("reports/online"),
    quick: Annotated[bool, typer.Option(help="The small world (minutes); default too")] = False,
    world: Annotated[str, typer.Option(
        help="quick | demo (3,000 songs, 1,000 users) | large (9,000 songs, 3,000 users)")] =
        "quick",
    seed: Annotated[int, typer.Option(help="First seed (world, listeners, bootstrap)")] = 0,
    seeds: Annotated[int, typer.Option(help="Seeds run one after the other")] = 1,
    arms: Annotated[str, typer.Option(help="COLDSTREAM_AB_ARMS of the worker")] =
        "A=i2i2u:50,B=both:50",
    u2i_min_margin: Annotated[float, typer.Option(
        help="COLDSTREAM_U2I_MIN_MARGIN of the worker (U2I-only admission; raw margin, "
        "also with a calibrated model)")] = 0.0,
    per_song_cap: Annotated[int, typer.Option(
        help="COLDSTREAM_MAX_CANDIDATES_PER_SONG of the worker (each arm gets its share)")] = 50,
    boundary_gates_i2i2u: Annotated[bool, typer.Option(
        help="COLDSTREAM_BOUNDARY_GATES_I2I2U of the worker")] = False,
    model: Annotated[str, typer.Option(
        help="provisional (untrained) | trained: per seed, coldstream train on that world's "
        "history without the held-out new songs, published into its own registry")] =
        "provisional",
    train_epochs: Annotated[int, typer.Option(
        help="--model trained: most joint epochs (early stopping on validation picks fewer)")]
        = 6,
    model_cache: Annotated[Path, typer.Option(
        help="--model trained: registries per world and seed (a trained one is reused)")] =
        Path(".coldstream/sim-models"),
) -> None:
    """Closed loop: world listeners answer the worker's candidates (A/B arms, simulated days)."""
    from dataclasses import replace

    from .simulate import WORLDS, TrainSpec, run_simulation

    if model not in ("provisional", "trained"):
        raise typer.BadParameter("--model must be provisional or trained")
    settings = settings_or_exit()
    setup_logging("warning")
    name = "quick" if quick else world
    if name not in WORLDS:
        raise typer.BadParameter(f"--world must be one of {', '.join(WORLDS)}")
    base = WORLDS[name]
    train = TrainSpec(epochs=train_epochs) if model == "trained" else None
    if train is None:
        provisional_registry(settings.models_path)
    for s in range(seed, seed + seeds):
        cfg = replace(base, seed=s, arms=arms, u2i_min_margin=u2i_min_margin,
                      boundary_gates_i2i2u=boundary_gates_i2i2u,
                      per_song_cap=per_song_cap)
        models = (settings.models_path if train is None
                  else model_cache / f"{name}-seed{s}-e{train_epochs}")
        doc = run_simulation(cfg, models, out / f"seed-{s}" if seeds > 1 else out,
                             train=train)
        typer.echo(f"seed {s}: lift users reached {doc['lift_users_reached']:+.1%}, "
                   f"collect rate {doc['lift_collect_rate']:+.1%} ({doc['wall_s']} s, "
                   f"{doc['model']['kind']} model {doc['model']['version']})")
    if seeds > 1:
        write_seeds(out, seed)
    typer.echo(f"wrote {out / 'online.json'}")


def provisional_registry(path: Path) -> None:
    from encoders.artifacts import Registry
    from encoders.provisional import ensure_model

    ensure_model(Registry(path))


def write_seeds(out: Path, seed: int) -> None:
    """The seeds' summary, and seed ``seed``'s run with it as ``out/online.json``."""
    from .online_report import write

    summary, _, _ = write(out)
    first = orjson.loads((out / f"seed-{seed}" / "online.json").read_bytes())
    (out / "online.json").write_bytes(orjson.dumps({**first, "seeds": summary},
                                                   option=orjson.OPT_INDENT_2))


ab_app = typer.Typer(no_args_is_help=True, help="A/B tests (COLDSTREAM_AB_ARMS).")
app.add_typer(ab_app, name="ab")


@ab_app.command("end")
def ab_end(
    promote: Annotated[str | None, typer.Option(help="Arm whose version becomes current")] =
        None,
    rollback: Annotated[bool, typer.Option(help="Back to the first arm's version (control)")] =
        False,
    arms: Annotated[str | None, typer.Option(help="The test; default COLDSTREAM_AB_ARMS")] =
        None,
) -> None:
    """End an A/B test through the model registry: workers stop its arms and serve one version."""
    from encoders.artifacts import ArtifactError, Registry

    from .arms import end_test, parse_arms

    if (promote is None) == (not rollback):
        typer.echo("pass exactly one of --promote ARM and --rollback", err=True)
        raise typer.Exit(2)
    settings = settings_or_exit()
    try:
        current = end_test(Registry(settings.models_path),
                           parse_arms(settings.ab_arms if arms is None else arms), promote)
    except (ValueError, ArtifactError) as exc:
        typer.echo(f"coldstream ab end: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"test ended; current model version: {current}")


report_app = typer.Typer(no_args_is_help=True, help="Reports of serving runs.")
app.add_typer(report_app, name="report")


@report_app.command("online")
def report_online(
    run: Annotated[Path, typer.Option(help="Folder of a coldstream simulate run")] =
        Path("reports/online"),
) -> None:
    """Print the arms table of a simulate run; write online-summary.json, online.md, PNG."""
    from .online_report import write

    _, table, png = write(run)
    typer.echo(table)
    typer.echo(f"wrote {run / 'online-summary.json'}, {run / 'online.md'}"
               + (f", {png}" if png else " (no matplotlib: no PNG)"))


@app.command()
def schemas(
    out: Annotated[Path, typer.Option(help="Folder for the JSON Schemas")] = Path("deploy/schemas"),
) -> None:
    """Write one JSON Schema per topic (the contract producers and rankers validate against)."""
    from .events import CONTRACT

    out.mkdir(parents=True, exist_ok=True)
    for topic, model in CONTRACT.items():
        path = out / f"{topic}.schema.json"
        path.write_bytes(orjson.dumps(model.model_json_schema(), option=orjson.OPT_INDENT_2))
        typer.echo(f"wrote {path}")


def main() -> None:
    """The serving commands alone (the full ``coldstream`` command is :mod:`coldstream.cli`)."""
    app()


if __name__ == "__main__":
    main()
