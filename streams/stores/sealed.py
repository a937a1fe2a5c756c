"""Sealed segments: an IVF-Flat index (faiss) over a snapshot of vectors, built in a child process.

Why IVF-Flat and not HNSW: on the bench's mixture Qdrant Edge's HNSW fell to recall 0.57 at 1M
after a 671 s build; IVF-Flat builds in seconds (k-means on a sample, then one assignment pass),
its recall is set per query by ``nprobe`` (all lists probed = exact), and it filters inside the
scan with a bitmap, so a payload filter or a tombstone costs no recall. Why a child process: the
build is CPU-bound for seconds to minutes; in a child it is niced, it cannot touch the worker's
GIL, and a crash leaves the worker serving the old segment. faiss releases the GIL in
``read_index`` and ``search`` (measured: < 5 ms event-loop gaps while loading and searching).

The child is ``python -m streams.stores.sealed_build <folder> <threads>``: it reads ``vectors.npy``
and ``labels.npy`` from the folder, writes ``index.faiss`` and ``build.json`` (its pid, rows,
lists, seconds) atomically.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def lists_for(rows: int) -> int:
    """IVF lists: about sqrt(rows) (1,000 at 1M), so a probe scans ~sqrt(rows) vectors."""
    return max(1, min(4096, int(round(np.sqrt(rows)))))


def build_index(vectors: np.ndarray, labels: np.ndarray, seed: int = 0) -> Any:
    """k-means on a sample of 64 points per list, then every vector into its nearest list."""
    import faiss

    dim, lists = vectors.shape[1], lists_for(len(vectors))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
    sample = vectors
    if len(vectors) > 64 * lists:
        pick = np.random.default_rng(seed).choice(len(vectors), 64 * lists, replace=False)
        sample = vectors[np.sort(pick)]
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    for i in range(0, len(vectors), 100_000):
        index.add_with_ids(np.ascontiguousarray(vectors[i:i + 100_000], dtype=np.float32),
                           labels[i:i + 100_000].astype(np.int64))
    return index


@dataclass
class SealedSegment:
    """A loaded IVF index whose labels are the owning :class:`~.segments.Segments`' slots."""

    index: Any
    rows: int
    info: dict[str, Any]

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray,
               nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (slots, scores) among slots whose ``allowed`` bit is set."""
        import faiss

        bits = np.packbits(allowed, bitorder="little")
        sel = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bits))
        params = faiss.SearchParametersIVF(sel=sel, nprobe=min(nprobe, self.index.nlist))
        scores, slots = self.index.search(query[None, :], k, params=params)
        keep = slots[0] >= 0
        return slots[0][keep], scores[0][keep]


def start_build(folder: Path, threads: int = 1) -> subprocess.Popen[bytes]:
    """Start the child on ``folder`` (vectors.npy, labels.npy)."""
    return subprocess.Popen([sys.executable, "-m", "streams.stores.sealed_build", str(folder),
                             str(threads)], stdin=subprocess.DEVNULL)


def finish_build(child: subprocess.Popen[bytes], folder: Path,
                 timeout_s: float = 3600.0) -> SealedSegment:
    """Wait for the child (without the GIL) and load what it wrote."""
    import faiss

    try:
        code = child.wait(timeout=timeout_s)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if code != 0:
        raise RuntimeError(f"segment build exited with {code}")
    info = json.loads((folder / "build.json").read_text())
    index = faiss.read_index(str(folder / "index.faiss"))
    return SealedSegment(index, int(info["rows"]), info)
