"""Outputs of frozen backbones, kept per song, so a model swap runs only the trainable heads.

Every model version ships the same MiniLM text tower (``training/export.py`` copies one cached
export), and an audio tower that a version did not retrain is byte-identical too. Their output
for a song is then the same in every version: a row keyed by (backbone id, content digest)
computed once serves them all. The backbone id is a hash of the graph file and of what feeds
it (tokenizer and length; mel settings), so a changed backbone can never hit an old row.

Memory: one float32 row per song and backbone (MiniLM: 384 x 4 B = 1.5 kB; 1M songs = 1.5 GB),
bounded by ``max_rows`` per backbone; past it new rows are not kept (the graph just runs).
Shared by the serving thread and a swap thread: one lock.

With a ``folder`` the rows are also appended to one file per backbone and read back when the
cache opens, so the first swap after a worker restart still runs only the heads. Appends are
not fsynced: the rows are a cache, and a torn last record (a crash mid-write) is cut off when
the file is read.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

log = logging.getLogger(__name__)
KEY_BYTES = 16


def digest(content: bytes | str) -> bytes:
    """16 bytes of SHA-256: the key of one input (a song's text, its audio file)."""
    data = content.encode() if isinstance(content, str) else content
    return hashlib.sha256(data).digest()[:KEY_BYTES]


def backbone_id(*parts: str) -> str:
    """The id of a frozen graph and its input settings (file hashes, lengths, configs)."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


class _Table:
    """One backbone's rows: a growing matrix and a key -> row map."""

    def __init__(self, dim: int, capacity: int = 0) -> None:
        self.rows = np.zeros((max(1024, capacity), dim), dtype=np.float32)
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

    def __init__(self, max_rows: int = 1_000_000, folder: Path | None = None) -> None:
        self.max_rows = max_rows
        self.hits = 0
        self.misses = 0
        self._tables: dict[str, _Table] = {}
        self._lock = threading.Lock()
        self._folder = folder
        self._files: dict[str, BinaryIO] = {}
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            for path in sorted(folder.glob("*.rows")):
                try:
                    self._read(path)
                except (OSError, ValueError) as exc:  # a stray or unreadable file: skip it
                    log.warning("backbone cache: skipping %s: %s", path, exc)

    def _read(self, path: Path) -> None:
        """Load one backbone's file (``<backbone>-<dim>.rows``); cut a torn last record."""
        backbone, _, dim_text = path.stem.rpartition("-")
        record = np.dtype([("key", f"V{KEY_BYTES}"), ("row", "<f4", (int(dim_text),))])
        size = path.stat().st_size
        whole = size - size % record.itemsize
        if whole != size:
            log.warning("backbone cache %s: cutting a torn record (%d bytes)", path, size - whole)
            with path.open("r+b") as f:
                f.truncate(whole)
        n = min(whole // record.itemsize, self.max_rows)
        table = _Table(int(dim_text), capacity=n)
        with path.open("rb") as f:  # in chunks: a 1M-row file is 1.5 GB
            for start in range(0, n, 65_536):
                chunk = np.fromfile(f, dtype=record, count=min(65_536, n - start))
                table.rows[start: start + len(chunk)] = chunk["row"]
                table.index.update((bytes(k), start + i) for i, k in enumerate(chunk["key"]))
        self._tables[backbone] = table
        log.info("backbone cache: %d rows of %s read from %s", n, backbone, path)

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
            kept = []
            for key, row in zip(keys, rows, strict=True):
                if key not in table.index and len(table.index) < self.max_rows:
                    table.add(key, row)
                    kept.append((key, row))
            if self._folder is not None and kept:
                try:
                    self._append(backbone, table.rows.shape[1], kept)
                except OSError as exc:  # a full disk must not fail the encode: memory only
                    log.error("backbone cache: cannot write %s (%s); keeping rows in memory "
                              "only from now on", self._folder, exc)
                    self._folder = None

    def _append(self, backbone: str, dim: int, kept: list[tuple[bytes, np.ndarray]]) -> None:
        """Append rows to the backbone's file (keys of another length stay in memory only)."""
        f = self._files.get(backbone)
        if f is None:
            assert self._folder is not None
            f = self._files[backbone] = (self._folder / f"{backbone}-{dim}.rows").open("ab")
        f.write(b"".join(key + np.asarray(row, "<f4").tobytes() for key, row in kept
                         if len(key) == KEY_BYTES))
        f.flush()

    def close(self) -> None:
        with self._lock:
            for f in self._files.values():
                f.close()
            self._files.clear()

    def __len__(self) -> int:
        with self._lock:
            return sum(len(t.index) for t in self._tables.values())
