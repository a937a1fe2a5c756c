"""``coldstream bench``: every hot path measured next to a baseline run in the same process.

The machine is shared and noisy, so each scenario reports absolute numbers *and* a ratio
against a baseline measured in the same invocation; the ratio is what to compare across runs.
"""

__all__ = ["Report"]

from .common import Report
