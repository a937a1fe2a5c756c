"""``world``, ``evaluate``, ``replay``, ``convert``, ``train``, ``ablate`` and ``models``:
runnable as ``python -m training.cli``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from encoders.artifacts import Registry

app = typer.Typer(help="Datasets, replay and the cold-start benchmark.", no_args_is_help=True)
console = Console()

ALL_BASELINES = "random,popularity,tag-popularity,item-knn-cf,tag-knn,tfidf-knn,minilm-knn"
#: ``--registry`` of the train and models commands.
RegistryOpt = Annotated[Path | None, typer.Option(
    "--registry", help="Model registry folder (default COLDSTREAM_MODEL_DIR or "
    ".coldstream/models)")]


@app.command()
def world(
    out: Annotated[Path, typer.Argument(help="Folder to write the world into")],
    size: Annotated[str, typer.Option(help="tiny | demo | large")] = "demo",
    seed: int = 0,
    render: Annotated[int, typer.Option(help="Also render this many songs' audio as WAV")] = 0,
    seconds: Annotated[float, typer.Option(help="Length of rendered clips")] = 10.0,
) -> None:
    """Generate a seeded music world in the own-data format (+ truth.npz, world.json)."""
    import soundfile as sf
    from tqdm.auto import tqdm

    from coldstream_data.music_world import generate_world, render_audio
    from coldstream_data.own import write_own

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
def evaluate(
    dataset: Annotated[str, typer.Option(help="ml-100k | dslabs-movielens | "
                                         "world:demo[:seed] | folder | lastfm-1k:PATH ...")
                       ] = "ml-100k",
    baselines: Annotated[str, typer.Option(
        help="Comma-separated baseline names (audio-knn: music worlds only)")] = ALL_BASELINES,
    cold_frac: float = 0.2,
    val_frac: float = 0.1,
    seed: int = 0,
    max_users: Annotated[int | None, typer.Option(help="Sample users for big datasets")] = None,
    out: Annotated[Path, typer.Option(help="Folder for JSON + Markdown + PNG")] = Path("reports"),
    embedding_map: Annotated[str, typer.Option(help="2-D item map: tsne | pca | none")] = "tsne",
) -> None:
    """Run the cold-start benchmark and print the cold-item table."""
    from . import report

    rep = report.run(dataset, [b.strip() for b in baselines.split(",") if b.strip()],
                     cold_frac=cold_frac, val_frac=val_frac, seed=seed, max_users=max_users,
                     embedding_map=embedding_map)
    table = Table(title=f"{dataset}: cold items")
    table.add_column("model", no_wrap=True)
    for m in report.TABLE_METRICS:
        table.add_column(m, justify="right")
    for r in rep["results"]:
        seg = r["segments"]["cold"]
        table.add_row(r["model"], *(f"{seg[m]:.3f}" for m in report.TABLE_METRICS))
    console.print(table)
    js, md = report.write(rep, out)
    console.print(f"wrote {js}, {md} and {', '.join(rep['plots'])}")


@app.command()
def replay(
    source: Annotated[str, typer.Argument(help="Data source, as for evaluate")],
    out: Annotated[Path, typer.Option(help="JSONL output")] = Path("events.jsonl"),
    end_now: Annotated[bool, typer.Option(help="Shift timestamps so the last is now")] = False,
) -> None:
    """Write songs.new + interactions events (topic, key, value per line) in time order."""
    import time

    from tqdm.auto import tqdm

    from coldstream_data import load_source
    from coldstream_data.replay import replay as replay_events
    from coldstream_data.replay import write_jsonl

    data = load_source(source)
    end = int(time.time() * 1000) if end_now else None
    total = data.n_items + len(data.interactions)
    n = write_jsonl(tqdm(replay_events(data, end_at_ms=end), total=total, desc="events"), out)
    console.print(f"wrote {n} events to {out}")


@app.command()
def convert(
    kind: Annotated[str, typer.Argument(help="lastfm-1k | music4all")],
    source: Annotated[Path, typer.Argument(help="The dump's file or folder")],
    out: Annotated[Path, typer.Argument(help="Folder for catalogue.csv + interactions.csv")],
    fmt: Annotated[str, typer.Option(help="csv | parquet (parquet needs pyarrow)")] = "csv",
) -> None:
    """Convert a public dump into the own-data format."""
    from coldstream_data.converters import convert as run_convert

    console.print(f"wrote {run_convert(kind, source, out, fmt=fmt)}")


def model_registry(registry: Path | None) -> Registry:
    """``--registry``, else COLDSTREAM_MODEL_DIR, else .coldstream/models (read here only)."""
    import os

    from encoders.artifacts import Registry

    return Registry(registry or Path(os.environ.get("COLDSTREAM_MODEL_DIR",
                                                    ".coldstream/models")))


def cold_split_metrics(data: Any, cfg: Any, variant: str, seed: int) -> dict[str, float]:
    """Train on a cold-item split and measure the held-out cold items (the published metrics)."""
    from .evaluate import evaluate as run_eval
    from .recommender import GatedRecommender
    from .split import cold_item_split

    split = cold_item_split(data, seed=seed)
    rec = GatedRecommender(cfg, name=f"coldstream[{variant}]", progress=True)
    seg = run_eval(data, split, rec, segments=("cold",), seed=seed)["segments"]["cold"]
    return {f"cold_{k}": float(seg[k]) for k in
            ("recall@10", "recall@20", "ndcg@20", "hit@20", "precision@20")}


@app.command()
def train(
    dataset: Annotated[str, typer.Option(help="As for evaluate")] = "world:demo",
    epochs: Annotated[int, typer.Option(
        help="Joint (CF) epochs, after the alignment epochs")] = 6,
    align_epochs: Annotated[int, typer.Option(
        help="CLIP audio-text epochs (audio data only)")] = 3,
    seed: int = 0,
    variant: Annotated[str, typer.Option(help="full | no-contrastive | no-boundary | "
                                         "audio-only | text-only | no-tokens")] = "full",
    registry: RegistryOpt = None,
    publish: Annotated[bool, typer.Option(help="Write a version and make it current")] = True,
    bootstrap: Annotated[str | None, typer.Option(
        help="Kafka bootstrap: also send a model.versions event")] = None,
    topic: str = "model.versions",
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint")] = False,
    run_dir: Annotated[Path, typer.Option(help="Checkpoints + curve")] = Path(".coldstream/runs"),
    device: Annotated[str, typer.Option(help="auto (CUDA if present) | cpu | cuda")] = "auto",
    evaluate_split: Annotated[bool, typer.Option(
        "--evaluate/--no-evaluate",
        help="Measure cold metrics on a held-out split first (trains twice)")] = True,
) -> None:
    """Train the towers; evaluate on the cold split; train on everything; publish."""
    from dataclasses import replace

    from coldstream_data import load_source

    from .publish import announce, save
    from .recommender import VARIANTS
    from .tasks import TrainConfig
    from .train import plot_curve
    from .train import train as fit

    if variant not in VARIANTS:
        raise typer.BadParameter(f"variant must be one of {sorted(VARIANTS)}")
    cfg = replace(TrainConfig(seed=seed, epochs=epochs, align_epochs=align_epochs),
                  **VARIANTS[variant])
    data = load_source(dataset)
    metrics: dict[str, float] = {}
    if evaluate_split:
        metrics = cold_split_metrics(data, cfg, variant, seed)
        console.print(f"cold split: {metrics}")
    name = f"{dataset.replace(':', '-').replace('/', '_')}-{variant}-s{seed}"
    result = fit(data, cfg, device=device, checkpoint_dir=run_dir / name, resume=resume,
                 progress=True)
    png = plot_curve(result.history, run_dir / name / "curve.png")
    console.print(f"training curve: {png or run_dir / name / 'curve.json'}")
    if not publish:
        return
    reg = model_registry(registry)
    manifest = save(reg, result, metrics)
    console.print(f"published {manifest.version} (parent {manifest.parent}) "
                  f"in {reg.path(manifest.version)}")
    if bootstrap:
        event = announce(reg, manifest, bootstrap, topic)
        console.print(f"sent {topic} event {event.event_id}")


@app.command()
def ablate(
    dataset: Annotated[str, typer.Option(help="As for evaluate")] = "world:demo",
    variants: str = "full,no-contrastive,no-boundary,audio-only,text-only,no-tokens",
    baselines: str = ALL_BASELINES,
    epochs: Annotated[int | None, typer.Option(
        help="Joint epochs (default: TrainConfig)")] = None,
    seed: int = 0,
    out: Annotated[Path, typer.Option(help="Folder for JSON + Markdown")] = Path("reports"),
) -> None:
    """The ablation table: trained variants and baselines on one cold split."""
    import time

    from coldstream_data import load_source

    from . import report
    from .baselines import make_baseline
    from .evaluate import evaluate as run_eval
    from .evaluate import split_summary
    from .recommender import make_variant
    from .split import cold_item_split

    data = load_source(dataset)
    split = cold_item_split(data, seed=seed)
    models = [make_baseline(b.strip(), seed=seed) for b in baselines.split(",") if b.strip()]
    models += [make_variant(v.strip(), epochs=epochs, seed=seed) for v in variants.split(",")
               if v.strip()]
    results = []
    for m in models:
        t0 = time.perf_counter()
        res = run_eval(data, split, m, segments=("cold", "warm"), seed=seed)  # type: ignore[arg-type]
        res["wall_s"] = round(time.perf_counter() - t0, 2)
        console.print(f"{res['model']}: cold recall@20 "
                      f"{res['segments']['cold']['recall@20']:.3f} ({res['wall_s']} s)",
                      markup=False)
        results.append(res)
    rep = {"dataset": dataset, "summary": data.summary(), "split": split_summary(split),
           "protocol": {"seed": seed, "epochs": epochs}, "results": results}
    js, md = report.write_ablation(rep, out)
    console.print(f"wrote {js} and {md}")


models_app = typer.Typer(help="List, promote and roll back model versions.",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")



@models_app.command("list")
def models_list(registry: RegistryOpt = None) -> None:
    """Every version with its parent, cold recall@20 and whether it is current."""
    reg = model_registry(registry)
    current = reg.current()
    table = Table(title=str(reg.root))
    for col in ("", "version", "parent", "dim", "cold_recall@20", "fingerprint"):
        table.add_column(col)
    for v in reg.versions():
        try:
            m = reg.load(v)
        except Exception as exc:  # a broken version is listed, not fatal
            table.add_row("!", v, "", "", "", str(exc)[:40])
            continue
        r20 = m.metrics.get("cold_recall@20")
        table.add_row("*" if v == current else "", v, m.parent or "", str(m.dim),
                      "" if r20 is None else f"{r20:.3f}", m.data_fingerprint or "")
    console.print(table)


@models_app.command("promote")
def models_promote(version: str, registry: RegistryOpt = None) -> None:
    """Make VERSION current (refused if its files are missing or corrupt)."""
    reg = model_registry(registry)
    reg.promote(version)
    console.print(f"current: {version}")


@models_app.command("rollback")
def models_rollback(registry: RegistryOpt = None) -> None:
    """Make the current version's parent current again."""
    from .publish import rollback

    try:
        parent = rollback(model_registry(registry))
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    console.print(f"current: {parent}")


if __name__ == "__main__":
    app()
