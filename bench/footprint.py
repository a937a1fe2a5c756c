"""``python -m bench.footprint``: what the serving install costs, next to the full one.

* installed size of ``coldstream`` (serving), ``[train]`` and ``[dev]``: the dependency
  closure of each, resolved from this environment's package metadata, summed over the files
  each distribution's RECORD lists (what pip installed, bytecode caches excluded);
* import time and peak RSS of ``import streams.worker`` plus the CLI, in a fresh interpreter.

Pass ``--tree DIR`` to measure another checkout's import (e.g. the commit before the split)
with this environment.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement

IMPORT = """
import resource, sys, time
t = time.perf_counter()
import streams.worker, streams.cli
streams.cli.mount_commands("training.cli"); streams.cli.mount_commands("bench.cli")
dt = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(dt, rss, "torch" in sys.modules)
"""


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: list[Requirement]) -> set[str]:
    """Installed distributions needed by ``roots`` (markers evaluated, extras followed)."""
    seen: set[tuple[str, frozenset[str]]] = set()
    names: set[str] = set()
    todo = list(roots)
    while todo:
        req = todo.pop()
        key = (_key(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            continue
        names.add(_key(req.name))
        for text in dist.requires or []:
            dep = Requirement(text)
            if dep.marker is None or any(
                    dep.marker.evaluate({"extra": e}) for e in (req.extras or {""})):
                todo.append(dep)
    return names


def size_mb(names: set[str]) -> float:
    total = 0
    for name in names:
        for f in distribution(name).files or []:
            if "__pycache__" in str(f):
                continue
            path = Path(str(f.locate()))
            if path.is_file():
                total += path.stat().st_size
    return total / 1e6


def import_cost(tree: Path | None, runs: int = 3) -> dict[str, float | bool]:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    out = []
    for _ in range(runs):
        res = subprocess.run([sys.executable, "-c", IMPORT], env=env, capture_output=True,
                             text=True, check=True, cwd=tree or None)
        dt, rss, torch = res.stdout.split()
        out.append((float(dt), float(rss), torch == "True"))
    out.sort()
    dt, rss, torch = out[len(out) // 2]
    return {"import_s_median": round(dt, 2), "peak_rss_mib": round(rss), "imports_torch": torch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=None)
    args = parser.parse_args()
    base = closure([Requirement("coldstream")])
    train = closure([Requirement("coldstream[train]")])
    dev = closure([Requirement("coldstream[dev]")])
    report = {
        "serving_mb": round(size_mb(base)), "serving_packages": len(base),
        "train_extra_mb": round(size_mb(train - base)),
        "serving_plus_train_mb": round(size_mb(train)),
        "dev_mb": round(size_mb(dev)), "dev_packages": len(dev),
        "import": import_cost(args.tree),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
