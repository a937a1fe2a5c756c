"""The ingest bench's own arithmetic: self time from collapsed stacks, merged runs, the
backlog curve and its plot. No broker, no worker, no timing asserts."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from bench.ingest import LagSampler, plot_lag
from bench.merge_ingest import merge
from bench.profile_top import top


def test_self_time_counts_the_leaf_of_each_stack(tmp_path: Path) -> None:
    raw = tmp_path / "worker.txt"
    raw.write_text("thread (1);main (a.py:1);work (a.py:5) 30\n"
                   "thread (1);main (a.py:1) 10\n"
                   "thread (2);loop (b.py:2);work (a.py:5) 60\n")
    assert top(raw, 2) == [("work (a.py:5)", 0.9), ("main (a.py:1)", 0.1)]


def test_merged_runs_keep_their_own_ratios_and_say_which_run() -> None:
    def report(users: int, rate: float) -> dict:
        return {"scenario": "ingest", "params": {"users": users}, "goals": [], "notes": [],
                "seconds": 1.0, "extra": {"load": {"start": [1.0, 1.0, 1.0]}},
                "rows": [{"path": "worker: interactions agent", "events/s": rate,
                          "x_raw": rate / 1000}]}

    out = merge([("100k users", report(100_000, 10.0)), ("10k users", report(10_000, 20.0))])
    assert [r["path"] for r in out["rows"]] == ["worker: interactions agent [100k users]",
                                                "worker: interactions agent [10k users]"]
    assert [r["x_raw"] for r in out["rows"]] == [0.01, 0.02]
    assert set(out["extra"]["runs"]) == {"100k users", "10k users"}


def test_backlog_is_sent_minus_processed_and_is_plotted(tmp_path: Path) -> None:
    sampler = LagSampler(SimpleNamespace(), "t", before=0.0)
    sampler.samples = [(10.0, 0, 0.0), (11.0, 500, 100.0), (12.0, 1000, 1000.0)]
    assert sampler.lag(10.0) == [(0.0, 0.0), (1.0, 400.0), (2.0, 0.0)]
    curve = [{"offered/s": 500, "seconds": 2.0, "drain_s": 0.1, "lag": sampler.lag(10.0)}]
    png = plot_lag(curve, tmp_path / "lag.png")
    assert png is not None and png.read_bytes()[:4] == b"\x89PNG"
