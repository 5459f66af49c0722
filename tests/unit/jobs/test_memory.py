"""The process's memory budget for job answers: a weighted semaphore, first come first served
(pure logic)."""

from __future__ import annotations

import asyncio

from shared.jobs.memory import MIB, MemoryBudget, answer_bytes


async def test_requests_wait_for_room_in_order_and_give_up_at_their_deadline() -> None:
    budget = MemoryBudget(4)
    assert await budget.acquire(3 * MIB, max_wait=0)
    assert not await budget.acquire(2 * MIB, max_wait=0.01)  # no room before its deadline
    large = asyncio.create_task(budget.acquire(4 * MIB, max_wait=5))
    small = asyncio.create_task(budget.acquire(1 * MIB, max_wait=5))
    await asyncio.sleep(0)
    assert not large.done()
    assert not small.done()  # the small one does not pass the large one
    budget.release(3 * MIB)
    assert await large
    assert not small.done()
    budget.release(4 * MIB)
    assert await small
    assert budget.held == MIB


async def test_a_request_larger_than_the_budget_runs_alone() -> None:
    budget = MemoryBudget(64)
    assert await budget.acquire(10**12, max_wait=0)
    assert budget.held == 64 * MIB
    budget.release(10**12)
    assert budget.held == 0


async def test_a_waiter_that_gives_up_lets_the_next_one_in() -> None:
    budget = MemoryBudget(4)
    assert await budget.acquire(2 * MIB, max_wait=0)
    blocked = asyncio.create_task(budget.acquire(4 * MIB, max_wait=0.01))
    behind = asyncio.create_task(budget.acquire(2 * MIB, max_wait=5))
    assert not await blocked
    assert await behind
    assert budget.held == 4 * MIB


def test_an_answer_of_2048_by_1536_floats_is_about_175_mb() -> None:
    assert 165e6 < answer_bytes(2048, 1536) < 185e6
