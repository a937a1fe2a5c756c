"""``world``, ``evaluate``, ``replay``, ``convert``, ``train``, ``ablate``, ``served``, ``models``:
runnable as ``python -m training.cli``."""

from __future__ import annotations

from collections import Counter
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
JOBS_HELP = ("Seeds run at once, each in a process of its own with cores/jobs torch threads "
             "(same figures; on 2 cores 2 ran ml-100k's seeds 1.35x faster)")
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


def kept_audio_tower(reg: Any, version: str) -> str:
    """The audio graph of a published version, if a new training can keep it as it is."""
    from encoders.features import MelConfig

    from .tasks import TrainConfig

    if version not in reg.versions():
        raise typer.BadParameter(f"no published version {version!r} in {reg.root}")
    manifest = reg.load(version)
    if manifest.audio.mel_config() != MelConfig():
        raise typer.BadParameter(f"{version}'s audio tower reads other log-mel settings "
                                 f"({manifest.audio.mel}) than training does")
    if manifest.audio.dim != TrainConfig.audio_dim:
        raise typer.BadParameter(f"{version}'s audio tower gives {manifest.audio.dim}-d "
                                 f"vectors; training expects {TrainConfig.audio_dim}")
    return str(reg.path(version) / manifest.audio.graph)


def measure_over_seeds(data: Any, cfg: Any, variant: str, seed: int, seeds: int, *,
                       epochs: int, align_epochs: int, tune: bool, jobs: int = 1,
                       ) -> tuple[dict[str, float], Any, Any, str | None]:
    """The honest protocol: one early-stopped training and cold-test measurement per seed
    (``jobs`` at a time), printed as they finish; returns the mean ± sd metrics, ``cfg``
    with the median epoch count selected on validation (for the final model), and the
    delivery calibration (mean of the seeds' fits on their validation items; None for an
    ungated variant)."""
    from dataclasses import replace
    from functools import partial

    from .protocol import over_seeds
    from .recommender import MODEL_GRID, make_variant

    model = partial(make_variant, variant, epochs, align_epochs=align_epochs, tune=tune,
                    audio_graph=cfg.audio_graph)  # seed last; a partial pickles for --jobs

    def show(r: dict) -> None:
        c = r["segments"]["cold"]
        console.print(f"seed {r['seed']}: cold recall@20 {c['recall@20']:.3f} "
                      f"ndcg@20 {c['ndcg@20']:.3f} (best epoch {r.get('best_epoch')}, "
                      f"{r['wall_s']} s)", markup=False, soft_wrap=True)

    rep = over_seeds(data, model, list(range(seed, seed + seeds)), on_result=show,
                     jobs=jobs, keep_models=True)
    metrics = seed_metrics(rep)
    console.print(seed_line(rep), markup=False, soft_wrap=True)
    best = sorted(r["best_epoch"] for r in rep["runs"] if "best_epoch" in r)
    if best:
        cfg = replace(cfg, epochs=best[len(best) // 2])
    chosen = [str(r["chosen"]) for r in rep["runs"] if r.get("chosen") in MODEL_GRID]
    if tune and chosen:
        pick = majority_choice(chosen, list(MODEL_GRID))
        cfg = replace(cfg, **MODEL_GRID[pick])
        console.print(f"selected on validation: {', '.join(chosen)}; final model: {pick}",
                      markup=False, soft_wrap=True)
    console.print(f"final model: {cfg.epochs} joint epochs (median selected on "
                  "validation)", markup=False, soft_wrap=True)
    return metrics, cfg, *delivery_over_seeds(data, rep["models"])


def majority_choice(chosen: list[str], order: list[str]) -> str:
    """The choice most seeds made on validation; a tie goes to the earlier in ``order``
    (the default first), so the final model changes only when most seeds ask for it."""
    counts = Counter(chosen)
    return max(order, key=lambda c: (counts[c], -order.index(c)))


def delivery_over_seeds(data: Any, fitted: dict[int, Any]) -> tuple[Any, str | None]:
    """Each seed's served-path calibration, fitted on that split's validation items only,
    averaged (``training/served.py``), with the served popularity prior as its fifth input
    (``training/popularity.py``: each seed's prior fitted on its training items, its target
    picked on its validation items). Returns the calibration (None when the variant has no
    boundary tower) and the target most seeds picked (None: no prior, a variant without
    text)."""
    from .popularity import pick_prior, prior_features, trained_result
    from .recommender import PRIOR_TARGETS
    from .selection import validation_view
    from .served import average_delivery, calibrate_on_validation
    from .split import cold_item_split

    if not all(hasattr(m, "boundary") for m in fitted.values()):
        return None, None
    results = {s: trained_result(m) for s, m in fitted.items()}
    with_prior = all(r is not None and r.cfg.use_text for r in results.values())
    specs, targets = [], []
    for s, m in fitted.items():
        split = cold_item_split(data, seed=s)
        prior = None
        if with_prior:
            train = split.train_dataset(data)
            x = prior_features(train, results[s])  # type: ignore[arg-type]
            target, prior = pick_prior(x, train, validation_view(split))
            targets.append(target)
        specs.append(calibrate_on_validation(data, split, m.items, m.users, m.bounds,
                                             prior=prior).spec())
    spec = average_delivery(specs, fitted_on=f"validation items, seeds {sorted(fitted)}")
    target = majority_choice(targets, list(PRIOR_TARGETS)) if targets else None
    console.print(f"delivery calibration (validation): {spec.features} coef {spec.coef}, "
                  f"intercept {spec.intercept}; prior target {target} (seeds: {targets})",
                  markup=False, soft_wrap=True)
    return spec, target


@app.command()
def train(
    dataset: Annotated[str, typer.Option(help="As for evaluate")] = "world:demo",
    epochs: Annotated[int, typer.Option(
        help="Most joint (CF) epochs, after the alignment epochs; early stopping on "
        "validation picks fewer")] = 12,
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
        help="Measure cold metrics on held-out splits first (one training per seed)")] = True,
    seeds: Annotated[int, typer.Option(
        help="Seeds measured (seed .. seed+N-1): split and init; reported as mean ± sd")] = 5,
    tune: Annotated[bool, typer.Option(
        help="Also pick the token view on validation: words counted over every song, over "
        "trained songs only, or no words (3x the training time)")] = False,
    keep_audio_of: Annotated[str | None, typer.Option(
        help="Keep this published version's audio tower (frozen, no alignment): workers "
        "then swap to the new version reusing every song's cached audio output")] = None,
    jobs: Annotated[int, typer.Option(help=JOBS_HELP)] = 1,
) -> None:
    """Train the towers; measure them over seeds; train on everything; publish.

    The measurement is the honest protocol: for each of ``--seeds`` seeds, a fresh cold-item
    split and a fresh model early-stopped on that split's validation items (never the cold
    test), then one cold-test measurement; the result is printed as mean ± sd. The published
    model is trained on all data for the median of the selected epoch counts.
    """
    from dataclasses import replace

    from coldstream_data import load_source

    from .popularity import served_prior
    from .publish import announce, save
    from .recommender import VARIANTS
    from .tasks import TrainConfig
    from .train import plot_curve
    from .train import train as fit

    if variant not in VARIANTS:
        raise typer.BadParameter(f"variant must be one of {sorted(VARIANTS)}")
    kept = kept_audio_tower(model_registry(registry), keep_audio_of) if keep_audio_of else ""
    cfg = replace(TrainConfig(seed=seed, epochs=epochs, align_epochs=align_epochs,
                              audio_graph=kept), **VARIANTS[variant])
    data = load_source(dataset)
    metrics: dict[str, float] = {}
    delivery = prior_target = None  # without held-out seeds there is no validation
    if evaluate_split and seeds > 0:
        metrics, cfg, delivery, prior_target = measure_over_seeds(
            data, cfg, variant, seed, seeds, epochs=epochs, align_epochs=align_epochs,
            tune=tune, jobs=jobs)
    name = f"{dataset.replace(':', '-').replace('/', '_')}-{variant}-s{seed}"
    result = fit(data, cfg, device=device, checkpoint_dir=run_dir / name, resume=resume,
                 progress=True)
    png = plot_curve(result.history, run_dir / name / "curve.png")
    console.print(f"training curve: {png or run_dir / name / 'curve.json'}")
    if not publish:
        return
    if delivery is not None and prior_target is not None:  # the prior of this model's space
        delivery.prior = served_prior(data, result, prior_target,
                                      fitted_on=f"{dataset}, every item with an event")
    reg = model_registry(registry)
    manifest = save(reg, result, metrics, delivery=delivery)
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
        help="Most joint epochs (default: TrainConfig; early stopping picks fewer)")] = None,
    seed: Annotated[int, typer.Option(help="First seed")] = 0,
    seeds: Annotated[int, typer.Option(help="Seeds (split + init); tables are mean ± sd")] = 5,
    tune: Annotated[bool, typer.Option(
        help="Grid-search every learned baseline and variant on validation (3 candidates "
        "each; default: one configuration each, early-stopped on validation)")] = False,
    out: Annotated[Path, typer.Option(help="Folder for JSON + Markdown")] = Path("reports"),
    jobs: Annotated[int, typer.Option(help=JOBS_HELP)] = 1,
) -> None:
    """The ablation table: trained variants and baselines, mean ± sd over seeds."""
    from functools import partial

    from coldstream_data import load_source

    from . import report
    from .baselines import make_baseline
    from .protocol import over_seeds
    from .recommender import make_variant

    data = load_source(dataset)
    # partials, not lambdas: with --jobs they are sent to other processes
    makers = [partial(make_baseline, b.strip(), tune=tune)
              for b in baselines.split(",") if b.strip()]
    makers += [partial(make_variant, v.strip(), epochs, tune=tune)
               for v in variants.split(",") if v.strip()]
    results = []
    for make in makers:
        rep = over_seeds(data, make, list(range(seed, seed + seeds)), jobs=jobs)
        for r in ([rep["base"]] if "base" in rep else []) + [rep]:
            console.print(seed_line(r), markup=False, soft_wrap=True)
            results.append(r)
        doc = {"dataset": dataset, "summary": data.summary(),
               "protocol": {"seeds": list(range(seed, seed + seeds)), "epochs": epochs,
                            "tune": tune, "selection": "validation items only"},
               "results": results}
        js, md = report.write_seed_ablation(doc, out)  # rewritten as it goes
    console.print(f"wrote {js} and {md}")


@app.command()
def served(
    dataset: Annotated[str, typer.Option(help="As for evaluate")] = "world:demo",
    seed: Annotated[int, typer.Option(help="First seed")] = 0,
    seeds: Annotated[int, typer.Option(help="Seeds (split + init); mean ± sd")] = 5,
    epochs: Annotated[int | None, typer.Option(help="Most joint epochs")] = None,
    out: Annotated[Path, typer.Option(help="Folder for JSON + Markdown")] = Path("reports"),
    jobs: Annotated[int, typer.Option(help=JOBS_HELP)] = 1,
) -> None:
    """The served path scored as delivered: I2I2U alone vs I2I2U + U2I, raw vs calibrated,
    reach at equal delivery precision (the worker's own candidate code, mean ± sd)."""
    import orjson

    from coldstream_data import load_source

    from .served import served_over_seeds, served_table

    data = load_source(dataset)
    doc = served_over_seeds(data, list(range(seed, seed + seeds)), epochs=epochs,
                            progress=True, jobs=jobs)
    doc["dataset"] = dataset
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"served-{dataset.replace(':', '-')}"
    stem.with_suffix(".json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    table = served_table(doc)
    stem.with_suffix(".md").write_text(table)
    console.print(table, markup=False, soft_wrap=True)


def seed_metrics(rep: dict) -> dict[str, float]:
    """Manifest metrics: mean, sd and seed count of the cold headline metrics."""
    out: dict[str, float] = {}
    for k in ("recall@10", "recall@20", "ndcg@20", "hit@20", "precision@20"):
        st = rep["summary"]["cold"][k]
        out[f"cold_{k}"] = st["mean"]
        if st["n"] > 1:  # one seed has no sd (NaN would be null in JSON, unreadable as float)
            out[f"cold_{k}_sd"] = st["sd"]
    out["seeds"] = float(len(rep["runs"]))
    return out


def seed_line(rep: dict) -> str:
    """One line: cold Recall@20 and NDCG@20 as mean ± sd over the seeds."""
    from .protocol import mean_sd

    c = rep["summary"]["cold"]
    n = len(rep["runs"])
    return (f"{rep['model']} over {n} seed{'s' if n > 1 else ''}: cold recall@20 "
            f"{mean_sd(c['recall@20'])}, ndcg@20 {mean_sd(c['ndcg@20'])}, "
            f"{rep['summary']['wall_s']['mean']:.0f} s per run")


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
