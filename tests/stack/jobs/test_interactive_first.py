"""Interactive calls first (docs/jobs.md#interactive-calls-first): through the real host and the
simulator with a small TPM quota, a classification job fills the chat deployment while chats
are sent at a steady pace; every chat is answered at once (the host's SDK does not retry, so
a 429 would reach the caller) and the job still finishes, every item labelled.

With JOB_HEADROOM_FACTOR=0 and JOB_HEADROOM_MIN_TOKENS=0 (the policy off) the same run gives
chats 429s: the job fills the whole quota and the next chat finds none."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from devstack.aoai_simulator import SimulatorConfig
from tests.support.jobs_stack import JobsStack, stack_fixture, submit, wait_job

WINDOW = 6.0  # a compressed quota minute, on both sides (bench/_timescale.py)
TPM = 20_000  # as Azure grants it, per minute: 20,000 per window
CHAT_EVERY = 0.4  # seconds between chats: ~15 a window, ~1,000 tokens of 20,000
LABELS = ["billing", "shipping", "technical", "account", "other"]

SIMULATOR = SimulatorConfig().merged(
    {
        "rate_limit": {"window_seconds": WINDOW},
        # The simulator's quota is per minute: scaled so one window holds a minute's worth.
        "deployments": {"gpt-4o": {"tpm": round(TPM * 60 / WINDOW), "rpm": 60_000}},
    }
)

stack = stack_fixture(
    "interactive",
    simulator=SIMULATOR,
    settings={
        "AOAI_QUOTA_WINDOW_SECONDS": str(WINDOW),
        "AOAI_QUOTAS": f'{{"gpt-4o": {{"tpm": {TPM}, "rpm": 6000}}}}',
        "AOAI_MAX_RETRIES": "0",  # a chat's 429 reaches the test
        "JOB_SLICE_SECONDS": "60",
    },
)


async def chat_while(http: httpx.AsyncClient, running: asyncio.Event) -> list[int]:
    """A chat every CHAT_EVERY seconds while `running` is set; each one's status."""
    statuses: list[int] = []
    n = 0
    while running.is_set():
        n += 1
        body = {"messages": [{"role": "user", "content": f"hello {n}"}], "max_tokens": 40}
        statuses.append((await http.post("/chat", json=body)).status_code)
        await asyncio.sleep(CHAT_EVERY)
    return statuses


@pytest.mark.timeout(240)
async def test_chats_get_no_429_while_a_job_fills_the_quota_and_the_job_finishes(
    stack: JobsStack, http: httpx.AsyncClient
) -> None:
    # ~1,600 items at ~53 quota tokens each: about four windows of the whole quota.
    body = {
        "items": [{"id": f"t{i}", "text": f"ticket {i}: parcel arrived late"} for i in range(1600)],
        "labels": LABELS,
    }
    running = asyncio.Event()
    running.set()
    chats = asyncio.create_task(chat_while(http, running))
    # The chat's pace is steady when the job comes: a window (a quota minute) of it first. The
    # headroom is for interactive use seen lately; a job that filled the window just before
    # the chat began would hold it until its requests aged out (docs/jobs.md).
    await asyncio.sleep(WINDOW)
    job_id = await submit(http, "classification", body)
    started = time.monotonic()
    try:
        view = await wait_job(http, job_id, within=150)
    finally:
        running.clear()
        statuses = await chats
    assert view["status"] == "succeeded", view
    assert view["counts"]["succeeded"] == 1600
    # The job ran for several windows at the quota, so the chats met it full.
    assert time.monotonic() - started > 2 * WINDOW
    assert len(statuses) > 20
    assert [s for s in statuses if s != 200] == []
