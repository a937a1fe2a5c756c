"""The online loop's pure rules: arms, the per-user daily budget, attribution (exact counts)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from encoders.artifacts import Registry
from streams import attribution, pipeline
from streams.arms import Arm, assign, bucket, end_test, format_arms, parse_arms, versions_of
from streams.attribution import DAY_MS, deliver, new_online_state
from streams.events import CandidateEvent, InteractionEvent
from streams.ids import candidate_id
from streams.pipeline import PipelineConfig, Scored

T0 = 1_704_067_200_000  # a UTC midnight
WEEK = 7 * DAY_MS
ARMS = parse_arms("A=i2i2u:50,B=both:50")


def cand(song: str, user: str = "u1", score: float = 0.5, ts: int = T0,
         arm: str | None = "B", path: str = "u2i") -> CandidateEvent:
    cid = candidate_id(song, user, "v1")
    return CandidateEvent(schema_version=1, event_id=cid, candidate_id=cid, song_id=song,
                          user_id=user, score=score, boundary=0.1, path=path,
                          seed_song_ids=[], model_version="v1", created_at=T0,
                          explanation="x", arm=arm, event_ts=ts)


def play(song: str, action: str, ts: int, user: str = "u1") -> InteractionEvent:
    return InteractionEvent(schema_version=1, event_id=f"{user}-{song}-{action}-{ts}",
                            user_id=user, song_id=song, action=action, ts=ts)


# --- arms ------------------------------------------------------------------------------------

def test_parse_arms_reads_policies_and_versions_and_rejects_nonsense() -> None:
    assert (Arm("A", "i2i2u", 50.0), Arm("B", "both", 50.0)) == ARMS
    assert not ARMS[0].uses_u2i and ARMS[1].uses_u2i
    assert parse_arms("") == ()
    assert parse_arms("control=v1:50,treatment=v2:50") == (
        Arm("control", "both", 50.0, "v1"), Arm("treatment", "both", 50.0, "v2"))
    mixed = parse_arms("A=i2i2u:1, B=v2/i2i2u:1 ,C=v2/both:2,D=both:1")
    assert [(a.version, a.policy) for a in mixed] == [
        (None, "i2i2u"), ("v2", "i2i2u"), ("v2", "both"), (None, "both")]
    assert versions_of(mixed) == ["v2"]
    for bad in ("A=i2i2u", "A:50", "=both:1", "A=both:0", "A=both:x", "A=both:1,A=i2i2u:1",
                "A=v2/u2i:1", "A=/both:1", "A=v2/:1", "A=both:inf", "A=both:nan"):
        with pytest.raises(ValueError):
            parse_arms(bad)


NAMES = st.text(st.characters(whitelist_categories=("L", "N"), whitelist_characters="_-."),
                min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(NAMES, st.one_of(st.none(), NAMES), st.sampled_from(["i2i2u", "both"]),
                          st.floats(0.01, 1e6)), min_size=1, max_size=5,
                unique_by=lambda t: t[0]))
def test_arms_spec_round_trips_through_its_canonical_form(
        parts: list[tuple[str, str | None, str, float]]) -> None:
    arms = tuple(Arm(name, policy, weight, None if version in ("i2i2u", "both") else version)
                 for name, version, policy, weight in parts)
    assert parse_arms(format_arms(arms)) == arms


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=20))
def test_arm_assignment_is_stable(user_id: str, salt: str) -> None:
    first = assign(user_id, ARMS, salt)
    assert first is not None
    assert all(assign(user_id, ARMS, salt) == first for _ in range(3))
    assert 0 <= bucket(user_id, salt) < 10_000


@settings(max_examples=25, deadline=None)
@given(st.text(min_size=1, max_size=16),
       st.lists(st.integers(1, 9), min_size=2, max_size=4))
def test_arm_assignment_is_balanced_by_weight(salt: str, weights: list[int]) -> None:
    arms = tuple(Arm(f"a{i}", "both", float(w)) for i, w in enumerate(weights))
    n = 4000
    counts = Counter(assign(f"user-{i}", arms, salt).name for i in range(n))  # type: ignore[union-attr]
    total = sum(weights)
    for i, w in enumerate(weights):
        expected = n * w / total
        # binomial sd <= sqrt(n)/2 = 32; 5 sd keeps the test honest and never flaky
        assert abs(counts[f"a{i}"] - expected) < 5 * 32


def test_a_version_scores_only_the_users_of_the_arms_it_serves() -> None:
    arms = parse_arms("control=v1:50,treatment=v2:50")
    cfg = PipelineConfig(arms=arms, ab_salt="s")
    users = [f"u{i}" for i in range(40)]
    by_arm = {u: assign(u, arms, "s").name for u in users}  # type: ignore[union-attr]
    for served in ({"control"}, {"treatment"}):
        scored = {u: Scored(u, u2i=0.9, boundary=0.1) for u in users}
        pipeline.apply_arms(scored, cfg, frozenset(served))
        assert set(scored) == {u for u in users if by_arm[u] in served}
        assert {s.arm for s in scored.values()} == served


def test_ending_a_test_promotes_or_rolls_back_through_the_registry(
        private_registry: Registry) -> None:
    from .test_model_swap import derive_version

    registry = private_registry
    v1 = registry.current() or ""
    derive_version(registry, v1, "v2-ab")
    arms = parse_arms(f"control={v1}:50,treatment=v2-ab:50")
    with pytest.raises(ValueError, match="no arm"):
        end_test(registry, arms, "nobody")
    with pytest.raises(ValueError, match="policy i2i2u"):
        end_test(registry, parse_arms("A=i2i2u:1,B=both:1"), None)
    assert registry.ended_experiments() == set()
    assert end_test(registry, arms, "treatment") == "v2-ab"
    assert registry.ended_experiments() == {format_arms(arms)}
    again = parse_arms(f"control={v1}:50,treatment=v2-ab:50,other=v2-ab/i2i2u:1")
    assert end_test(registry, again, None) == v1  # rollback: the first arm's version
    assert registry.ended_experiments() == {format_arms(arms), format_arms(again)}


def test_an_i2i2u_only_arm_loses_u2i_evidence_and_every_candidate_names_its_arm() -> None:
    cfg = PipelineConfig(arms=ARMS, ab_salt="s")
    users = [f"u{i}" for i in range(40)]
    scored = {u: Scored(u, u2i=0.9, boundary=0.1) for u in users}
    pipeline.apply_arms(scored, cfg)
    for u, s in scored.items():
        arm = assign(u, ARMS, "s")
        assert arm is not None and s.arm == arm.name
        assert s.passes_boundary == (arm.name == "B")
    kept = pipeline.select(scored, cap=100)
    assert {s.arm for s, _ in kept} == {"B"}  # A's users had U2I evidence only


def test_u2i_admission_margin_holds_back_weak_u2i_only_candidates() -> None:
    scored = {"weak": Scored("weak", u2i=0.35, boundary=0.3),
              "strong": Scored("strong", u2i=0.6, boundary=0.3),
              "tied": Scored("tied", i2i2u=0.2, u2i=0.35, boundary=0.3,
                             seeds=[("s", "t", 0.9)])}
    assert {s.user_id for s, _ in pipeline.select(scored, cap=10)} == set(scored)
    kept = pipeline.select(scored, cap=10, u2i_min_margin=0.1)
    assert {s.user_id for s, _ in kept} == {"strong", "tied"}  # an I2I2U tie is not gated


# --- budget ----------------------------------------------------------------------------------

def test_daily_budget_keeps_the_highest_scores_and_resets_next_day() -> None:
    props = [cand(f"s{i}", score=i / 10) for i in range(5)]
    state, out = deliver(new_online_state(), props, per_day=3, window_ms=WEEK)
    by = {d.candidate.song_id: d.outcome for d in out}
    assert by == {"s4": "delivered", "s3": "delivered", "s2": "delivered",
                  "s1": "dropped", "s0": "dropped"}
    state, out = deliver(state, [cand("s9", score=0.99)], per_day=3, window_ms=WEEK)
    assert out[0].outcome == "dropped"  # the day is full; nothing is withdrawn
    state, out = deliver(state, [cand("s9", score=0.99, ts=T0 + DAY_MS)], 3, WEEK)
    assert out[0].outcome == "delivered"
    assert len(state["deliveries"]) == 4


def test_a_replayed_proposal_is_emitted_again_but_not_counted_twice() -> None:
    state, _ = deliver(new_online_state(), [cand("s1"), cand("s2")], per_day=2, window_ms=WEEK)
    again, out = deliver(state, [cand("s1"), cand("s2")], per_day=2, window_ms=WEEK)
    assert [d.outcome for d in out] == ["replay", "replay"]
    assert again is state  # nothing written: the table and its changelog are untouched
    _, out = deliver(state, [cand("s3")], per_day=2, window_ms=WEEK)
    assert out[0].outcome == "dropped"


@settings(max_examples=60, deadline=None)
@given(scores=st.lists(st.floats(0, 1), min_size=1, max_size=12),
       cuts=st.lists(st.integers(1, 12), max_size=6), cap=st.integers(1, 4))
def test_a_replay_batched_differently_delivers_nothing_new(scores: list[float],
                                                           cuts: list[int], cap: int) -> None:
    """Why the delivery agent records before it sends: once a batch's decisions are recorded,
    replaying the same proposals in any other batching adds no delivery past the cap."""
    props = [cand(f"s{i}", score=sc) for i, sc in enumerate(scores)]
    state, first = deliver(new_online_state(), props, per_day=cap, window_ms=WEEK)
    delivered = {d.candidate.candidate_id for d in first if d.outcome == "delivered"}
    assert len(delivered) == min(cap, len(props))
    bounds = sorted({0, len(props), *(c for c in cuts if c < len(props))})
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        state, out = deliver(state, props[lo:hi], per_day=cap, window_ms=WEEK)
        assert {d.candidate.candidate_id for d in out if d.outcome == "replay"} <= delivered
        assert not [d for d in out if d.outcome == "delivered"]
    assert {d["id"] for d in state["deliveries"]} == delivered


class FlakyBufferProducer:
    """Faust's producer as the delivery agent sees it: a flush that may return with records
    still in its buffer (its buffer flush gives up after 0.1 s without progress)."""

    def __init__(self, buffered: int) -> None:
        self.buffer = type("Buffer", (), {"size": buffered})()
        self.flushes = 0

    async def flush(self) -> None:
        self.flushes += 1
        self.buffer.size = max(0, self.buffer.size - 2)


def test_flush_producer_waits_until_the_buffer_is_empty() -> None:
    import asyncio

    from streams.agents import flush_producer

    producer = FlakyBufferProducer(buffered=5)
    asyncio.run(flush_producer(producer))
    assert producer.buffer.size == 0 and producer.flushes == 3


def test_no_cap_delivers_everything_and_old_deliveries_leave_the_window() -> None:
    state, out = deliver(new_online_state(), [cand(f"s{i}") for i in range(30)], 0, WEEK)
    assert all(d.outcome == "delivered" for d in out)
    state, _ = deliver(state, [cand("late", ts=T0 + 9 * DAY_MS)], 0, WEEK)
    assert [d["song"] for d in state["deliveries"]] == ["late"]


# --- attribution -----------------------------------------------------------------------------

def attributed_counts(state: dict, events: list[InteractionEvent]) -> tuple[Counter, list]:
    counts: Counter = Counter()
    first = []
    for ev in events:
        state, found = attribution.attribute(state, ev, WEEK)
        for hit in found:
            counts[(hit.arm, hit.action)] += 1
            if hit.first_play_s is not None:
                first.append(hit.first_play_s)
    return counts, first


def test_attribution_counts_a_scripted_sequence_exactly() -> None:
    state, _ = deliver(new_online_state(),
                       [cand("s1", arm="A"), cand("s2", arm="B"), cand("s3", arm="B")],
                       0, WEEK)
    script = [
        play("s1", "play", T0 + 60_000),          # A: play, first play after 60 s
        play("s1", "play", T0 + 120_000),         # again: counted once per delivery
        play("s1", "collect", T0 + 180_000),      # A: collect
        play("s2", "skip", T0 + 1_000),           # B: skip
        play("s2", "complete", T0 + 3_600_000),   # B: complete, first play after 1 h
        play("s3", "play", T0 - 1),               # before the delivery: not ours
        play("s3", "play", T0 + WEEK + 1),        # after the window: not ours
        play("s9", "collect", T0 + 5),            # never delivered
    ]
    counts, first = attributed_counts(state, script)
    assert counts == Counter({("A", "play"): 1, ("A", "collect"): 1, ("B", "skip"): 1,
                              ("B", "complete"): 1})
    assert first == [60.0, 3600.0]


def test_attribution_counts_do_not_depend_on_arrival_order() -> None:
    state, _ = deliver(new_online_state(), [cand("s1"), cand("s2")], 0, WEEK)
    script = [play("s1", a, T0 + k * 1000) for k, a in enumerate(("play", "complete", "play",
                                                                 "collect", "skip"))]
    script += [play("s2", "play", T0 + 5), play("s2", "play", T0 + 6)]
    forward, _ = attributed_counts(state, script)
    backward, _ = attributed_counts(state, script[::-1])
    assert forward == backward == Counter({("B", "play"): 2, ("B", "complete"): 1,
                                           ("B", "collect"): 1, ("B", "skip"): 1})


def test_online_state_generation_only_grows() -> None:
    state = new_online_state()
    gens = [attribution.online_generation(state)]
    for i in range(3):
        state, _ = deliver(state, [cand(f"s{i}")], 0, WEEK)
        gens.append(attribution.online_generation(state))
        state, _ = attribution.attribute(state, play(f"s{i}", "play", T0 + 1), WEEK)
        gens.append(attribution.online_generation(state))
    assert gens == sorted(gens) and len(set(gens)) == len(gens)


def test_candidates_written_before_arms_still_decode() -> None:
    from streams.events import decode, encode
    old = cand("s1").model_dump(mode="json")
    del old["arm"], old["event_ts"]
    import orjson
    back = decode(orjson.dumps(old), CandidateEvent)
    assert back.arm is None and back.event_ts is None
    assert attribution.event_time(back) == back.created_at
    assert decode(encode(cand("s1")), CandidateEvent).arm == "B"
