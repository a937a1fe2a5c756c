"""Published cold-start recommenders, reimplemented from the papers on our content features.

Every method maps a new item's *content* to a vector that is scored against warm users,
and all of them get the same content as the trained model (:func:`content_features`:
frozen MiniLM text vector, the hashed bag of words with the same ``min_items`` cutoff, and
on music worlds the 50 hand-made audio features of a 3 s rendered clip), the same BPR-MF
teacher (:func:`training.mf.bpr_mf`) where the paper uses one, and the same selection
budget (:data:`GRIDS`: three candidates, each early-stopped on validation NDCG@20).

* ``dropoutnet`` (Volkovs et al., NeurIPS 2017): item MLP over [CF preference vector,
  content]; the preference input is dropped (zeroed) for half the items in training so the
  network learns to reproduce the CF score u.v from content alone; at cold start the
  preference input is zero. Loss: MSE to the teacher's score (the paper's objective). No
  user content exists here, so only item preference is dropped.
* ``heater`` (Zhu et al., SIGIR 2020): a mixture of K content experts with a softmax gate
  maps content to the CF space; a similarity constraint pulls it towards the item's CF
  vector; randomised training feeds the transformation MLPs the CF vector or the content
  one at random. Ranking loss: BPR (the paper regresses ratings; our data is implicit).
* ``clcrec`` (Wei et al., ACM MM 2021): learns user and item ID embeddings from scratch
  plus a content encoder, with two InfoNCE terms: user-item (the item side is the content
  vector with probability rho, else the ID embedding) and item ID vs content (mutual
  information between the two views). Cold items use the content encoder.
* ``aldi`` (Huang et al., SIGIR 2023): a content student distilled from the frozen BPR-MF
  teacher by rating-distribution alignment (soft labels sigma(u.t_i)), ranking alignment
  (teacher's pairwise preference sigma(u.t_i - u.t_j)) and identification-distribution
  alignment (item-item similarity distributions), plus BPR on the student. The paper's
  per-item adaptive weights are not reimplemented (one global weight).
* ``gar`` (Chen et al., SIGIR 2022): a generator maps content into the teacher's CF space and
  a recommender (user and item transforms) is trained adversarially against it: the
  recommender learns to rank a user's real positive (teacher vector) above the generated
  vector of the same item and above a negative; the generator learns to make its vector rank
  as high as the real one, plus a similarity term to the teacher vector. Both players update
  in the same step: each loss reaches only its own player's parameters (the other player's
  output enters detached, or through its frozen weights).

Written for this repository from the papers' descriptions (YuanchenBei/ColdRec was read for
the method only). Users are warm (they have training history); what is cold is the item.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from coldstream_data.base import Dataset

from .cache_files import save_array
from .mf import PositivePairs, bpr_mf
from .selection import EarlyStopping, Tuned, ValidationView, val_metrics

CACHE = Path(".coldstream/cache")
METHODS = ("dropoutnet", "heater", "clcrec", "aldi", "gar")


def content_features(data: Dataset, min_items: int = 10, buckets: int = 4096,
                     cache: Path = CACHE, df_warm: bool = False) -> np.ndarray:
    """(n_items, D) float32: MiniLM vector, hashed words used by >= ``min_items`` songs
    (with ``df_warm``, songs that have interactions in ``data``: the same rule as the
    model's ``TrainConfig.token_df_warm``), and (music worlds) standardised hand-made audio
    features."""
    from encoders.features import hashed_bow, song_text

    from .baselines import MiniLMEncoder

    text = np.asarray(MiniLMEncoder(cache_dir=cache).encode(data), dtype=np.float32)
    texts = [song_text(str(r.title), str(r.artist), list(r.tags),
                     r.description if isinstance(r.description, str) else None)
             for r in data.catalogue.itertuples(index=False)]
    bow = hashed_bow(texts, buckets)
    counted = bow[np.unique(data.interactions.item)] if df_warm else bow
    bow = bow[:, (counted > 0).sum(0) >= min_items]
    parts = [text, bow]
    if "audio_seed" in data.catalogue:
        parts.append(_audio_features(data, cache))
    return np.concatenate(parts, axis=1).astype(np.float32)


def _audio_features(data: Dataset, cache: Path) -> np.ndarray:
    from .baselines import WorldAudioEncoder

    key = hashlib.sha256(repr((list(data.catalogue["song_id"]),
                               list(data.catalogue["audio_seed"]))).encode()).hexdigest()[:20]
    path = cache / f"audiofeat-{key}.npy"
    if path.exists():
        return np.load(path)
    f = np.asarray(WorldAudioEncoder().encode(data), dtype=np.float32) / 3.0
    save_array(path, f)
    return f


def _mlp(i: int, h: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.ReLU(), nn.Linear(h, o))


@dataclass(frozen=True)
class ColdStartConfig:
    """Shared knobs; ``extra`` holds the method's own (rho, alpha, dropout, ...)."""

    lr: float = 1e-3
    epochs: int = 20  # most epochs; early stopping on validation NDCG@20 picks fewer
    patience: int = 2
    batch: int = 1024
    dim: int = 64
    hidden: int = 256
    weight_decay: float = 1e-5
    teacher_epochs: int = 30
    min_items: int = 10
    token_df_warm: bool = False  # see TrainConfig.token_df_warm
    seed: int = 0
    extra: dict[str, float] = field(default_factory=dict)


class ColdStart:
    """Shared training loop: sample (user, positive, negative) triples from training
    positives, one optimiser, early stopping on the validation view."""

    method = "base"
    wants_validation = True
    uses_teacher = True

    def __init__(self, cfg: ColdStartConfig | None = None, name: str | None = None) -> None:
        self.cfg = cfg or ColdStartConfig()
        self.name = name or self.method
        self.best_epoch: int | None = None
        self.history: list[float] = []

    # -- what each method defines
    def build(self, n_users: int, n_items: int, content_dim: int) -> nn.Module:
        raise NotImplementedError

    def loss(self, u: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def embed(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(user vectors, cold-path item vectors for every catalogue item)."""
        raise NotImplementedError

    # -- shared
    def fit(self, train: Dataset, validation: ValidationView | None = None) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.x = torch.from_numpy(content_features(train, cfg.min_items,
                                                       df_warm=cfg.token_df_warm))
        self.pairs = PositivePairs.of(train)
        if self.uses_teacher:
            tu, tv = bpr_mf(train, dim=cfg.dim, epochs=cfg.teacher_epochs, seed=cfg.seed)
            self.tu, self.tv = torch.from_numpy(tu), torch.from_numpy(tv)
        self.net = self.build(train.n_users, train.n_items, self.x.shape[1])
        opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr,
                                weight_decay=cfg.weight_decay)
        stopper = EarlyStopping(cfg.patience)
        n = len(self.pairs.user)
        for epoch in range(1, cfg.epochs + 1):
            self.net.train()
            order = self.rng.permutation(n)
            for s in range(0, max(n - cfg.batch // 4, 1), cfg.batch):
                b = order[s: s + cfg.batch]
                u = torch.from_numpy(self.pairs.user[b])
                i = torch.from_numpy(self.pairs.item[b])
                j = torch.from_numpy(self.rng.choice(self.pairs.warm, len(b)))
                loss = self.loss(u, i, j)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if validation is None:
                continue
            self._freeze()
            score = val_metrics(validation, self.score)["ndcg@20"]
            self.history.append(score)
            if stopper.update(epoch, score, self.net.state_dict):
                break
        if validation is not None and stopper.best_state is not None:
            self.net.load_state_dict(stopper.best_state)
            self.best_epoch = stopper.best_epoch
        self._freeze()

    @torch.no_grad()
    def _freeze(self) -> None:
        self.net.eval()
        users, items = self.embed()
        self.users, self.items = users.numpy(), items.numpy()

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.users[users] @ self.items[items].T


class DropoutNet(ColdStart):
    method = "dropoutnet"

    def build(self, n_users: int, n_items: int, content_dim: int) -> nn.Module:
        d, h = self.cfg.dim, self.cfg.hidden
        return nn.ModuleDict({"user": _mlp(d, h, d), "item": _mlp(d + content_dim, h, d)})

    def _item(self, idx: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        pref = self.tv[idx] * keep[:, None]
        return self.net["item"](torch.cat([pref, self.x[idx]], 1))

    def loss(self, u: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        p = self.cfg.extra.get("dropout", 0.5)
        items = torch.cat([i, j])
        users = torch.cat([u, u])
        keep = (torch.rand(len(items)) >= p).float()
        pred = (self.net["user"](self.tu[users]) * self._item(items, keep)).sum(1)
        target = (self.tu[users] * self.tv[items]).sum(1)
        return F.mse_loss(pred, target)

    def embed(self) -> tuple[torch.Tensor, torch.Tensor]:
        all_items = torch.arange(len(self.x))
        return (self.net["user"](self.tu),
                self._item(all_items, torch.zeros(len(self.x))))


class Heater(ColdStart):
    method = "heater"

    def build(self, n_users: int, n_items: int, content_dim: int) -> nn.Module:
        d, h = self.cfg.dim, self.cfg.hidden
        k = int(self.cfg.extra.get("experts", 5))
        return nn.ModuleDict({
            "experts": nn.ModuleList([_mlp(content_dim, h, d) for _ in range(k)]),
            "gate": nn.Linear(content_dim, k),
            "user": _mlp(d, h, d), "item": _mlp(d, h, d)})

    def _content(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.x[idx]
        gate = F.softmax(self.net["gate"](x), dim=1)
        experts = torch.stack([e(x) for e in self.net["experts"]], 1)  # (B, K, d)
        return (gate[:, :, None] * experts).sum(1)

    def loss(self, u: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        p = self.cfg.extra.get("random", 0.5)
        alpha = self.cfg.extra.get("alpha", 1.0)
        items = torch.cat([i, j])
        c = self._content(items)
        use_c = (torch.rand(len(items)) < p).float()[:, None]
        x = use_c * c + (1 - use_c) * self.tv[items]
        v = self.net["item"](x)
        uv = self.net["user"](self.tu[u])
        s = (uv.repeat(2, 1) * v).sum(1)
        bpr = F.softplus(-(s[: len(i)] - s[len(i):])).mean()
        sim = (c - self.tv[items]).pow(2).sum(1).mean()
        return bpr + alpha * sim

    def embed(self) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.net["user"](self.tu),
                self.net["item"](self._content(torch.arange(len(self.x)))))


class CLCRec(ColdStart):
    method = "clcrec"
    uses_teacher = False

    def build(self, n_users: int, n_items: int, content_dim: int) -> nn.Module:
        d, h = self.cfg.dim, self.cfg.hidden
        net = nn.ModuleDict({"user": nn.Embedding(n_users, d), "item": nn.Embedding(n_items, d),
                             "enc": _mlp(content_dim, h, d)})
        nn.init.normal_(net["user"].weight, std=0.1)
        nn.init.normal_(net["item"].weight, std=0.1)
        return net

    def loss(self, u: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        rho = self.cfg.extra.get("rho", 0.5)
        lam = self.cfg.extra.get("lam", 0.5)
        tau = self.cfg.extra.get("tau", 0.2)
        items = torch.cat([i, j])  # in-batch positives of others + sampled negatives
        c = F.normalize(self.net["enc"](self.x[items]), dim=1)
        e = F.normalize(self.net["item"](items), dim=1)
        use_c = (torch.rand(len(items)) < rho).float()[:, None]
        r = use_c * c + (1 - use_c) * e
        eu = F.normalize(self.net["user"](u), dim=1)
        target = torch.arange(len(u))
        ui = F.cross_entropy(eu @ r.T / tau, target)
        re = F.cross_entropy(e[: len(i)] @ c[: len(i)].T / tau, target)
        return lam * ui + (1 - lam) * re

    def embed(self) -> tuple[torch.Tensor, torch.Tensor]:
        return (F.normalize(self.net["user"].weight, dim=1),
                F.normalize(self.net["enc"](self.x), dim=1))


class ALDI(ColdStart):
    method = "aldi"

    def build(self, n_users: int, n_items: int, content_dim: int) -> nn.Module:
        return _mlp(content_dim, self.cfg.hidden, self.cfg.dim)

    def loss(self, u: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        alpha = self.cfg.extra.get("alpha", 1.0)
        beta = self.cfg.extra.get("beta", 1.0)
        tau = self.cfg.extra.get("tau", 0.1)
        su, si, sj = self.tu[u], self.net(self.x[i]), self.net(self.x[j])
        ti, tj = self.tv[i], self.tv[j]
        ps, ns = (su * si).sum(1), (su * sj).sum(1)
        pt, nt = (su * ti).sum(1), (su * tj).sum(1)
        rec = F.softplus(-(ps - ns)).mean()
        rating = (F.binary_cross_entropy_with_logits(ps, torch.sigmoid(pt))
                  + F.binary_cross_entropy_with_logits(ns, torch.sigmoid(nt)))
        rank = F.binary_cross_entropy_with_logits(ps - ns, torch.sigmoid(pt - nt))
        tn, sn = F.normalize(ti, dim=1), F.normalize(si, dim=1)
        ident = F.kl_div(F.log_softmax(sn @ sn.T / tau, 1), F.softmax(tn @ tn.T / tau, 1),
                         reduction="batchmean")
        return rec + alpha * (rating + rank) + beta * ident

    def embed(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tu, self.net(self.x)


class GAR(ColdStart):
    method = "gar"

    def build(self, n_users: int, n_items: int, content_dim: int) -> nn.Module:
        d, h = self.cfg.dim, self.cfg.hidden
        return nn.ModuleDict({"gen": _mlp(content_dim, h, d),
                              "user": _mlp(d, h, d), "item": _mlp(d, h, d)})

    def _frozen(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """The recommender's transform with its weights detached: the generator's loss
        moves the generator only."""
        params = {k: v.detach() for k, v in self.net[name].named_parameters()}
        return torch.func.functional_call(self.net[name], params, (x,))

    def loss(self, u: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        alpha = self.cfg.extra.get("alpha", 0.5)
        beta = self.cfg.extra.get("beta", 1.0)
        gen = self.net["gen"](self.x[i])
        # recommender: real positive over its generated twin and over a negative
        eu = self.net["user"](self.tu[u])
        real, neg = self.net["item"](self.tv[i]), self.net["item"](self.tv[j])
        fake = self.net["item"](gen.detach())
        s_real, s_neg, s_fake = (eu * real).sum(1), (eu * neg).sum(1), (eu * fake).sum(1)
        rec = F.softplus(-(s_real - s_neg)).mean()
        adv_d = F.softplus(-(s_real - s_fake)).mean()
        # generator: its vector should rank like the real one for this user
        gu = self._frozen("user", self.tu[u]).detach()
        g_fake = (gu * self._frozen("item", gen)).sum(1)
        g_real = (gu * self._frozen("item", self.tv[i])).sum(1).detach()
        adv_g = F.softplus(-(g_fake - g_real)).mean()
        sim = (gen - self.tv[i]).pow(2).sum(1).mean()
        return rec + alpha * adv_d + (1 - alpha) * adv_g + beta * sim

    def embed(self) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.net["user"](self.tu),
                self.net["item"](self.net["gen"](self.x)))


CLASSES: dict[str, type[ColdStart]] = {
    "dropoutnet": DropoutNet, "heater": Heater, "clcrec": CLCRec, "aldi": ALDI, "gar": GAR}

#: The selection budget: three candidates per method, each early-stopped on validation.
#: The trained model gets the same budget (``training.recommender.MODEL_GRID``).
GRIDS: dict[str, list[dict[str, Any]]] = {
    "dropoutnet": [{"lr": 1e-3}, {"lr": 3e-3}, {"lr": 1e-3, "extra": {"dropout": 0.8}}],
    "heater": [{"lr": 1e-3}, {"lr": 3e-3}, {"lr": 1e-3, "extra": {"alpha": 0.1}}],
    "clcrec": [{"lr": 1e-3}, {"lr": 3e-3}, {"lr": 1e-3, "extra": {"rho": 0.8}}],
    "aldi": [{"lr": 1e-3}, {"lr": 3e-3}, {"lr": 1e-3, "extra": {"alpha": 0.3, "beta": 3.0}}],
    "gar": [{"lr": 1e-3}, {"lr": 3e-3}, {"lr": 1e-3, "extra": {"alpha": 0.8, "beta": 0.1}}],
}


def make_coldstart(method: str, seed: int = 0, tune: bool = True,
                   base: ColdStartConfig | None = None) -> Any:
    """A method by name; with ``tune`` wrapped in :class:`Tuned` over :data:`GRIDS`."""
    if method not in CLASSES:
        raise ValueError(f"unknown cold-start method {method!r}; choose from {METHODS}")
    cfg = replace(base or ColdStartConfig(), seed=seed)
    cls = CLASSES[method]
    if not tune:
        return cls(cfg)
    grid = GRIDS[method]

    def candidate(g: dict[str, Any]) -> Callable[[], ColdStart]:
        return lambda: cls(replace(cfg, **g), name=method)

    labels = [",".join(f"{k}={v}" for k, v in g.items()) for g in grid]
    return Tuned(method, [candidate(g) for g in grid], labels)
