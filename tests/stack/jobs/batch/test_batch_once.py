"""A Batch API job is created once per part (issue 21, item 8), whatever happens between
`batches.create` and saving its id: a create whose answer is lost (the simulator carries it
out and cuts the connection), a host killed right after the create, two pollers and a
redelivered job message at once. The upstream batches are counted on the simulator by their
metadata; every input, output and error file is deleted once the job is done."""

from __future__ import annotations

import asyncio
import dataclasses

import httpx
import pytest
from openai import AsyncOpenAI

from shared.aoai.client import backend_configs, create_client
from shared.jobs.worker import Message
from shared.runtime import Runtime
from tests.support.batch_stack import (
    app_runtime,
    docs,
    files_left,
    patch,
    poll_until,
    results,
    send_job,
    upstream,
    usage,
)
from tests.support.samples import LABELS, new_id, tickets


async def assert_once(runtime: Runtime, job_id: str, items: int) -> None:
    """One batch upstream, its usage recorded for every item, no file left."""
    (batch,) = await upstream(runtime, job_id)
    (doc,) = await docs(runtime, job_id)
    assert (doc.state, doc.batch_id) == ("done", batch.id)
    records = await usage(runtime, job_id)
    assert sorted(r["id"] for r in records) == sorted(
        f"{batch.id}:{job_id}:t{i}" for i in range(items)
    )
    assert len(await results(runtime, job_id)) == items
    assert await files_left(runtime) == 0


async def test_a_create_whose_answer_is_lost_is_found_not_made_again(
    environ: dict[str, str], sim: httpx.AsyncClient
) -> None:
    await patch(sim, {"faults": {"batches": {"lost": 1.0}}})
    async with app_runtime(environ) as runtime:
        job_id = await send_job(runtime, tickets(4))
        assert len(await upstream(runtime, job_id)) == 1  # made once (no SDK retry), answer lost
        (doc,) = await docs(runtime, job_id)
        assert doc.state == "creating"  # the intent, with the file the batch reads
        assert doc.input_file_id is not None
        await patch(sim, {"faults": {"batches": {"lost": 0.0}}})
        job = await poll_until(runtime, job_id)
        assert job.status == "succeeded"
        await assert_once(runtime, job_id, 4)


class Killed(BaseException):
    """The process dies: nothing is released, nothing cleaned up."""


def dies_after_create(runtime: Runtime) -> AsyncOpenAI:
    """The runtime's Batch API client, as the app builds it, on a connection whose host dies
    the moment a batch create has been answered (after the service made it, before the app
    saved its id)."""

    async def die(response: httpx.Response) -> None:
        if response.request.method == "POST" and response.request.url.path.endswith("/batches"):
            raise Killed

    settings = runtime.settings
    (config,) = backend_configs(settings)
    return create_client(settings, config, None).with_options(
        http_client=httpx.AsyncClient(event_hooks={"response": [die]})
    )


async def test_a_host_killed_between_create_and_save_leaves_one_batch(
    environ: dict[str, str], sim: httpx.AsyncClient
) -> None:
    async with app_runtime(environ, BATCH_LEASE_SECONDS="1") as runtime:
        worker = runtime.job_worker
        doomed = dataclasses.replace(
            worker,
            batch_service=dataclasses.replace(
                worker.batch_service, client=dies_after_create(runtime)
            ),
        )
        job_id = new_id("b")
        body = {"job_id": job_id, "items": tickets(3), "labels": LABELS, "mode": "batch"}
        message = Message(
            queue="classification-jobs",
            id=new_id("m"),
            body=httpx.Request("POST", "/", json=body).content,
        )
        with pytest.raises(Killed):
            await doomed.handle("classification", message)
        assert len(await upstream(runtime, job_id)) == 1
        await asyncio.sleep(1.2)  # the dead host's lease expires
        job = await poll_until(runtime, job_id)
        assert job.status == "succeeded"
        await assert_once(runtime, job_id, 3)


async def test_two_pollers_and_a_redelivery_at_once_create_one_batch(
    environ: dict[str, str], sim: httpx.AsyncClient
) -> None:
    await patch(sim, {"faults": {"batches": {"lost": 1.0}}})
    async with app_runtime(environ) as one, app_runtime(environ) as two:
        job_id = await send_job(one, tickets(4))
        await patch(sim, {"faults": {"batches": {"lost": 0.0}}})
        await asyncio.sleep(0.6)  # past the first backoff (BATCH_RETRY_SECONDS 0.5)
        body = {"job_id": job_id, "items": tickets(4), "labels": LABELS, "mode": "batch"}
        again = Message(
            queue="classification-jobs", id="m2", body=httpx.Request("POST", "/", json=body).content
        )
        await asyncio.gather(
            one.batch_poller.poll(),
            two.batch_poller.poll(),
            two.job_worker.handle("classification", again),
        )
        job = await poll_until(one, job_id)
        assert job.status == "succeeded"
        await assert_once(one, job_id, 4)


async def test_an_upload_whose_answer_is_lost_leaves_no_file_behind(
    environ: dict[str, str], sim: httpx.AsyncClient
) -> None:
    # The file is stored, its id never reaches the app: it is found by its name and deleted.
    await patch(sim, {"faults": {"files": {"lost": 1.0}}})
    async with app_runtime(environ) as runtime:
        job_id = await send_job(runtime, tickets(2))
        (doc,) = await docs(runtime, job_id)
        assert (doc.state, doc.input_file_id) == ("creating", None)
        assert await files_left(runtime) == 1
        await patch(sim, {"faults": {"files": {"lost": 0.0}}})
        job = await poll_until(runtime, job_id)
        assert job.status == "succeeded"
        await assert_once(runtime, job_id, 2)
