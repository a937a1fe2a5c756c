"""Stop 46: the model's paths plus I2I2U over the frozen MiniLM vectors (`full+paths+text`).

Per seed: the honest row (beta, lam, delta picked together on validation NDCG@20, one cold-test
measurement, exactly what `coldstream ablate --variants full+paths+text` reports), the model
alone from the same fit, and an exploratory sweep that is never used for a choice: for each
delta held fixed, (beta, lam) re-picked on validation, then validation NDCG@20 and the cold
test's Recall@20 / NDCG@20. It shows whether validation and the cold test agree on the text
path. Usage: python text_path_sweep.py DATASET OUT.json [--tune] [--seeds 0,1,2,3,4]
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
from training.recommender import TextPathFusion, make_variant, pick_on_validation
from training.selection import val_metrics, validation_view
from training.split import cold_item_split


def mean_sd(x: list[float]) -> list[float | None]:
    return [float(np.mean(x)), float(np.std(x, ddof=1)) if len(x) > 1 else None]


def main() -> None:
    dataset, out = sys.argv[1], Path(sys.argv[2])
    tune = "--tune" in sys.argv
    seeds = [0, 1, 2, 3, 4]
    if "--seeds" in sys.argv:
        seeds = [int(s) for s in sys.argv[sys.argv.index("--seeds") + 1].split(",")]
    data = load_source(dataset)
    rows = []
    for s in seeds:
        split = cold_item_split(data, seed=s)
        model = make_variant("full+paths+text", seed=s, tune=tune)
        assert isinstance(model, TextPathFusion)
        t0 = time.perf_counter()
        honest = evaluate(data, split, model, segments=("cold",), seed=s)["segments"]["cold"]
        wall = time.perf_counter() - t0
        chosen = (model.beta, model.lam, model.delta)
        base = evaluate_segment(data, split, model.base, "cold", seed=s)
        view = validation_view(split)
        sweep = []
        for delta in TextPathFusion.DELTAS:
            pick_on_validation(view, model.score, product(model.BETAS, model.LAMBDAS),
                               lambda w, d=delta, m=model: m.set_weights((*w, d)))
            val = val_metrics(view, model.score)["ndcg@20"]
            cold = evaluate_segment(data, split, model, "cold", seed=s)
            sweep.append({"delta": delta, "beta": model.beta, "lam": model.lam, "val_ndcg@20": val,
                          "cold_recall@20": cold["recall@20"], "cold_ndcg@20": cold["ndcg@20"]})
            print(s, sweep[-1], flush=True)
        model.set_weights(chosen)
        rows.append({"seed": s, "chosen": model.chosen, "wall_s": round(wall, 1),
                     "tuned_view": getattr(model.model, "chosen", None),
                     "cold_recall@20": honest["recall@20"], "cold_ndcg@20": honest["ndcg@20"],
                     "base_recall@20": base["recall@20"], "base_ndcg@20": base["ndcg@20"],
                     "sweep": sweep})
        print(rows[-1]["seed"], rows[-1]["chosen"], honest["recall@20"], honest["ndcg@20"],
              flush=True)
        summary = {k: mean_sd([r[k] for r in rows])
                   for k in ("cold_recall@20", "cold_ndcg@20", "base_recall@20", "base_ndcg@20")}
        out.write_text(json.dumps({"dataset": dataset, "tune": tune, "seeds": seeds[:len(rows)],
                                   "summary_mean_sd": summary, "runs": rows,
                                   "script": Path(__file__).read_text()}, indent=1))


if __name__ == "__main__":
    main()
