"""Trained towers (embeddings only, no losses): audio Transformer, item, user and boundary.

Every ``forward`` takes exactly the inputs the serving graphs take (see ``runtime.py``), so
the ONNX export is the module itself and training and serving cannot drift apart.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["AudioTransformer", "BoundaryTower", "ItemTower", "UserTower"]


class _Block(nn.Module):
    """Pre-norm self-attention + MLP, written out so the exporter sees plain ops (no fast path)."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.n1(x)).reshape(b, t, 3, self.heads, d // self.heads).unbind(2)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))  # (b, h, t, dh)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(d // self.heads) + bias
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.mlp(self.n2(x))


class AudioTransformer(nn.Module):
    """Log-mel (B, T, n_mels) + mask (B, T) -> unit vector (B, dim).

    Per-clip band means are removed (loudness and channel invariance), a conv mixes
    neighbouring frames, sinusoidal positions are computed from T so any length exports (the
    legacy exporter would freeze T), and the output is a masked mean over frames.
    """

    def __init__(self, n_mels: int = 64, d_model: int = 64, heads: int = 4, layers: int = 2,
                 dim: int = 64) -> None:
        super().__init__()
        self.d_model = d_model
        self.stem = nn.Conv1d(n_mels, d_model, kernel_size=3, padding=1)
        self.blocks = nn.ModuleList(_Block(d_model, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, dim)

    def forward(self, logmel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w = mask.unsqueeze(-1)
        mean = (logmel * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp(min=1.0)
        x = (logmel - mean) * w / 4.0
        x = self.stem(x.transpose(1, 2)).transpose(1, 2) * w  # (B, T, d)
        m = mask
        pos = torch.arange(x.shape[1], dtype=x.dtype, device=x.device).unsqueeze(1)
        freq = torch.exp(torch.arange(0, self.d_model, 2, dtype=x.dtype, device=x.device)
                         * (-math.log(10_000.0) / self.d_model))
        pe = torch.cat([torch.sin(pos * freq), torch.cos(pos * freq)], dim=-1)
        x = x + pe.unsqueeze(0)
        bias = ((1.0 - m) * -1e4)[:, None, None, :]
        for block in self.blocks:
            x = block(x, bias)
        x = self.norm(x)
        mw = m.unsqueeze(-1)
        pooled = (x * mw).sum(1) / mw.sum(1).clamp(min=1.0)
        return F.normalize(self.head(pooled), dim=-1)


class ItemTower(nn.Module):
    """Fusion of the text and audio views -> song vector (the serving ``fusion`` graph).

    Text (MiniLM, which already reads title, artist, tags and description) and audio are
    projected separately and summed; ``has_audio`` gates the audio branch, so a song without
    audio lands in the same space from text alone. With ``bow_buckets`` a learned embedding
    bag over hashed words of the same text (tags, artist, rare words) is added.
    """

    def __init__(self, text_dim: int = 384, audio_dim: int = 64, dim: int = 64,
                 hidden: int = 256, bow_buckets: int = 0) -> None:
        super().__init__()
        self.text = nn.Sequential(nn.Linear(text_dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.audio = nn.Sequential(nn.Linear(audio_dim, hidden), nn.GELU(),
                                   nn.Linear(hidden, dim))
        self.bow = nn.Linear(bow_buckets, dim, bias=False) if bow_buckets else None
        if self.bow is not None:
            nn.init.normal_(self.bow.weight, std=0.01)
        # Buckets the trainer allows (words shared by enough songs); rare words would only
        # memorise their training songs. Saved in the graph, so serving needs no vocabulary.
        self.register_buffer("bow_mask", torch.ones(max(bow_buckets, 1)))

    def forward(self, text_vector: torch.Tensor, audio_vector: torch.Tensor,
                has_audio: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        out = self.text(text_vector) + has_audio * self.audio(audio_vector)
        if self.bow is not None and tokens is not None:
            out = out + self.bow(tokens * self.bow_mask)  # learned tag/artist/word vectors
        return F.normalize(out, dim=-1)


class UserTower(nn.Module):
    """DSSM user side: weighted pooling of history song vectors, then a residual MLP.

    Weights (action x recency, from ``UserModel.weights``) are normalised by their absolute
    sum, so skips push away and the vector does not depend on history length.
    """

    def __init__(self, dim: int = 64, hidden: int = 128) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, history: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        w = weights.unsqueeze(-1)
        pooled = (history * w).sum(1) / w.abs().sum(1).clamp(min=1e-6)
        return F.normalize(pooled + self.mlp(pooled), dim=-1)


class BoundaryTower(nn.Module):
    """User vector -> scalar interest boundary (B, 1), on the cosine scale of the scores."""

    def __init__(self, dim: int = 64, hidden: int = 64, init: float = 0.3) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.constant_(self.mlp[2].bias, init)

    def forward(self, user_vector: torch.Tensor) -> torch.Tensor:
        return self.mlp(user_vector)
