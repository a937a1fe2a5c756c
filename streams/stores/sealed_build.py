"""The child process that builds a sealed segment (see :mod:`.sealed`): build, write, exit.

Its own module so that ``python -m`` runs it without :mod:`.sealed` being imported twice.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from .sealed import build_index


def main(argv: list[str]) -> None:
    """The child: build, write, exit. Niced so serving keeps the cores it needs."""
    import faiss

    folder, threads = Path(argv[0]), int(argv[1])
    os.nice(10)
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
