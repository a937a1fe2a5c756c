"""Stop 46: does a wider grid for the prior's weight help `full+paths`?

Validation put the prior's weight `lam` at the top of its grid (0.4) on every dslabs seed
and on one ml-100k seed. Per seed, one fit of `full+paths` (the model, the prior, the
I2I2U weight `beta`): its weights picked on validation from the published grid
(lam <= 0.4; this reproduces the published row) and, from the same fit, picked again on
validation from a wider grid (lam up to 3.2). Each pick is measured once on the cold test;
nothing here is chosen on the cold test. Usage: python prior_grid.py DATASET OUT.json [--tune]
"""

from __future__ import annotations

import json
import sys
import time
from itertools import product
from pathlib import Path

import numpy as np

from coldstream_data import load_source
from training.evaluate import evaluate, evaluate_segment
from training.recommender import PathFusion, make_variant, pick_on_validation
from training.selection import val_metrics, validation_view
from training.split import cold_item_split

WIDE = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2)


def mean_sd(x: list[float]) -> list[float | None]:
    return [float(np.mean(x)), float(np.std(x, ddof=1)) if len(x) > 1 else None]


def main() -> None:
    dataset, out = sys.argv[1], Path(sys.argv[2])
    tune = "--tune" in sys.argv
    data = load_source(dataset)
    rows = []
    for s in range(5):
        split = cold_item_split(data, seed=s)
        model = make_variant("full+paths", seed=s, tune=tune)
        assert isinstance(model, PathFusion)
        t0 = time.perf_counter()
        published = evaluate(data, split, model, segments=("cold",), seed=s)["segments"]["cold"]
        wall = time.perf_counter() - t0
        row = {"seed": s, "wall_s": round(wall, 1), "published_grid": model.chosen,
               "published_recall@20": published["recall@20"],
               "published_ndcg@20": published["ndcg@20"]}
        view = validation_view(split)
        row["published_val_ndcg@20"] = val_metrics(view, model.score)["ndcg@20"]
        pick_on_validation(view, model.score, product(model.BETAS, WIDE), model.set_weights)
        wide = evaluate_segment(data, split, model, "cold", seed=s)
        row.update({"wide_grid": model.chosen, "wide_recall@20": wide["recall@20"],
                    "wide_ndcg@20": wide["ndcg@20"],
                    "wide_val_ndcg@20": val_metrics(view, model.score)["ndcg@20"]})
        rows.append(row)
        print(row, flush=True)
        summary = {k: mean_sd([r[k] for r in rows]) for k in
                   ("published_recall@20", "published_ndcg@20", "wide_recall@20", "wide_ndcg@20")}
        out.write_text(json.dumps({"dataset": dataset, "tune": tune, "wide": WIDE,
                                   "summary_mean_sd": summary, "runs": rows,
                                   "script": Path(__file__).read_text()}, indent=1))


if __name__ == "__main__":
    main()
