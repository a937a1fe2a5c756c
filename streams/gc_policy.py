"""The worker's garbage-collection policy (``COLDSTREAM_GC_FREEZE``).

A collection holds the GIL, so it stalls the event loop for as long as it walks the objects
of its generations (``streams.loop_probe`` times each one). A full (gen-2) collection walks
every tracked object: the imported modules, Faust's and aiokafka's machinery, the loaded
model, and the tables' state. With CPython's thresholds (700, 10, 10) the worker under a soak
ran one every 5-10 s, each longer than the last (130 ms to 500 ms in a 90 s soak,
docs/benchmarks.md).

``start`` (the default): once the worker is ready (collections loaded into the segments,
tables restored), collect once and move every surviving object to the permanent generation
(``gc.freeze()``), which no later collection walks; then raise the thresholds
(:data:`THRESHOLDS`): fewer short-lived objects (a batch's events, records in flight) are
still alive at a young collection and get promoted, and a full collection needs 20x more
young ones. That postpones full collections, it does not shorten them: the first one still
walks everything that became long-lived since start (the users' states, for instance).

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
#: gen-0 at 10k, not higher: a young collection walks up to that many objects (50k measured
#: 84 ms on the loaded soak machine).
THRESHOLDS = (10_000, 20, 20)


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
