"""The child process that builds a sealed segment (see :mod:`.sealed`): build, write, exit.

Run as a script, not ``-m``: it imports numpy and faiss only, so it starts in a fraction of
the time and lowers its priority before doing anything that competes with serving.
"""

from __future__ import annotations

import os

os.nice(10)

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402


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


def main(argv: list[str]) -> None:
    """Build from ``folder``'s snapshot with ``threads`` threads; write the index and info."""
    import faiss

    folder, threads = Path(argv[0]), int(argv[1])
    faiss.omp_set_num_threads(threads)
    start = time.perf_counter()
    vectors = np.load(folder / "vectors.npy", mmap_mode="r")
    labels = np.load(folder / "labels.npy")
    index = build_index(vectors, labels)
    tmp = folder / "index.faiss.tmp"
    faiss.write_index(index, str(tmp))
    os.replace(tmp, folder / "index.faiss")
    info = {"pid": os.getpid(), "rows": int(len(labels)), "lists": int(index.nlist),
            "seconds": time.perf_counter() - start}
    (folder / "build.json").write_text(json.dumps(info))


if __name__ == "__main__":
    main(sys.argv[1:])
