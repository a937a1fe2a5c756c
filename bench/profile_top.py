"""Self time per function from py-spy's collapsed stacks (``--format raw``): the top N.

``python -m bench.profile_top PREFIX.txt [N]``: the leaf frame of each sampled stack, summed,
as a share of all samples (idle threads are not sampled by py-spy record by default).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path


def top(path: Path, n: int = 5) -> list[tuple[str, float]]:
    self_time: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.split(";")[-1]
        self_time[leaf] += int(count)
        total += int(count)
    return [(frame, c / total) for frame, c in self_time.most_common(n)] if total else []


if __name__ == "__main__":
    for frame, share in top(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 5):
        print(f"{share:6.1%}  {frame}")
