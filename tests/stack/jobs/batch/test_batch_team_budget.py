"""Batch mode spends its team's budget (#22 item 4): a part books its worst case against the
team's UTC day and month (never its minute) before anything goes upstream, keeps the booking
on its `batches` document, and the poller settles it once to what its lines used. Refused,
the part waits (the job `waiting`, nothing uploaded, no batch made) and fails
`budget_exceeded` past JOB_BUDGET_MAX_WAIT. The worker and the poller in this process against
the simulator's Batch API, Azurite and the Cosmos DB server, through the real SDKs; the
team's counters are set through the store as its other calls (another instance) would."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from shared.core.store import BATCHES, TEAM_SPEND, Store
from shared.jobs.batch.create import input_name
from shared.jobs.batch.models import BatchDoc
from shared.jobs.batch.service import new_owner
from shared.metering.models import UsageRecord
from shared.metering.report import cost_usd
from shared.metering.team_windows import Spend, Windows, micros
from shared.metering.teams import NewTeam, TeamChanges
from shared.runtime import Runtime
from tests.stack.jobs.batch.conftest import FAST
from tests.support.batch_stack import (
    app_runtime,
    docs,
    patch,
    poll_until,
    results,
    send_job,
    upstream,
    usage,
)
from tests.support.samples import tickets

MAX_WAIT = 3600


@pytest.fixture
async def runtime(environ: dict[str, str]) -> AsyncIterator[Runtime]:
    async with app_runtime(environ, JOB_BUDGET_MAX_WAIT=str(MAX_WAIT)) as running:
        yield running


@pytest.fixture(autouse=True)
def _not_at_the_day_s_end() -> None:
    # A new UTC day mid-test would give the team its day again.
    moment = datetime.now(UTC)
    midnight = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    if (midnight - moment).total_seconds() < 300:
        pytest.skip("too close to UTC midnight")


async def new_team(runtime: Runtime, **limits: Any) -> str:
    team_id = f"bb-{uuid.uuid4().hex[:10]}"
    await runtime.team_admin.create(NewTeam.model_validate({"id": team_id, **limits}))
    return team_id


async def spend(store: Store, team_id: str) -> Spend:
    return Spend.of(await store.read(TEAM_SPEND, team_id, team_id), Windows.at(time.time()))


async def set_spend(store: Store, team_id: str, **counters: int) -> None:
    """The team's counters as its other calls left them."""
    body = Spend(Windows.at(time.time()), **counters).doc(team_id)
    doc = await store.read(TEAM_SPEND, team_id, team_id)
    if doc is None:
        await store.create(TEAM_SPEND, body)
    else:
        await store.replace_if_unchanged(TEAM_SPEND, body, doc["_etag"])


async def input_files(runtime: Runtime, doc: BatchDoc) -> list[str]:
    return [f.id async for f in runtime.aoai.files.list() if f.filename == input_name(doc)]


async def test_a_batch_job_of_a_team_out_of_its_day_waits_sends_nothing_then_fails(
    runtime: Runtime, store: Store
) -> None:
    team = await new_team(runtime, daily_tokens=100_000)
    await set_spend(store, team, day_tokens=99_990)
    job_id = await send_job(runtime, tickets(), team=team)

    job = await runtime.job_worker.jobs.get(job_id)
    assert job is not None
    assert job.status == "waiting", job
    assert job.error is not None
    assert job.error.code == "budget_exceeded", job.error
    assert (job.error.details or {})["limit"] == "day"
    assert "JOB_BUDGET_MAX_WAIT" in job.error.message
    # Later runs of the timer try again and are refused again; nothing goes upstream.
    await runtime.batch_poller.poll()
    (doc,) = await docs(runtime, job_id)
    assert (doc.state, doc.booking, doc.batch_id, doc.input_file_id) == (
        "waiting",
        None,
        None,
        None,
    )
    assert doc.budget_since is not None
    assert await upstream(runtime, job_id) == []
    assert await input_files(runtime, doc) == []
    assert (await spend(store, team)).day_tokens == 99_990
    waiting = await runtime.job_worker.jobs.get(job_id)
    assert waiting is not None
    assert waiting.status == "waiting"

    # The part has waited past JOB_BUDGET_MAX_WAIT (as if that much time had passed).
    raw = await store.read(BATCHES, doc.id, doc.id)
    began = datetime.now(UTC) - timedelta(seconds=MAX_WAIT + 1)
    await store.replace_if_unchanged(
        BATCHES, {**raw, "budget_since": began.isoformat()}, raw["_etag"]
    )
    job = await poll_until(runtime, job_id)
    assert job.status == "failed", job
    rows = await results(runtime, job_id)
    assert len(rows) == len(tickets())
    assert {r["error"]["code"] for r in rows} == {"budget_exceeded"}
    assert all("JOB_BUDGET_MAX_WAIT" in r["error"]["message"] for r in rows)
    assert await upstream(runtime, job_id) == []
    assert await input_files(runtime, doc) == []
    assert (await spend(store, team)).day_tokens == 99_990


async def test_a_batch_job_books_its_worst_case_then_settles_to_what_it_used_never_the_minute(
    runtime: Runtime, store: Store
) -> None:
    # A minute far smaller than the batch: the batch neither books nor is refused by it.
    team = await new_team(runtime, tpm=10, daily_tokens=1_000_000, monthly_usd=100)
    job_id = await send_job(runtime, tickets(), team=team)
    (doc,) = await docs(runtime, job_id)
    assert doc.state == "submitted"
    assert doc.booking is not None
    booked = await spend(store, team)
    assert booked.day_tokens == doc.booking.tokens > 10
    assert booked.month_micros == doc.booking.usd_micros > 0
    assert booked.minute_tokens == 0

    job = await poll_until(runtime, job_id)
    assert job.status == "succeeded", job
    records = await usage(runtime, job_id)
    used = sum(r["total_tokens"] for r in records)
    prices, discount = runtime.settings.model_prices, runtime.settings.batch_discount
    cost = sum(cost_usd(UsageRecord.model_validate(r), prices, discount) for r in records)
    assert 0 < used < doc.booking.tokens
    settled = await spend(store, team)
    assert settled.day_tokens == used
    # As the usage report prices it, rounded up to whole micro-USD at each checkpoint
    # (BATCH_CHECKPOINT_LINES, 4: two for five lines).
    assert micros(cost) <= settled.month_micros <= micros(cost) + 2
    assert settled.minute_tokens == 0
    (done,) = await docs(runtime, job_id)
    assert (done.booking, done.used_tokens) == (None, 0)
    # Another run of the timer settles nothing more.
    await runtime.batch_poller.poll()
    assert await spend(store, team) == settled


async def test_a_booking_settled_by_two_runs_at_once_is_settled_once(
    runtime: Runtime, store: Store
) -> None:
    team = await new_team(runtime, daily_tokens=1_000_000)
    await set_spend(store, team, day_tokens=100_000)
    job_id = await send_job(runtime, tickets(), team=team)
    (doc,) = await docs(runtime, job_id)
    assert doc.booking is not None
    assert (await spend(store, team)).day_tokens == 100_000 + doc.booking.tokens
    owner = new_owner("poll")
    held = await runtime.job_worker.batch_service.docs.claim(doc.id, owner)
    assert held is not None
    assert held.booking is not None
    service = runtime.job_worker.batch_service
    # A run that settles, and a run repeated from the same read (a crash after the settle):
    # the booking is taken off the document before it is settled, so only one gives it back.
    first = await service.unbook(held, owner)
    again = await service.unbook(held, owner)
    assert first.booking is None
    assert again.booking is None
    assert (await spend(store, team)).day_tokens == 100_000


async def test_a_batch_job_message_delivered_twice_makes_one_batch_and_one_booking(
    runtime: Runtime, store: Store
) -> None:
    team = await new_team(runtime, daily_tokens=1_000_000)
    job_id = await send_job(runtime, tickets(), team=team)
    await send_job(runtime, tickets(), team=team, job_id=job_id)
    (doc,) = await docs(runtime, job_id)
    assert doc.booking is not None
    assert len(await upstream(runtime, job_id)) == 1
    assert (await spend(store, team)).day_tokens == doc.booking.tokens


async def test_a_batch_larger_than_its_team_s_whole_day_fails_at_once_and_says_so(
    runtime: Runtime, store: Store
) -> None:
    team = await new_team(runtime, daily_tokens=50)
    job_id = await send_job(runtime, tickets(), team=team)
    job = await runtime.job_worker.jobs.get(job_id)
    assert job is not None
    assert job.status == "failed", job
    rows = await results(runtime, job_id)
    assert {r["error"]["code"] for r in rows} == {"invalid_request"}
    assert all("does not split" in r["error"]["message"] for r in rows)
    assert await upstream(runtime, job_id) == []
    assert (await spend(store, team)).day_tokens == 0


async def test_a_waiting_part_of_a_team_disabled_meanwhile_fails_team_disabled(
    runtime: Runtime, store: Store
) -> None:
    """Disabling a team stops its queued batch work too: the part waiting for the budget is
    not booked or uploaded when the poller tries it again; its items fail `team_disabled`."""
    team = await new_team(runtime, daily_tokens=100_000)
    await set_spend(store, team, day_tokens=99_990)
    job_id = await send_job(runtime, tickets(), team=team)
    waiting = await runtime.job_worker.jobs.get(job_id)
    assert waiting is not None
    assert waiting.status == "waiting", waiting
    await set_spend(store, team)  # room again: only the switch holds it now
    await runtime.team_admin.update(team, TeamChanges(disabled=True))

    job = await poll_until(runtime, job_id)
    assert job.status == "failed", job
    rows = await results(runtime, job_id)
    assert len(rows) == len(tickets())
    assert {r["error"]["code"] for r in rows} == {"team_disabled"}
    assert await upstream(runtime, job_id) == []
    assert (await spend(store, team)).day_tokens == 0


async def test_a_failed_batch_gives_its_booking_back(
    runtime: Runtime, store: Store, sim: httpx.AsyncClient
) -> None:
    await patch(sim, {"batch": {"max_requests_per_file": 2}})  # it fails while validating
    team = await new_team(runtime, daily_tokens=1_000_000)
    await set_spend(store, team, day_tokens=100_000)
    job_id = await send_job(runtime, tickets(), team=team)
    (doc,) = await docs(runtime, job_id)
    assert doc.booking is not None
    assert (await spend(store, team)).day_tokens == 100_000 + doc.booking.tokens
    job = await poll_until(runtime, job_id)
    assert job.status == "failed", job
    assert job.error is not None
    assert job.error.code == "batch_failed"
    assert (await spend(store, team)).day_tokens == 100_000


async def test_an_expired_batch_settles_what_it_used_and_its_rest_books_again(
    runtime: Runtime, store: Store, sim: httpx.AsyncClient
) -> None:
    # Unanswered lines come back as `batch_expired` error lines: used nothing, cost nothing.
    await patch(sim, {"batch": {"in_progress_seconds": 4, "expire_after_seconds": 1.5}})
    team = await new_team(runtime, daily_tokens=1_000_000)
    job_id = await send_job(runtime, tickets(20), team=team)
    (first,) = await docs(runtime, job_id)
    assert first.booking is not None
    await asyncio.sleep(2)
    await patch(sim, {"batch": {**FAST.model_dump(), "expire_after_seconds": None}})
    job = await poll_until(runtime, job_id)
    assert job.status == "succeeded", job
    (doc,) = await docs(runtime, job_id)
    assert doc.resubmitted
    assert doc.booking is None
    records = await usage(runtime, job_id)
    assert len(records) == 20
    assert (await spend(store, team)).day_tokens == sum(r["total_tokens"] for r in records)
