"""BPR matrix factorisation on warm interactions: the collaborative teacher.

Heater, ALDI and GAR all start from CF item vectors learned on warm items; DropoutNet
starts from CF preference vectors. The trained model distils the same teacher
(``TrainConfig.teacher_weight``). One implementation for all of them, so every method sees
the same teacher.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from coldstream_data.base import Dataset


@dataclass(frozen=True)
class PositivePairs:
    """Unique (user, item) training positives, grouped by user (CSR)."""

    user: np.ndarray
    item: np.ndarray
    ptr: np.ndarray  # (n_users + 1,) offsets into ``item`` (pairs sorted by user)
    warm: np.ndarray  # items with at least one positive

    @classmethod
    def of(cls, data: Dataset) -> PositivePairs:
        inter = data.interactions
        pos = inter.positive()
        pairs = np.unique(inter.user[pos].astype(np.int64) * data.n_items + inter.item[pos])
        user, item = pairs // data.n_items, pairs % data.n_items
        ptr = np.searchsorted(user, np.arange(data.n_users + 1))
        return cls(user, item, ptr, np.unique(item))

    def count(self) -> np.ndarray:
        return np.diff(self.ptr)

    def sample(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One uniform positive item per user (users must have at least one)."""
        n = self.count()[users]
        return self.item[self.ptr[users] + (rng.random(len(users)) * n).astype(np.int64)]


def bpr_mf(data: Dataset, dim: int = 64, epochs: int = 30, lr: float = 0.01,
           reg: float = 1e-4, batch: int = 2048, seed: int = 0
           ) -> tuple[np.ndarray, np.ndarray]:
    """(user vectors, item vectors) by BPR with uniform negatives over warm items.

    Items without training positives keep their small random init: callers must not use
    them as teacher targets (:attr:`PositivePairs.warm` says which are meaningful).
    """
    pairs = PositivePairs.of(data)
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    u = torch.nn.Parameter(0.1 * torch.randn(data.n_users, dim, generator=g))
    v = torch.nn.Parameter(0.1 * torch.randn(data.n_items, dim, generator=g))
    opt = torch.optim.Adam([u, v], lr=lr)
    n = len(pairs.user)
    if n == 0:
        return u.detach().numpy(), v.detach().numpy()
    for _ in range(epochs):
        order = rng.permutation(n)
        for s in range(0, n, batch):
            b = order[s: s + batch]
            uu = torch.from_numpy(pairs.user[b])
            ii = torch.from_numpy(pairs.item[b])
            jj = torch.from_numpy(rng.choice(pairs.warm, len(b)))
            ue, ie, je = u[uu], v[ii], v[jj]
            loss = F.softplus(-((ue * ie).sum(1) - (ue * je).sum(1))).mean()
            loss = loss + reg * (ue.pow(2).sum() + ie.pow(2).sum() + je.pow(2).sum()) / len(b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return u.detach().numpy().astype(np.float32), v.detach().numpy().astype(np.float32)
