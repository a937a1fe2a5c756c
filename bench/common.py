"""Shared plumbing: the per-scenario report (rich table + JSON), percentiles, machine facts."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
from rich.console import Console
from rich.table import Table

Mode = Literal["quick", "full"]
console = Console(width=170)


@dataclass
class Goal:
    """One target from the issue, checked against a measured value."""

    name: str
    target: str
    value: float | None
    met: bool | None


@dataclass
class Report:
    """What a scenario measured: rows for the table, goals, free-text notes."""

    scenario: str
    mode: Mode
    params: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    #: Figures a scenario promises at the top level of its JSON (``scale``: the issue's keys).
    summary: dict[str, Any] = field(default_factory=dict)

    def goal(self, name: str, target: str, value: float | None,
             ok: Callable[[float], bool]) -> None:
        self.goals.append(Goal(name, target, value, None if value is None else bool(ok(value))))

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(out.pop("summary"))
        out["machine"] = machine()
        return out

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.scenario}.json"
        path.write_bytes(orjson.dumps(self.to_json(), option=orjson.OPT_INDENT_2
                                      | orjson.OPT_SERIALIZE_NUMPY))
        return path

    def print(self) -> None:
        """Rows as a table (columns = union of row keys, in first-seen order), then goals."""
        cols: list[str] = []
        for row in self.rows:
            cols += [k for k in row if k not in cols]
        table = Table(title=f"{self.scenario} ({self.mode}, {self.seconds:.0f} s)")
        for c in cols:
            table.add_column(c, justify="left" if c in cols[:1] else "right")
        for row in self.rows:
            table.add_row(*[fmt(row.get(c)) for c in cols])
        console.print(table)
        for g in self.goals:
            mark = {True: "[green]met[/]", False: "[red]missed[/]", None: "[yellow]n/a[/]"}
            console.print(f"  goal {g.name}: {g.target} -> {fmt(g.value)} {mark[g.met]}")
        for n in self.notes:
            console.print(f"  note: {n}")


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float | np.floating):
        v = float(v)
        if v == 0:
            return "0"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        if abs(v) >= 0.01:
            return f"{v:.3f}"
        return f"{v:.2e}"
    return str(v)


def pct(values: Sequence[float], q: float) -> float | None:
    """Percentile of a sample, None when empty (a missing number must not look like zero)."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else None


def ms(values: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99 in milliseconds of a list of seconds."""
    return {f"p{q}_ms": (None if (p := pct(values, q)) is None else p * 1e3)
            for q in (50, 95, 99)}


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def timed(fn: Callable[[], Any], min_seconds: float = 0.5, min_runs: int = 3,
          max_runs: int = 10_000) -> list[float]:
    """Call ``fn`` at least ``min_runs`` times and ``min_seconds``; per-call seconds."""
    out: list[float] = []
    start = time.perf_counter()
    while len(out) < max_runs and (len(out) < min_runs
                                   or time.perf_counter() - start < min_seconds):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def machine() -> dict[str, Any]:
    """CPU, cores and memory, so numbers are never quoted without the box they came from."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "mem_gib": mem_gib, "python": platform.python_version(),
            "platform": platform.platform()}
