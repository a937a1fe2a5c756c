"""Seeds side by side: each seed of a table is an independent run (its own split, init and
selection on its own validation items), so ``--jobs N`` runs N of them at once, each in a
process of its own. On small models a process per core trains faster than one process
using every core: stop 47, `ablate --variants full` on ml-100k, 4 seeds on 2 cores, 89 s in
one process and 66 s with ``--jobs 2``, the same figures to the last digit.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def _limit_threads(threads: int) -> None:
    """In each child: share the cores between the jobs instead of each taking them all."""
    import torch

    torch.set_num_threads(threads)


def map_seeds(fn: Callable[[int], T], seeds: Sequence[int], jobs: int = 1,
              on_done: Callable[[T], None] | None = None, progress: bool = False,
              desc: str = "seeds") -> list[T]:
    """``[fn(seed) for seed in seeds]``, in seed order, each result handed to ``on_done``
    as soon as it and those before it are in. With ``jobs`` > 1 they run in that many
    spawned processes (``fn`` must pickle: a module-level function or a ``partial`` of one),
    each with ``cores // jobs`` torch threads."""
    from tqdm.auto import tqdm

    seeds, out = list(seeds), []
    bar = tqdm(total=len(seeds), desc=desc, disable=not progress)

    def take(result: T) -> None:
        out.append(result)
        bar.update()
        if on_done is not None:
            on_done(result)

    if jobs <= 1 or len(seeds) <= 1:
        for s in seeds:
            take(fn(s))
    else:
        threads = max(1, (os.cpu_count() or 1) // jobs)
        with ProcessPoolExecutor(max_workers=min(jobs, len(seeds)),
                                 mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_limit_threads, initargs=(threads,)) as pool:
            for future in [pool.submit(fn, s) for s in seeds]:
                take(future.result())
    bar.close()
    return out
