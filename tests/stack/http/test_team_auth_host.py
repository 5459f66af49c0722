"""Who calls (#22 item 3): every data-plane route takes its team from a team key, made through
the admin API, in `api-key` or `Authorization: Bearer`, with the plain openai SDK and no other
header; nothing else (no key, a made-up, revoked or disabled team's key, a function key, tags,
`user`) gets past a 401 in the route's own shape, and nothing goes upstream. The team goes on
the usage documents and the roll-ups the usage report reads. The real function_app.py under
the local Functions host, the simulator, Azurite and the Cosmos DB server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import AsyncAzureOpenAI, AsyncOpenAI, AuthenticationError

from devstack.aoai_simulator import RunningSimulator
from devstack.hosted_app import MASTER_KEY, AppHost
from devstack.local_team import KEY_FILE, ensure_local_team
from shared.core.store import CONTENT_FILTER_EVENTS, USAGE, Store
from tests.support.hosts import HOST_SETTINGS, host_fixture
from tests.support.records import docs_by_client_request_id
from tests.support.samples import new_id
from tests.support.simulator import requests_sent_to

API_VERSION = "2025-04-01-preview"
AZURE_401 = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide "
    "a valid key for an active subscription and use a correct regional API endpoint for your "
    "resource."
)
host = host_fixture("who", HOST_SETTINGS)

# Every data-plane route, as (method, path, body): what must refuse a caller with no team.
DATA_PLANE = (
    ("POST", "/chat", {"messages": [{"role": "user", "content": "hi"}]}),
    ("POST", "/chat", {"messages": [{"role": "user", "content": "hi"}], "stream": True}),
    ("POST", "/jobs/embeddings", {"items": [{"id": "a", "text": "x"}]}),
    ("POST", "/jobs/classifications", {"items": [{"id": "a", "text": "x"}], "labels": ["a"]}),
    ("GET", "/jobs/some-job", None),
    ("POST", "/jobs/some-job/cancel", None),
    ("GET", "/usage", None),
)
GATEWAY = (
    ("POST", "/openai/deployments/gpt-4o/chat/completions?api-version=" + API_VERSION),
    ("POST", "/openai/deployments/text-embedding-3-small/embeddings?api-version=" + API_VERSION),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/embeddings"),
)
GATEWAY_BODY = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "hi"}],
    "input": "hi",
}


@pytest.fixture
async def admin(host: AppHost) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=host.url, headers=host.admin_headers(), timeout=30) as c:
        yield c


async def new_team(admin: httpx.AsyncClient) -> tuple[str, str]:
    """A team made through the admin API: its id and its key."""
    team_id = f"w-{uuid.uuid4().hex[:12]}"
    created = await admin.post("/teams", json={"id": team_id})
    assert created.status_code == 201, created.text
    return team_id, created.json()["key"]


async def calls_upstream(simulator: RunningSimulator) -> int:
    return await requests_sent_to(simulator.url)


def credentials(key: str) -> list[dict[str, str]]:
    """The ways a caller can present `key`: the ones the SDKs use, and a function key's."""
    return [{"api-key": key}, {"Authorization": f"Bearer {key}"}]


async def refused_everywhere(host: AppHost, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=host.url, headers=headers, timeout=30) as client:
        for method, path, body in DATA_PLANE:
            answer = await client.request(method, path, json=body)
            assert answer.status_code == 401, (path, answer.text)
            assert answer.json()["error"]["code"] == "unauthorized", (path, answer.text)
            assert answer.headers["x-request-id"]
        for method, path in GATEWAY:
            answer = await client.request(method, path, json=GATEWAY_BODY)
            assert answer.status_code == 401, (path, answer.text)
            error = answer.json()["error"]
            assert error["code"] == "401", (path, answer.text)
            presented = "api-key" in headers or "Authorization" in headers
            assert error["message"] == AZURE_401 if presented else "missing" in error["message"]


async def test_no_made_up_or_function_key_is_401_in_each_route_s_shape_and_nothing_upstream(
    host: AppHost, simulator: RunningSimulator
) -> None:
    before = await calls_upstream(simulator)
    made_up = "tk_nobody_0123abcd_" + "x" * 43
    for headers in (
        {},
        {"x-functions-key": host.key},  # the host's key is not a team's
        *credentials(made_up),
        *credentials("not-even-shaped-like-a-key"),
        {"x-usage-tags": "team=search", "x-functions-key": host.key},
    ):
        await refused_everywhere(host, headers)
    assert await calls_upstream(simulator) == before
    assert made_up not in host.log.read_text()


async def test_a_revoked_key_or_a_disabled_team_is_401(
    host: AppHost, admin: httpx.AsyncClient
) -> None:
    team_id, key = await new_team(admin)
    async with httpx.AsyncClient(base_url=host.url, headers={"api-key": key}, timeout=30) as c:
        assert (await c.get("/usage")).status_code == 200
    key_id = key.split("_")[2]
    assert (await admin.delete(f"/teams/{team_id}/keys/{key_id}")).status_code == 204
    await refused_everywhere(host, {"api-key": key})

    other_id, other = await new_team(admin)
    assert (await admin.patch(f"/teams/{other_id}", json={"disabled": True})).status_code == 200
    await refused_everywhere(host, {"Authorization": f"Bearer {other}"})


@pytest.mark.parametrize("shape", ["azure", "openai"])
@pytest.mark.parametrize("stream", [False, True])
async def test_the_plain_sdk_with_a_team_key_works_and_its_calls_are_the_team_s(
    host: AppHost, admin: httpx.AsyncClient, store: Store, shape: str, stream: bool
) -> None:
    team_id, key = await new_team(admin)
    request_id = new_id("who")
    # The body's `user` and the tags name another team: they change nothing.
    headers = {"x-request-id": request_id, "x-usage-tags": "team=someone-else"}
    client: AsyncAzureOpenAI | AsyncOpenAI = (
        AsyncAzureOpenAI(
            azure_endpoint=host.url, api_version=API_VERSION, api_key=key, default_headers=headers
        )
        if shape == "azure"
        else AsyncOpenAI(base_url=f"{host.url}/v1", api_key=key, default_headers=headers)
    )
    async with client:
        if stream:
            chunks = await client.chat.completions.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": "hello"}],
                stream=True,
                stream_options={"include_usage": True},
                user="someone-else",
            )
            async for _ in chunks:
                pass
        else:
            answer = await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hello"}], user="x"
            )
            assert answer.choices[0].message.content
    docs = await docs_by_client_request_id(store, USAGE, request_id)
    assert [d["team"] for d in docs] == [team_id]


async def test_an_sdk_with_a_wrong_key_raises_authentication_error(host: AppHost) -> None:
    async with AsyncOpenAI(base_url=f"{host.url}/v1", api_key="tk_nope_00000000_x") as client:
        with pytest.raises(AuthenticationError) as raised:
            await client.embeddings.create(model="text-embedding-3-small", input="hi")
    assert raised.value.status_code == 401


async def test_chat_and_jobs_name_the_team_and_the_usage_report_groups_by_it(
    host: AppHost, admin: httpx.AsyncClient, store: Store
) -> None:
    team_id, key = await new_team(admin)
    request_id = new_id("who-chat")
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], "user": "u1"}
    headers = {"api-key": key, "x-request-id": request_id}
    async with httpx.AsyncClient(base_url=host.url, headers=headers, timeout=60) as client:
        answer = await client.post("/chat", json=body)
        assert answer.status_code == 200, answer.text
    docs = await docs_by_client_request_id(store, USAGE, request_id)
    assert docs[0]["team"] == team_id


async def test_a_content_filter_event_names_the_team(
    host: AppHost, admin: httpx.AsyncClient, store: Store
) -> None:
    team_id, key = await new_team(admin)
    request_id = new_id("who-filter")
    body = {"messages": [{"role": "user", "content": "forbidden-violence"}]}
    headers = {"api-key": key, "x-request-id": request_id, "x-usage-tags": "team=other"}
    async with httpx.AsyncClient(base_url=host.url, headers=headers, timeout=60) as client:
        answer = await client.post("/chat", json=body)
    assert answer.status_code == 400, answer.text
    events = await docs_by_client_request_id(store, CONTENT_FILTER_EVENTS, request_id)
    assert [e["team"] for e in events] == [team_id]


async def usage_groups(client: httpx.AsyncClient, path: str, group_by: str) -> dict[str, int]:
    answer = await client.get(path, params={"group_by": group_by})
    assert answer.status_code == 200, answer.text
    return {g["key"]: g["calls"] for g in answer.json()["groups"] if g["key"] is not None}


async def test_a_team_s_usage_is_its_own_and_the_platform_sees_every_team(
    host: AppHost, admin: httpx.AsyncClient
) -> None:
    """`/api/usage` with a team's key sums that team's calls only, whatever their tags say;
    `/api/usage/all` (the master key) shows every team, `group_by=team`."""
    run = new_id("run")
    teams = [await new_team(admin) for _ in range(2)]
    for team_id, key in teams:
        body = {"messages": [{"role": "user", "content": "hi"}], "tags": {"run": run}}
        async with httpx.AsyncClient(base_url=host.url, headers={"api-key": key}) as c:
            for _ in range(2 if team_id == teams[0][0] else 1):
                answer = await c.post("/chat", json=body, timeout=60)
                assert answer.status_code == 200, answer.text
    (first, first_key), (second, _) = teams
    async with httpx.AsyncClient(base_url=host.url, headers={"api-key": first_key}) as mine:
        for _ in range(100):  # the roll-up timer runs every 2 s here
            platform = await usage_groups(admin, "/usage/all", "team")
            if platform.get(first) == 2 and platform.get(second) == 1:
                break
            await asyncio.sleep(0.2)
        assert (platform.get(first), platform.get(second)) == (2, 1)
        assert await usage_groups(mine, "/usage", "tag:run") == {run: 2}
        assert set(await usage_groups(mine, "/usage", "team")) == {first}
        # The platform's view is the master key's: a team's key is refused by the host.
        assert (await mine.get("/usage/all")).status_code == 401


async def test_make_run_s_local_team_key_is_kept_and_renewed(host: AppHost, tmp_path: Path) -> None:
    """`make run` makes the `local` team and prints the same key on every start; a lost key is
    replaced (the oldest of two live keys revoked), through the admin API."""

    def works(key: str) -> bool:
        answer = httpx.get(f"{host.url}/usage", headers={"api-key": key}, timeout=30)
        return answer.status_code == 200

    first = ensure_local_team(host.url, MASTER_KEY, tmp_path)
    assert works(first)
    assert ensure_local_team(host.url, MASTER_KEY, tmp_path) == first
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o077 == 0
    (tmp_path / KEY_FILE).unlink()
    second = ensure_local_team(host.url, MASTER_KEY, tmp_path)
    (tmp_path / KEY_FILE).unlink()
    third = ensure_local_team(host.url, MASTER_KEY, tmp_path)
    assert len({first, second, third}) == 3
    assert works(third)
    assert works(second)
    assert not works(first)  # revoked to make room: two live keys at most
