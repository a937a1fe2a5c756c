"""Sealed segments: an IVF index (faiss) over a snapshot of vectors, built in a child process.

Why IVF and not HNSW: on the bench's mixture Qdrant Edge's HNSW fell to recall 0.57 at 1M
after a 671 s build; IVF builds in seconds (k-means on a sample, then one assignment pass),
its recall is set per query by ``nprobe`` (all lists probed = exact), and it filters inside the
scan with a bitmap, so a payload filter or a tombstone costs no recall. Why a child process: the
build is CPU-bound for seconds to minutes; in a child it is niced, it cannot touch the worker's
GIL, and a crash leaves the worker serving the old segment. faiss releases the GIL in
``read_index`` and ``search`` (measured: < 5 ms event-loop gaps while loading and searching).

Its lists hold float32 rows (``flat``: 4 bytes a dimension, scores exact), 8-bit scalar codes
(``sq8``: 1 byte a dimension, scores approximate) or 4-bit product-quantizer codes (``pq4``,
the default: a quarter byte a dimension, scanned 32 codes at a time with SIMD, scores rougher). At
1M songs + 1M listeners of 512 dimensions that is 4 GB, 1 GB and 0.25 GB. The owning
:class:`~.segments.Segments` fetches :func:`candidates` from an approximate segment and rescores
them exactly from its mirror, so callers still get exact cosines (``coldstream bench --only
segments`` measures every kind of codes in the same run).

The child is ``python .../sealed_build.py <folder> <threads> <codes> [<base>]``, run as a script so
that it imports numpy and faiss only (not the worker's packages) and is niced before anything
else: it reads ``vectors.npy`` and ``labels.npy`` from the folder, writes ``index.faiss`` and
``build.json`` (pid, mode, rows, added, removed, lists, seconds, CPU seconds) atomically. With a
``base`` (the previous segment's index file) it builds a *delta*: the base minus the slots in
``removed.npy`` plus the given rows, reusing the trained lists (no k-means, no full pass).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: What a full build stores per row unless told otherwise (``Settings.segment_codes`` too).
DEFAULT_CODES = "pq4"
#: Candidates fetched from an approximate segment per wanted hit, and at least, before the
#: exact rescoring: (per hit, at least). pq4's rougher scores need more. At 1M x 512 on the
#: bench's mixture (nprobe 32, one run, faiss alone), the share of sq8's top 10 that survived
#: rescoring 400 / 700 / 1,000 / 1,500 candidates was 0.83 / 0.92 / 0.96 / 0.985, at 0.68 /
#: 0.84 / 1.01 / 1.26 ms p50 (sq8 with 40: 2.89 ms).
RESCORE = {"sq8": (4, 0), "pq4": (10, 1000)}
#: A query's nearest lists: (distances, lists), each of shape (1, nprobe).
Coarse = tuple[np.ndarray, np.ndarray]


def candidates(codes: str, k: int) -> int:
    """How many candidates to fetch for ``k`` hits from a segment with ``codes``."""
    if codes == "flat":
        return k
    per_hit, floor = RESCORE[codes]
    return max(per_hit * k, floor)


@dataclass
class SealedSegment:
    """A loaded IVF index whose labels are the owning :class:`~.segments.Segments`' slots."""

    index: Any
    rows: int
    info: dict[str, Any]
    path: Path | None = None  # the index file, kept as the base of the next delta merge

    @property
    def exact(self) -> bool:
        """Whether its scores are exact (float32 rows); else candidates to rescore."""
        return self.codes == "flat"

    @property
    def codes(self) -> str:
        return str(self.info.get("codes", "flat"))

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray, nprobe: int,
               coarse: Coarse | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (slots, scores) among slots whose ``allowed`` bit is set."""
        import faiss

        bits = np.packbits(allowed, bitorder="little")
        sel = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bits))
        params = faiss.SearchParametersIVF(sel=sel, nprobe=min(nprobe, self.index.nlist))
        return _search(self.index, query, k, params, coarse)

    @property
    def lists(self) -> int:
        return int(self.index.nlist)

    def assign(self, vectors: np.ndarray) -> np.ndarray:
        """Each vector's nearest list (the one the index itself would file it under)."""
        _, lists = self.index.quantizer.search(np.ascontiguousarray(vectors, np.float32), 1)
        return lists[:, 0]

    def probed(self, query: np.ndarray, nprobe: int) -> np.ndarray:
        """The lists a search of ``query`` with ``nprobe`` scans."""
        lists = self.coarse(query, nprobe)[1][0]
        return lists[lists >= 0]

    def coarse(self, query: np.ndarray, nprobe: int) -> Coarse:
        """The ``nprobe`` lists nearest ``query``, found once for the sealed search and the
        growing rows filed under the same lists (0.1-0.3 ms a search at 1M x 512)."""
        dists, lists = self.index.quantizer.search(query[None, :], min(nprobe, self.lists))
        return dists, lists


def search_plain(segment: SealedSegment, query: np.ndarray, k: int, nprobe: int,
                 coarse: Coarse | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` (slots, scores) with no filter: no per-query bitmap over every slot."""
    import faiss

    params = faiss.SearchParametersIVF(nprobe=min(nprobe, segment.index.nlist))
    return _search(segment.index, query, k, params, coarse)


def _search(index: Any, query: np.ndarray, k: int, params: Any,
            coarse: Coarse | None) -> tuple[np.ndarray, np.ndarray]:
    """One query, with its lists already found (``coarse``) or not. faiss's Python wrapper
    of the preassigned search takes no parameters (selector, nprobe): call the C++ one."""
    import faiss

    q = np.ascontiguousarray(query[None, :], dtype=np.float32)
    if coarse is None:
        scores, slots = index.search(q, k, params=params)
    else:
        dists, lists = (np.ascontiguousarray(a) for a in coarse)
        params.nprobe = lists.shape[1]
        scores, slots = np.empty((1, k), np.float32), np.empty((1, k), np.int64)
        index.search_preassigned_c(1, faiss.swig_ptr(q), k, faiss.swig_ptr(lists),
                                   faiss.swig_ptr(dists), faiss.swig_ptr(scores),
                                   faiss.swig_ptr(slots), False, params)
    keep = slots[0] >= 0
    return slots[0][keep], scores[0][keep]


def start_build(folder: Path, threads: int = 1, base: Path | None = None,
                codes: str = DEFAULT_CODES) -> subprocess.Popen[bytes]:
    """Start the child on ``folder`` (vectors.npy, labels.npy; with ``base``, a delta build
    from that index file, also removed.npy, keeping the base's codes)."""
    args = [sys.executable, str(Path(__file__).with_name("sealed_build.py")), str(folder),
            str(threads), codes]
    if base is not None:
        args.append(str(base))
    return subprocess.Popen(args, stdin=subprocess.DEVNULL)


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
    return SealedSegment(index, int(info["rows"]), info, folder / "index.faiss")
