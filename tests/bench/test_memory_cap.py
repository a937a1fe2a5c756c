"""The soak's memory cap is a real cgroup: a process past it is OOM-killed, and one within it
runs; its stats say so. Skipped where no memory cgroup can be created (not root)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from bench.memory_cap import MemoryCap

ALLOC = "import sys; sys.stdin.readline(); x = bytearray({mb} * 2**20); print('ok', flush=True)"


@pytest.fixture
def cap() -> Iterator[MemoryCap]:
    try:
        c = MemoryCap(0.0625, name="coldstream-test-cap")  # 64 MiB
    except (RuntimeError, OSError) as e:
        pytest.skip(f"no memory cgroup here: {e}")
    yield c
    c.close()


def run_in(cap: MemoryCap, mb: int) -> subprocess.CompletedProcess[str]:
    child = subprocess.Popen([sys.executable, "-c", ALLOC.format(mb=mb)], text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    cap.add(child.pid)  # before it allocates: it waits for a line first
    out, _ = child.communicate("go\n", timeout=60)
    return subprocess.CompletedProcess(child.args, child.returncode, out)


def test_a_process_past_the_cap_is_killed_and_counted(cap: MemoryCap) -> None:
    assert run_in(cap, 8).stdout.strip() == "ok"
    assert cap.stats()["oom_kills"] == 0
    killed = run_in(cap, 256)
    assert killed.returncode == -9 and "ok" not in killed.stdout
    stats = cap.stats()
    assert stats["oom_kills"] == 1 and stats["limit_gb"] == 0.0625
    assert 0 < stats["max_usage_gb"] <= 0.0625
