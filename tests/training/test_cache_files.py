"""Cache files shared by the two pytest workers are written whole or not at all."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from training.cache_files import save_array


def test_a_saved_array_reads_back_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "minilm-x.npy"
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    save_array(path, array)
    assert np.array_equal(np.load(path), array)
    assert sorted(p.name for p in path.parent.iterdir()) == ["minilm-x.npy"]


def test_a_reader_never_sees_a_partial_file_while_it_is_rewritten(tmp_path: Path) -> None:
    """np.save straight to the path would expose a truncated file to a concurrent np.load."""
    path = tmp_path / "big.npy"
    array = np.ones((512, 1024), dtype=np.float32)
    save_array(path, array)
    stop, seen = threading.Event(), []

    def rewrite() -> None:
        while not stop.is_set():
            save_array(path, array)

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        for _ in range(200):
            seen.append(np.load(path).shape)
    finally:
        stop.set()
        writer.join()
    assert set(seen) == {array.shape}
