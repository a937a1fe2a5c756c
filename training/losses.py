"""Losses as small modules (RecBole style): every task composes these, none re-derives them."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["BPRLoss", "InfoNCE", "InterestBoundaryLoss"]


class BPRLoss(nn.Module):
    """Bayesian personalised ranking: -log sigmoid(s_pos - s_neg), averaged.

    ``pos`` is (B,); ``neg`` is (B,) or (B, K) for K sampled negatives per positive.
    """

    def forward(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        return F.softplus(neg - _col(pos, neg)).mean()


class InfoNCE(nn.Module):
    """In-batch InfoNCE between two aligned views; ``symmetric`` is the CLIP form.

    Rows of ``a`` and ``b`` are unit vectors of the same items; the diagonal are positives.
    """

    def __init__(self, temperature: float = 0.1, symmetric: bool = True) -> None:
        super().__init__()
        self.temperature = temperature
        self.symmetric = symmetric

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        logits = a @ b.T / self.temperature
        target = torch.arange(len(a), device=a.device)
        loss = F.cross_entropy(logits, target)
        if self.symmetric:
            loss = (loss + F.cross_entropy(logits.T, target)) / 2
        return loss


class InterestBoundaryLoss(nn.Module):
    """Zhuo et al., WWW 2022: (1 - a) softplus(b_u - s_pos) + a softplus(s_neg - b_u).

    Positives are pushed above the user's boundary and negatives below it, so the boundary
    becomes a per-user delivery threshold. ``scale`` puts cosine scores on a logit scale.
    """

    def __init__(self, alpha: float = 0.5, scale: float = 10.0) -> None:
        super().__init__()
        self.alpha, self.scale = alpha, scale

    def forward(self, boundary: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
                ) -> torch.Tensor:
        b = boundary.reshape(-1)
        return ((1 - self.alpha) * F.softplus(self.scale * (b - pos)).mean()
                + self.alpha * F.softplus(self.scale * (neg - _col(b, neg))).mean())


def _col(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> broadcastable against ``like`` of shape (B,) or (B, K)."""
    return x.reshape(x.shape[0], *([1] * (like.dim() - 1)))
