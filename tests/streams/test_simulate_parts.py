"""The closed loop's pure parts: the ranker, the listeners, the per-arm statistics, the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from encoders.artifacts import Registry
from streams import online_report
from streams.arms import format_arms, parse_arms, versions_of
from streams.context import pipeline_config
from streams.errors import ColdstreamError
from streams.listeners import Answer, Exposure, Listeners, rank
from streams.online_stats import ArmData, compare
from streams.settings import Settings
from streams.simulate import (
    LARGE,
    SimConfig,
    build_world,
    history_dataset,
    raw_margin,
    u2i_margin_bands,
    world_settings,
)


def c(user: str, song: str, score: float, arm: str = "B") -> dict:
    return {"user_id": user, "song_id": song, "score": score, "arm": arm, "path": "u2i"}


def test_the_ranker_shows_each_user_their_best_few_once() -> None:
    cands = [c("u1", f"s{i}", i / 10) for i in range(6)] + [c("u1", "s5", 0.1), c("u2", "s0", .3)]
    shown = rank(cands, per_user_day=3, shown_at=7)
    assert [(e.user_id, e.song_id) for e in shown] == [("u1", "s5"), ("u1", "s4"),
                                                        ("u1", "s3"), ("u2", "s0")]
    assert all(e.shown_at == 7 for e in shown)


def world_truth() -> dict:
    # two genres; u0 loves genre 0, u1 genre 1; one mood, sub-genre 0 everywhere
    return {"user_taste": np.array([[0.98, 0.02], [0.02, 0.98]]),
            "user_mood": np.ones((2, 1)), "user_fav_sub": np.zeros((2, 2), dtype=int),
            "song_genre": np.array([0, 1]), "song_mood": np.array([0, 0]),
            "song_subgenre": np.array([0, 3])}


def test_listeners_answer_from_their_true_taste_and_later_than_shown() -> None:
    listeners = Listeners(world_truth(), ["u0", "u1"], ["s0", "s1"], seed=1)
    shown = [Exposure("u0", s, "B", 1.0, "u2i", 1000) for s in ("s0", "s1")] * 300
    answers = listeners.answer(shown)
    loved = [a.action for a in answers if a.exposure.song_id == "s0"]
    other = [a.action for a in answers if a.exposure.song_id == "s1"]
    assert loved.count("skip") < 60 < other.count("skip")
    assert all(a.ts > 1000 for a in answers)


def arm(users: int, shown: dict[int, list[str]], deliveries: int) -> ArmData:
    names = [f"u{i}" for i in range(users)]
    answers = [Answer(Exposure(names[i], f"s{k}", "x", 1.0, "u2i", 0), action, 0)
               for i, actions in shown.items() for k, action in enumerate(actions)]
    return ArmData.build(names, answers, deliveries)


def test_compare_reports_rates_reach_and_lift_with_intervals() -> None:
    a = arm(10, {0: ["collect", "skip"], 1: ["play"]}, deliveries=4)
    b = arm(10, {0: ["collect", "skip"], 1: ["play", "collect"], 2: ["skip", "complete"]}, 9)
    doc = compare({"A": a, "B": b}, n_songs=2, control="A", treatment="B", resamples=200)
    assert doc["arms"]["A"]["users_reached_per_song"] == 1.5
    assert doc["arms"]["B"]["users_reached_per_song"] == 3.0
    assert doc["arms"]["A"]["collect_rate"] == pytest.approx(1 / 3)
    assert doc["arms"]["B"]["collect_rate"] == pytest.approx(2 / 6)
    assert doc["lift_users_reached"] == pytest.approx(1.0)
    assert doc["lift_collect_rate"] == pytest.approx(0.0)
    lo, hi = doc["ci95"]["lift_users_reached"]
    assert lo <= doc["lift_users_reached"] <= hi
    assert set(doc["arms"]["A"]) >= {"users_reached_per_song", "collect_rate", "complete_rate",
                                     "skip_rate", "deliveries"}


def test_report_online_summarizes_seeds(tmp_path: Path) -> None:
    a = arm(10, {0: ["collect", "skip"], 1: ["play"]}, deliveries=4)
    b = arm(10, {0: ["collect"], 1: ["play", "collect"]}, 9)
    for seed in (0, 1):
        doc = compare({"A": a, "B": b}, 2, "A", "B", resamples=50, seed=seed)
        doc["config"] = {"seed": seed, "n_songs": 1, "n_users": 20, "new_songs": 2, "days": 1,
                         "shown_per_day": 3}
        (tmp_path / f"seed-{seed}").mkdir()
        (tmp_path / f"seed-{seed}" / "online.json").write_bytes(orjson.dumps(doc))
    summary, table, _png = online_report.write(tmp_path)
    assert summary["seeds"] == [0, 1]
    assert summary["lift_users_reached"]["sd"] == 0.0
    assert "| A |" in table and "lift B vs A" in table
    assert (tmp_path / "online-summary.json").exists()


def test_u2i_margin_bands_split_u2i_only_exposures_by_margin() -> None:
    def ans(margin: float, action: str, path: str = "u2i") -> Answer:
        return Answer(Exposure("u", f"s{margin}", "B", 0.5 + margin, path, 0, 0.5), action, 1)

    answers = [ans(m / 10, "collect" if m >= 5 else "skip") for m in range(10)]
    bands = u2i_margin_bands([*answers, ans(0.9, "collect", "both")], bands=2)
    assert [b["exposures"] for b in bands] == [5, 5]
    assert [b["collect_rate"] for b in bands] == [0.0, 1.0]
    assert bands[1]["margin_from"] == pytest.approx(0.5)


def test_a_trained_model_learns_from_the_history_without_the_held_out_songs() -> None:
    cfg = SimConfig(n_songs=200, n_users=40, n_interactions=1500, n_genres=4, new_songs=12)
    world = build_world(cfg, now_ms=1_800_000_000_000)
    held = {s["song_id"] for s in world.new_songs}
    data = history_dataset(world)
    song_ids = data.catalogue["song_id"].to_numpy()
    assert len(held) == 12 and not held & set(song_ids)
    assert set(song_ids) == {s["song_id"] for s in world.history_songs}
    trained_on = {(data.user_ids[u], song_ids[i])
                  for u, i in zip(data.interactions.user, data.interactions.item, strict=True)}
    replayed = {(e["user_id"], e["song_id"]) for e in world.history_interactions}
    assert len(data.interactions) == len(world.history_interactions) and trained_on == replayed
    assert data.truth == {}  # the listeners' ground truth is not training data


def test_the_offline_harness_can_load_the_large_simulated_world() -> None:
    """``world:sim-large`` is the world ``coldstream simulate --world large`` runs its A/B on,
    so the offline served harness and the online loop are measured on one world."""
    from coldstream_data.music_world import world_config

    assert world_settings(LARGE) == world_config("sim-large")
    assert world_settings(LARGE) != world_config("sim-large", n_users=LARGE.n_users + 1)


def test_the_raw_u2i_margin_is_recovered_from_a_calibrated_score() -> None:
    from encoders.artifacts import DeliverySpec, PriorSpec
    from streams.pipeline import EVIDENCE, Scored, calibrated

    spec = DeliverySpec(coef=[2.0, 0.5, 9.0, 0.3], intercept=-2.5)
    for margin in (0.01, 0.05, 0.2):
        s = Scored("u", u2i=0.4 + margin, boundary=0.4)
        assert s.path == "u2i"
        assert raw_margin(calibrated(s, spec), 0.4, spec) == pytest.approx(margin, abs=1e-9)
    assert raw_margin(0.7, 0.5) == pytest.approx(0.2)  # no calibration: the score is raw
    with_prior = DeliverySpec(features=list(EVIDENCE), coef=[2.0, 0.5, 9.0, 0.3, 0.7],
                              intercept=-2.5, prior=PriorSpec(weights=[0.0], intercept=0.0,
                                                              text_dim=1, bow_buckets=0))
    s = Scored("u", u2i=0.45, boundary=0.4, prior=1.5)
    assert raw_margin(calibrated(s, with_prior), 0.4, with_prior, 1.5) == pytest.approx(0.05)
    assert raw_margin(calibrated(s, with_prior), 0.4, with_prior) > 0.15  # prior ignored


def test_version_arms_must_be_in_the_registry_and_an_ended_test_runs_no_arms(
        tmp_path: Path) -> None:
    spec = "control=v1:50,treatment=v2:50"
    assert versions_of(pipeline_config(Settings(ab_arms=spec)).arms) == ["v1", "v2"]
    registry = Registry(tmp_path / "models")
    with pytest.raises(ColdstreamError, match="not in the registry"):
        pipeline_config(Settings(ab_arms=spec), registry)
    registry.end_experiment(format_arms(parse_arms(spec)))
    assert pipeline_config(Settings(ab_arms=spec), registry).arms == ()
    with pytest.raises(ColdstreamError, match="COLDSTREAM_AB_ARMS"):
        pipeline_config(Settings(ab_arms="A=v1/u2i:1"))
    assert [a.name for a in pipeline_config(Settings(ab_arms="A=i2i2u:1,B=both:1")).arms] == [
        "A", "B"]
