"""Cache files that several processes may fill at once (``make test`` runs two pytest workers).

A reader must never see half a file, and two writers must not trip over each other: each writer
saves under a name of its own and renames it into place; the last rename wins, and every version
holds the same values.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np


def save_array(path: Path, array: np.ndarray) -> None:
    """``np.save`` to ``path``, whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
                                     delete=False) as f:
        np.save(f, array)
    os.replace(f.name, path)
