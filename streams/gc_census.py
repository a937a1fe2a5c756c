"""What a full collection would walk: the worker's long-lived tracked objects, by type.

The GC policy (``streams.gc_policy``) freezes what start-up left, so a full collection walks
only what became long-lived since; the 1M soak measured such a collection at 0.7 s
(docs/benchmarks.md). ``COLDSTREAM_GC_CENSUS_PATH`` makes the worker append a census of the
oldest generation to that file every :data:`INTERVAL_S`: which types grow is which
structure to keep out of the tracked heap. Diagnostics only: listing a generation holds the
GIL for about as long as collecting it, so it is off by default.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

INTERVAL_S = 30.0


def census(top: int = 20) -> dict[str, Any]:
    """Tracked objects per generation, and the ``top`` types of the oldest by count."""
    oldest = gc.get_objects(generation=2)
    by_type = Counter(type(o).__qualname__ for o in oldest)
    return {"t": time.time(), "generations": [len(gc.get_objects(generation=g)) for g in (0, 1)]
            + [len(oldest)], "frozen": gc.get_freeze_count(),
            "top": by_type.most_common(top)}


def append_census(path: Path, top: int = 20) -> dict[str, Any]:
    """One census as a JSON line at the end of ``path``."""
    line = census(top)
    with path.open("ab") as f:
        f.write(orjson.dumps(line) + b"\n")
    return line
