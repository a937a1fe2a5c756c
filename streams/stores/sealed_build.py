"""The child process that builds a sealed segment (see :mod:`.sealed`): build, write, exit.

Two kinds of build. *Full*: k-means on a sample, then every snapshot row into its list, as
float32 (``flat``), as 8-bit scalar codes per dimension (``sq8``, a quarter of the memory) or
as 4-bit product-quantizer codes, one per two dimensions, scanned with faiss's SIMD "fast
scan" (``pq4``, a sixteenth of the memory); the worker rescores ``sq8`` and ``pq4``
candidates exactly from its mirror (:mod:`.segments`).
*Delta*: the previous index file (``base``) is read back, the copies of every dirty slot are
removed (stale vectors, deletes, reused slots) and the live dirty rows added with their
current vectors; the trained centroids are kept, so no k-means and no pass over clean rows.

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

ADD_ROWS = 100_000  # rows per add_with_ids call: bounds the float32 copy of a mmap'd chunk


def lists_for(rows: int) -> int:
    """IVF lists: about sqrt(rows) (1,000 at 1M), so a probe scans ~sqrt(rows) vectors."""
    return max(1, min(4096, int(round(np.sqrt(rows)))))


def add_rows(index: Any, vectors: np.ndarray, labels: np.ndarray) -> None:
    """Add in chunks, so a memory-mapped snapshot is never copied whole."""
    for i in range(0, len(vectors), ADD_ROWS):
        index.add_with_ids(np.ascontiguousarray(vectors[i:i + ADD_ROWS], dtype=np.float32),
                           labels[i:i + ADD_ROWS].astype(np.int64))


CODES = ("flat", "sq8", "pq4")
#: A full build of fewer rows uses sq8 instead of pq4: the product codes' 16 centroids per
#: pair of dimensions need training rows, and a segment this small gains nothing from them.
PQ_MIN_ROWS = 1_000


def build_index(vectors: np.ndarray, labels: np.ndarray, codes: str = "flat",
                seed: int = 0) -> Any:
    """k-means on a sample of 64 points per list, then every vector into its nearest list
    (``sq8``: the same sample also trains each dimension's 8-bit range; ``pq4``: the 16
    centroids of each pair of dimensions, on the residuals from the lists)."""
    import faiss

    dim, lists = vectors.shape[1], lists_for(len(vectors))
    if codes == "pq4" and len(vectors) < PQ_MIN_ROWS:
        codes = "sq8"
    quantizer = faiss.IndexFlatIP(dim)
    if codes == "sq8":
        index = faiss.IndexIVFScalarQuantizer(quantizer, dim, lists,
                                              faiss.ScalarQuantizer.QT_8bit,
                                              faiss.METRIC_INNER_PRODUCT)
    elif codes == "pq4":
        index = faiss.IndexIVFPQFastScan(quantizer, dim, lists, pq_parts(dim), 4,
                                         faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexIVFFlat(quantizer, dim, lists, faiss.METRIC_INNER_PRODUCT)
    sample = vectors
    if len(vectors) > 64 * lists:
        pick = np.random.default_rng(seed).choice(len(vectors), 64 * lists, replace=False)
        sample = vectors[np.sort(pick)]
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    add_rows(index, vectors, labels)
    return index


def delta_index(base: Path, vectors: np.ndarray, labels: np.ndarray,
                removed: np.ndarray) -> tuple[Any, dict[str, Any]]:
    """The previous index minus every dirty slot's copy, plus the live dirty rows: what a
    full build over the same live slots would hold, with the old centroids. Returns the
    index and what was done: copies removed (a dirty slot the old index did not hold - new
    since its snapshot - removes nothing) and the seconds of each step."""
    import faiss

    start = time.perf_counter()
    index = faiss.read_index(str(base))
    read = time.perf_counter()
    gone = 0
    if len(removed):
        # A bitmap over the labels: one bit test per stored vector (a hash set per id was the
        # alternative); the removal is one pass over the inverted lists either way.
        bits = np.zeros(int(removed.max()) + 1, dtype=bool)
        bits[removed] = True
        packed = np.packbits(bits, bitorder="little")
        gone = int(index.remove_ids(faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(packed))))
    cut = time.perf_counter()
    add_rows(index, vectors, labels)
    return index, {"removed": gone, "read_s": read - start, "remove_s": cut - read,
                   "add_s": time.perf_counter() - cut}


def pq_parts(dim: int) -> int:
    """``pq4`` sub-quantizers: one per two dimensions (one per dimension when ``dim`` is odd).
    Fewer (one per four) lost too much: recall@10 0.87 against 0.97 with the same 300
    candidates rescored, at 200k x 512 on the bench's mixture (faiss alone, nprobe 32)."""
    return dim // 2 if dim % 2 == 0 else dim


def codes_of(index: Any) -> str:
    """``flat`` when the index stores float32 rows (scores exact), ``pq4`` for 4-bit product
    codes, else ``sq8``."""
    if index.code_size == 4 * index.d:
        return "flat"
    return "pq4" if "FastScan" in type(index).__name__ else "sq8"


def main(argv: list[str]) -> None:
    """Build from ``folder``'s snapshot with ``threads`` threads and ``codes`` (a delta, when
    a base index is given, keeps the base's codes); write the index and what was done
    (build.json). Seconds per phase and the CPU seconds are reported: a niced child's wall
    time says more about the machine's load."""
    import faiss

    folder, threads, codes = Path(argv[0]), int(argv[1]), argv[2]
    if codes not in CODES:
        raise SystemExit(f"unknown codes {codes!r}: one of {CODES}")
    base = Path(argv[3]) if len(argv) > 3 else None
    faiss.omp_set_num_threads(threads)
    start, cpu = time.perf_counter(), time.process_time()
    vectors = np.load(folder / "vectors.npy", mmap_mode="r")
    labels = np.load(folder / "labels.npy")
    dirty = np.zeros(0, dtype=np.int64) if base is None else np.load(folder / "removed.npy")
    if base is None:
        index, steps = build_index(vectors, labels, codes), {"removed": 0}
    else:
        index, steps = delta_index(base, vectors, labels, dirty)
    built = time.perf_counter()
    tmp = folder / "index.faiss.tmp"
    faiss.write_index(index, str(tmp))
    os.replace(tmp, folder / "index.faiss")
    end = time.perf_counter()
    info = {"pid": os.getpid(), "mode": "full" if base is None else "delta",
            "rows": int(index.ntotal), "added": int(len(labels)), **steps,
            "codes": codes_of(index), "code_bytes": int(index.code_size),
            "dirty": int(len(dirty)), "lists": int(index.nlist), "seconds": end - start,
            "build_s": built - start, "write_s": end - built,
            "cpu_s": time.process_time() - cpu}
    (folder / "build.json").write_text(json.dumps(info))


if __name__ == "__main__":
    main(sys.argv[1:])
