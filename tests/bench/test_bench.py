"""Smoke runs of the pure-python bench scenarios: the JSON has the expected shape and sane
values. No timing asserts: the machine is shared and noisy."""

from __future__ import annotations

import math
import os
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from bench import encoders, flush, reembed, scale, search, segments, swap, swap_soak
from bench.cli import SCENARIOS, app
from encoders.artifacts import Registry


def saved(rep: object, tmp_path: Path) -> dict:
    path = rep.save(tmp_path)  # type: ignore[attr-defined]
    data = orjson.loads(path.read_bytes())
    assert {"scenario", "mode", "params", "rows", "goals", "notes", "machine",
            "seconds"} <= set(data)
    assert data["machine"]["cores"] >= 1 and data["rows"]
    return data


def test_search_smoke(tmp_path: Path) -> None:
    rep = search.run("quick", n=2000, dim=32, n_queries=20, grid=[search.Hnsw(8, 32)],
                     efs=[64], curve=[1000])
    data = saved(rep, tmp_path)
    rows = data["rows"]
    assert {"edge_p50_ms", "numpy_p50_ms", "speedup_p50", "recall@10"} <= set(rows[0])
    assert {r["filter"] for r in rows} == {"none", "genre"}
    for r in rows:
        assert 0.0 <= r["recall@10"] <= 1.0 and r["edge_p50_ms"] > 0
    assert [p["n"] for p in data["extra"]["curve"]] == [1000, 2000]
    assert set(data["extra"]["choice"]) == {"m", "ef_construct", "ef"}


def test_flush_smoke(tmp_path: Path) -> None:
    """The timer alone flushes once per period; a point bound adds a flush per bound."""
    rep = flush.run("quick", n=2000, dim=16, rate=1000.0, seconds=1.5,
                    configs=((1.0, 0, False), (1.0, 200, True)))
    rows = saved(rep, tmp_path)["rows"]
    assert [(r["flush_points"], r["presync"]) for r in rows] == [(0, False), (200, True)]
    assert rows[0]["flushes"] == rows[0]["timer_calls"] == 1
    assert rows[1]["flushes"] >= 5  # ~1,500 points written, a flush per 200
    assert all(r["max_loop_stall_ms"] >= 0 and r["flush_max_ms"] > 0 for r in rows)


def test_segments_smoke(tmp_path: Path) -> None:
    rep = segments.run("quick", n=3000, dim=32, n_queries=10, nprobes=[4, 64])
    data = saved(rep, tmp_path)
    assert {r["filter"] for r in data["rows"]} == {"none", "genre"}
    for r in data["rows"]:
        assert 0.0 <= r["recall"] <= 1.0 and r["store_p50_ms"] > 0 and r["numpy_p50_ms"] > 0
    assert any(r["recall"] == 1.0 for r in data["rows"] if r["nprobe"] == 64)
    merge = data["extra"]["merge"]
    assert merge["rows"] == 3000 and merge["max_loop_stall_ms"] >= 0
    assert data["extra"]["merge_after_churn"]["rows"] == 3000 + 120 - 30
    assert data["extra"]["growing_after_churn"] == 120 + 30
    delta, full = data["extra"]["merge_after_churn"], data["extra"]["full_after_churn"]
    assert delta["mode"] == "delta" and delta["added"] == 120 + 30
    assert full["mode"] == "full" and full["rows"] == delta["rows"]
    after = data["extra"]["after_merges"]
    assert {r["after"] for r in after} == {"delta", "full"}
    assert all(r["recall"] == 1.0 for r in after)  # nprobe 64 >= every list: exact
    codes = data["extra"]["codes"]
    assert {r["codes"] for r in codes} == {"flat", "sq8", "pq4"}
    index_mb = {r["codes"]: r["index_mb"] for r in codes}
    assert index_mb["sq8"] == pytest.approx(index_mb["flat"] / 4)  # a byte per dimension
    assert index_mb["pq4"] == pytest.approx(index_mb["flat"] / 16)  # 4 bits per 2 dimensions
    exact_probe = [r for r in codes if r["nprobe"] == 64 and r["k"] == 10]
    assert all(r["recall"] == 1.0 for r in exact_probe if r["codes"] != "pq4")
    # pq4's 1,000 candidates of 3,000 rows, rescored: rough codes, yet nearly exact here
    assert min(r["recall"] for r in exact_probe if r["codes"] == "pq4") >= 0.9


@pytest.mark.extended
def test_segments_world_vectors_smoke(model_registry: Registry, tmp_path: Path) -> None:
    """``--vectors world``: a music world's songs encoded by the registry's model, held-out
    songs as queries; the same rows as the mixture (``make test-extended``: the segment code
    is the one test_segments_smoke drives; only the vectors' source differs)."""
    rep = segments.run("quick", n=300, n_queries=10, nprobes=[4, 64], second_merge=False,
                       models=model_registry.root)
    data = saved(rep, tmp_path)
    assert data["scenario"] == "segments_world" and data["params"]["queries"] == 10
    for r in data["rows"]:
        assert 0.0 <= r["recall"] <= 1.0 and r["store_p50_ms"] > 0


def test_reembed_smoke(model_registry: Registry, tmp_path: Path) -> None:
    rep = reembed.run("quick", model_registry.root, n=6)
    data = saved(rep, tmp_path)
    rows = {r["path"]: r for r in data["rows"]}
    assert rows["no cache (baseline)"]["backbone_hits"] == 0
    assert rows["cache, audio tower retrained"]["backbone_hits"] == 6  # text only
    for path in ("cache, audio tower unchanged, file read (no digest kept)",
                 "cache, audio tower unchanged, digest kept (file not read)"):
        assert rows[path]["backbone_hits"] == 12  # text and audio
    assert all(r["songs"] == 6 and r["songs/s"] > 0 for r in data["rows"])
    assert len(data["rows"]) == 4  # the 1M prefilled row is --full only


def test_prefilled_swap_smoke(model_registry: Registry) -> None:
    """The --full 1M row at 300 songs: every song re-embedded from cached rows (the function
    asserts no frozen graph ran), and the switch timed both ways with every song noted."""
    row = reembed.prefilled_swap(model_registry.root, 300)
    assert row["songs"] == 300 and row["songs/s"] > 0
    assert row["switch_full_scan_s"] > 0 and row["switch_noted_only_s"] > 0
    assert row["pairing_dict_join_peak_mib"] > 0 and row["pairing_merge_join_peak_mib"] > 0


def test_encoders_smoke(model_registry: Registry, tmp_path: Path) -> None:
    rep = encoders.run("quick", batches=[1, 2], models=model_registry.root, min_seconds=0.05)
    data = saved(rep, tmp_path)
    assert [r["batch"] for r in data["rows"]] == [1, 2]
    for r in data["rows"]:
        for key in ("text_onnx/s", "text_torch/s", "audio_tower_onnx/s", "song_onnx/s",
                    "song_torch/s", "song_x"):
            assert r[key] > 0 and math.isfinite(r[key]), key
    assert data["extra"]["log_mel_ms_per_clip"] > 0
    assert len(data["goals"]) == 4
    assert encoders.song_rate(rep)["songs_per_s"] > 0


def test_swap_smoke(tmp_path: Path) -> None:
    rep = swap.run("quick", n=600, batch_sizes=[100], single=50,
                   encoder_rate={"batch": 8, "songs_per_s": 20.0})
    data = saved(rep, tmp_path)
    paths = [r["path"] for r in data["rows"]]
    assert paths[0].startswith("one point per upsert") and data["rows"][0]["x_base"] == 1.0
    assert any(p.startswith("estimated full swap") for p in paths)
    assert all(r["songs/s"] > 0 for r in data["rows"])


SCALE_KEYS = {"songs", "users", "interactions_per_s_offered", "interactions_per_s_achieved",
              "new_songs_per_s_achieved", "new_song_p50_ms", "new_song_p99_ms", "search_p50_ms",
              "search_recall_at_10", "rss_gb", "max_loop_stall_ms"}


def test_scale_quick(model_registry: Registry, tmp_path: Path) -> None:
    """``coldstream bench --only scale`` at quick sizes: a real worker on the embedded broker
    is offered interactions and new songs; the issue's keys are at the JSON's top level."""
    rep = scale.run("quick", model_registry.root, tmp_path)
    data = saved(rep, tmp_path)
    assert set(data) >= SCALE_KEYS
    assert data["songs"] == scale.SIZES["quick"]["n_songs"]
    assert data["interactions_per_s_achieved"] > 0 and data["new_songs_per_s_achieved"] > 0
    assert data["rss_gb"] > 0 and data["max_loop_stall_ms"] >= 0
    assert 0.0 <= data["search_recall_at_10"] <= 1.0
    assert data["at_issue_rate"]["interactions_per_s_offered"] == scale.SIZES["quick"][
        "issue_rate"]
    assert (tmp_path / "scale_lag.png").stat().st_size > 0
    slowest = [s["ms"] for s in data["slowest_new_songs"]]
    assert slowest and slowest == sorted(slowest, reverse=True)
    assert slowest[0] >= data["new_song_p99_ms"] >= data["new_song_p50_ms"]
    assert 0 < data["cores"]["worker"] <= os.cpu_count()  # the worker's own CPU time moved
    assert {"broker", "bench"} <= set(data["cores"])
    assert data["extra"]["scrapes"], "the worker was never scraped"
    # stalls traced by site, and the worker's stall lines, kept though its log goes with tmp
    assert isinstance(data["stall_sites"], dict) and isinstance(data["extra"]["stall_log"], list)
    assert all("stall_sites" in s for s in data["extra"]["scrapes"] if s["ok"])
    # the worker applied its GC policy when it became ready (unless the caller passed off)
    frozen = max(s["gc_frozen"] for s in data["extra"]["scrapes"])
    assert (frozen > 0) == (os.environ.get("COLDSTREAM_GC_FREEZE", "start") != "off")


def test_soak_places_songs_and_merges_in_time() -> None:
    """Latencies are placed at their send time since the soak began, in send order, and a
    merge at the first scrape whose counter moved (an unanswered scrape is not a reading)."""
    soak = scale.Soak(t0=100.0, sent={"a": 101.0, "b": 100.5, "c": 102.0},
                      got={"a": 101.25, "b": 102.5})  # c never got a candidate
    assert soak.latencies() == [(0.5, 2000.0), (1.0, 250.0)]
    soak.scrapes = [{"t": 0.0, "ok": True, "merges": 2, "lag": {}},
                    {"t": 2.0, "ok": True, "merges": 3, "lag": {}},
                    {"t": 4.0, "ok": False, "merges": 0, "lag": {}},
                    {"t": 6.0, "ok": True, "merges": 3, "lag": {}},
                    {"t": 8.0, "ok": True, "merges": 5, "lag": {}}]
    assert soak.merge_times() == [2.0, 8.0]


def test_swap_soak_quick(model_registry: Registry) -> None:
    """A real worker under load swaps to a new version with the same frozen graphs: the swap
    completes, its pause is measured, and new songs get candidates before, during and after."""
    rep = swap_soak.run("quick", model_registry.root)
    assert rep.summary["swaps_ok"] == 1 and rep.summary["switch_pause_ms"] > 0
    assert {r["policy"] for r in rep.rows} == {"swap gives way (default)"}
    windows = {r["window"]: r for r in rep.rows}
    assert windows["before the swap"]["songs"] > 0 and windows["after the switch"]["songs"] > 0
    assert model_registry.current() != "v-swap"  # the bench swapped a copy of the registry


def test_cli_rejects_unknown_scenario() -> None:
    result = CliRunner().invoke(app, ["--only", "nope"])
    assert result.exit_code != 0
    assert set(SCENARIOS) >= {"encoders", "search", "swap", "ingest", "new_song"}
