"""Outputs of frozen backbones, kept per song, so a model swap runs only the trainable heads.

Every model version ships the same MiniLM text tower (``training/export.py`` copies one cached
export), and an audio tower that a version did not retrain is byte-identical too. Their output
for a song is then the same in every version: a row keyed by (backbone id, content digest)
computed once serves them all. The backbone id is a hash of the graph file and of what feeds
it (tokenizer and length; mel settings), so a changed backbone can never hit an old row.

Memory: one float32 row per song and backbone (MiniLM: 384 x 4 B = 1.5 kB; 1M songs = 1.5 GB),
bounded by ``max_rows`` per backbone; past it new rows are not kept (the graph just runs).
Shared by the serving thread and a swap thread: one lock.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence

import numpy as np


def digest(content: bytes | str) -> bytes:
    """16 bytes of SHA-256: the key of one input (a song's text, its decoded audio)."""
    data = content.encode() if isinstance(content, str) else content
    return hashlib.sha256(data).digest()[:16]


def backbone_id(*parts: str) -> str:
    """The id of a frozen graph and its input settings (file hashes, lengths, configs)."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


class _Table:
    """One backbone's rows: a growing matrix and a key -> row map."""

    def __init__(self, dim: int) -> None:
        self.rows = np.zeros((1024, dim), dtype=np.float32)
        self.index: dict[bytes, int] = {}

    def add(self, key: bytes, row: np.ndarray) -> None:
        n = len(self.index)
        if n == len(self.rows):
            grown = np.zeros((2 * n, self.rows.shape[1]), dtype=np.float32)
            grown[:n] = self.rows
            self.rows = grown
        self.rows[n] = row
        self.index[key] = n


class BackboneCache:
    """Frozen-graph outputs by (backbone, content); ``hits``/``misses`` count rows served."""

    def __init__(self, max_rows: int = 1_000_000) -> None:
        self.max_rows = max_rows
        self.hits = 0
        self.misses = 0
        self._tables: dict[str, _Table] = {}
        self._lock = threading.Lock()

    def lookup(self, backbone: str, keys: Sequence[bytes],
               compute: Callable[[list[int]], np.ndarray]) -> np.ndarray:
        """Rows for ``keys``; ``compute(positions)`` runs the graph for the misses only."""
        if not keys:
            return compute([])
        with self._lock:
            table = self._tables.get(backbone)
            found = [None if table is None else table.index.get(k) for k in keys]
            cached = {i: table.rows[r].copy() for i, r in enumerate(found)
                      if r is not None and table is not None}
        missing = [i for i, r in enumerate(found) if r is None]
        fresh = compute(missing) if missing else None
        dim = fresh.shape[1] if fresh is not None else next(iter(cached.values())).shape[0]
        out = np.zeros((len(keys), dim), dtype=np.float32)
        for i, row in cached.items():
            out[i] = row
        if fresh is not None:
            out[missing] = fresh
            self._keep(backbone, [keys[i] for i in missing], fresh)
        with self._lock:
            self.hits += len(cached)
            self.misses += len(missing)
        return out

    def has(self, backbone: str, key: bytes) -> bool:
        """Whether a row is kept (rows are never dropped, so it stays until the process ends)."""
        with self._lock:
            table = self._tables.get(backbone)
            return table is not None and key in table.index

    def _keep(self, backbone: str, keys: list[bytes], rows: np.ndarray) -> None:
        with self._lock:
            table = self._tables.setdefault(backbone, _Table(rows.shape[1]))
            for key, row in zip(keys, rows, strict=True):
                if key not in table.index and len(table.index) < self.max_rows:
                    table.add(key, row)

    def __len__(self) -> int:
        with self._lock:
            return sum(len(t.index) for t in self._tables.values())
