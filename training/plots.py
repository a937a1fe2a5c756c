"""PNG plots for reports: metric bars per model and the 2-D embedding map.

Everything draws through :func:`pyplot` (matplotlib on the Agg backend, no display needed)
and :func:`save`, the helpers any other plot in the project (e.g. the training curve) should
share. Plot functions take plain report dicts / arrays and return the PNG path written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Figure, path: str | Path, dpi: int = 100, tight: bool = True) -> Path:
    """Write ``fig`` as PNG (parent folders created) and free it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi, format="png")
    pyplot().close(fig)
    return path


def metric_bars(report: dict[str, Any], path: str | Path,
                metrics: tuple[str, ...] = ("recall@20", "ndcg@20"),
                segments: tuple[str, ...] = ("cold", "warm")) -> Path:
    """One horizontal bar chart per (segment, metric): every model of the report."""
    plt = pyplot()
    segs = [s for s in segments if s in report["results"][0]["segments"]]
    models = [r["model"] for r in report["results"]]
    fig, axes = plt.subplots(len(segs), len(metrics), squeeze=False,
                             figsize=(4.2 * len(metrics), 0.8 + 0.32 * len(models) * len(segs)))
    colors = plt.get_cmap("tab10")(np.arange(len(models)) % 10)
    y = np.arange(len(models))
    for i, seg in enumerate(segs):
        for j, metric in enumerate(metrics):
            ax = axes[i][j]
            vals = [r["segments"][seg][metric] for r in report["results"]]
            ax.barh(y, vals, color=colors)
            for yy, v in zip(y, vals, strict=True):
                ax.text(v, yy, f" {v:.3f}", va="center", fontsize=8)
            ax.set_yticks(y, models if j == 0 else [""] * len(models), fontsize=8)
            ax.invert_yaxis()
            ax.set_xlim(0, max(max(vals), 1e-3) * 1.3)
            ax.set_title(f"{seg}: {metric}", fontsize=10)
            ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"{report['dataset']}: cold-item split, seed {report['protocol']['seed']}",
                 fontsize=11)
    return save(fig, path)


def embedding_map(maps: dict[str, dict[str, Any]], path: str | Path, title: str = "",
                  label: str = "genre") -> Path:
    """Scatter of 2-D item coordinates, one panel per model, coloured by ``label``.

    ``maps``: model name -> {"xy": (n, 2) array, "labels": (n,) str array, ...}.
    """
    plt = pyplot()
    names = list(maps)
    cols = min(2, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, squeeze=False, figsize=(5.2 * cols, 4.6 * rows + 0.6))
    classes = sorted({str(c) for m in maps.values() for c in m["labels"]})
    cmap = plt.get_cmap("tab20" if len(classes) > 10 else "tab10")
    color = {c: cmap(i % cmap.N) for i, c in enumerate(classes)}
    for ax, name in zip(axes.ravel(), names, strict=False):
        xy, labels = np.asarray(maps[name]["xy"]), np.asarray(maps[name]["labels"]).astype(str)
        for c in classes:
            sel = labels == c
            ax.scatter(xy[sel, 0], xy[sel, 1], s=5, alpha=0.7, color=color[c], label=c,
                       linewidths=0)
        sub = maps[name].get("subtitle", "")
        ax.set_title(f"{name}" + (f"\n{sub}" if sub else ""), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=color[c], label=c)
               for c in classes]
    fig.legend(handles=handles, loc="lower center", ncol=min(6, len(classes)), fontsize=8,
               title=label, title_fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.05 + 0.03 * ((len(classes) - 1) // 6), 1, 1))
    return save(fig, path, tight=False)
