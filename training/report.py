"""Evaluation reports: run baselines on one dataset/split, then JSON and Markdown tables."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .baselines import make_baseline
from .datasets import load_source
from .evaluate import KS, Recommender, evaluate, split_summary
from .split import cold_item_split

TABLE_METRICS = ("recall@10", "recall@20", "ndcg@20", "hit@20", "precision@20", "recall@50")
DELIVERY_METRICS = ("delivery_precision", "item_coverage", "long_tail_share", "popularity_lift")


def run(source: str, baselines: list[str], cold_frac: float = 0.2, val_frac: float = 0.1,
        seed: int = 0, max_users: int | None = None, progress: bool = True) -> dict[str, Any]:
    data = load_source(source)
    split = cold_item_split(data, cold_frac=cold_frac, val_frac=val_frac, seed=seed)
    results = []
    for name in baselines:
        model: Recommender = make_baseline(name, seed=seed, progress=progress)  # type: ignore[assignment]
        t0 = time.perf_counter()
        res = evaluate(data, split, model, seed=seed, max_users=max_users, progress=progress)
        res["wall_s"] = round(time.perf_counter() - t0, 2)
        results.append(res)
    return {"dataset": source, "summary": data.summary(), "split": split_summary(split),
            "protocol": {"cold_frac": cold_frac, "val_frac": val_frac, "seed": seed,
                         "ks": list(KS), "max_users": max_users},
            "results": results}


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
    return "\n".join(lines) + "\n"


def write(report: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = report["dataset"].replace(":", "-").replace("/", "_")
    js, md = out / f"{stem}.json", out / f"{stem}.md"
    js.write_text(json.dumps(report, indent=2))
    md.write_text(markdown(report))
    return js, md
