"""``world``, ``evaluate``, ``replay`` and ``convert``: mounted into ``coldstream``, and
runnable alone as ``python -m training.cli``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Datasets, replay and the cold-start benchmark.", no_args_is_help=True)
console = Console()


@app.command()
def world(out: Path = typer.Argument(..., help="Folder to write the world into"),
          size: str = typer.Option("demo", help="tiny | demo | large"),
          seed: int = typer.Option(0),
          render: int = typer.Option(0, help="Also render this many songs' audio as WAV"),
          seconds: float = typer.Option(10.0, help="Length of rendered clips")) -> None:
    """Generate a seeded music world in the own-data format (+ truth.npz, world.json)."""
    import soundfile as sf
    from tqdm.auto import tqdm

    from .datasets.music_world import generate_world, render_audio
    from .datasets.own import write_own

    data = generate_world(size, seed=seed)
    if render:
        audio_dir = out / "audio"
        audio_dir.mkdir(parents=True, exist_ok=True)
        paths = list(data.catalogue["audio_path"])
        for i in tqdm(range(min(render, data.n_items)), desc="render audio"):
            row = data.catalogue.iloc[i]
            path = audio_dir / f"{row['song_id']}.wav"
            sf.write(path, render_audio(row, seconds=seconds), 16_000)
            paths[i] = str(path.resolve())
        data.catalogue["audio_path"] = paths
    write_own(data, out)
    console.print(f"wrote {data.summary()} to {out}")


@app.command()
def evaluate(dataset: str = typer.Option("ml-100k", help="ml-100k | dslabs-movielens | "
                                          "world:demo[:seed] | folder | lastfm-1k:PATH ..."),
             baselines: str = typer.Option(
                 "random,popularity,tag-popularity,item-knn-cf,tag-knn,tfidf-knn,minilm-knn",
                 help="Comma-separated baseline names (audio-knn: music worlds only)"),
             cold_frac: float = typer.Option(0.2), val_frac: float = typer.Option(0.1),
             seed: int = typer.Option(0),
             max_users: int | None = typer.Option(None, help="Sample users for big datasets"),
             out: Path = typer.Option(Path("reports"), help="Folder for JSON + Markdown")
             ) -> None:
    """Run the cold-start benchmark and print the cold-item table."""
    from . import report

    rep = report.run(dataset, [b.strip() for b in baselines.split(",") if b.strip()],
                     cold_frac=cold_frac, val_frac=val_frac, seed=seed, max_users=max_users)
    table = Table(title=f"{dataset}: cold items")
    table.add_column("model", no_wrap=True)
    for m in report.TABLE_METRICS:
        table.add_column(m, justify="right")
    for r in rep["results"]:
        seg = r["segments"]["cold"]
        table.add_row(r["model"], *(f"{seg[m]:.3f}" for m in report.TABLE_METRICS))
    console.print(table)
    js, md = report.write(rep, out)
    console.print(f"wrote {js} and {md}")


@app.command()
def replay(source: str = typer.Argument(..., help="Data source, as for evaluate"),
           out: Path = typer.Option(Path("events.jsonl"), help="JSONL output"),
           end_now: bool = typer.Option(False, help="Shift timestamps so the last is now")
           ) -> None:
    """Write songs.new + interactions events (topic, key, value per line) in time order."""
    import time

    from tqdm.auto import tqdm

    from .datasets import load_source
    from .replay import replay as replay_events
    from .replay import write_jsonl

    data = load_source(source)
    end = int(time.time() * 1000) if end_now else None
    total = data.n_items + len(data.interactions)
    n = write_jsonl(tqdm(replay_events(data, end_at_ms=end), total=total, desc="events"), out)
    console.print(f"wrote {n} events to {out}")


@app.command()
def convert(kind: str = typer.Argument(..., help="lastfm-1k | music4all"),
            source: Path = typer.Argument(..., help="The dump's file or folder"),
            out: Path = typer.Argument(..., help="Folder for catalogue.csv + interactions.csv"),
            fmt: str = typer.Option("csv", help="csv | parquet (parquet needs pyarrow)")
            ) -> None:
    """Convert a public dump into the own-data format."""
    from .datasets.converters import convert as run_convert

    console.print(f"wrote {run_convert(kind, source, out, fmt=fmt)}")


if __name__ == "__main__":
    app()
