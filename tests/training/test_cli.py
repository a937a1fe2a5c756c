from __future__ import annotations

import json

from typer.testing import CliRunner

from training.cli import app

runner = CliRunner()


def test_world_replay_and_evaluate_commands(tmp_path):
    res = runner.invoke(app, ["world", str(tmp_path / "w"), "--size", "tiny", "--render", "2",
                              "--seconds", "0.5"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "w" / "catalogue.csv").exists()
    assert len(list((tmp_path / "w" / "audio").glob("*.wav"))) == 2

    res = runner.invoke(app, ["replay", str(tmp_path / "w"), "--out", str(tmp_path / "e.jsonl")])
    assert res.exit_code == 0, res.output
    assert len((tmp_path / "e.jsonl").read_text().splitlines()) == 300 + 6000

    res = runner.invoke(app, ["evaluate", "--dataset", "world:tiny", "--baselines",
                              "random,tag-knn", "--out", str(tmp_path / "rep"),
                              "--embedding-map", "pca"])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "rep" / "world-tiny.json").read_text())
    assert [r["model"] for r in report["results"]] == ["random", "content-knn[tags]"]
    assert "recall@20" in report["results"][0]["segments"]["cold"]
    assert "| content-knn[tags] |" in (tmp_path / "rep" / "world-tiny.md").read_text()
    assert report["plots"] == ["world-tiny-metrics.png", "world-tiny-map.png"]
    assert (tmp_path / "rep" / "world-tiny-map.png").read_bytes()[:4] == b"\x89PNG"
