"""The worker's garbage-collection policy (``COLDSTREAM_GC_FREEZE``).

A collection holds the GIL, so it stalls the event loop for as long as it walks the objects
of its generations (``streams.loop_probe`` times each one). A full (gen-2) collection walks
every tracked object: the imported modules, Faust's and aiokafka's machinery, the restored
tables, and whatever the soak added. The start-up part never becomes garbage, so walking it
again every full collection is pure stall.

``start``: once the worker is ready (collections loaded into the segments, tables restored),
collect once and move every surviving object to the permanent generation (``gc.freeze()``),
which no later collection walks; and raise the gen-0 threshold (:data:`THRESHOLDS`) so fewer
short-lived objects live long enough to be promoted. ``survivors``: ``start``, and after
every full collection freeze what survived it too, so the next full collection walks only
what was promoted since the last one (its pause no longer grows with the worker's age). The
cost: a reference cycle among frozen objects that later becomes garbage is never collected
(plain reference counting still frees everything else). ``off``: CPython's defaults.
"""

from __future__ import annotations

import gc
import logging
from typing import Any, Literal

log = logging.getLogger(__name__)

GcFreeze = Literal["off", "start", "survivors"]

#: gen-0 allocations, gen-0 runs per gen-1, gen-1 runs per gen-2 (CPython: 700, 10, 10).
THRESHOLDS = (50_000, 20, 10)


def refreeze_after_full(phase: str, info: dict[str, Any]) -> None:
    """gc callback: after a full collection, freeze its survivors (``survivors`` mode)."""
    if phase == "stop" and info.get("generation") == 2:
        gc.freeze()


def apply_gc_policy(mode: GcFreeze) -> dict[str, Any]:
    """Apply ``mode`` to this process (once, when the worker is ready); returns what it did."""
    if mode == "off":
        return {"mode": mode}
    gc.collect()  # what is garbage now must not be frozen: it would never be freed
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    if mode == "survivors" and refreeze_after_full not in gc.callbacks:
        gc.callbacks.append(refreeze_after_full)
    frozen = gc.get_freeze_count()
    log.info("gc policy %s: %d objects frozen, thresholds %s", mode, frozen, THRESHOLDS)
    return {"mode": mode, "frozen": frozen, "thresholds": THRESHOLDS}
