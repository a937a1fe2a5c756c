"""Pure pipeline logic: I2I2U aggregation, boundary gating, merge/cap, user state, ids."""

from __future__ import annotations

import math

import numpy as np
import pytest

from encoders.artifacts import DeliverySpec, PriorSpec
from streams import pipeline
from streams.events import InteractionEvent
from streams.ids import candidate_id, song_point_id, user_point_id
from streams.pipeline import PipelineConfig, Scored
from streams.stores import Hit


def hit(song_id: str, score: float, engagers: list) -> Hit:
    return Hit(song_point_id(song_id), score, {"song_id": song_id, "title": song_id.upper(),
                                               "engagers": engagers})


def user_hit(user_id: str, score: float, boundary: float) -> Hit:
    return Hit(user_point_id(user_id), score, {"user_id": user_id, "boundary": boundary})


def test_i2i2u_ties_listeners_of_close_seeds_only() -> None:
    scored: dict[str, Scored] = {}
    pipeline.i2i2u([hit("a", 0.9, [["u1", "collect", 1]]),
                    hit("b", 0.85, [["u1", "play", 2], ["u2", "complete", 3]]),
                    hit("far", 0.6, [["u3", "collect", 4]])], scored, margin=0.1)
    assert set(scored) == {"u1", "u2"}  # u3 only listened to a song far below the best match
    assert scored["u1"].i2i2u == pytest.approx((0.9 * 1.0 + 0.85 * 0.4) / 3)
    assert scored["u2"].i2i2u == pytest.approx(0.85 * 0.8 / 3)
    assert [s[0] for s in scored["u1"].seeds] == ["a", "b"]


def test_i2i2u_ignores_skips_and_low_similarity() -> None:
    scored: dict[str, Scored] = {}
    pipeline.i2i2u([hit("a", 0.2, [["u1", "collect", 1]]), hit("b", 0.2, [["u2", "skip", 1]])],
                   scored, min_similarity=0.3)
    assert scored == {}


def test_u2i_gates_by_each_users_own_boundary() -> None:
    scored: dict[str, Scored] = {}
    pipeline.u2i([user_hit("hi", 0.8, 0.7), user_hit("lo", 0.6, 0.7)], scored)
    assert scored["hi"].passes_boundary and scored["hi"].path == "u2i"
    assert not scored["lo"].passes_boundary
    chosen = pipeline.select(scored, cap=10)
    assert [s.user_id for s, _ in chosen] == ["hi"]  # below-boundary users get nothing


def test_merge_marks_both_paths_and_caps_by_score() -> None:
    scored: dict[str, Scored] = {}
    pipeline.i2i2u([hit("a", 0.9, [["u1", "collect", 1], ["u2", "collect", 1]])], scored)
    pipeline.u2i([user_hit("u1", 0.95, 0.5), user_hit("u3", 0.7, 0.6)], scored)
    assert scored["u1"].path == "both" and scored["u2"].path == "i2i2u"
    chosen = pipeline.select(scored, cap=2)
    assert [s.user_id for s, _ in chosen] == ["u1", "u3"]
    assert "matches your taste" in pipeline.explain(scored["u1"])
    assert "'A'" in pipeline.explain(scored["u1"])


def test_the_boundary_gate_holds_back_i2i2u_ties_where_u2i_is_served() -> None:
    scored: dict[str, Scored] = {}
    pipeline.i2i2u([hit("a", 0.9, [["in", "collect", 1], ["out", "collect", 1],
                                   ["a_arm", "collect", 1]])], scored)
    pipeline.u2i([user_hit("in", 0.8, 0.7), user_hit("out", 0.6, 0.7),
                  user_hit("a_arm", 0.1, 0.7)], scored)
    scored["a_arm"].u2i_allowed = False  # an i2i2u-only arm: no U2I evidence, no gate
    assert {s.user_id for s, _ in pipeline.select(scored, cap=10)} == {"in", "out", "a_arm"}
    gated = pipeline.select(scored, cap=10, boundary_gates_i2i2u=True)
    assert {s.user_id for s, _ in gated} == {"in", "a_arm"}  # "out" fails its own boundary


def test_each_arm_gets_its_share_of_the_song_cap() -> None:
    """A's strong I2I2U listeners must not take the slots of B's weaker U2I ones: with the
    cap split by weight (4 -> 2 + 2), B keeps its two best although A has four better."""
    from streams.arms import arm_caps, parse_arms

    arms = parse_arms("A=i2i2u:50,B=both:50")
    assert arm_caps(arms, 4) == {"A": 2, "B": 2}
    assert arm_caps(parse_arms("A=i2i2u:90,B=both:10"), 4) == {"A": 4, "B": 1}
    scored = {f"{arm}{i}": Scored(f"{arm}{i}") for arm in "AB" for i in range(4)}
    for uid, s in scored.items():
        s.arm = uid[0]
        s.seeds = [("seed", "Seed", 0.9)]
        s.i2i2u = (0.9 if s.arm == "A" else 0.5) - 0.01 * int(uid[1])
    shared = pipeline.select(scored, cap=4)
    assert [s.user_id for s, _ in shared] == ["A0", "A1", "A2", "A3"]
    split = pipeline.select(scored, cap=4, caps=arm_caps(arms, 4))
    assert [s.user_id for s, _ in split] == ["A0", "A1", "B0", "B1"]


def test_calibration_puts_both_paths_on_one_scale() -> None:
    """Raw scores rank a weak I2I2U tie (0.3) above a U2I user far over their boundary
    (0.25 + margin); a calibration that values the margin puts the U2I user first, and the
    emitted score is the probability."""
    scored: dict[str, Scored] = {}
    pipeline.i2i2u([hit("a", 0.9, [["tie", "collect", 1]])], scored)
    pipeline.u2i([user_hit("fan", 0.25, -0.5)], scored)
    scored["tie"].u2i, scored["tie"].boundary = 0.1, 0.2  # below its own boundary
    assert [s.user_id for s, _ in pipeline.select(scored, cap=2)] == ["tie", "fan"]
    spec = DeliverySpec(coef=[1.0, 0.5, 4.0, 0.5], intercept=-3.0)
    chosen = pipeline.select(scored, cap=2, delivery=spec)
    assert [s.user_id for s, _ in chosen] == ["fan", "tie"]
    p_fan = 1 / (1 + math.exp(-(0.25 * 0 + 4.0 * 0.75 + 0.5 - 3.0)))
    assert chosen[0][1] == pytest.approx(p_fan)
    assert 0 < chosen[1][1] < chosen[0][1] < 1


def test_a_calibration_over_other_evidence_is_refused() -> None:
    pipeline.check_delivery(DeliverySpec(coef=[0.0] * 4, intercept=0.0))
    with pytest.raises(ValueError, match="this worker computes"):
        pipeline.check_delivery(DeliverySpec(features=["i2i2u", "popularity"], coef=[1.0, 1.0],
                                             intercept=0.0))
    prior = PriorSpec(weights=[0.0] * 3, intercept=0.0, text_dim=3, bow_buckets=0)
    five = list(pipeline.EVIDENCE)
    pipeline.check_delivery(DeliverySpec(features=five, coef=[0.0] * 5, intercept=0.0,
                                         prior=prior))
    with pytest.raises(ValueError, match="without a prior"):  # nothing computes the fifth
        pipeline.check_delivery(DeliverySpec(features=five, coef=[0.0] * 5, intercept=0.0))
    with pytest.raises(ValueError, match="with a prior"):  # a prior nobody weighs
        pipeline.check_delivery(DeliverySpec(coef=[0.0] * 4, intercept=0.0, prior=prior))


def test_the_songs_predicted_popularity_is_the_calibrations_fifth_input() -> None:
    """The same listener's evidence for a song predicted popular scores higher, by exactly
    the prior's weight; a four-input calibration ignores the prior."""
    scored: dict[str, Scored] = {}
    pipeline.i2i2u([hit("a", 0.9, [["tie", "collect", 1]])], scored)
    s = scored["tie"]
    spec = DeliverySpec(features=list(pipeline.EVIDENCE), coef=[1.0, 0.5, 4.0, 0.5, 0.8],
                        intercept=-3.0, prior=PriorSpec(weights=[0.0], intercept=0.0,
                                                        text_dim=1, bow_buckets=0))
    logit = {}
    for prior in (-1.0, 0.0, 2.0):
        s.prior = prior
        p = pipeline.calibrated(s, spec)
        logit[prior] = math.log(p / (1 - p))
    assert logit[2.0] - logit[0.0] == pytest.approx(1.6)
    assert logit[0.0] - logit[-1.0] == pytest.approx(0.8)
    base = DeliverySpec(coef=[1.0, 0.5, 4.0, 0.5], intercept=-3.0)
    assert pipeline.calibrated(s, base) == pytest.approx(1 / (1 + math.exp(-logit[0.0])))


def interaction(event_id: str, song: str, action: str, ts: int) -> InteractionEvent:
    return InteractionEvent(schema_version=1, event_id=event_id, user_id="u", song_id=song,
                            action=action, ts=ts)


def test_user_state_dedupes_replays_and_duplicate_event_ids() -> None:
    cfg = PipelineConfig(recent_items_per_user=3)
    state = pipeline.new_user_state()
    for i in range(5):
        state = pipeline.apply_interaction(state, interaction(f"e{i}", f"s{i}", "play", i),
                                           partition=0, offset=i, cfg=cfg)
    assert [h[0] for h in state["history"]] == ["s2", "s3", "s4"]
    assert state["counts"] == {"play": 5}
    assert pipeline.is_duplicate(state, interaction("new", "x", "play", 9), 0, 4)  # replay
    assert pipeline.is_duplicate(state, interaction("e3", "x", "play", 9), 1, 100)  # same id
    assert not pipeline.is_duplicate(state, interaction("new", "x", "play", 9), 0, 5)


def test_a_late_record_re_read_out_of_order_still_counts_once() -> None:
    cfg = PipelineConfig()
    state = pipeline.new_user_state()
    for off in (10, 11, 13, 14):  # offset 12 was dropped on the way and is re-read later
        state = pipeline.apply_interaction(state, interaction(f"e{off}", "s", "play", off),
                                           partition=0, offset=off, cfg=cfg)
    late = interaction("e12", "s", "play", 12)
    assert not pipeline.is_duplicate(state, late, 0, 12)
    state = pipeline.apply_interaction(state, late, partition=0, offset=12, cfg=cfg)
    assert state["offsets"] == {"0": 14}  # the watermark never moves back
    assert state["counts"] == {"play": 5}
    assert pipeline.is_duplicate(state, late, 0, 12)  # and its replay changes nothing
    assert pipeline.is_duplicate(state, interaction("x", "s", "play", 1), 0, 3)  # older: replay


def test_offsets_older_than_the_window_are_replays() -> None:
    cfg = PipelineConfig(recent_event_ids=4)
    state = pipeline.new_user_state()
    for off in range(10, 20, 2):
        state = pipeline.apply_interaction(state, interaction(f"e{off}", "s", "play", off),
                                           partition=0, offset=off, cfg=cfg)
    assert [o for _, o in state["seen"]] == [12, 14, 16, 18]
    assert pipeline.is_duplicate(state, interaction("old", "s", "play", 0), 0, 10)
    assert not pipeline.is_duplicate(state, interaction("gap", "s", "play", 0), 0, 15)


def test_engagers_keep_newest_positive_listeners_and_skips_withdraw() -> None:
    eng: list = []
    eng = pipeline.update_engagers(eng, interaction("1", "s", "collect", 1), limit=2)
    assert eng == [["u", "collect", 1]]
    eng = pipeline.update_engagers(eng, interaction("2", "s", "skip", 2), limit=2)
    assert eng == []


def test_ids_are_deterministic_and_distinct() -> None:
    assert song_point_id("s1") == song_point_id("s1") != user_point_id("s1")
    assert candidate_id("s", "u", "v1") == candidate_id("s", "u", "v1")
    assert candidate_id("s", "u", "v1") != candidate_id("s", "u", "v2")


def test_collections_are_per_model_version() -> None:
    a = pipeline.Collections.for_version("v1.0")
    b = pipeline.Collections.for_version("v2")
    assert a.songs != b.songs and a.users != b.users
    assert a.songs == "songs__v1_0"


def test_song_vector_cache_is_bounded() -> None:
    class Store:
        calls = 0

        def retrieve(self, collection: str, ids: list, with_vector: bool = True,
                     with_payload: bool = True) -> list:
            Store.calls += 1
            return [Hit(i, 1.0, {}, np.ones(2, dtype=np.float32)) for i in ids]

    cache = pipeline.SongVectorCache(capacity=2)
    store = Store()
    assert set(cache.get_many(store, "c", ["a", "b", "c"])) == {"a", "b", "c"}
    cache.get_many(store, "c", ["c"])
    assert Store.calls == 1  # "c" came from the cache
    cache.get_many(store, "c", ["a"])
    assert Store.calls == 2  # "a" had been evicted


def test_song_vector_cache_fills_to_its_capacity_without_copying() -> None:
    """The matrix is never reallocated below the capacity: a reallocation copies every row
    held so far inside an interactions batch, under the worker's gate (stop 51: that batch's
    window took 0.9-1.2 s at 131,072 songs x 512, in every 1M soak)."""

    number = {song_point_id(f"s{n}"): n for n in range(4_500)}

    class Store:
        def retrieve(self, collection: str, ids: list, with_vector: bool = True,
                     with_payload: bool = True) -> list:
            return [Hit(i, 1.0, {}, np.full(8, number[i], dtype=np.float32)) for i in ids]

    cache = pipeline.SongVectorCache(capacity=5_000)
    store = Store()
    buffers = set()
    for start in range(0, 4_500, 1_500):
        rows = cache.rows(store, "c", [f"s{n}" for n in range(start, start + 1_500)])
        assert len(rows) == 1_500
        buffers.add(cache.matrix.__array_interface__["data"][0])
    assert len(buffers) == 1  # one allocation for all 4,500 songs
    rows = cache.rows(store, "c", ["s7", "s4499"])
    assert cache.matrix[rows["s7"]][0] == 7 and cache.matrix[rows["s4499"]][0] == 4_499
