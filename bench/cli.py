"""``coldstream bench`` (also ``python -m bench.cli``): run scenarios, print tables, save JSON."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from .common import Mode, Report, console, machine

app = typer.Typer(add_completion=False, help="Measure every hot path next to its baseline.")

#: Scenario name -> what it measures (the order they run in).
SCENARIOS = {
    "encoders": "ONNX Runtime vs torch eager, text and audio towers, batch 1..64",
    "search": "Qdrant Edge HNSW vs exact numpy: latency, recall@10, filters, size curve",
    "segments": "the worker's search: sealed IVF + growing segments vs exact numpy, recall@10, "
                "build, memory, longest event-loop stall during a merge",
    "swap": "model swap: upsert a new version's collection, HNSW build, re-embed estimate",
    "flush": "Qdrant Edge flush settings (timer, point bound, fsync first) vs the longest "
             "event-loop stall they cause while writes stream in",
    "reembed": "model swap re-embedding with and without the frozen-backbone cache",
    "scaling_users": "candidate generation cost vs number of users",
    "ingest": "interactions through a worker vs raw aiokafka; events/s curve",
    "new_song": "new song with 30 s audio -> first candidate latency, per-stage breakdown",
    "scale": "the soak: one worker with N songs and N user vectors offered interactions and "
             "new songs for minutes; lag, RSS, merges, loop stall (not in the default run)",
    "swap_soak": "new-song latency before, during and after a live model swap on a soaking "
                 "worker (not in the default run)",
    "codecs": "Kafka codecs: candidates' bytes on the wire and latency per worker codec; "
              "producer codecs into one worker",
}


def run_one(name: str, mode: Mode, models: Path, done: dict[str, Report],
            state_users: int | None = None, size: dict[str, Any] | None = None,
            out: Path = Path("bench/results"), vectors: str = "mixture",
            memory_cap_gb: float | None = None, vector_dtype: str = "float32") -> Report:
    from . import (
        codecs,
        encoders,
        flush,
        ingest,
        latency,
        reembed,
        scale,
        search,
        segments,
        swap,
        swap_soak,
    )

    if name == "encoders":
        return encoders.run(mode, models=models)
    if name == "search":
        return search.run(mode)
    if name == "segments":
        return segments.run(mode, models=models if vectors == "world" else None)
    if name == "swap":
        rate = encoders.song_rate(done["encoders"]) if "encoders" in done else None
        return swap.run(mode, encoder_rate=rate)
    if name == "flush":
        return flush.run(mode)
    if name == "reembed":
        return reembed.run(mode, models)
    if name == "scaling_users":
        return swap.users_curve(mode)
    if name == "ingest":
        return ingest.run(mode, models=models, state_users=state_users, **(size or {}))
    if name == "new_song":
        return latency.run(mode, models=models)
    if name == "scale":
        return scale.run(mode, models, out, memory_cap_gb=memory_cap_gb,
                         vector_dtype=vector_dtype)
    if name == "swap_soak":
        return swap_soak.run(mode, models)
    if name == "codecs":
        return codecs.run(mode, models=models)
    raise typer.BadParameter(f"unknown scenario {name!r}; one of {', '.join(SCENARIOS)}")


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick/--full",
                                        help="quick: CI sizes, a few minutes")] = True,
    out: Annotated[Path, typer.Option(help="folder for one JSON per scenario")] = Path(
        "bench/results"),
    only: Annotated[list[str] | None, typer.Option(
        help=f"run only these scenarios: {', '.join(SCENARIOS)}")] = None,
    models: Annotated[Path, typer.Option(help="model registry (provisional model built "
                                              "on first use)")] = Path("build/bench-models"),
    state_users: Annotated[int | None, typer.Option(
        help="ingest: users in the restart/RSS rows (default 100k quick, 1M full; 0: skip)",
    )] = None,
    users: Annotated[int | None, typer.Option(
        help="ingest: listeners in the catalogue (default 1k quick, 100k full)")] = None,
    songs: Annotated[int | None, typer.Option(
        help="ingest: songs in the catalogue (default 2k quick, 100k full)")] = None,
    events: Annotated[int | None, typer.Option(
        help="ingest: interactions in the backlog (default 10k quick, 50k full)")] = None,
    paced: Annotated[str | None, typer.Option(
        help="ingest: offered rates, comma-separated (quick 100,300,1000; full 1000,5000)",
    )] = None,
    paced_s: Annotated[float | None, typer.Option(
        help="ingest: seconds each paced rate is offered (default 5; full 60)")] = None,
    memory_cap_gb: Annotated[float | None, typer.Option(
        help="scale: run the worker in a memory cgroup of this size (needs root)")] = None,
    vector_dtype: Annotated[str, typer.Option(
        help="scale: how the store and the worker's mirrors hold vectors (float32 or "
             "float16; COLDSTREAM_VECTOR_DTYPE)")] = "float32",
    vectors: Annotated[str, typer.Option(
        help="segments: mixture (the Gaussian mixture, the hard case) or world (a music "
             "world's songs encoded by the --models registry's model)")] = "mixture",
) -> None:
    """Run the benchmark scenarios; every table has a same-run baseline ratio."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING)
    mode: Mode = "quick" if quick else "full"
    names = only or [n for n in SCENARIOS if n not in ("scale", "swap_soak")]  # soaks: asked
    for n in names:
        if n not in SCENARIOS:
            raise typer.BadParameter(f"unknown scenario {n!r}; one of {', '.join(SCENARIOS)}")
    m = machine()
    console.print(f"[bold]coldstream bench --{mode}[/] on {m['cpu']}, {m['cores']} cores, "
                  f"{m['mem_gib']} GiB")
    done: dict[str, Report] = {}
    start = time.perf_counter()
    for name in names:
        console.rule(f"{name}: {SCENARIOS[name]}")
        size: dict[str, Any] = {k: v for k, v in {"n_users": users, "n_songs": songs, "n": events,
                                  "paced_s": paced_s}.items() if v is not None}
        if name == "ingest":
            size["lag_png"] = out / "ingest-lag.png"
        if paced:
            size["rates"] = [int(r) for r in paced.split(",")]
        rep = run_one(name, mode, models, done, state_users, size, out, vectors, memory_cap_gb,
                      vector_dtype)
        done[name] = rep
        rep.print()
        console.print(f"  saved {rep.save(out)}")
    console.print(f"all scenarios: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    app()
