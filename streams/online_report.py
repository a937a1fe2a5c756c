"""``coldstream report online``: the arms table of a ``coldstream simulate`` run, as text,
JSON and a PNG (the PNG only where matplotlib is installed: the worker image has none)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson

COLUMNS = ("users_reached_per_song", "collect_rate", "complete_rate", "skip_rate")


def load_runs(run: Path) -> list[dict[str, Any]]:
    """``run/online.json`` and, when several seeds ran, each ``run/seed-*/online.json``."""
    seeds = sorted(run.glob("seed-*/online.json"))
    paths = seeds or [run / "online.json"]
    return [orjson.loads(p.read_bytes()) for p in paths]


def mean_sd(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per arm and metric: mean ± sd over seeds, and the first run's 95 % CI (one seed)."""
    first = runs[0]
    arms: dict[str, Any] = {}
    for name in first["arms"]:
        arms[name] = {m: {"mean": mean_sd([r["arms"][name][m] for r in runs])[0],
                          "sd": mean_sd([r["arms"][name][m] for r in runs])[1],
                          "ci95_seed0": first["ci95"][name][m]} for m in COLUMNS}
        arms[name]["deliveries"] = mean_sd([r["arms"][name]["deliveries"] for r in runs])[0]
    lifts = {k: {"mean": mean_sd([r[k] for r in runs])[0],
                 "sd": mean_sd([r[k] for r in runs])[1], "ci95_seed0": first["ci95"][k],
                 "per_seed": [r[k] for r in runs]}
             for k in ("lift_users_reached", "lift_collect_rate")}
    return {"seeds": [r["config"]["seed"] for r in runs], "control": first["control"],
            "treatment": first["treatment"], "arms": arms, **lifts,
            "by_path": paths_summary(runs),
            "world": {k: first["config"][k] for k in ("n_songs", "n_users", "new_songs",
                                                      "days", "shown_per_day")},
            "worker": {k: first["config"].get(k) for k in ("u2i_min_margin", "per_song_cap",
                                                        "boundary_gates_i2i2u")},
            "runs": [run_info(r) for r in runs]}


def run_info(run: dict[str, Any]) -> dict[str, Any]:
    """Which model a run served (provisional or trained on its world) and how long it took."""
    model = run.get("model") or {"kind": "provisional"}
    return {"seed": run["config"]["seed"], "wall_s": run.get("wall_s"), **{
        k: model.get(k) for k in ("kind", "version", "train_s", "delivery")}}


def paths_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per arm and path: exposures and outcome rates, mean over the seeds that have them."""
    out: dict[str, Any] = {}
    rows = [r["by_path"] for r in runs if "by_path" in r]
    for arm in sorted({a for r in rows for a in r}):
        for path in sorted({p for r in rows for p in r.get(arm, {})}):
            have = [r[arm][path] for r in rows if path in r.get(arm, {})]
            out.setdefault(arm, {})[path] = {
                k: mean_sd([h[k] for h in have])[0]
                for k in ("exposures", "collect_rate", "complete_rate", "skip_rate")}
    return out


def paths_markdown(s: dict[str, Any]) -> str:
    lines = ["| arm | path | exposures / seed | collect rate | complete rate | skip rate |",
             "|---|---|---|---|---|---|"]
    for arm, paths in s.get("by_path", {}).items():
        for path, v in paths.items():
            lines.append(f"| {arm} | {path} | {v['exposures']:.0f} | {v['collect_rate']:.3f} | "
                         f"{v['complete_rate']:.3f} | {v['skip_rate']:.3f} |")
    return "\n".join(lines) + "\n"


def markdown(s: dict[str, Any]) -> str:
    """The README's table: mean ± sd over seeds [95 % bootstrap CI of the first seed]."""
    def cell(v: dict[str, Any], pct: bool = False) -> str:
        lo, hi = v["ci95_seed0"]
        if pct:
            return (f"{v['mean'] * 100:+.1f} ± {v['sd'] * 100:.1f} "
                    f"[{lo * 100:+.1f}, {hi * 100:+.1f}]")
        return f"{v['mean']:.3f} ± {v['sd']:.3f} [{lo:.3f}, {hi:.3f}]"

    lines = ["| arm | deliveries | users reached / song | collect rate | complete rate | "
             "skip rate |", "|---|---|---|---|---|---|"]
    for name, a in s["arms"].items():
        lines.append(f"| {name} | {a['deliveries']:.0f} | "
                     + " | ".join(cell(a[m]) for m in COLUMNS) + " |")
    lines.append(f"| lift {s['treatment']} vs {s['control']} | | "
                 f"{cell(s['lift_users_reached'], True)} % | "
                 f"{cell(s['lift_collect_rate'], True)} % | | |")
    return "\n".join(lines) + "\n"


def plot(s: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(COLUMNS), figsize=(3.2 * len(COLUMNS), 3))
    names = list(s["arms"])
    for ax, m in zip(axes, COLUMNS, strict=True):
        means = [s["arms"][n][m]["mean"] for n in names]
        sds = [s["arms"][n][m]["sd"] for n in names]
        ax.bar(names, means, yerr=sds, capsize=4, color=["#888", "#2a7"][:len(names)])
        ax.set_title(m.replace("_", " "), fontsize=9)
    fig.suptitle(f"online A/B, seeds {s['seeds']} (mean ± sd)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
    return path


def write(run: Path) -> tuple[dict[str, Any], str, Path | None]:
    s = summary(load_runs(run))
    (run / "online-summary.json").write_bytes(orjson.dumps(s, option=orjson.OPT_INDENT_2))
    table = markdown(s) + "\n" + paths_markdown(s)
    (run / "online.md").write_text(table)
    return s, table, plot(s, run / "online.png")
