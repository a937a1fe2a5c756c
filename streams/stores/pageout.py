"""Hand the kernel back the resident pages of mapped files (``madvise(MADV_PAGEOUT)``).

Qdrant Edge maps its vector files. A worker whose searches and vector reads are answered by its
own mirror (:class:`~.segmented.SegmentedStore`) only writes those files, yet reloading the
mirror at start reads every page of them, and a read page stays mapped, in the worker's RSS
and in its memory cgroup, until the kernel is short of memory: 2-4 GB at 1M songs + 1M
listeners (``coldstream bench --only scale``). Paging them out leaves the data on disk; the
next access (a write, a rare engine search) reads its page back. Dirty pages are not written
by this; the kernel leaves them for the engine's own flush.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)

MADV_PAGEOUT = 21  # Linux 5.4+


def page_out(folder: Path, marker: str) -> int:
    """Page out this process's shared mappings of files under ``folder`` whose path contains
    ``marker``; the bytes advised (0 where the platform has no such call)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        maps = Path("/proc/self/maps").read_text().splitlines()
    except (OSError, AttributeError):
        return 0
    prefix, advised = str(Path(folder).resolve()), 0
    for line in maps:
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or parts[1][3] != "s":  # shared file mappings only
            continue
        path = parts[5]
        if not path.startswith(prefix) or marker not in path:
            continue
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        if madvise(lo, hi - lo, MADV_PAGEOUT) == 0:  # fails harmlessly if unmapped meanwhile
            advised += hi - lo
        else:
            log.debug("madvise(PAGEOUT) on %s: errno %d", path, ctypes.get_errno())
    return advised
