"""Torch towers that return embeddings (no losses): exported to ONNX for serving."""

from __future__ import annotations

import torch
from torch import nn


class MeanPooledText(nn.Module):
    """A BERT-family encoder with masked mean pooling and L2 norm (sentence-transformers style)."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        w = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * w).sum(1) / w.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1)


class SpectralSummary(nn.Module):
    """Provisional audio tower: masked mean and spread of log-mel bands -> unit vector.

    The per-song mean over bands is removed so the vector describes spectral *shape* and
    dynamics (timbre, brightness, rhythm energy) rather than loudness.
    """

    def forward(self, logmel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w = mask.unsqueeze(-1)
        n = w.sum(1).clamp(min=1.0)
        mean = (logmel * w).sum(1) / n
        var = (((logmel - mean.unsqueeze(1)) ** 2) * w).sum(1) / n
        std = torch.sqrt(var + 1e-6)
        shape = mean - mean.mean(dim=-1, keepdim=True)
        spread = std - std.mean(dim=-1, keepdim=True)
        return nn.functional.normalize(torch.cat([shape, spread], dim=-1), dim=-1)
