"""The worker's gate: mutual exclusion, new songs before waiting listener batches, a model
switch before both, arrival order within a priority, and a cancelled waiter never holds it."""

from __future__ import annotations

import asyncio

import pytest

from streams.gate import Gate, Priority


async def order_served(gate: Gate, arrivals: list[tuple[str, Priority]]) -> list[str]:
    """Hold the gate, queue ``arrivals`` in that order, release: who got it in turn."""
    served: list[str] = []
    inside = 0

    async def handler(name: str, priority: Priority) -> None:
        nonlocal inside
        async with gate.held(name, priority):
            inside += 1
            assert inside == 1, "two handlers held the gate at once"
            served.append(name)
            await asyncio.sleep(0.001)
            inside -= 1

    await gate.acquire()
    tasks = []
    for name, priority in arrivals:
        tasks.append(asyncio.create_task(handler(name, priority)))
        await asyncio.sleep(0)  # queued in this order
    gate.release()
    await asyncio.gather(*tasks)
    assert not gate.locked()
    return served


def test_songs_go_before_listener_batches_and_a_switch_before_both() -> None:
    arrivals = [("interactions", Priority.EVENTS), ("engagement", Priority.EVENTS),
                ("songs-1", Priority.SONGS), ("refresh", Priority.EVENTS),
                ("switch", Priority.SWITCH), ("songs-2", Priority.SONGS)]
    served = asyncio.run(order_served(Gate(), arrivals))
    assert served == ["switch", "songs-1", "songs-2", "interactions", "engagement", "refresh"]


def test_a_fair_gate_serves_in_arrival_order() -> None:
    arrivals = [("interactions", Priority.EVENTS), ("songs", Priority.SONGS),
                ("switch", Priority.SWITCH)]
    assert asyncio.run(order_served(Gate(fair=True), arrivals)) == [
        "interactions", "songs", "switch"]


def test_waits_are_reported_by_holder() -> None:
    waits: list[tuple[str, float]] = []

    async def main() -> None:
        gate = Gate(on_wait=lambda holder, s: waits.append((holder, s)))
        async with gate.held("interactions"):
            waiter = asyncio.create_task(_hold(gate, "songs", Priority.SONGS))
            await asyncio.sleep(0.02)
        await waiter

    asyncio.run(main())
    assert [h for h, _ in waits] == ["interactions", "songs"]
    assert waits[0][1] < 0.01 <= waits[1][1]


async def _hold(gate: Gate, holder: str, priority: Priority) -> None:
    async with gate.held(holder, priority):
        pass


def test_a_cancelled_waiter_is_skipped_and_the_gate_opens() -> None:
    async def main() -> None:
        gate = Gate()
        await gate.acquire()
        waiter = asyncio.create_task(gate.acquire(Priority.SONGS))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        gate.release()
        assert not gate.locked()
        await asyncio.wait_for(gate.acquire(), 1)  # nobody was left holding it
        gate.release()

    asyncio.run(main())


def test_a_waiter_cancelled_after_the_handover_passes_the_gate_on() -> None:
    async def main() -> None:
        gate = Gate()
        await gate.acquire()
        first = asyncio.create_task(gate.acquire(Priority.SONGS))
        second = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0)
        gate.release()  # handed to ``first``, which is cancelled before it runs
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        await asyncio.wait_for(second, 1)
        assert gate.locked()
        gate.release()
        assert not gate.locked()

    asyncio.run(main())


def test_release_of_an_open_gate_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        Gate().release()
