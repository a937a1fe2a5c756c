"""Losses do what their papers say: gradients push the right way, BPR learns a toy ranking."""

from __future__ import annotations

import torch

from training.losses import BPRLoss, InfoNCE, InterestBoundaryLoss


def test_boundary_loss_pushes_boundary_below_positives_and_above_negatives() -> None:
    loss = InterestBoundaryLoss(alpha=0.5, scale=10.0)
    # Boundary above the positive score: the loss wants it lower (positive gradient).
    b = torch.tensor([0.8], requires_grad=True)
    loss(b, torch.tensor([0.5]), torch.tensor([-1.0])).backward()
    assert b.grad is not None and b.grad.item() > 0
    # Boundary below the negative score: the loss wants it higher (negative gradient).
    b = torch.tensor([-0.2], requires_grad=True)
    loss(b, torch.tensor([1.0]), torch.tensor([0.3])).backward()
    assert b.grad is not None and b.grad.item() < 0


def test_boundary_loss_gradient_on_scores() -> None:
    loss = InterestBoundaryLoss(alpha=0.5)
    pos = torch.tensor([0.1], requires_grad=True)
    neg = torch.tensor([0.4], requires_grad=True)
    loss(torch.tensor([0.2]), pos, neg).backward()
    assert pos.grad.item() < 0 < neg.grad.item()  # raise positives, lower negatives


def test_boundary_settles_between_positives_and_negatives() -> None:
    loss = InterestBoundaryLoss(alpha=0.5, scale=10.0)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([b], lr=0.1)
    pos, neg = torch.full((64,), 0.6), torch.full((64,), -0.2)
    for _ in range(300):
        opt.zero_grad()
        loss(b.expand(64), pos, neg).backward()
        opt.step()
    assert -0.2 < b.item() < 0.6


def test_bpr_decreases_on_a_toy_ranking_problem() -> None:
    torch.manual_seed(0)
    users, items = torch.nn.Embedding(8, 4), torch.nn.Embedding(16, 4)
    pos_u = torch.arange(8).repeat(4)
    pos_i = pos_u * 2  # user u likes items 2u (its own)
    opt = torch.optim.Adam([*users.parameters(), *items.parameters()], lr=0.05)
    bpr = BPRLoss()

    def step() -> float:
        neg_i = torch.randint(0, 16, pos_i.shape)
        s_pos = (users(pos_u) * items(pos_i)).sum(-1)
        s_neg = (users(pos_u) * items(neg_i)).sum(-1)
        loss = bpr(s_pos, s_neg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    first = sum(step() for _ in range(5)) / 5
    for _ in range(200):
        step()
    last = sum(step() for _ in range(5)) / 5
    assert last < 0.5 * first


def test_infonce_prefers_aligned_views() -> None:
    torch.manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(16, 8), dim=-1)
    nce = InfoNCE(0.1)
    assert nce(a, a) < nce(a, a.roll(1, 0))
