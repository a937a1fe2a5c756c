"""Towers + losses: the four training stages as tasks over one :class:`Towers` bundle.

1. ``align``: CLIP-style symmetric InfoNCE between the audio tower and a text projection.
2. ``i2i``: BPR over items co-engaged by the same user (I2I2U: content reproduces CF).
3. ``u2i``: DSSM user tower x item tower with BPR plus the interest-boundary loss.
4. ``views``: two masked/noised views of uniformly drawn items (cold ones included: content
   is known at upload) with InfoNCE, so long-tail songs get well-formed vectors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from encoders.towers import AudioTransformer, BoundaryTower, ItemTower, UserTower

from .data import TrainData
from .losses import BPRLoss, InfoNCE, InterestBoundaryLoss


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a run; stored in checkpoints and the manifest notes."""

    epochs: int = 6
    align_epochs: int = 3
    batch: int = 512
    lr: float = 3e-3
    seed: int = 0
    dim: int = 64
    audio_dim: int = 64
    temperature: float = 0.1
    negatives: int = 1
    bow_buckets: int = 4096
    token_dropout: float = 0.0
    token_min_items: int = 10
    # Count a word's songs among songs with training interactions only. A word that only new
    # songs carry (a new year, a new artist) gets no collaborative signal, only the views
    # loss. Off by default: it helps dslabs (cold Recall@20 0.030 -> 0.074) and hurts ml-100k
    # (0.270 -> 0.228); `--tune` chooses it per dataset on validation (MODEL_GRID).
    token_df_warm: bool = False
    use_text: bool = True
    use_audio: bool = True
    i2i_weight: float = 0.5
    boundary_weight: float = 0.5
    boundary_alpha: float = 0.5
    contrastive_weight: float = 0.2
    mask_p: float = 0.2
    noise: float = 0.05
    patience: int = 2  # early stopping on validation NDCG@20 (when a validation view is given)
    whole_history: bool = True  # BPR targets from every training positive, not the last 50
    teacher_weight: float = 0.0  # distil BPR-MF item-item similarities into the item tower
    teacher_temperature: float = 0.1
    pop_weight: float = 0.0  # content-predicted item bias in the U2I logit (harness scoring)
    # A published audio tower (its ONNX file) kept frozen instead of aligning a new one: the
    # new version ships the same bytes, so a swap to it reuses every song's cached audio row.
    audio_graph: str = ""

    def dict(self) -> dict:
        return asdict(self)


class Towers(nn.Module):
    """What gets exported, plus the training-only text projection used by alignment."""

    def __init__(self, cfg: TrainConfig, n_mels: int, text_dim: int = 384) -> None:
        super().__init__()
        self.audio = AudioTransformer(n_mels=n_mels, dim=cfg.audio_dim)
        self.item = ItemTower(text_dim, cfg.audio_dim, cfg.dim, bow_buckets=cfg.bow_buckets)
        self.user = UserTower(cfg.dim)
        self.boundary = BoundaryTower(cfg.dim)
        self.text_proj = nn.Linear(text_dim, cfg.audio_dim)  # alignment head, not exported
        self.pop = (PopularityHead(text_dim, cfg.audio_dim, cfg.bow_buckets)
                    if cfg.pop_weight > 0 else None)  # not exported (see docs/training.md)


class PopularityHead(nn.Module):
    """Content -> a scalar item bias: how likely a new song is to be liked by anyone.

    Popular new items are predictable from content, and a unit song vector cannot say
    "popular"; the bias enters the U2I logit next to the cosine, as in DropoutNet/ALDI's
    unnormalised scores.
    """

    def __init__(self, text_dim: int, audio_dim: int, buckets: int, hidden: int = 64) -> None:
        super().__init__()
        self.text = nn.Linear(text_dim, hidden)
        self.audio = nn.Linear(audio_dim, hidden, bias=False)
        self.bow = nn.Linear(buckets, hidden, bias=False) if buckets else None
        self.out = nn.Linear(hidden, 1)

    def forward(self, text: torch.Tensor, audio: torch.Tensor, has_audio: torch.Tensor,
                tokens: torch.Tensor | None) -> torch.Tensor:
        h = self.text(text) + has_audio * self.audio(audio)
        if self.bow is not None and tokens is not None:
            h = h + self.bow(tokens)
        return self.out(F.gelu(h)).reshape(-1)


class Tasks:
    """Samples batches from :class:`TrainData` and returns the stage losses."""

    def __init__(self, towers: Towers, data: TrainData, cfg: TrainConfig,
                 device: torch.device) -> None:
        self.t, self.cfg, self.device = towers, cfg, device
        self.rng = np.random.default_rng(cfg.seed)
        self.teacher = torch.from_numpy(data.text).to(device)  # alignment target, always text
        self.text = self.teacher * float(cfg.use_text)  # the item tower's text view
        self.tokens = torch.from_numpy(data.tokens).to(device) * float(cfg.use_text)
        self._token_nz = self.tokens.nonzero(as_tuple=True)
        if cfg.bow_buckets:
            counted = self.tokens
            if cfg.token_df_warm:  # songs with a training positive or in a history
                seen = np.unique(np.concatenate([data.pos_item,
                                                 data.hist_items[data.hist_weights != 0]]))
                counted = counted[torch.from_numpy(seen).to(device)]
            df = (counted > 0).sum(0)
            towers.item.bow_mask.copy_((df >= cfg.token_min_items).float())
        self.mels = torch.from_numpy(data.mels).to(device)
        self.has_audio = torch.from_numpy(data.has_audio * float(cfg.use_audio)).to(device)
        self.audio_vec = torch.zeros(data.n_items, cfg.audio_dim, device=device)
        self.hist_items = torch.from_numpy(data.hist_items).to(device)
        self.hist_w = torch.from_numpy(data.hist_weights).to(device)
        self.hist_pos = torch.from_numpy(data.hist_pos).to(device)
        order = np.argsort(data.pos_user, kind="stable")
        pairs = np.unique(data.pos_user[order] * data.n_items + data.pos_item[order])
        self.pos_all = pairs % data.n_items  # every training positive, grouped by user
        self.pos_ptr = np.searchsorted(pairs // data.n_items, np.arange(data.n_users + 1))
        self.pos_cnt = np.diff(self.pos_ptr)
        self.users = (np.flatnonzero(self.pos_cnt > 0) if cfg.whole_history
                      else np.flatnonzero(data.hist_pos.sum(1) > 0))
        self.teacher_items: torch.Tensor | None = None
        self.teacher_warm: np.ndarray | None = None
        self.warm = np.unique(data.hist_items[data.hist_weights != 0])
        self.audio_items = np.flatnonzero(self.has_audio.cpu().numpy() > 0)
        self.n_items = data.n_items
        self.bpr, self.nce = BPRLoss(), InfoNCE(cfg.temperature)
        self.views_nce = InfoNCE(2 * cfg.temperature)
        self.ib = InterestBoundaryLoss(cfg.boundary_alpha, 1.0 / cfg.temperature)

    # ---------------------------------------------------------------- stage 1
    def has_audio_stage(self) -> bool:
        return self.cfg.use_audio and not self.cfg.audio_graph and len(self.audio_items) > 1

    def keep_audio(self, vectors: np.ndarray) -> None:
        """Audio vectors of a kept (frozen) tower, for every item; there is no alignment."""
        self.audio_vec = torch.from_numpy(vectors).float().to(self.device)

    def align_batches(self) -> list[np.ndarray]:
        order = self.rng.permutation(self.audio_items)
        size = min(128, len(order))
        return [order[i: i + size] for i in range(0, len(order) - size + 1, size)]

    def align_loss(self, items: np.ndarray) -> torch.Tensor:
        idx = torch.from_numpy(items).to(self.device)
        mel = self.mels[idx]
        a = self.t.audio(mel, torch.ones(mel.shape[:2], device=self.device))
        txt = F.normalize(self.t.text_proj(self.teacher[idx]), dim=-1)
        return self.nce(a, txt)

    @torch.no_grad()
    def refresh_audio(self, batch: int = 256) -> None:
        """Freeze the aligned audio tower's vectors for the CF stages (fast, exact at serve)."""
        if not self.has_audio_stage():
            return
        self.t.audio.eval()
        for s in range(0, self.n_items, batch):
            mel = self.mels[s: s + batch]
            self.audio_vec[s: s + batch] = self.t.audio(
                mel, torch.ones(mel.shape[:2], device=self.device))
        self.t.audio.train()

    def set_teacher(self, item_vectors: np.ndarray, warm: np.ndarray) -> None:
        """CF item vectors (BPR-MF on the training view); only ``warm`` rows are targets."""
        self.teacher_items = F.normalize(torch.from_numpy(item_vectors).float(), dim=-1
                                         ).to(self.device)
        self.teacher_warm = warm

    # ---------------------------------------------------------------- stages 2-4
    def item_vectors(self, train: bool = True) -> torch.Tensor:
        """All song vectors; in training, tokens are dropped so words cannot memorise items."""
        tokens = self.tokens
        if train and self.cfg.token_dropout > 0:
            tokens = self._drop_tokens(tokens, self.cfg.token_dropout)
        return self.t.item(self.text, self.audio_vec, self.has_audio[:, None], tokens)

    def steps_per_epoch(self) -> int:
        n = len(self.pos_all) if self.cfg.whole_history else int(self.hist_pos.sum().item())
        return max(1, n // self.cfg.batch)

    def joint_loss(self) -> dict[str, torch.Tensor]:
        """One step of I2I BPR + U2I BPR/boundary + contrastive views."""
        cfg, dev = self.cfg, self.device
        v = self.item_vectors()
        users_np = self.rng.choice(self.users, cfg.batch)
        users = torch.from_numpy(users_np).to(dev)
        rows = torch.arange(len(users), device=dev)
        items = self.hist_items[users]
        w = self.hist_w[users].clone()
        if cfg.whole_history:
            # target: any training positive of the user; the user tower sees the last
            # events (what serving feeds it) with every copy of the target left out
            pos_item = torch.from_numpy(self._sample_pos(users_np)).to(dev)
            w[items == pos_item[:, None]] = 0.0
            other = torch.from_numpy(self._sample_pos(users_np)).to(dev)
            ok = other != pos_item
        else:
            pos_mask = self.hist_pos[users]
            target = (torch.rand(pos_mask.shape, device=dev) * pos_mask).argmax(1)
            pos_item = items[rows, target]
            w[rows, target] = 0.0  # leave the target out of its own history
            r2 = torch.rand(pos_mask.shape, device=dev) * pos_mask
            r2[rows, target] = 0.0
            other = items[rows, r2.argmax(1)]
            ok = r2.max(1).values > 0
        u = self.t.user(v[items], w)
        neg = torch.from_numpy(self.rng.choice(self.warm, (cfg.batch, cfg.negatives))).to(dev)
        s_pos = (u * v[pos_item]).sum(-1)
        s_neg = torch.einsum("bd,bkd->bk", u, v[neg])
        scale = 1.0 / cfg.temperature
        if self.t.pop is not None:
            bias = self.item_bias()
            out = {"u2i_bpr": self.bpr(scale * s_pos + bias[pos_item],
                                       scale * s_neg + bias[neg])}
        else:
            out = {"u2i_bpr": self.bpr(scale * s_pos, scale * s_neg)}
        if cfg.boundary_weight > 0:
            b = self.t.boundary(u.detach())
            out["boundary"] = cfg.boundary_weight * self.ib(b, s_pos, s_neg)
        if cfg.i2i_weight > 0 and ok.any():
            a, p = pos_item[ok], other[ok]
            i_pos = (v[a] * v[p]).sum(-1)
            i_neg = torch.einsum("bd,bkd->bk", v[a], v[neg[ok]])
            out["i2i_bpr"] = cfg.i2i_weight * self.bpr(scale * i_pos, scale * i_neg)
        if cfg.contrastive_weight > 0:
            out["views"] = cfg.contrastive_weight * self.views_loss()
        if cfg.teacher_weight > 0 and self.teacher_items is not None:
            out["teacher"] = cfg.teacher_weight * self.teacher_loss(v)
        return out

    def item_bias(self) -> torch.Tensor:
        """(n_items,) content-predicted logit bias (zeros without a popularity head)."""
        if self.t.pop is None:
            return torch.zeros(self.n_items, device=self.device)
        mask = self.t.item.bow_mask if self.cfg.bow_buckets else None
        tokens = self.tokens * mask if mask is not None else None
        return self.cfg.pop_weight * self.t.pop(self.text, self.audio_vec,
                                                self.has_audio[:, None], tokens)

    @torch.no_grad()
    def ranking_bias(self) -> np.ndarray:
        """The bias on the cosine scale: score = user . song + this (zeros when unused)."""
        return (self.item_bias() * self.cfg.temperature).cpu().numpy()

    def _sample_pos(self, users: np.ndarray) -> np.ndarray:
        n = self.pos_cnt[users]
        return self.pos_all[self.pos_ptr[users] + (self.rng.random(len(users)) * n
                                                   ).astype(np.int64)]

    def teacher_loss(self, v: torch.Tensor, size: int = 256) -> torch.Tensor:
        """KL from the teacher's item-item similarity distribution to the tower's, over a
        batch of warm items: relational distillation, so the two spaces need not match."""
        assert self.teacher_items is not None and self.teacher_warm is not None
        idx = torch.from_numpy(self.rng.choice(self.teacher_warm, min(size, len(
            self.teacher_warm)), replace=False)).to(self.device)
        t = self.teacher_items[idx]
        s = v[idx]
        tau = self.cfg.teacher_temperature
        eye = torch.eye(len(idx), device=self.device, dtype=torch.bool)
        target = F.softmax((t @ t.T / tau).masked_fill(eye, -1e9), dim=1)
        logp = F.log_softmax((s @ s.T / tau).masked_fill(eye, -1e9), dim=1)
        return F.kl_div(logp, target, reduction="batchmean")

    def views_loss(self, size: int = 256) -> torch.Tensor:
        idx = torch.from_numpy(self.rng.choice(self.n_items, size, replace=False)
                               if self.n_items > size else np.arange(self.n_items))
        idx = idx.to(self.device)
        t, a, h = self.text[idx], self.audio_vec[idx], self.has_audio[idx, None]
        k = self.tokens[idx]
        return self.views_nce(self.t.item(self._view(t), self._view(a), h, self._view(k, 0.0)),
                              self.t.item(self._view(t), self._view(a), h, self._view(k, 0.0)))

    def _drop_tokens(self, tokens: torch.Tensor, p: float) -> torch.Tensor:
        """Inverted dropout on the non-zero entries only (dense dropout costs 0.6 s/step)."""
        rows, cols = self._token_nz
        keep = torch.rand(len(rows), device=tokens.device) >= p
        out = torch.zeros_like(tokens)
        out[rows[keep], cols[keep]] = tokens[rows[keep], cols[keep]] / (1 - p)
        return out

    def _view(self, x: torch.Tensor, noise: float | None = None) -> torch.Tensor:
        """Feature masking plus Gaussian noise (tokens: masking only, they stay sparse)."""
        keep = (torch.rand_like(x) > self.cfg.mask_p).float()
        return x * keep + (self.cfg.noise if noise is None else noise) * torch.randn_like(x)

    # ---------------------------------------------------------------- inference
    @torch.no_grad()
    def embed_all(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(item vectors, user vectors, boundaries) for the whole training view."""
        self.t.eval()
        v = self.item_vectors(train=False)
        u = torch.zeros(self.hist_items.shape[0], v.shape[1], device=self.device)
        for s in range(0, len(u), 1024):
            u[s: s + 1024] = self.t.user(v[self.hist_items[s: s + 1024]],
                                         self.hist_w[s: s + 1024])
        b = self.t.boundary(u).reshape(-1)
        self.t.train()
        return v.cpu().numpy(), u.cpu().numpy(), b.cpu().numpy()
