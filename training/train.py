"""One training loop, readable top to bottom: align audio, then the joint CF stages.

Seeds are fixed (torch, numpy), CPU is the default and CUDA is used when present, every
epoch writes a checkpoint (``--resume`` continues from the last), and the loss history is
kept for the training-curve plot. With a :class:`~training.selection.ValidationView` the
joint epochs early-stop on validation NDCG@20 (``cfg.epochs`` is then the most epochs) and
the best epoch's towers are kept: the validation hook sees validation items only.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from coldstream_data.base import Dataset
from encoders.artifacts import UserSpec
from encoders.features import MelConfig

from . import data as data_mod
from .selection import EarlyStopping, ValidationView, val_metrics
from .tasks import Tasks, Towers, TrainConfig


@dataclass
class TrainResult:
    """Trained towers and what the run looked like."""

    towers: Towers
    tasks: Tasks
    cfg: TrainConfig
    mel: MelConfig
    user_spec: UserSpec
    fingerprint: str
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None  # joint epochs kept by early stopping (None: no validation)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def train(dataset: Dataset, cfg: TrainConfig, device: str = "auto",
          checkpoint_dir: Path | None = None, resume: bool = False,
          progress: bool = False, mel: MelConfig | None = None,
          user_spec: UserSpec | None = None,
          validation: ValidationView | None = None) -> TrainResult:
    """Fit all towers on ``dataset`` (a training view: no held-out events).

    ``validation``: early-stop the joint epochs on its NDCG@20 and keep the best towers.
    """
    seed_everything(cfg.seed)
    dev = pick_device(device)
    mel = mel or MelConfig()
    spec = user_spec or UserSpec(kind="graph", graph="user.onnx",
                                 boundary_graph="boundary.onnx")
    td = data_mod.build(dataset, mel, spec, use_audio=cfg.use_audio,
                        bow_buckets=cfg.bow_buckets, progress=progress)
    towers = Towers(cfg, mel.n_mels, td.text.shape[1]).to(dev)
    tasks = Tasks(towers, td, cfg, dev)
    if cfg.audio_graph and cfg.use_audio:
        tasks.keep_audio(kept_audio_vectors(Path(cfg.audio_graph), td.mels, cfg.audio_dim))
    if cfg.teacher_weight > 0:
        from .mf import PositivePairs, bpr_mf

        _, teacher = bpr_mf(dataset, dim=cfg.dim, seed=cfg.seed)
        tasks.set_teacher(teacher, PositivePairs.of(dataset).warm)
    opt = torch.optim.AdamW(towers.parameters(), lr=cfg.lr, weight_decay=1e-4)
    history: list[dict[str, float]] = []
    start = 0
    ckpt = checkpoint_dir / "last.pt" if checkpoint_dir else None
    if resume and ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location=dev, weights_only=False)
        same = {k: v for k, v in cfg.dict().items() if k != "epochs"}
        if state["fingerprint"] != td.fingerprint or \
                {k: v for k, v in state["cfg"].items() if k != "epochs"} != same:
            raise ValueError(f"checkpoint {ckpt} was made from other data or settings")
        towers.load_state_dict(state["towers"])
        opt.load_state_dict(state["opt"])
        history, start = state["history"], state["epoch"]
        tasks.rng = np.random.default_rng([cfg.seed, start])
        torch.manual_seed(cfg.seed + start)

    align = cfg.align_epochs if tasks.has_audio_stage() else 0
    total = align + cfg.epochs
    stopper = EarlyStopping(cfg.patience) if validation is not None else None
    for epoch in tqdm(range(start, total), desc="epochs", disable=not progress,
                      initial=start, total=total):
        sums: dict[str, float] = {}
        if epoch < align:
            batches = tasks.align_batches()
            for items in tqdm(batches, desc=f"align {epoch + 1}", leave=False,
                              disable=not progress):
                loss = tasks.align_loss(items)
                _step(opt, loss)
                sums["align"] = sums.get("align", 0.0) + loss.item() / len(batches)
        else:
            if epoch == align or (epoch == start and start > 0):
                tasks.refresh_audio()
            n = tasks.steps_per_epoch()
            for _ in tqdm(range(n), desc=f"joint {epoch + 1 - align}", leave=False,
                          disable=not progress):
                parts = tasks.joint_loss()
                _step(opt, sum(parts.values()))
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v.item() / n
        if stopper is not None and epoch >= align:
            sums["val_ndcg@20"] = validation_score(tasks, validation)
        history.append({"epoch": epoch + 1, **sums})
        if ckpt is not None:
            save_checkpoint(ckpt, towers, opt, epoch + 1, history, cfg, td.fingerprint)
        if stopper is not None and epoch >= align and stopper.update(
                epoch + 1 - align, sums["val_ndcg@20"], towers.state_dict):
            break
    best = None
    if stopper is not None and stopper.best_state is not None:
        towers.load_state_dict(stopper.best_state)
        best = stopper.best_epoch
    tasks.refresh_audio()  # the vectors the exported graphs will reproduce
    towers.eval()
    return TrainResult(towers, tasks, cfg, mel, spec, td.fingerprint, history, best)


def kept_audio_vectors(graph: Path, mels: np.ndarray, dim: int, batch: int = 256
                       ) -> np.ndarray:
    """A published audio tower's vectors for the training log-mels, run as it is served."""
    from encoders.runtime import make_session

    session = make_session(graph, threads=torch.get_num_threads())
    out = np.concatenate([
        session.run(None, {"logmel": mels[s: s + batch],
                           "mask": np.ones(mels[s: s + batch].shape[:2], np.float32)})[0]
        for s in range(0, len(mels), batch)]).astype(np.float32)
    if out.shape[1] != dim:
        raise ValueError(f"the kept audio tower {graph} gives {out.shape[1]}-d vectors; "
                         f"this training expects audio_dim={dim}")
    return out


def save_checkpoint(ckpt: Path, towers: Towers, opt: torch.optim.Optimizer, epoch: int,
                    history: list[dict[str, float]], cfg: TrainConfig, fingerprint: str) -> None:
    """Atomically: a crash mid-write leaves the previous checkpoint intact."""
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    tmp = ckpt.with_suffix(".tmp")
    torch.save({"towers": towers.state_dict(), "opt": opt.state_dict(), "epoch": epoch,
                "history": history, "cfg": cfg.dict(), "fingerprint": fingerprint}, tmp)
    tmp.replace(ckpt)


def validation_score(tasks: Tasks, view: ValidationView) -> float:
    """The validation hook: NDCG@20 of the current towers over the validation items."""
    v, u, _ = tasks.embed_all()
    bias = tasks.ranking_bias()
    return val_metrics(view, lambda us, its: u[us] @ v[its].T + bias[its])["ndcg@20"]


def _step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def plot_curve(history: list[dict[str, float]], path: Path) -> Path | None:
    """Training-curve PNG (one line per loss term); JSON next to it if matplotlib is absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(history, indent=1))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    keys = sorted({k for h in history for k in h if k != "epoch"})
    for k in keys:
        pts = [(h["epoch"], h[k]) for h in history if k in h]
        ax.plot(*zip(*pts, strict=True), marker="o", label=k)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
