"""The HTTP API end to end: the real function_app.py under the local Functions host, the
Azure OpenAI simulator, Azurite and the Cosmos DB server, driven over loopback."""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.aoai_simulator import RunningSimulator
from devstack.emulators import EmulatorStack
from devstack.emulators.outage import FaultProxy
from devstack.emulators.processes import free_port
from devstack.hosted_app import AppHost, make_app_dir, run_app_host
from devstack.provision import provision
from devstack.run import examples
from shared.core.settings import DEFAULT_PRICES, load_settings
from shared.core.store import CONTENT_FILTER_EVENTS, USAGE, Store
from tests.support.hosts import HOST_SETTINGS, host_fixture
from tests.support.paths import REPO_ROOT
from tests.support.records import docs_by_client_request_id
from tests.support.samples import chat_body, new_id
from tests.support.simulator import requests_sent_to
from tests.support.sse import parse_frames, split_stream

ROOT = REPO_ROOT


# The SDK retries once, quickly: the simulator is told to ask for 100 ms (see `throttled`).
host = host_fixture("app", HOST_SETTINGS)


@pytest.fixture
async def http(host: AppHost) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=host.url, headers=host.headers(), timeout=30) as c:
        yield c


async def usage_written(store: Store, request_id: str) -> dict[str, Any]:
    """The one usage document of a streamed call, written when its stream ends (wait 3 s)."""
    found = await docs_by_client_request_id(store, USAGE, request_id)
    assert found, f"no usage document for {request_id}"
    (usage,) = found
    return usage


async def test_json_chat(http: httpx.AsyncClient) -> None:
    request_id = new_id("it")
    r = await http.post("/chat", json=chat_body("Hello"), headers={"x-request-id": request_id})
    assert r.status_code == 200
    assert r.headers["x-client-request-id"] == request_id
    assert r.headers["x-request-id"] != request_id  # the server's own
    body = r.json()
    assert set(body) == {
        "id",
        "model",
        "deployment",
        "message",
        "finish_reason",
        "usage",
        "content_filter",
    }
    assert body["message"]["role"] == "assistant"
    assert body["message"]["content"]
    assert body["deployment"] == "gpt-4o"
    assert body["usage"]["total_tokens"] > 0


async def test_streamed_chat_frames(http: httpx.AsyncClient, store: Store) -> None:
    request_id = new_id("it")
    r = await http.post(
        "/chat",
        json=chat_body("echo: alpha beta gamma", stream=True),
        headers={"x-request-id": request_id},
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    frames = parse_frames(split_stream(r.text))
    assert [f["type"] for f in frames[:-2]] == ["delta"] * (len(frames) - 2)
    assert "".join(f["content"] for f in frames[:-2]) == "alpha beta gamma"
    assert frames[-2]["type"] == "done"
    assert frames[-2]["usage"]["completion_tokens"] == 3
    assert frames[-1] == "[DONE]"
    (usage,) = await docs_by_client_request_id(store, USAGE, request_id)
    assert usage["operation"] == "chat_stream"


@asynccontextmanager
async def slow_stream(
    http: httpx.AsyncClient, sim_control: httpx.AsyncClient, words: int
) -> AsyncIterator[tuple[httpx.Response, str]]:
    """A streamed chat of `words` tokens that the simulator paces at 100 ms a token."""
    slow = {"latency": {"per_token_ms": 100}}
    (await sim_control.patch("/sim/config", json=slow)).raise_for_status()
    request_id = new_id("it")
    text = "echo: " + " ".join(f"w{i}" for i in range(words))
    headers = {"x-request-id": request_id}
    async with http.stream(
        "POST", "/chat", json=chat_body(text, stream=True), headers=headers
    ) as r:
        assert r.status_code == 200
        yield r, request_id


async def test_first_byte_arrives_before_the_function_ends(
    http: httpx.AsyncClient, store: Store, sim_control: httpx.AsyncClient
) -> None:
    """The usage document is written when the function's stream ends; the first frame must
    reach the client while it does not exist yet."""
    async with slow_stream(http, sim_control, words=30) as (r, request_id):
        lines = r.aiter_lines()
        assert (await anext(lines)).startswith('data: {"type":"delta"')
        assert await docs_by_client_request_id(store, USAGE, request_id, tries=1) == []
        rest = [line async for line in lines]
    assert [line for line in rest if line][-1] == "data: [DONE]"
    assert (await usage_written(store, request_id))["status"] == "ok"


async def test_caller_hanging_up_ends_the_upstream_stream(
    http: httpx.AsyncClient, store: Store, sim_control: httpx.AsyncClient
) -> None:
    """Closing the connection after the first frame closes the function's generator, which
    closes the upstream stream and records the call as cancelled."""
    async with slow_stream(http, sim_control, words=50) as (r, request_id):
        assert (await anext(r.aiter_lines())).startswith('data: {"type":"delta"')
    # Leaving the block closed the connection, about 5 s before the stream would end.
    assert (await usage_written(store, request_id))["status"] == "cancelled"


async def test_filtered_prompt_is_400_with_categories_and_one_event(
    http: httpx.AsyncClient, store: Store
) -> None:
    request_id = new_id("it")
    r = await http.post(
        "/chat",
        json=chat_body("forbidden-violence please", user="bob"),
        headers={"x-request-id": request_id},
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "content_filter"
    assert error["details"]["categories"]["violence"] == {
        "filtered": True,
        "severity": "high",
        "detected": None,
    }
    (event,) = await docs_by_client_request_id(store, CONTENT_FILTER_EVENTS, request_id)
    assert event["stage"] == "prompt"
    assert event["text"] is None


async def test_filtered_completion_is_flagged_with_one_event(
    http: httpx.AsyncClient, store: Store
) -> None:
    request_id = new_id("it")
    r = await http.post(
        "/chat",
        json=chat_body("echo: all good then forbidden-selfharm"),
        headers={"x-request-id": request_id},
    )
    assert r.status_code == 200
    body = r.json()
    assert body["finish_reason"] == "content_filter"
    assert body["content_filter"]["stage"] == "completion"
    assert body["content_filter"]["categories"]["self_harm"]["filtered"] is True
    assert len(await docs_by_client_request_id(store, CONTENT_FILTER_EVENTS, request_id)) == 1


async def test_filtered_mid_stream_ends_with_filter_frame_and_one_event(
    http: httpx.AsyncClient, store: Store
) -> None:
    request_id = new_id("it")
    r = await http.post(
        "/chat",
        json=chat_body("echo: fine words then forbidden-selfharm", stream=True),
        headers={"x-request-id": request_id},
    )
    assert r.status_code == 200
    frames = parse_frames(split_stream(r.text))
    assert frames[0]["type"] == "delta"
    assert frames[-2]["type"] == "content_filter"
    assert frames[-1] == "[DONE]"
    assert len(await docs_by_client_request_id(store, CONTENT_FILTER_EVENTS, request_id)) == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_rate_limit_passes_through_with_retry_after(
    http: httpx.AsyncClient, sim_control: httpx.AsyncClient, stream: bool
) -> None:
    tight = {"deployments": {"gpt-4o": {"rpm": 1}}, "rate_limit": {"retry_after_ms": 100}}
    (await sim_control.patch("/sim/config", json=tight)).raise_for_status()
    (await sim_control.post("/sim/reset", json={"config": False})).raise_for_status()
    assert (await http.post("/chat", json=chat_body("one"))).status_code == 200
    r = await http.post("/chat", json=chat_body("two", stream=stream))
    assert r.status_code == 429
    assert r.headers["retry-after"] == "1"
    assert r.json()["error"]["code"] == "rate_limited"
    gpt4o = (await sim_control.get("/sim/stats")).json()["deployments"]["gpt-4o"]
    # One answered call, then the app's call and the SDK's one retry, both throttled.
    assert (gpt4o["requests"], gpt4o["throttled"], gpt4o["retries"]) == (3, 2, 1)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"messages": []}, 400, "invalid_request"),
        (chat_body("x", temperature=9), 400, "invalid_request"),
        (chat_body("x", model="gpt-5"), 400, "invalid_request"),
        (chat_body("x" * (5 * 1024 * 1024)), 413, "too_large"),
    ],
)
async def test_bad_requests(
    http: httpx.AsyncClient, body: dict[str, Any], status: int, code: str
) -> None:
    r = await http.post("/chat", json=body)
    assert r.status_code == status
    assert r.json()["error"]["code"] == code


async def test_unknown_alias_lists_known_models(http: httpx.AsyncClient) -> None:
    r = await http.post("/chat", json=chat_body("x", model="gpt-5"))
    assert "gpt-4o" in r.json()["error"]["details"]["known_models"]


async def test_body_that_is_not_json_is_400(http: httpx.AsyncClient) -> None:
    r = await http.post("/chat", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["details"][0]["type"] == "json_invalid"


async def test_function_key_is_required(host: AppHost) -> None:
    async with httpx.AsyncClient(base_url=host.url) as anonymous:
        assert (await anonymous.post("/chat", json=chat_body("hi"))).status_code == 401
        assert (await anonymous.get("/health/details")).status_code == 401
        health = await anonymous.get("/health")
        assert (await anonymous.get("/openapi.json")).json()["openapi"].startswith("3.")
    # Anonymous callers learn the status only: no dependency names, latencies or errors.
    assert (health.status_code, health.json()) == (200, {"status": "ok"})


def test_the_local_host_never_logs_the_function_key(host: AppHost) -> None:
    """Finding: the key went into .devstack/functions-host.log. The host's own output (what
    `make run` writes to that file) names the setting, never the value."""
    text = host.log.read_text()
    assert "LOCAL_FUNCTION_KEY" in text
    assert host.key not in text


async def test_a_chunked_body_past_the_limit_is_413(http: httpx.AsyncClient) -> None:
    async def chunks() -> Any:
        for _ in range(6):
            yield b" " * (1024 * 1024)

    r = await http.post("/chat", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "too_large"


async def test_usage_groups_by_tag_with_cost(http: httpx.AsyncClient) -> None:
    team = f"team-{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        r = await http.post("/chat", json=chat_body("count me", tags={"team": team}))
        assert r.status_code == 200
    # The report reads roll-ups (USAGE_ROLLUP_SCHEDULE: every 2 s on test hosts).
    for _ in range(150):
        r = await http.get("/usage", params={"group_by": "tag:team"})
        assert r.status_code == 200
        found = [g for g in r.json()["groups"] if g["key"] == team]
        if found and found[0]["calls"] == 2:
            break
        await asyncio.sleep(0.2)
    (group,) = found
    assert group["calls"] == 2
    assert group["estimated_cost_usd"] > 0
    price = DEFAULT_PRICES["gpt-5.4"]  # the model behind the local chat deployment
    expected = (
        group["prompt_tokens"] * price.input + group["completion_tokens"] * price.output
    ) / 1e6
    assert group["estimated_cost_usd"] == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize(
    "params",
    [
        {"group_by": "colour"},
        {"since": "yesterday"},
        {"since": "2026-01-02", "until": "2026-01-01"},
        {"until": "0001-01-01"},  # was a 500 (OverflowError)
        {"since": "9999-12-31T23:59:59"},
        {"until": "0001-01-01T00:00:00+14:00"},
    ],
)
async def test_usage_rejects_bad_queries(http: httpx.AsyncClient, params: dict[str, str]) -> None:
    r = await http.get("/usage", params=params)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_request"


async def test_usage_with_a_malformed_stored_document_is_a_clean_answer(
    http: httpx.AsyncClient, store: Store
) -> None:
    """A stored document the model refuses is our fault, not the caller's: never a 400, and
    never pydantic's text (which names fields and echoes values)."""
    day = "2003-03-03"  # a day of its own: no other test's window reads it
    await store.upsert(
        USAGE,
        {"id": f"bad-{uuid.uuid4()}", "day": day, "timestamp": "not a time", "total_tokens": "x"},
    )
    r = await http.get("/usage", params={"since": f"{day}T00:00:00", "until": f"{day}T12:00:00"})
    # The report may skip what it cannot read (200) or refuse cleanly (5xx); never a 400.
    assert r.status_code == 200 or r.status_code >= 500, r.text
    body = r.json()
    if r.status_code >= 500:
        assert set(body) == {"error"}
        assert set(body["error"]) <= {"code", "message", "details"}
        assert body["error"]["code"] in ("internal_error", "unavailable")
    for leak in ("validation", "pydantic", "not a time", "timestamp", "Traceback"):
        assert leak not in r.text
    assert r.headers["x-request-id"]


async def test_health_ok(http: httpx.AsyncClient) -> None:
    r = await http.get("/health/details")
    assert r.status_code == 200
    assert {name: c["ok"] for name, c in r.json()["checks"].items()} == {
        "cosmos": True,
        "queues": True,
        "azure_openai": True,
    }


async def test_with_cosmos_down_chat_still_answers_usage_is_503_and_nothing_is_lost(
    app_environ: dict[str, str], tmp_path: Path, store: Store, emulators: EmulatorStack
) -> None:
    """Health says 503; a paid-for chat answer is kept (its usage written behind to the
    outbox queue), for a team whose key the instance read before the outage (the last known
    team stands in, shared/metering/team_directory.py); the usage report says 503, not 500;
    with Cosmos DB back the outbox drains into the usage container."""
    outbox = f"outbox-{uuid.uuid4().hex[:12]}"
    request_id = new_id("it")
    with FaultProxy(emulators.ports.cosmos) as proxy:
        environ = {
            **app_environ,
            **HOST_SETTINGS,
            "OUTBOX_QUEUE": outbox,
            "COSMOS_ENDPOINT": proxy.endpoint(),
        }
        await provision(load_settings(environ))
        with run_app_host(make_app_dir(tmp_path / "down", environ)) as down:
            headers = down.headers()
            async with httpx.AsyncClient(base_url=down.url, headers=headers, timeout=60) as c:
                assert (await c.post("/chat", json=chat_body("Hi"))).status_code == 200
                proxy.cut()
                health = await c.get("/health/details")
                chat = await c.post(
                    "/chat", json=chat_body("Hello"), headers={"x-request-id": request_id}
                )
                usage = await c.get("/usage")
            assert health.status_code == 503
            assert health.json()["checks"]["cosmos"]["ok"] is False
            assert health.json()["checks"]["queues"]["ok"] is True
            assert chat.status_code == 200, chat.text
            assert chat.json()["usage"]["total_tokens"] > 0
            assert usage.status_code == 503
            assert usage.json()["error"]["code"] == "unavailable"
            assert await docs_by_client_request_id(store, USAGE, request_id, tries=1) == []
            proxy.restore()
            # The drain attempt during the outage put the record back for 5 s.
            found = await docs_by_client_request_id(store, USAGE, request_id, tries=300)
    assert [d["total_tokens"] for d in found] == [chat.json()["usage"]["total_tokens"]]


async def test_with_cosmos_down_a_key_never_read_is_503_and_nothing_goes_upstream(
    host: AppHost, app_environ: dict[str, str], tmp_path: Path, simulator: RunningSimulator
) -> None:
    """A team key the instance has not read cannot be checked: 503, not a call upstream."""
    dead = f"https://127.0.0.1:{free_port()}"
    environ = {**app_environ, **HOST_SETTINGS, "COSMOS_ENDPOINT": dead}
    with run_app_host(make_app_dir(tmp_path / "dead", environ)) as down:
        async with httpx.AsyncClient(base_url=down.url, timeout=60) as c:
            before = await requests_sent_to(simulator.url)
            chat = await c.post("/chat", json=chat_body("Hi"), headers={"api-key": host.team_key})
            after = await requests_sent_to(simulator.url)
    assert chat.status_code == 503, chat.text
    assert chat.json()["error"]["code"] == "unavailable"
    assert after == before


def test_missing_setting_stops_start_up_naming_it(
    app_environ: dict[str, str], tmp_path: Path
) -> None:
    environ = {k: v for k, v in app_environ.items() if k != "COSMOS_ENDPOINT"}
    app_dir = make_app_dir(tmp_path / "app", environ)
    with pytest.raises(RuntimeError) as caught, run_app_host(app_dir, timeout=30):
        pass
    assert "missing required setting: COSMOS_ENDPOINT" in str(caught.value)


def test_log_level_is_applied_to_the_apps_own_loggers(
    host: AppHost, app_environ: dict[str, str], tmp_path: Path
) -> None:
    """`runtime created` is an INFO line of shared.runtime, written on the first request."""
    quiet_dir = make_app_dir(
        tmp_path / "quiet", {**app_environ, **HOST_SETTINGS, "LOG_LEVEL": "WARNING"}
    )
    with run_app_host(quiet_dir) as quiet:
        for running in (host, quiet):
            with httpx.Client(base_url=running.url, headers=running.headers(), timeout=30) as c:
                c.post("/chat", json=chat_body("hi")).raise_for_status()
        quiet_log = quiet.log.read_text()
    assert "runtime created" in host.log.read_text()  # LOG_LEVEL unset: INFO
    assert "runtime created" not in quiet_log


def test_settings_used_here_are_valid(app_environ: dict[str, str]) -> None:
    load_settings({**app_environ, **HOST_SETTINGS})


def curl_commands(text: str) -> list[list[str]]:
    """The curl command lines of `make run`'s printed examples, as argv lists."""
    joined = text.replace("\\\n", " ")
    return [
        shlex.split(line[line.index("curl") :]) for line in joined.splitlines() if "curl" in line
    ]


async def test_make_run_examples_work_as_printed(host: AppHost) -> None:
    """Every example a newcomer copies from `make run` answers as its comment says."""
    commands = curl_commands(examples(host.url, host.team_key))
    assert len(commands) == 7
    async with httpx.AsyncClient(timeout=30) as client:
        for argv in commands:
            headers = dict(argv[i + 1].split(": ", 1) for i, arg in enumerate(argv) if arg == "-H")
            body = next((argv[i + 1] for i, arg in enumerate(argv) if arg == "-d"), None)
            url = argv[-1]
            if body is None:
                r = await client.get(url, headers=headers)
            else:
                r = await client.post(url, content=body, headers=headers)
            expected = 400 if body and "forbidden" in body else 200
            if url.endswith("/jobs/classifications"):
                expected = 202
            assert r.status_code == expected, (argv, r.text)
        # The job example's GET, repeated, shows it finished with labels that follow the text.
        for _ in range(120):
            r = await client.get(url_of(commands, "/jobs/example-1"), headers=host.headers())
            job = r.json()
            if job["status"] == "succeeded":
                break
            await asyncio.sleep(0.25)
    labels = {r["item_id"]: r["labels"] for r in job["results"]}
    assert labels == {"t1": ["billing"], "t2": ["shipping"]}


def url_of(commands: list[list[str]], suffix: str) -> str:
    return next(argv[-1] for argv in commands if argv[-1].endswith(suffix))


def docs_python_example(path: Path, heading: str) -> str:
    """The first ```python block after `heading` in a Markdown file."""
    text = path.read_text()
    after = text[text.index(heading) :]
    start = after.index("```python\n") + len("```python\n")
    return after[start : after.index("```", start)]


async def test_the_jobs_doc_python_example_works_as_printed(
    host: AppHost, emulators: EmulatorStack, http: httpx.AsyncClient
) -> None:
    """docs/jobs.md's azure-storage-queue example, run as printed, gives a finished job."""
    code = docs_python_example(ROOT / "docs" / "jobs.md", "### Python (azure-storage-queue)")
    env = {
        **os.environ,
        "AzureWebJobsStorage": emulators.storage_connection_string,
        "TEAM": host.team,  # the team whose key `http` presents
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    job_id = out.decode().strip()
    for _ in range(120):
        r = await http.get(f"/jobs/{job_id}")
        if r.status_code == 200 and r.json()["status"] == "succeeded":
            break
        await asyncio.sleep(0.25)
    labels = {x["item_id"]: x["labels"] for x in r.json()["results"]}
    assert labels == {"t1": ["billing"], "t2": ["shipping"]}
    assert r.json()["tags"] == {"team": "support"}
