"""Who pays, and how much one caller may ask for, end to end (issue 14): the real
function_app.py under the local Functions host with App Service authentication's principal
header trusted (`ENTRA_AUTH=true`, as infra's `entraAuth` sets it), the simulator, Azurite and
the Cosmos DB server.

- A job submitted by a signed-in caller leaves usage records naming that caller.
- The gateway routes hold output tokens to CHAT_MAX_TOKENS_LIMIT and apply the per-caller
  limit (chat and embeddings), answering in the shape the openai SDK raises from.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from shared.core.store import USAGE, Store
from tests.support.jobs_stack import JobsStack, stack_fixture, submit, wait_job

LIMIT = 3  # CHAT_MAX_TOKENS_LIMIT: far below what the simulator answers by default
TPM = 600  # CHAT_CALLER_TPM


stack = stack_fixture(
    "who",
    settings={
        "ENTRA_AUTH": "true",
        "CHAT_MAX_TOKENS_LIMIT": str(LIMIT),
        "CHAT_CALLER_TPM": str(TPM),
    },
)


def signed_in(object_id: str) -> dict[str, str]:
    """The headers App Service authentication sets for a signed-in caller with every role."""
    claims = [
        {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": object_id},
        *({"typ": "roles", "val": role} for role in ("Chat.Invoke", "Jobs.Submit")),
    ]
    principal = {"auth_typ": "aad", "role_typ": "roles", "claims": claims}
    return {"x-ms-client-principal": base64.b64encode(json.dumps(principal).encode()).decode()}


def new_principal() -> str:
    return str(uuid.uuid4())


async def until_early_in_a_minute() -> None:
    """The shared limit counts whole wall-clock minutes: start a test that spends a caller's
    minute early in one, so its few seconds cannot cross into the next (an empty bucket)."""
    into = time.time() % 60
    if into > 40:
        await asyncio.sleep(60 - into + 0.5)


def sdk(stack: JobsStack, object_id: str) -> AsyncOpenAI:
    """The openai SDK against the gateway, as the signed-in caller; no retries, so a 429 is
    seen rather than waited out."""
    return AsyncOpenAI(
        base_url=f"{stack.host.url}/v1",
        api_key=stack.host.team_key,
        default_headers={**stack.host.headers(), **signed_in(object_id)},
        max_retries=0,
        timeout=30,
    )


async def usage_of_job(store: Store, job_id: str) -> list[dict[str, Any]]:
    return await store.query(USAGE, "SELECT * FROM c WHERE c.job_id = @j", {"@j": job_id})


# --- cost follows the signed-in caller into jobs -------------------------------------------


async def test_a_signed_in_callers_jobs_are_attributed_to_it(
    stack: JobsStack, store: Store
) -> None:
    """Finding: jobs' usage records carried no principal, only caller-supplied tags. A
    `principal_id` in the body cannot name someone else."""
    me = new_principal()
    tickets = [{"id": f"t{i}", "text": f"ticket {i} about billing"} for i in range(3)]
    async with httpx.AsyncClient(
        base_url=stack.host.url, headers={**stack.host.headers(), **signed_in(me)}, timeout=30
    ) as http:
        embedding = await submit(http, "embedding", {"items": tickets})
        assert (await wait_job(http, embedding))["status"] == "succeeded"
        assert {r["principal_id"] for r in await usage_of_job(store, embedding)} == {me}
        body = {"items": tickets, "labels": ["billing", "shipping"], "principal_id": "boss"}
        classification = await submit(http, "classification", body)
        assert (await wait_job(http, classification))["status"] == "succeeded"
        assert {r["principal_id"] for r in await usage_of_job(store, classification)} == {me}


# --- the gateway's token controls ----------------------------------------------------------


async def test_gateway_output_tokens_default_to_the_limit_and_refuse_more(
    stack: JobsStack,
) -> None:
    """Finding: the gateway sent no max tokens when the caller gave none, so the model's own
    default applied, bypassing CHAT_MAX_TOKENS_LIMIT; more than the limit went through."""
    messages: Any = [{"role": "user", "content": "tell me about the local stack"}]
    async with sdk(stack, new_principal()) as client:
        answer = await client.chat.completions.create(model="gpt-4o", messages=messages)
        assert answer.choices[0].finish_reason == "length"
        assert answer.usage is not None
        assert answer.usage.completion_tokens <= LIMIT
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=messages, stream=True
        )
        finishes = [c.choices[0].finish_reason async for c in stream if c.choices]
        assert finishes[-1] == "length"
        for field in ("max_tokens", "max_completion_tokens"):
            with pytest.raises(openai.BadRequestError) as refused:
                await client.chat.completions.create(
                    model="gpt-4o", messages=messages, **{field: LIMIT + 1}
                )
            error = refused.value.response.json()["error"]
            assert error["code"] == "invalid_request"
            assert "CHAT_MAX_TOKENS_LIMIT" in error["message"]


async def test_gateway_chat_is_held_to_the_callers_tokens_per_minute(stack: JobsStack) -> None:
    """Finding: the gateway routes skipped CHAT_CALLER_TPM. About 400 prompt tokens a call:
    the second does not fit in 600 a minute; another caller is not held back."""
    await until_early_in_a_minute()
    messages: Any = [{"role": "user", "content": "word " * 320}]
    async with sdk(stack, new_principal()) as client:
        await client.chat.completions.create(model="gpt-4o", messages=messages)
        with pytest.raises(openai.RateLimitError) as refused:
            await client.chat.completions.create(model="gpt-4o", messages=messages)
    assert int(refused.value.response.headers["retry-after"]) >= 1
    assert refused.value.response.json()["error"]["code"] == "rate_limited"
    async with sdk(stack, new_principal()) as other:
        await other.chat.completions.create(model="gpt-4o", messages=messages)


async def test_gateway_embeddings_count_input_tokens_against_the_caller(
    stack: JobsStack,
) -> None:
    await until_early_in_a_minute()
    text = "word " * 320  # about 400 tokens
    async with sdk(stack, new_principal()) as client:
        await client.embeddings.create(model="text-embedding-3-small", input=[text])
        with pytest.raises(openai.RateLimitError):
            await client.embeddings.create(model="text-embedding-3-small", input=[text])
