"""The honest protocol: every quality figure is a mean ± sd over seeds.

Seed ``s`` fixes both the split (tie-breaking of the temporal cold-item split, the warm
hold-out) and the model's initialisation/sampling; each seed's model is selected on that
split's validation items only (see :mod:`training.selection`) and measured once on its cold
test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from coldstream_data.base import Dataset

from .evaluate import Recommender, evaluate, evaluate_segment
from .split import cold_item_split

HEADLINE = ("recall@20", "ndcg@20")
DEFAULT_SEEDS = (0, 1, 2, 3, 4)


SeedRun = tuple[dict[str, Any], dict[str, Any] | None, Recommender | None]


def one_seed(data: Dataset, make: Callable[[int], Recommender], segments: tuple[str, ...],
             keep_model: bool, s: int) -> SeedRun:
    """One seed's fit and measurement, its wrapped model's (if any) scored alone, and the
    fitted model itself if asked (from another process it comes back pickled)."""
    split = cold_item_split(data, seed=s)
    model = make(s)
    t0 = time.perf_counter()
    res = evaluate(data, split, model, segments=segments, seed=s)
    res["wall_s"] = round(time.perf_counter() - t0, 2)
    res["seed"] = int(s)
    for attr in ("chosen", "val"):  # what Tuned picked on validation, and why
        if hasattr(model, attr) and getattr(model, attr):
            res[attr] = getattr(model, attr)
    best = getattr(getattr(model, "result", None), "best_epoch", None)
    if best is None:
        best = getattr(model, "best_epoch", None)
    if best is not None:
        res["best_epoch"] = int(best)
    base = getattr(model, "base", None)  # e.g. the trained model under its prior
    base_run = None if base is None else {  # same fit, scored without the wrapper
        "model": base.name, "seed": int(s), "wall_s": res["wall_s"],
        "segments": {seg: evaluate_segment(data, split, base, seg, seed=s)
                     for seg in segments}}
    return res, base_run, model if keep_model else None


def over_seeds(data: Dataset, make: Callable[[int], Recommender], seeds: Sequence[int],
               segments: tuple[str, ...] = ("cold",), on_result: Callable[[dict], None]
               | None = None, jobs: int = 1, keep_models: bool = False) -> dict[str, Any]:
    """Fit and measure ``make(seed)`` on ``cold_item_split(data, seed)`` for every seed;
    ``jobs`` seeds at a time (:func:`~.parallel.map_seeds`: ``make`` must then pickle).
    ``keep_models``: the fitted models go in ``["models"]``, by seed."""
    from .parallel import map_seeds

    runs, base_runs, models = [], [], {}

    def done(result: SeedRun) -> None:
        res, base_run, model = result
        runs.append(res)
        if base_run is not None:
            base_runs.append(base_run)
        if keep_models:
            models[res["seed"]] = model
        if on_result is not None:
            on_result(res)

    map_seeds(partial(one_seed, data, make, segments, keep_models), seeds, jobs, on_done=done)
    out: dict[str, Any] = {"model": runs[0]["model"], "seeds": [int(s) for s in seeds],
                           "runs": runs, "summary": summarise(runs, segments)}
    if base_runs:
        out["base"] = {"model": base_runs[0]["model"], "seeds": out["seeds"],
                       "runs": base_runs, "summary": summarise(base_runs, segments)}
    if keep_models:
        out["models"] = models
    return out


def summarise(runs: list[dict[str, Any]], segments: tuple[str, ...] = ("cold",)
              ) -> dict[str, dict[str, dict[str, float]]]:
    """{segment: {metric: {mean, sd, se, n}}} over runs (sd with ddof=1)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for seg in segments:
        keys = [k for k, v in runs[0]["segments"][seg].items() if isinstance(v, float)
                and "@" in k]
        out[seg] = {}
        for k in keys:
            x = np.asarray([r["segments"][seg][k] for r in runs], dtype=np.float64)
            sd = float(x.std(ddof=1)) if len(x) > 1 else float("nan")
            out[seg][k] = {"mean": float(x.mean()), "sd": sd,
                           "se": sd / np.sqrt(len(x)) if len(x) > 1 else float("nan"),
                           "n": len(x)}
    out["wall_s"] = {"mean": float(np.mean([r["wall_s"] for r in runs]))}  # type: ignore[dict-item]
    return out


def mean_sd(stat: dict[str, float], digits: int = 3) -> str:
    """'0.246 ± 0.033 (5 seeds)'-style text; says plainly when it is one seed."""
    if stat["n"] < 2:
        return f"{stat['mean']:.{digits}f} (one seed)"
    return f"{stat['mean']:.{digits}f} ± {stat['sd']:.{digits}f}"
