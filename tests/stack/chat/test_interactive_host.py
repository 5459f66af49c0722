"""Interactive calls against a tight quota, and learned output caps, end to end: the real
function_app.py under the local Functions host and a simulator of its own.

A person is never held on a long retry-after (INTERACTIVE_MAX_WAIT_SECONDS, 5 s): /api/chat
(JSON and SSE) and the gateway answer 429 with Retry-After at once, nothing retried upstream;
while the backend cools the next call is refused without going upstream at all. A chat naming
no cap is sent with the learned cap once CHAT_CAP_MIN_SAMPLES answers were seen."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncAzureOpenAI

from devstack.aoai_simulator import (
    DeploymentConfig,
    RunningSimulator,
    SimulatorConfig,
    start_simulator,
)
from devstack.aoai_simulator.config import AnswerLengthConfig, default_deployments
from devstack.hosted_app import AppHost, fresh_queues
from tests.support.hosts import app_host
from tests.support.samples import chat_body

API_VERSION = "2025-04-01-preview"
TIGHT_TPM = 5000  # one chat capped at 4,096 tokens fits a minute; the second does not
MIN_SAMPLES = 20
DEPLOYMENTS = {"a": "chat-a", "b": "chat-b", "c": "chat-c", "d": "chat-d"}
QUICK = 5.0  # INTERACTIVE_MAX_WAIT_SECONDS: a refusal comes well within it


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    tight = [
        DeploymentConfig(name=name, model="gpt-5.4", kind="chat", tpm=TIGHT_TPM)
        for name in ("chat-a", "chat-b", "chat-c")
    ]
    roomy = DeploymentConfig(name="chat-d", model="gpt-5.4", kind="chat")
    config = SimulatorConfig(
        deployments=[*default_deployments(), *tight, roomy],
        answer_length=AnswerLengthConfig(median=100, p99=200),
    )
    with start_simulator(config, port=0) as running:
        yield running


@pytest.fixture(scope="module")
def host(
    app_environ: dict[str, str], sim: RunningSimulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppHost]:
    environ = {
        **app_environ,
        **fresh_queues("interactive"),
        "AZURE_OPENAI_ENDPOINT": sim.url,
        "AZURE_OPENAI_API_KEY": sim.api_key,
        "AOAI_DEPLOYMENTS": json.dumps(DEPLOYMENTS),
        "CHAT_CAP_MIN_SAMPLES": str(MIN_SAMPLES),
    }
    with app_host(environ, tmp_path_factory.mktemp("interactive")) as running:
        yield running


@pytest.fixture
async def http(host: AppHost) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=host.url, headers=host.headers(), timeout=30) as c:
        yield c


async def sim_requests(sim: RunningSimulator, deployment: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=sim.url, timeout=10) as client:
        stats = (await client.get("/sim/stats")).json()
    found: dict[str, Any] = stats["deployments"].get(deployment, {"requests": 0, "status": {}})
    return found


async def last_body(sim: RunningSimulator, deployment: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=sim.url, timeout=10) as client:
        response = await client.get(f"/sim/requests/{deployment}/last")
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(("model", "stream"), [("a", False), ("b", True)])
async def test_chat_over_the_quota_is_refused_at_once_with_retry_after(
    http: httpx.AsyncClient, sim: RunningSimulator, model: str, stream: bool
) -> None:
    deployment = DEPLOYMENTS[model]
    first = await http.post("/chat", json=chat_body("first", model=model, stream=stream))
    assert first.status_code == 200
    started = time.monotonic()
    refused = await http.post("/chat", json=chat_body("second", model=model, stream=stream))
    assert refused.status_code == 429
    assert time.monotonic() - started < QUICK
    # The simulator asked for about a minute: passed on, not slept through.
    assert int(refused.headers["Retry-After"]) > QUICK
    assert refused.json()["error"]["code"] == "rate_limited"
    seen = await sim_requests(sim, deployment)
    assert (seen["requests"], seen["status"].get("429")) == (2, 1)  # no SDK retry went out
    # While the backend cools, the next chat is refused without going upstream.
    again = await http.post("/chat", json=chat_body("third", model=model, stream=stream))
    assert again.status_code == 429
    assert int(again.headers["Retry-After"]) > QUICK
    assert (await sim_requests(sim, deployment))["requests"] == 2


async def test_the_gateway_passes_azures_429_at_once(host: AppHost, sim: RunningSimulator) -> None:
    async with AsyncAzureOpenAI(
        azure_endpoint=host.url,
        api_version=API_VERSION,
        api_key=host.team_key,
        max_retries=0,
        timeout=30,
    ) as client:
        messages: Any = [{"role": "user", "content": "hello"}]
        await client.chat.completions.create(model="c", messages=messages)
        started = time.monotonic()
        with pytest.raises(openai.RateLimitError) as refused:
            await client.chat.completions.create(model="c", messages=messages)
        assert time.monotonic() - started < QUICK
    headers = refused.value.response.headers
    assert float(headers["retry-after"]) > QUICK
    assert refused.value.code == "429"  # Azure's own error body, passed as it came
    assert (await sim_requests(sim, "chat-c"))["requests"] == 2


async def test_a_chat_naming_no_cap_is_sent_the_learned_cap_after_warm_up(
    http: httpx.AsyncClient, sim: RunningSimulator
) -> None:
    lengths = []
    for index in range(MIN_SAMPLES):
        answer = await http.post("/chat", json=chat_body(f"question {index}", model="d"))
        assert answer.status_code == 200
        lengths.append(answer.json()["usage"]["completion_tokens"])
        # Until enough answers were seen, the limit (CHAT_MAX_TOKENS_LIMIT), as before.
        assert (await last_body(sim, "chat-d"))["max_completion_tokens"] == 4096
    answer = await http.post("/chat", json=chat_body("one more", model="d"))
    assert answer.status_code == 200
    sent = (await last_body(sim, "chat-d"))["max_completion_tokens"]
    # p99.5 of 20 answers (nearest rank) is the longest of them.
    assert sent == max(lengths)
    assert sent < 4096
    # A caller's own cap is sent as it is.
    await http.post("/chat", json=chat_body("capped", model="d", max_tokens=7))
    assert (await last_body(sim, "chat-d"))["max_completion_tokens"] == 7
