"""The worker's garbage-collection policy (``COLDSTREAM_GC_FREEZE``).

A collection holds the GIL, so it stalls the event loop for as long as it walks the objects
of its generations (``streams.loop_probe`` times each one). A full (gen-2) collection walks
every tracked object: the imported modules, Faust's and aiokafka's machinery, the loaded
model, and whatever became long-lived since. Table values were most of that: Faust's memory
store kept them as decoded dicts and lists, 1.07M objects after 5 minutes of a 200k soak.
Both table stores now keep values as bytes, which the collector does not track
(``streams.packed_tables``); the same soak then ends with 12-25k objects in generation 2
(``streams.gc_census``, docs/benchmarks.md). With CPython's thresholds (700, 10, 10) the
worker ran one in almost every 5 s window of a 200k soak, of 120-460 ms (docs/benchmarks.md).

``start`` (the default): once the worker is ready (collections loaded into the segments,
tables restored), collect once and move every surviving object to the permanent generation
(``gc.freeze()``), which no later collection walks; then raise the thresholds
(:data:`THRESHOLDS`): fewer short-lived objects (a batch's events, records in flight) are
still alive at a young collection and get promoted, and a full collection needs 57x more
allocations (5,000 x 10 x 80 against 700 x 10 x 10). That postpones full collections, it
does not shorten them: the first one still walks everything that became long-lived since
start (not measured: the 90 s soak ran none).

The cost of a freeze: an object frozen at start that later becomes part of a garbage
reference cycle is never freed (what reference counting frees is freed as usual), e.g. parts
of the start-up model after a model swap. ``off``: CPython's defaults.
"""

from __future__ import annotations

import gc
import logging
from typing import Any, Literal

log = logging.getLogger(__name__)

GcFreeze = Literal["off", "start"]

#: gen-0 allocations, gen-0 runs per gen-1, gen-1 runs per gen-2 (CPython: 700, 10, 10).
#: A young collection walks what its thresholds let accumulate: in the 200k soak gen-0 at 50k
#: paused up to 84 ms, (10k, 20) gen-1 up to 121 ms, (5k, 10) gen-1 up to 72 ms and gen-0
#: 30 ms (docs/benchmarks.md). 80: a full collection still needs 4M net allocations.
THRESHOLDS = (5_000, 10, 80)


def apply_gc_policy(mode: GcFreeze) -> dict[str, Any]:
    """Apply ``mode`` to this process (once, when the worker is ready); returns what it did."""
    if mode == "off":
        return {"mode": mode}
    gc.collect()  # what is garbage now must not be frozen: it would never be freed
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    frozen = gc.get_freeze_count()
    log.info("gc policy %s: %d objects frozen, thresholds %s", mode, frozen, THRESHOLDS)
    return {"mode": mode, "frozen": frozen, "thresholds": THRESHOLDS}
