"""A memory limit for one process tree, as a container runtime sets one: a cgroup.

Inside the limit the kernel reclaims page cache (clean file pages: Qdrant Edge's mapped files)
before it fails an allocation, and past it the OOM killer ends the process. RSS alone cannot
say whether a worker fits a budget, because it counts page cache the kernel would give back;
running the soak inside a cgroup of that size can. Children (the sealed-segment builds) join
the cgroup of the process that started them, so they count too.

cgroup v1 (``/sys/fs/cgroup/memory``) and v2 (a ``memory`` controller in
``/sys/fs/cgroup/cgroup.subtree_control``) are both handled; root is needed to create one.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

V1 = Path("/sys/fs/cgroup/memory")
V2 = Path("/sys/fs/cgroup")
GB = 1024**3


class MemoryCap:
    """A new cgroup limited to ``limit_gb``; :meth:`add` puts a process in it."""

    def __init__(self, limit_gb: float, name: str = f"coldstream-bench-{os.getpid()}") -> None:
        self.limit_gb = limit_gb
        limit = str(int(limit_gb * GB))
        if V1.is_dir():
            self.v1, self.path = True, V1 / name
            self.path.mkdir(exist_ok=True)
            (self.path / "memory.limit_in_bytes").write_text(limit)
        elif "memory" in _read(V2 / "cgroup.subtree_control").split():
            self.v1, self.path = False, V2 / name
            self.path.mkdir(exist_ok=True)
            (self.path / "memory.max").write_text(limit)
        else:
            raise RuntimeError("no memory cgroup to create here (needs root and cgroup v1 "
                               "memory or a v2 memory controller)")

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def stats(self) -> dict[str, Any]:
        """The limit, the highest usage it allowed (page cache included), OOM kills."""
        if self.v1:
            peak = int(_read(self.path / "memory.max_usage_in_bytes") or 0)
            events = _pairs(_read(self.path / "memory.oom_control"))
            failed = int(_read(self.path / "memory.failcnt") or 0)
        else:
            peak = int(_read(self.path / "memory.peak") or 0)
            events = _pairs(_read(self.path / "memory.events"))
            failed = events.get("max", 0)
        return {"limit_gb": self.limit_gb, "max_usage_gb": peak / GB,
                "oom_kills": events.get("oom_kill", 0), "times_at_limit": failed}

    def close(self) -> None:
        """Remove the cgroup (once its processes are gone; a leftover stays, named)."""
        with contextlib.suppress(OSError):
            self.path.rmdir()


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _pairs(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out
