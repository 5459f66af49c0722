"""Priority backends end to end: two simulators behind the real function_app.py under the local
Functions host (AOAI_BACKENDS), driven by the real openai SDK and the app's own routes. The
first backend gets a tight quota or a fault; the second takes what the first refuses."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncAzureOpenAI

from devstack.aoai_simulator import RunningSimulator
from devstack.emulators.processes import free_port
from devstack.hosted_app import AppHost, make_app_dir, run_app_host
from devstack.provision import provision
from shared.core.settings import load_settings
from shared.core.store import USAGE, Store
from tests.support.hosts import app_host
from tests.support.jobs_stack import JOB_SETTINGS, queue_names, submit, wait_job
from tests.support.records import query_until
from tests.support.simulator import backends_setting, control_plane, two_simulators

API_VERSION = "2025-04-01-preview"
COOLDOWN = 1.0  # AOAI_BACKEND_COOLDOWN_SECONDS of the host below
RETRY_AFTER_MS = 400  # what the simulators ask for on every 429 here
EMBED_RETRY_MS = 5000  # a refusal long enough that chat comes while the embedding one cools


@pytest.fixture(scope="module")
def sims() -> Iterator[tuple[RunningSimulator, RunningSimulator]]:
    with two_simulators() as both:
        yield both


@pytest.fixture(scope="module")
def host(
    app_environ: dict[str, str],
    store: Store,
    sims: tuple[RunningSimulator, RunningSimulator],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AppHost]:
    environ = {
        **app_environ,
        **JOB_SETTINGS,
        **queue_names("backends"),
        "AOAI_BACKENDS": backends_setting(*sims),
        "AOAI_BACKEND_COOLDOWN_SECONDS": str(COOLDOWN),
        "EMBEDDING_MAX_INPUTS": "2",  # many small requests per job
    }
    with app_host(environ, tmp_path_factory.mktemp("backends")) as running:
        yield running


@pytest.fixture
async def control(
    sims: tuple[RunningSimulator, RunningSimulator],
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Both simulators' control planes; each test starts with both backends ready again."""
    async with control_plane(sims[0]) as first, control_plane(sims[1]) as second:
        for sim in (first, second):
            patch = {"rate_limit": {"retry_after_ms": RETRY_AFTER_MS}}
            (await sim.patch("/sim/config", json=patch)).raise_for_status()
        await asyncio.sleep(COOLDOWN + 0.5)  # whatever an earlier test cooled is ready again
        yield first, second


def sdk(host: AppHost, tag: str) -> AsyncAzureOpenAI:
    """The openai SDK pointed at the app, without retries of its own: any 429 would raise."""
    return AsyncAzureOpenAI(
        azure_endpoint=host.url,
        api_version=API_VERSION,
        api_key=host.team_key,
        default_headers={"x-usage-tags": f"run={tag}"},
        max_retries=0,
        timeout=60,
    )


async def records(store: Store, query: str, value: str, count: int) -> list[dict[str, Any]]:
    """The usage documents matching `query`, once there are `count` of them (streams and the
    outbox may write a little after the answer)."""
    return await query_until(store, USAGE, query, {"@v": value}, count=count, tries=100)


def by_tag(store: Store, tag: str, count: int) -> Any:
    return records(store, "SELECT * FROM c WHERE c.tags.run = @v", tag, count)


async def echo(client: AsyncAzureOpenAI, text: str = "hello") -> str:
    """`text`, echoed by the simulator through the app."""
    completion = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": f"echo: {text}"}]
    )
    return completion.choices[0].message.content or ""


async def test_under_load_the_second_takes_the_overflow_and_the_first_takes_traffic_back(
    host: AppHost, store: Store, control: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    first, _ = control
    # Two requests per 10-second window on the first: most of a burst is refused there.
    tight = {"deployments": {"gpt-4o": {"rpm": 12}}}
    (await first.patch("/sim/config", json=tight)).raise_for_status()
    tag = uuid.uuid4().hex
    async with sdk(host, tag) as client:
        answers = await asyncio.gather(*(echo(client, f"word{i}") for i in range(16)))
    assert answers == [f"word{i}" for i in range(16)]  # nothing failed
    burst = await by_tag(store, tag, 16)
    assert len(burst) == 16
    served = [doc["backend"] for doc in burst]
    assert {"first", "second"} <= set(served)
    assert all(doc["status"] == "ok" for doc in burst)
    stats = (await first.get("/sim/stats")).json()
    assert stats["deployments"]["gpt-4o"]["throttled"] >= 1
    # No SDK retry slept on the first's 429s: every refusal there was a first attempt.
    assert stats["deployments"]["gpt-4o"]["retries"] == 0

    await usage_reports_both_backends(host)

    # The first recovers (its quota back, its cooldown over): it takes the traffic again.
    (await first.post("/sim/reset", json={"config": True})).raise_for_status()
    await asyncio.sleep(RETRY_AFTER_MS / 1000 + COOLDOWN)
    again = uuid.uuid4().hex
    async with sdk(host, again) as client:
        for i in range(3):
            await echo(client, f"again{i}")
    assert [doc["backend"] for doc in await by_tag(store, again, 3)] == ["first"] * 3


async def usage_reports_both_backends(host: AppHost) -> None:
    """GET /api/usage?group_by=backend (roll-ups refreshed every 2 s on test hosts)."""
    groups: dict[str | None, int] = {}
    async with httpx.AsyncClient(base_url=host.url, headers=host.headers(), timeout=30) as http:
        for _ in range(30):
            r = await http.get("/usage", params={"group_by": "backend"})
            assert r.status_code == 200, r.text
            groups = {g["key"]: g["calls"] for g in r.json()["groups"]}
            if groups.get("first") and groups.get("second"):
                return
            await asyncio.sleep(1)
    raise AssertionError(f"the usage report never showed both backends: {groups}")


@pytest.mark.parametrize("fault", ["error_500", "drop"])
async def test_a_failing_first_backend_spills_to_the_second_on_api_chat(
    host: AppHost,
    store: Store,
    control: tuple[httpx.AsyncClient, httpx.AsyncClient],
    fault: str,
) -> None:
    first, _ = control
    (await first.patch("/sim/config", json={"faults": {"chat": {fault: 1.0}}})).raise_for_status()
    request_id = f"bk-{uuid.uuid4()}"
    async with httpx.AsyncClient(base_url=host.url, headers=host.headers(), timeout=60) as http:
        r = await http.post(
            "/chat",
            json={"messages": [{"role": "user", "content": "echo: spilled over"}]},
            headers={"x-request-id": request_id},
        )
    assert r.status_code == 200, r.text
    assert r.json()["message"]["content"] == "spilled over"
    (doc,) = await records(store, "SELECT * FROM c WHERE c.client_request_id = @v", request_id, 1)
    assert (doc["backend"], doc["status"]) == ("second", "ok")
    stats = (await first.get("/sim/stats")).json()
    assert stats["routes"]["chat"]["requests"] >= 1  # the first was tried, and failed


async def test_a_stream_whose_first_backend_fails_before_its_first_byte_comes_from_the_second(
    host: AppHost, store: Store, control: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    first, _ = control
    faults = {"faults": {"chat": {"error_503": 1.0}}}
    (await first.patch("/sim/config", json=faults)).raise_for_status()
    tag = uuid.uuid4().hex
    async with sdk(host, tag) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "echo: streamed anyway"}],
            stream=True,
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "streamed anyway"
    (doc,) = await by_tag(store, tag, 1)
    assert (doc["operation"], doc["backend"], doc["status"]) == ("chat_stream", "second", "ok")


async def test_with_every_backend_refusing_the_caller_gets_the_429_with_retry_after(
    host: AppHost, store: Store, control: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    tight = {"deployments": {"gpt-4o": {"rpm": 6}}}  # one request per 10-second window
    for sim in control:
        (await sim.patch("/sim/config", json=tight)).raise_for_status()
    tag = uuid.uuid4().hex
    refused: openai.RateLimitError | None = None
    async with sdk(host, tag) as client:
        for i in range(6):
            try:
                await echo(client, f"w{i}")
            except openai.RateLimitError as error:
                refused = error
                break
    assert refused is not None, "both backends have one request per window: one must refuse"
    assert refused.response.headers["retry-after-ms"] == str(RETRY_AFTER_MS)
    docs = await by_tag(store, tag, 3)
    assert {d["backend"] for d in docs if d["status"] == "ok"} == {"first", "second"}
    assert [d["backend"] is not None for d in docs if d["status"] == "error"] == [True]


async def test_an_embedding_job_spills_to_the_second_and_completes(
    host: AppHost, store: Store, control: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    first, second = control
    tight = {"deployments": {"text-embedding-3-small": {"rpm": 6}}}
    (await first.patch("/sim/config", json=tight)).raise_for_status()
    items = [{"id": f"i{i}", "text": f"item {i} about delivery"} for i in range(24)]
    async with httpx.AsyncClient(base_url=host.url, headers=host.headers(), timeout=30) as http:
        job_id = await submit(http, "embedding", {"items": items})
        view = await wait_job(http, job_id, within=120)
    assert view["status"] == "succeeded"
    assert view["counts"]["succeeded"] == 24
    docs = await records(store, "SELECT * FROM c WHERE c.job_id = @v", job_id, 12)
    ok = [d for d in docs if d["status"] == "ok"]
    assert len(ok) == 12  # two inputs per request (EMBEDDING_MAX_INPUTS)
    assert {d["backend"] for d in ok} == {"first", "second"}
    # The slice moved to the second at the first's 429: no delayed continuation was needed.
    log = host.log.read_text(errors="replace")
    assert re.findall(rf"job {job_id}: \d+ items continue in", log) == []
    emb = "text-embedding-3-small"
    assert (await first.get("/sim/stats")).json()["deployments"][emb]["throttled"] >= 1
    assert (await second.get("/sim/stats")).json()["deployments"][emb]["throttled"] == 0


async def test_a_429_of_the_embedding_deployment_leaves_chat_on_the_first(
    host: AppHost, store: Store, control: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    """Azure rate-limits per deployment: the first's embedding deployment refusing (as it
    does when jobs keep it at its quota) cools that deployment there, not the account, so
    chat right after still goes to the first. Before, the whole first backend cooled and
    the chat call went to the spill-over."""
    first, second = control
    refused = {"faults": {"embeddings": {"error_429": 1.0, "retry_after_ms": EMBED_RETRY_MS}}}
    (await first.patch("/sim/config", json=refused)).raise_for_status()
    tag = uuid.uuid4().hex
    async with sdk(host, tag) as client:
        embedded = await client.embeddings.create(model="text-embedding-3-small", input="hi")
        assert len(embedded.data) == 1  # the second answered it
        assert await echo(client, "still on the first") == "still on the first"
    served = {d["operation"]: d["backend"] for d in await by_tag(store, tag, 2)}
    assert served == {"embedding": "second", "chat": "first"}
    stats = (await first.get("/sim/stats")).json()
    assert stats["routes"]["embeddings"]["throttled"] == 1
    assert stats["deployments"]["gpt-4o"]["status"] == {"200": 1}
    assert "gpt-4o" not in (await second.get("/sim/stats")).json()["deployments"]
    # The first's embedding deployment cools for the retry-after: let it pass, so the next
    # test finds both backends ready.
    await asyncio.sleep(EMBED_RETRY_MS / 1000)


async def test_health_checks_every_backend_and_stays_ready_while_one_answers(
    app_environ: dict[str, str],
    store: Store,
    sims: tuple[RunningSimulator, RunningSimulator],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A second backend nobody answers at (a port with no server): the details name it as
    failing, and the instance stays in rotation, since calls fail over to the first."""
    first = sims[0]
    backends = [
        {"name": "first", "endpoint": first.url, "priority": 1, "api_key": first.api_key},
        {
            "name": "gone",
            "endpoint": f"http://127.0.0.1:{free_port()}",
            "priority": 2,
            "api_key": first.api_key,
        },
    ]
    environ = {
        **app_environ,
        **JOB_SETTINGS,
        **queue_names("health"),
        "AOAI_BACKENDS": json.dumps(backends),
    }
    await provision(load_settings(environ))
    with run_app_host(make_app_dir(tmp_path_factory.mktemp("health"), environ)) as running:
        async with httpx.AsyncClient(base_url=running.url, headers=running.headers()) as client:
            details = await client.get("/health/details")
            status = await client.get("/health")
    assert details.status_code == 200, details.text
    checks = details.json()["checks"]
    assert {name: check["ok"] for name, check in checks.items()} == {
        "cosmos": True,
        "queues": True,
        "azure_openai:first": True,
        "azure_openai:gone": False,
    }
    assert checks["azure_openai:gone"]["error"]
    assert status.status_code == 200
    assert status.json() == {"status": "ok"}


async def create_response(client: AsyncAzureOpenAI, text: str, **extra: Any) -> Any:
    return await client.responses.create(model="gpt-4o", input=f"echo: {text}", **extra)


def responses_requests(stats: dict[str, Any]) -> int:
    return int(stats["routes"].get("responses", {}).get("requests", 0))


async def test_a_follow_up_goes_to_the_backend_that_created_the_response(
    host: AppHost, store: Store, control: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    """A response lives on the account that created it: created on the second while the
    first failed, its follow-ups (`previous_response_id`, retrieve, input items) go to the
    second although the first is the first choice again; while the second refuses, the
    caller gets the service's 429 and the first is never asked."""
    first, second = control
    failing = {"faults": {"responses": {"error_500": 1.0}}}
    (await first.patch("/sim/config", json=failing)).raise_for_status()
    tag = uuid.uuid4().hex
    async with sdk(host, tag) as client:
        created = await create_response(client, "on the second")
        (doc,) = await by_tag(store, tag, 1)
        assert (doc["operation"], doc["backend"]) == ("responses", "second")
        # The first answers again, and is the first choice for anything new.
        (await first.post("/sim/reset", json={"config": True})).raise_for_status()
        await asyncio.sleep(COOLDOWN + 0.5)
        fresh = uuid.uuid4().hex
        async with sdk(host, fresh) as other:
            await create_response(other, "new")
        assert [d["backend"] for d in await by_tag(store, fresh, 1)] == ["first"]
        follow = uuid.uuid4().hex
        async with sdk(host, follow) as other:
            answer = await create_response(other, "continued", previous_response_id=created.id)
            assert answer.output_text == "continued"
            assert (await other.responses.retrieve(created.id)).id == created.id
            items = await other.responses.input_items.list(created.id)
            assert len(items.data) == 1
        assert [d["backend"] for d in await by_tag(store, follow, 1)] == ["second"]
        # The second refusing: the service's 429, no other account asked.
        asked_first = responses_requests((await first.get("/sim/stats")).json())
        refusing = {"faults": {"responses": {"error_429": 1.0}}}
        (await second.patch("/sim/config", json=refusing)).raise_for_status()
        with pytest.raises(openai.RateLimitError):
            await create_response(client, "refused", previous_response_id=created.id)
        with pytest.raises(openai.RateLimitError):
            await client.responses.retrieve(created.id)
    assert responses_requests((await first.get("/sim/stats")).json()) == asked_first
    (await second.post("/sim/reset", json={"config": True})).raise_for_status()
