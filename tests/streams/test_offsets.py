"""The offset guard's rules: what gets delivered, re-read, and committed."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import NamedTuple

from hypothesis import given
from hypothesis import strategies as st

from streams import offsets
from streams.lag import PartitionLag
from streams.offsets import GuardedConsumerMixin, OffsetGuard, next_commit

TP = ("songs.new", 0)


def test_commit_advances_over_the_unbroken_run_from_the_head() -> None:
    assert next_commit([10, 11, 12, 14], head=10) == 13
    assert next_commit([10, 11, 12], head=10) == 13


def test_commit_waits_while_the_head_offset_is_missing() -> None:
    # Faust 0.15.3 commits 14 here (its check tolerates one missing offset): offset 10 is lost.
    assert next_commit([11, 12, 13], head=10) is None
    assert next_commit([], head=10) is None


def test_commit_crosses_only_proven_gaps() -> None:
    assert next_commit([10, 14, 15], head=10, gaps=[(11, 14)]) == 16
    assert next_commit([14, 15], head=10, gaps=[(10, 14)]) == 16
    assert next_commit([10, 15], head=10, gaps=[(11, 14)]) == 14  # offset 14 still missing


def test_commit_without_a_known_head_starts_at_the_lowest_ack() -> None:
    assert next_commit([5, 6, 8], head=None) == 7


@given(st.sets(st.integers(0, 60)), st.integers(0, 30))
def test_commit_never_passes_an_unacknowledged_offset(acked: set[int], head: int) -> None:
    offset = next_commit(acked, head)
    if offset is not None:
        assert offset > head
        assert set(range(head, offset)) <= acked


def test_in_order_records_are_delivered() -> None:
    guard = OffsetGuard()
    guard.start(TP, 3)
    assert [guard.admit(TP, o) for o in (3, 4, 5)] == ["deliver"] * 3
    assert guard.expect[TP] == 6


def test_a_jump_is_re_read_and_the_re_read_records_delivered() -> None:
    guard = OffsetGuard()
    guard.start(TP, 3)
    assert guard.admit(TP, 13) == "rewind"  # 3..12 were fetched but dropped on the way
    guard.rewound(TP, 3)
    guard.fetched(TP, 3)  # the re-read starts where we sought: the records exist
    assert guard.admit(TP, 3) == "deliver"
    assert guard.gaps[TP] == []


def test_offsets_count_as_absent_only_after_two_re_reads_agree() -> None:
    guard = OffsetGuard()
    guard.start(TP, 3)
    assert guard.admit(TP, 8) == "rewind"
    guard.rewound(TP, 3)
    guard.fetched(TP, 8)  # one re-read skipping 3..7 could be an orphaned fetch's doing
    assert guard.admit(TP, 8) == "rewind"
    guard.rewound(TP, 3)
    guard.fetched(TP, 8)
    assert guard.admit(TP, 8) == "gap"  # twice: the broker has no records 3..7
    assert guard.gaps[TP] == [(3, 8)]
    assert guard.expect[TP] == 9
    guard.committed(TP, 9)
    assert guard.gaps[TP] == []


def test_different_re_reads_do_not_confirm_each_other() -> None:
    guard = OffsetGuard()
    guard.start(TP, 3)
    guard.rewound(TP, 3)
    guard.fetched(TP, 8)
    guard.rewound(TP, 3)
    guard.fetched(TP, 6)
    assert guard.admit(TP, 6) == "rewind"


def test_an_outside_seek_resets_expectations_and_a_revoke_forgets() -> None:
    guard = OffsetGuard()
    guard.start(TP, 3)
    guard.seek(TP, 20)
    assert guard.admit(TP, 20) == "deliver"
    assert guard.admit(TP, 5) == "deliver"  # older than expected: Faust decides, no rewind
    assert guard.expect[TP] == 21
    guard.forget([TP])
    assert guard.admit(TP, 99) == "deliver"  # unknown partition: nothing to compare with


def test_changelog_jumps_are_taken_as_compaction_gaps() -> None:
    guard = OffsetGuard()
    guard.seek(TP, 0)
    assert guard.admit(TP, 0, strict=False) == "deliver"
    assert guard.admit(TP, 7, strict=False) == "deliver"
    assert guard.expect[TP] == 8


class FakeMessage:
    def __init__(self, topic: str, acked: bool = False) -> None:
        self.topic, self.acked = topic, acked


class HeldConsumer(GuardedConsumerMixin):
    """Just the state the stall check reads; no broker."""

    def __init__(self) -> None:
        super().__init__()
        self._unacked_messages: set[FakeMessage] = set()


class SongsTP(NamedTuple):
    topic: str
    partition: int


def test_a_held_commit_is_re_read_only_when_no_agent_has_the_record(monkeypatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(offsets.time, "monotonic", lambda: clock[0])
    consumer, tp = HeldConsumer(), SongsTP("songs.new", 1)
    busy = FakeMessage("songs.new")
    consumer._unacked_messages.add(busy)  # the agent is working (e.g. a store outage)
    for _ in range(30):
        consumer._held(tp, 10, [20])
        clock[0] += 1.0
    assert consumer._stalled == {}
    consumer._unacked_messages.discard(busy)  # idle: the record at 10 is nowhere
    for _ in range(offsets.STALL_IDLE_CHECKS):
        consumer._held(tp, 10, [20])
        clock[0] += 1.0
    assert consumer._stalled == {tp: 10}


def test_a_moving_commit_is_never_taken_for_a_stall(monkeypatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(offsets.time, "monotonic", lambda: clock[0])
    consumer, tp = HeldConsumer(), SongsTP("songs.new", 1)
    for head in range(40):
        consumer._held(tp, head, [head + 1])
        clock[0] += 1.0
    assert consumer._stalled == {}


class BehindConsumer(HeldConsumer):
    """The state ``behind`` reads: an assignment, acknowledged and committed offsets."""

    def __init__(self, committed: dict[SongsTP, int]) -> None:
        super().__init__()
        self._committed_offset = dict(committed)
        self._acked: dict[SongsTP, list[int]] = {}

    def assignment(self) -> set[SongsTP]:
        return set(self._committed_offset)

    def _guarded(self, tp: SongsTP) -> bool:
        return True


def lag(committed: int | None, end: int) -> PartitionLag:
    return PartitionLag(committed, end)


def test_a_partition_left_behind_with_nothing_acknowledged_is_re_read(monkeypatch) -> None:
    """The lag monitor sees a record at the head that no agent ever got: no later offset was
    acknowledged, so only the lag shows it."""
    clock = [0.0]
    monkeypatch.setattr(offsets.time, "monotonic", lambda: clock[0])
    stuck, caught_up, acking = (SongsTP("songs.new", p) for p in range(3))
    consumer = BehindConsumer({stuck: 10, caught_up: 7, acking: 3})
    consumer._acked[acking] = [5]  # the head is held with later offsets acknowledged:
    busy = FakeMessage("songs.new")  # _new_offset's own check covers it
    consumer._unacked_messages.add(busy)  # the agent is working on the topic: wait
    lags = {stuck: lag(10, 11), caught_up: lag(7, 7), acking: lag(3, 5)}
    for _ in range(30):
        consumer.behind(lags)
        clock[0] += 1.0
    assert consumer._stalled == {}
    consumer._unacked_messages.discard(busy)
    for _ in range(offsets.STALL_IDLE_CHECKS):
        consumer.behind(lags)
        clock[0] += 1.0
    assert consumer._stalled == {stuck: 10}


def test_a_partition_that_catches_up_is_not_re_read(monkeypatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(offsets.time, "monotonic", lambda: clock[0])
    tp = SongsTP("songs.new", 0)
    consumer = BehindConsumer({tp: 10})
    for step in range(60):  # behind for a moment at a time, then caught up
        consumer.behind({tp: lag(10, 11 if step % 5 else 10)})
        clock[0] += 1.0
    assert consumer._stalled == {}


def test_a_commit_faust_only_believes_in_is_re_read_from_the_brokers(monkeypatch) -> None:
    """CI, after a member left: Faust took offset 6 for committed although the broker kept 4,
    so it ignored the acknowledgements of records 4 and 5 and left them in its in-flight set.
    Those records are not in flight; the re-read starts at the broker's 4, and acks count."""
    clock = [0.0]
    monkeypatch.setattr(offsets.time, "monotonic", lambda: clock[0])
    tp = SongsTP("users.refresh", 1)
    consumer = BehindConsumer({tp: 6})
    consumer._unacked_messages.update({FakeMessage(tp.topic, acked=True) for _ in range(2)})
    for _ in range(int(offsets.STALL_S) + offsets.STALL_IDLE_CHECKS + 1):
        consumer.behind({tp: lag(4, 6)})
        clock[0] += 1.0
    assert consumer._stalled == {tp: 4}
    assert consumer._committed_offset[tp] == 4


def test_a_partition_behind_and_not_re_read_says_why_once(monkeypatch, caplog) -> None:
    clock = [0.0]
    monkeypatch.setattr(offsets.time, "monotonic", lambda: clock[0])
    tp = SongsTP("songs.new", 0)
    consumer = BehindConsumer({tp: 3})
    consumer._unacked_messages.add(FakeMessage("songs.new"))  # a store outage, say
    for _ in range(int(offsets.BEHIND_EXPLAINED_S) * 2):
        consumer.behind({tp: lag(3, 5)})
        clock[0] += 1.0
    why = [r.getMessage() for r in caplog.records if "not re-read" in r.getMessage()]
    assert len(why) == 1 and "holds unacknowledged records" in why[0]
    assert consumer._stalled == {}


class FaustCommit:
    """Faust's ``_commit_offsets`` bookkeeping: the offsets count as committed whether or
    not the broker took them."""

    def __init__(self) -> None:
        self._committed_offset: dict[SongsTP, int | None] = {}
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda t: True))
        self.broker_accepts, self.during_commit = False, lambda: None

    async def _commit_offsets(self, offsets: dict, start_new_transaction: bool = True) -> bool:
        self.during_commit()
        self._committed_offset.update(offsets)
        return self.broker_accepts


class CommittingConsumer(GuardedConsumerMixin, FaustCommit):
    def _is_changelog_tp(self, tp: object) -> bool:
        return False


def test_a_failed_commit_leaves_the_committed_offsets_at_the_brokers() -> None:
    tp = SongsTP("users.refresh", 1)
    consumer = CommittingConsumer()
    consumer._committed_offset[tp] = 4
    assert not asyncio.run(consumer._commit_offsets({tp: 6}))
    assert consumer._committed_offset[tp] == 4
    consumer.broker_accepts = True
    assert asyncio.run(consumer._commit_offsets({tp: 6}))
    assert consumer._committed_offset[tp] == 6


def test_a_commit_that_fails_across_a_positioning_keeps_what_the_positioning_read() -> None:
    """The rebalance read the broker's commits while the refused commit was in flight."""
    tp = SongsTP("users.refresh", 1)
    consumer = CommittingConsumer()
    consumer._committed_offset[tp] = 2

    def rebalance() -> None:
        consumer._positioned_at = {tp: 4}

    consumer.during_commit = rebalance
    assert not asyncio.run(consumer._commit_offsets({tp: 6}))
    assert consumer._committed_offset[tp] == 4


class FaustSeek:
    """Stands in for Faust's consumer below the mixin: records seeks, knows no changelogs."""

    def __init__(self) -> None:
        self.sought: list[int] = []
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda t: True))

    def _is_changelog_tp(self, tp: object) -> bool:
        return False

    async def seek(self, tp: object, offset: int) -> None:
        self.sought.append(offset)


class RewindingConsumer(GuardedConsumerMixin, FaustSeek):
    pass


def test_a_real_gap_is_accepted_after_two_rewinds_through_the_consumer() -> None:
    """The consumer's own rewinds must keep the evidence between re-reads, or a real gap
    (compaction, transaction markers) would be re-read forever."""
    consumer, tp = RewindingConsumer(), SongsTP("songs.new", 0)
    consumer.guard.start(tp, 3)
    verdicts = []
    for _ in range(3):
        verdict = consumer.guard.admit(tp, 8)
        verdicts.append(verdict)
        if verdict != "rewind":
            break
        asyncio.run(consumer._rewind(tp, 3, "rewind"))
        consumer.guard.fetched(tp, 8)  # the broker has nothing at 3..7
    assert verdicts == ["rewind", "rewind", "gap"]
    assert consumer.sought == [3, 3]
