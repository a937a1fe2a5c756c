from __future__ import annotations

import json

import pytest
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
                              "random,tag-knn,clcrec", "--out", str(tmp_path / "rep"),
                              "--embedding-map", "pca"])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "rep" / "world-tiny.json").read_text())
    assert [r["model"] for r in report["results"]] == ["random", "content-knn[tags]", "clcrec"]
    assert "recall@20" in report["results"][0]["segments"]["cold"]
    assert "| content-knn[tags] |" in (tmp_path / "rep" / "world-tiny.md").read_text()
    assert report["plots"] == ["world-tiny-metrics.png", "world-tiny-map.png"]
    assert (tmp_path / "rep" / "world-tiny-map.png").read_bytes()[:4] == b"\x89PNG"


def test_train_reports_mean_and_sd_over_seeds(tmp_path):
    """`train` measures every seed's model (early-stopped on validation; here two seeds at
    once, each in a process of its own) and prints mean ± sd."""
    import re

    res = runner.invoke(app, ["train", "--dataset", "world:tiny", "--seeds", "2", "--jobs", "2",
                              "--epochs", "2", "--align-epochs", "1", "--no-publish",
                              "--run-dir", str(tmp_path / "runs")], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert re.search(r"seed 0: cold recall@20 0\.\d{3} ndcg@20 0\.\d{3} \(best epoch [12],",
                     res.output)
    assert "seed 1:" in res.output
    assert re.search(r"over 2 seeds: cold recall@20 0\.\d{3} ± 0\.\d{3}, "
                     r"ndcg@20 0\.\d{3} ± 0\.\d{3}", res.output), res.output
    assert re.search(r"final model: [12] joint epochs", res.output)
    assert re.search(r"delivery calibration \(validation\): \[.*'prior'\] coef \[",
                     res.output), res.output
    assert re.search(r"prior target (events/day|positive/day|events|positive) \(seeds: \[",
                     res.output), res.output


def test_train_can_keep_a_published_audio_tower(tmp_path):
    """`train --keep-audio-of V`: measured and published with V's audio graph, byte for byte;
    an unknown version is refused before any training."""
    from encoders.artifacts import Registry

    models = tmp_path / "models"
    common = ["--dataset", "world:tiny", "--epochs", "1", "--align-epochs", "1",
              "--registry", str(models), "--run-dir", str(tmp_path / "runs")]
    res = runner.invoke(app, ["train", *common, "--no-evaluate"], terminal_width=200)
    assert res.exit_code == 0, res.output
    reg = Registry(models)
    first = reg.current() or ""
    res = runner.invoke(app, ["train", *common, "--seeds", "1", "--keep-audio-of", first],
                        terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "seed 0:" in res.output
    second = reg.current() or ""
    assert second != first and reg.load(second).parent == first
    graph = reg.load(first).audio.graph
    assert (reg.path(second) / graph).read_bytes() == (reg.path(first) / graph).read_bytes()
    res = runner.invoke(app, ["train", *common, "--keep-audio-of", "v-nope"])
    assert res.exit_code != 0 and "no published version" in res.output


def test_train_tune_publishes_the_token_view_validation_chose(tmp_path, monkeypatch):
    """`train --tune` picks the token view per seed on validation and the published model
    carries the majority's pick. The grid is cut to the one choice that is not the default
    (on the tiny world validation keeps the tokens), so a pick left unapplied fails here."""
    import re

    from encoders.artifacts import Registry
    from training import recommender

    monkeypatch.setattr(recommender, "MODEL_GRID", {"no-tokens": {"bow_buckets": 0}})
    models = tmp_path / "models"
    common = ["--dataset", "world:tiny", "--epochs", "1", "--align-epochs", "1",
              "--registry", str(models), "--run-dir", str(tmp_path / "runs")]
    res = runner.invoke(app, ["train", *common, "--no-evaluate"], terminal_width=200)
    reg = Registry(models)
    assert res.exit_code == 0 and reg.load(reg.current() or "").fusion.bow_buckets
    res = runner.invoke(app, ["train", *common, "--seeds", "1", "--tune"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert re.search(r"selected on validation: no-tokens; final model: no-tokens", res.output)
    assert not reg.load(reg.current() or "").fusion.bow_buckets


def test_the_final_model_takes_the_choice_most_seeds_made() -> None:
    from training.cli import majority_choice

    order = ["tokens", "no-tokens", "tokens-of-trained-songs"]
    assert majority_choice(["no-tokens", "tokens", "no-tokens"], order) == "no-tokens"
    assert majority_choice(["tokens-of-trained-songs", "no-tokens"], order) == "no-tokens"
    assert majority_choice(["tokens"] * 2 + ["no-tokens"] * 3, order) == "no-tokens"
    assert majority_choice(["tokens", "no-tokens"], order) == "tokens"


def test_ablate_runs_seeds_in_processes_with_the_sequential_results(tmp_path):
    """`ablate --jobs 2` runs each seed in a spawned process of its own and reports what the
    sequential run reports: the same seeds in order, the same figures (the seeds' fits are
    independent and each is seeded)."""
    def ablate(jobs: int) -> dict:
        out = tmp_path / f"jobs{jobs}"
        res = runner.invoke(app, ["ablate", "--dataset", "world:tiny", "--variants", "",
                                  "--baselines", "dropoutnet", "--seeds", "2",
                                  "--jobs", str(jobs), "--out", str(out)])
        assert res.exit_code == 0, res.output
        (report,) = out.glob("*.json")
        return json.loads(report.read_text())["results"][0]

    one, two = ablate(1), ablate(2)
    assert [r["seed"] for r in two["runs"]] == [0, 1]
    cold = [r["segments"]["cold"][k] for r in (*one["runs"], *two["runs"])
            for k in ("recall@20", "ndcg@20")]
    assert cold[:4] == pytest.approx(cold[4:], abs=1e-9)
    assert cold[:2] != cold[2:4]  # two seeds, two different fits: a mix-up would show
