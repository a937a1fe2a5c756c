"""Evaluation reports: run baselines on one dataset/split, then JSON, Markdown and PNG plots.

Besides the ranking tables, a report measures *embedding quality* where the catalogue has
single-label ``genre`` / ``mood`` columns (the music world): for each content baseline's item
vectors, kNN purity (share of an item's 10 nearest neighbours, cosine, with its label) next
to its chance level, the cosine silhouette by label, and a 2-D map (t-SNE or PCA) coloured
by genre.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from coldstream_data import load_source
from coldstream_data.base import Dataset

from .baselines import make_baseline
from .evaluate import KS, Recommender, evaluate, split_summary
from .metrics import knn_purity, silhouette
from .split import cold_item_split

TABLE_METRICS = ("recall@10", "recall@20", "ndcg@20", "hit@20", "precision@20", "recall@50")
DELIVERY_METRICS = ("delivery_precision", "item_coverage", "long_tail_share", "popularity_lift")
#: Single-label catalogue columns that embedding quality is measured against, if present.
EMBED_LABELS = ("genre", "mood")
PURITY_K = 10
PURITY_SAMPLE = 5000  # knn_purity builds an n x n similarity matrix
SILHOUETTE_SAMPLE = 2000
MAP_SAMPLE = 1500
MAP_METHODS = ("tsne", "pca", "none")


def run(source: str, baselines: list[str], cold_frac: float = 0.2, val_frac: float = 0.1,
        seed: int = 0, max_users: int | None = None, progress: bool = True,
        embedding_map: str = "tsne") -> dict[str, Any]:
    """Evaluate ``baselines`` on one split; embedding quality of every content model.

    The 2-D map coordinates go under ``report["_maps"]``: used for the PNG, never written
    to JSON (keys starting with ``_`` are dropped there).
    """
    if embedding_map not in MAP_METHODS:
        raise ValueError(f"embedding_map must be one of {MAP_METHODS}")
    data = load_source(source)
    split = cold_item_split(data, cold_frac=cold_frac, val_frac=val_frac, seed=seed)
    labels = label_columns(data)
    results, quality, maps = [], {}, {}
    for name in baselines:
        model: Recommender = make_baseline(name, seed=seed, progress=progress)  # type: ignore[assignment]
        t0 = time.perf_counter()
        res = evaluate(data, split, model, seed=seed, max_users=max_users, progress=progress)
        res["wall_s"] = round(time.perf_counter() - t0, 2)
        results.append(res)
        vectors = getattr(model, "vectors", None)
        if labels and vectors is not None:
            t0 = time.perf_counter()
            quality[model.name] = embedding_quality(vectors, data, labels, seed=seed)
            if embedding_map != "none":
                maps[model.name] = item_map(vectors, data, method=embedding_map, seed=seed)
                maps[model.name]["subtitle"] = ", ".join(
                    f"{c} purity {quality[model.name][c]['purity@10']:.2f}" for c in labels)
            quality[model.name]["wall_s"] = round(time.perf_counter() - t0, 2)
    rep: dict[str, Any] = {
        "dataset": source, "summary": data.summary(), "split": split_summary(split),
        "protocol": {"cold_frac": cold_frac, "val_frac": val_frac, "seed": seed,
                     "ks": list(KS), "max_users": max_users},
        "results": results}
    if quality:
        rep["embedding_quality"] = {
            "labels": {c: label_stats(data, c) for c in labels},
            "k": PURITY_K, "items": min(data.n_items, PURITY_SAMPLE),
            "silhouette_sample": min(data.n_items, SILHOUETTE_SAMPLE),
            "map": {"method": embedding_map, "points": min(data.n_items, MAP_SAMPLE)},
            "models": quality}
        rep["_maps"] = maps
    return rep


def label_columns(data: Dataset) -> list[str]:
    """The single-label columns (genre, mood) this catalogue has; none for MovieLens."""
    return [c for c in EMBED_LABELS if c in data.catalogue.columns]


def label_stats(data: Dataset, column: str) -> dict[str, Any]:
    """Class count and chance purity: sum of squared class shares (label-blind vectors)."""
    _, counts = np.unique(data.catalogue[column].astype(str).to_numpy(), return_counts=True)
    share = counts / counts.sum()
    return {"classes": int(len(counts)), "chance_purity": round(float(share @ share), 4)}


def _sample(n: int, size: int, seed: int) -> np.ndarray:
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def embedding_quality(vectors: np.ndarray, data: Dataset, labels: list[str], seed: int = 0
                      ) -> dict[str, Any]:
    """kNN purity (k=10, cosine) and cosine silhouette of item vectors, per label column."""
    idx = _sample(len(vectors), PURITY_SAMPLE, seed)
    v = np.asarray(vectors, dtype=np.float32)[idx]
    out: dict[str, Any] = {"dim": int(v.shape[1])}
    for col in labels:
        y = data.catalogue[col].astype(str).to_numpy()[idx]
        out[col] = {"purity@10": round(knn_purity(v, y, k=PURITY_K), 4),
                    "silhouette": round(silhouette(v, y, seed=seed, sample=SILHOUETTE_SAMPLE),
                                        4)}
    return out


def item_map(vectors: np.ndarray, data: Dataset, method: str = "tsne", seed: int = 0,
             label: str = "genre") -> dict[str, Any]:
    """2-D coordinates of a seeded sample of <= MAP_SAMPLE items, with their labels."""
    from sklearn.decomposition import PCA

    idx = _sample(len(vectors), MAP_SAMPLE, seed)
    v = np.asarray(vectors, dtype=np.float32)[idx]
    v = v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-12)  # cosine geometry
    if method == "pca" or len(v) < 10:
        xy = PCA(2, random_state=seed).fit_transform(v)
    else:
        from sklearn.manifold import TSNE

        if v.shape[1] > 50:
            v = PCA(50, random_state=seed).fit_transform(v)
        xy = TSNE(2, init="pca", perplexity=min(30.0, (len(v) - 1) / 3), max_iter=500,
                  random_state=seed).fit_transform(v)
    return {"xy": xy, "labels": data.catalogue[label].astype(str).to_numpy()[idx]}


def markdown(report: dict[str, Any], segments: tuple[str, ...] = ("cold", "warm", "all")) -> str:
    """One table per segment plus the cold-item delivery table."""
    lines = [f"### {report['dataset']}", "",
             "split: " + ", ".join(f"{k}={v}" for k, v in report["split"].items()), ""]
    for seg in segments:
        first = report["results"][0]["segments"].get(seg)
        if first is None:
            continue
        lines += [f"**{seg}** ({first['users']} users, {first['candidates']} candidate items)",
                  "", "| model | " + " | ".join(TABLE_METRICS) + " |",
                  "|---" * (len(TABLE_METRICS) + 1) + "|"]
        for r in report["results"]:
            m = r["segments"][seg]
            lines.append(f"| {r['model']} | " + " | ".join(f"{m[k]:.3f}" for k in TABLE_METRICS)
                         + " |")
        lines.append("")
    lines += ["**cold delivery** (top-20 lists as deliveries)", "",
              "| model | " + " | ".join(DELIVERY_METRICS) + " |",
              "|---" * (len(DELIVERY_METRICS) + 1) + "|"]
    for r in report["results"]:
        d = r["segments"]["cold"]["delivery_top20"]
        lines.append(f"| {r['model']} | " + " | ".join(f"{d[k]:.3f}" for k in DELIVERY_METRICS)
                     + " |")
    lines += embedding_markdown(report)
    for png in report.get("plots", []):
        lines += ["", f"![{Path(png).stem}]({png})"]
    return "\n".join(lines) + "\n"


def seed_markdown(doc: dict[str, Any], metrics: tuple[str, ...] = (
        "recall@10", "recall@20", "ndcg@20", "hit@20", "delivery_precision")) -> str:
    """Cold-item table of :func:`training.protocol.over_seeds` results: mean ± sd per cell."""
    from .protocol import mean_sd

    seeds = doc["protocol"]["seeds"]
    lines = [f"### {doc['dataset']}: cold items, mean ± sd over {len(seeds)} seed"
             f"{'s' if len(seeds) > 1 else ''} ({', '.join(map(str, seeds))})", "",
             "| model | " + " | ".join(metrics) + " | best epoch | s per run |",
             "|---" * (len(metrics) + 3) + "|"]
    for rep in doc["results"]:
        cells = []
        for m in metrics:
            if m == "delivery_precision":
                key = ("delivery_gated" if "delivery_gated" in rep["runs"][0]["segments"]["cold"]
                       else "delivery_top20")
                x = np.asarray([r["segments"]["cold"][key][m] for r in rep["runs"]])
                st = {"mean": float(x.mean()), "sd": float(x.std(ddof=1)) if len(x) > 1
                      else float("nan"), "n": len(x)}
            else:
                st = rep["summary"]["cold"][m]
            cells.append(mean_sd(st))
        epochs = [r["best_epoch"] for r in rep["runs"] if "best_epoch" in r]
        lines.append(f"| {rep['model']} | " + " | ".join(cells) + " | "
                     + (", ".join(map(str, epochs)) or "-")
                     + f" | {rep['summary']['wall_s']['mean']:.0f} |")
    return "\n".join(lines) + "\n"


def embedding_markdown(report: dict[str, Any]) -> list[str]:
    """The embedding-quality table (empty when the catalogue has no genre/mood labels)."""
    eq = report.get("embedding_quality")
    if not eq:
        return []
    cols = list(eq["labels"])
    lines = ["", f"**embedding quality** (item vectors of each content baseline; purity@"
             f"{eq['k']}: share of the {eq['k']} nearest neighbours, cosine, with the item's "
             f"label, over {eq['items']} items; silhouette: cosine, {eq['silhouette_sample']}"
             "-item sample, -1..1)", "",
             "| vectors | dim | " + " | ".join(f"{c} purity@{eq['k']} | {c} silhouette"
                                             for c in cols) + " |",
             "|---" * (2 + 2 * len(cols)) + "|",
             "| chance | | " + " | ".join(
                 f"{eq['labels'][c]['chance_purity']:.3f} | 0" for c in cols) + " |"]
    for name, q in eq["models"].items():
        lines.append(f"| {name} | {q['dim']} | " + " | ".join(
            f"{q[c]['purity@10']:.3f} | {q[c]['silhouette']:.3f}" for c in cols) + " |")
    return lines


def write(report: dict[str, Any], out_dir: str | Path, plots: bool = True
          ) -> tuple[Path, Path]:
    """``<stem>.json`` and ``<stem>.md``; with ``plots``, PNGs listed in ``report["plots"]``.

    PNGs: ``<stem>-metrics.png`` (Recall@20 / NDCG@20 per model, cold and warm) and, where
    embedding quality was measured with a map, ``<stem>-map.png`` (coloured by genre).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = report["dataset"].replace(":", "-").replace("/", "_")
    js, md = out / f"{stem}.json", out / f"{stem}.md"
    if plots:
        from . import plots as plot

        written = [plot.metric_bars(report, out / f"{stem}-metrics.png")]
        if report.get("_maps"):
            method = report["embedding_quality"]["map"]["method"]
            written.append(plot.embedding_map(
                report["_maps"], out / f"{stem}-map.png", label="genre",
                title=f"{report['dataset']}: item vectors ({method}), coloured by genre"))
        report["plots"] = [p.name for p in written]
    js.write_text(json.dumps({k: v for k, v in report.items() if not k.startswith("_")},
                             indent=2))
    md.write_text(markdown(report))
    return js, md


def delivery_markdown(results: list[dict[str, Any]]) -> list[str]:
    """The cold delivery table of models with a boundary tower (none: no lines)."""
    gated = [r for r in results if "delivery_gated" in r["segments"]["cold"]]
    if not gated:
        return []
    lines = ["", "**cold delivery through the boundary tower** (score >= boundary)", "",
             "| model | deliveries | " + " | ".join(DELIVERY_METRICS) + " |",
             "|---" * (len(DELIVERY_METRICS) + 2) + "|"]
    for r in gated:
        d = r["segments"]["cold"]["delivery_gated"]
        lines.append(f"| {r['model']} | {d.get('deliveries', 0):.0f} | "
                     + " | ".join(f"{d[k]:.3f}" for k in DELIVERY_METRICS) + " |")
    return lines


def write_seed_ablation(doc: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """``ablation-<dataset>.json`` and ``.md`` of a seeds run: mean ± sd tables."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"ablation-{doc['dataset'].replace(':', '-').replace('/', '_')}"
    js, md = out / f"{stem}.json", out / f"{stem}.md"
    js.write_text(json.dumps(doc, indent=1, default=float))
    md.write_text(seed_markdown(doc))
    return js, md


def write_ablation(report: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """``ablation-<dataset>.json`` and ``.md``: the cold and warm tables, then cold delivery
    through the boundary tower for the variants that have one."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"ablation-{report['dataset'].replace(':', '-').replace('/', '_')}"
    js, md = out / f"{stem}.json", out / f"{stem}.md"
    js.write_text(json.dumps(report, indent=1, default=float))
    lines = delivery_markdown(report["results"])
    md.write_text(markdown(report, segments=("cold", "warm"))
                  + ("\n".join(lines) + "\n" if lines else ""))
    return js, md
