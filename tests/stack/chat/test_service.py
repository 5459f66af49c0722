"""The chat service against the Azure OpenAI simulator and the Cosmos DB server.

The HTTP boundary (status codes, SSE over the wire) is tested through the local Functions
host in tests/stack/http/test_function_app.py; here each failure mode is checked at the service.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from devstack.aoai_simulator import (
    DeploymentConfig,
    FaultConfig,
    RunningSimulator,
    SimulatorConfig,
    start_simulator,
)
from shared.chat.service import SSE_DONE, ChatService
from shared.core.errors import (
    ContentFiltered,
    Forbidden,
    InvalidRequest,
    RateLimited,
    UnknownModelError,
    UpstreamError,
    UpstreamTimeout,
    translate,
)
from shared.core.settings import Settings, load_settings
from shared.core.store import CONTENT_FILTER_EVENTS, USAGE, Store
from shared.metering.caller_limit import InstanceCallerLimiter
from shared.metering.callers import Caller, Principal, principal_of, require_role
from shared.metering.filter_events import hash_user
from shared.runtime import create_runtime
from tests.support.books import BrokenFilterBooks, meter_with
from tests.support.recording_server import Recorded, RecordingServer, recording_server
from tests.support.recording_server import _chat_completion as chat_completion
from tests.support.records import docs_by_request_id
from tests.support.samples import ask, new_id
from tests.support.sse import parse_frames


async def service_for(settings: Settings, store: Store) -> AsyncIterator[ChatService]:
    """The chat service of a runtime built from `settings` (`store`: provisioned first)."""
    runtime = create_runtime(settings)
    try:
        yield runtime.chat
    finally:
        await runtime.aclose()


@pytest.fixture
async def chat(app_settings: Settings, store: Store) -> AsyncIterator[ChatService]:
    async for service in service_for(app_settings, store):
        yield service


async def collect(frames: AsyncIterator[str]) -> list[Any]:
    return parse_frames([f async for f in frames])


async def test_complete_answers_and_records_usage(chat: ChatService, store: Store) -> None:
    rid = new_id()
    answer = await chat.complete(ask("Hello there", tags={"team": "search"}), rid)
    assert answer.message.content
    assert answer.deployment == "gpt-4o"
    # Azure reports the versioned model behind the deployment (the simulator's: gpt-5.4).
    assert answer.model == "gpt-5.4-2026-03-05"
    assert answer.finish_reason == "stop"
    assert answer.usage.prompt_tokens > 0
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    assert answer.content_filter is None
    (usage,) = await docs_by_request_id(store, USAGE, rid)
    assert usage["operation"] == "chat"
    assert usage["total_tokens"] == answer.usage.total_tokens
    assert usage["tags"] == {"team": "search"}
    assert usage["latency_ms"] > 0


async def test_alias_maps_to_its_deployment(chat: ChatService) -> None:
    answer = await chat.complete(ask("hi", model="default-chat"), new_id())
    assert answer.deployment == "gpt-4o"


async def test_max_tokens_cuts_with_finish_reason_length(chat: ChatService) -> None:
    answer = await chat.complete(ask("Tell me a long story", max_tokens=3), new_id())
    assert answer.finish_reason == "length"
    assert answer.usage.completion_tokens == 3


async def test_unknown_alias_is_invalid_request_listing_known_models(chat: ChatService) -> None:
    with pytest.raises(UnknownModelError) as caught:
        await chat.complete(ask("hi", model="gpt-5"), new_id())
    seen = translate(caught.value)
    assert isinstance(seen, InvalidRequest)
    assert seen.details == {
        "known_models": ["default-chat", "gpt-4o", "gpt-4o-batch", "text-embedding-3-small"]
    }


async def test_filtered_prompt_raises_and_stores_one_event(chat: ChatService, store: Store) -> None:
    rid = new_id()
    with pytest.raises(ContentFiltered) as caught:
        await chat.complete(ask("some forbidden-violence here", user="alice"), rid)
    assert caught.value.details["stage"] == "prompt"
    assert caught.value.details["categories"]["violence"].severity == "high"
    (event,) = await docs_by_request_id(store, CONTENT_FILTER_EVENTS, rid)
    assert event["stage"] == "prompt"
    assert event["source"] == "chat"
    assert event["categories"]["violence"]["filtered"] is True
    assert event["deployment"] == "gpt-4o"
    assert event["text"] is None
    assert event["user_hash"]
    assert event["user_hash"] != "alice"
    (usage,) = await docs_by_request_id(store, USAGE, rid)
    assert (usage["status"], usage["total_tokens"]) == ("content_filter", 0)


async def test_filtered_prompt_text_is_kept_only_when_configured(
    app_environ: dict[str, str], store: Store
) -> None:
    settings = load_settings({**app_environ, "CONTENT_FILTER_STORE_TEXT": "true"})
    rid = new_id()
    async for chat in service_for(settings, store):
        with pytest.raises(ContentFiltered):
            await chat.complete(ask("forbidden-violence again"), rid)
    (event,) = await docs_by_request_id(store, CONTENT_FILTER_EVENTS, rid)
    assert event["text"] == "forbidden-violence again"


async def test_filtered_completion_is_flagged_and_stored(chat: ChatService, store: Store) -> None:
    rid = new_id()
    answer = await chat.complete(ask("echo: fine words then forbidden-selfharm and more"), rid)
    assert answer.finish_reason == "content_filter"
    assert answer.content_filter is not None
    assert answer.content_filter.stage == "completion"
    assert answer.content_filter.categories["self_harm"].filtered
    (event,) = await docs_by_request_id(store, CONTENT_FILTER_EVENTS, rid)
    assert event["stage"] == "completion"
    (usage,) = await docs_by_request_id(store, USAGE, rid)
    assert usage["status"] == "content_filter"


async def test_stream_frames_in_order_with_usage_in_done(chat: ChatService, store: Store) -> None:
    rid = new_id()
    frames = await collect(await chat.open_stream(ask("echo: one two three four"), rid))
    assert frames[-1] == "[DONE]"
    done = frames[-2]
    deltas = frames[:-2]
    assert all(f["type"] == "delta" for f in deltas)
    assert len(deltas) > 1
    assert "".join(f["content"] for f in deltas) == "one two three four"
    assert done["type"] == "done"
    assert done["finish_reason"] == "stop"
    assert done["usage"]["completion_tokens"] > 0
    (usage,) = await docs_by_request_id(store, USAGE, rid)
    assert usage["operation"] == "chat_stream"
    assert usage["status"] == "ok"
    assert usage["completion_tokens"] == done["usage"]["completion_tokens"]


async def test_stream_filtered_mid_way_ends_with_a_filter_frame(
    chat: ChatService, store: Store
) -> None:
    rid = new_id()
    stream = await chat.open_stream(ask("echo: calm words first then forbidden-selfharm"), rid)
    frames = await collect(stream)
    assert frames[0]["type"] == "delta"  # text before the hit was already sent
    assert frames[-2]["type"] == "content_filter"
    assert frames[-2]["stage"] == "completion"
    assert frames[-2]["categories"]["self_harm"]["filtered"] is True
    assert frames[-1] == "[DONE]"
    assert not any(f != "[DONE]" and f["type"] == "done" for f in frames)
    (event,) = await docs_by_request_id(store, CONTENT_FILTER_EVENTS, rid)
    assert event["stage"] == "completion"


async def test_stream_with_filtered_prompt_raises_before_any_frame(
    chat: ChatService, store: Store
) -> None:
    rid = new_id()
    with pytest.raises(ContentFiltered):
        await chat.open_stream(ask("forbidden-violence"), rid)
    assert len(await docs_by_request_id(store, CONTENT_FILTER_EVENTS, rid)) == 1


async def test_caller_hanging_up_closes_the_stream_and_records_it(
    chat: ChatService, store: Store
) -> None:
    rid = new_id()
    stream = await chat.open_stream(ask("echo: " + " ".join(["word"] * 50)), rid)
    first = await anext(stream)
    assert first.startswith("data: ")
    await stream.aclose()  # what the server does when the client disconnects
    (usage,) = await docs_by_request_id(store, USAGE, rid)
    assert usage["status"] == "cancelled"


@pytest.fixture
def faulty_simulator() -> Iterator[RunningSimulator]:
    config = SimulatorConfig(
        deployments=[
            DeploymentConfig(name="gpt-4o", model="gpt-4o", kind="chat", rpm=1),
        ],
    )
    with start_simulator(config, port=0) as sim:
        yield sim


def settings_for(
    app_environ: dict[str, str], sim: RunningSimulator | RecordingServer, **extra: str
) -> Settings:
    return load_settings(
        {
            **app_environ,
            "AZURE_OPENAI_ENDPOINT": sim.url,
            "AZURE_OPENAI_API_KEY": getattr(sim, "api_key", "recorder-key"),
            "AOAI_MAX_RETRIES": "0",
            "AOAI_DEPLOYMENTS": "{}",
            **extra,
        }
    )


async def test_rate_limit_after_retries_is_rate_limited_with_retry_after(
    app_environ: dict[str, str], faulty_simulator: RunningSimulator, store: Store
) -> None:
    settings = settings_for(app_environ, faulty_simulator)
    async for chat in service_for(settings, store):
        await chat.complete(ask("first"), new_id())
        throttled = new_id()
        with pytest.raises(RateLimited) as caught:
            await chat.complete(ask("second", tags={"team": "t"}), throttled)
    assert caught.value.retry_after is not None
    assert caught.value.retry_after > 0
    assert int(caught.value.headers["Retry-After"]) >= 1
    (usage,) = await docs_by_request_id(store, USAGE, throttled)  # failed calls are recorded too
    assert (usage["status"], usage["total_tokens"], usage["tags"]) == ("error", 0, {"team": "t"})


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (FaultConfig(error_500=1.0), UpstreamError),
        (FaultConfig(error_503=1.0), UpstreamError),
        (FaultConfig(hang=1.0, hang_seconds=5), UpstreamTimeout),
    ],
)
async def test_upstream_failures_map_to_502_and_504(
    app_environ: dict[str, str], store: Store, fault: FaultConfig, expected: type[Exception]
) -> None:
    with start_simulator(SimulatorConfig(faults={"chat": fault}), port=0) as sim:
        settings = settings_for(app_environ, sim, AOAI_TIMEOUT_SECONDS="0.5")
        async for chat in service_for(settings, store):
            with pytest.raises(expected):
                await chat.complete(ask("hi"), new_id())


async def test_stream_broken_off_upstream_ends_with_an_error_frame(
    app_environ: dict[str, str], store: Store
) -> None:
    with start_simulator(SimulatorConfig(faults={"chat": FaultConfig(drop=1.0)}), port=0) as sim:
        settings = settings_for(app_environ, sim)
        rid = new_id()
        async for chat in service_for(settings, store):
            frames = await collect(await chat.open_stream(ask("hi"), rid))
    assert frames[-2]["type"] == "error"
    assert frames[-2]["error"]["code"] == "upstream_error"
    assert frames[-1] == "[DONE]"
    (usage,) = await docs_by_request_id(store, USAGE, rid)
    assert usage["status"] == "error"


async def test_upstream_auth_failure_is_502_without_the_key(
    app_environ: dict[str, str], simulator: RunningSimulator, store: Store
) -> None:
    settings = settings_for(app_environ, simulator, AZURE_OPENAI_API_KEY="wrong-key-abc123")
    async for chat in service_for(settings, store):
        with pytest.raises(UpstreamError) as caught:
            await chat.complete(ask("hi"), new_id())
    assert "wrong-key-abc123" not in caught.value.message
    assert "401" in caught.value.message


def test_sse_done_is_the_openai_terminator() -> None:
    assert SSE_DONE == "data: [DONE]\n\n"


# --- what reaches Azure, and the per-caller limit (issue 14) -----------------------------


@pytest.fixture
def recorder() -> Iterator[RecordingServer]:
    with recording_server() as server:
        yield server


def sent(server: RecordingServer) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in server.requests if r.path.endswith("/chat/completions")]


async def test_max_tokens_is_always_sent_capped_by_the_limit(
    app_environ: dict[str, str], recorder: RecordingServer, store: Store
) -> None:
    """Finding: without `max_tokens` the model's own default applied, bypassing
    CHAT_MAX_TOKENS_LIMIT. Now the limit is sent when the caller gives none."""
    settings = settings_for(app_environ, recorder, CHAT_MAX_TOKENS_LIMIT="321")
    async for chat in service_for(settings, store):
        await chat.complete(ask("no limit given"), new_id())
        await chat.complete(ask("a limit given", max_tokens=7), new_id())
    first, second = sent(recorder)
    assert first["max_completion_tokens"] == 321
    assert second["max_completion_tokens"] == 7
    assert "max_tokens" not in first


async def test_the_user_sent_upstream_is_the_keyed_hash(
    app_environ: dict[str, str], recorder: RecordingServer, store: Store
) -> None:
    settings = settings_for(app_environ, recorder)
    async for chat in service_for(settings, store):
        await chat.complete(ask("hi", user="alice@example.com"), new_id())
    (body,) = sent(recorder)
    secret = settings.user_hash_secret.get_secret_value()
    assert body["user"] == hash_user("alice@example.com", secret)
    assert body["user"] != hashlib.sha256(b"alice@example.com").hexdigest()


async def test_one_caller_cannot_spend_more_than_its_tokens_per_minute(
    app_environ: dict[str, str], store: Store
) -> None:
    """CHAT_CALLER_TPM: each call books its estimate (max_tokens + prompt / 4); a caller
    past its minute gets 429 with Retry-After and nothing goes upstream; another caller
    (another `team` tag) is not held back. The caller's id goes into the usage record."""

    def spends_120(_: Recorded) -> tuple[int, dict[str, str], Any]:
        status, headers, body = chat_completion(_)
        body["usage"] = {"prompt_tokens": 20, "completion_tokens": 100, "total_tokens": 120}
        return status, headers, body

    with recording_server(spends_120) as server:
        await spend(app_environ, server, store)


async def spend(app_environ: dict[str, str], recorder: RecordingServer, store: Store) -> None:
    settings = settings_for(app_environ, recorder, CHAT_CALLER_TPM="250")
    async for chat in service_for(settings, store):
        rid = new_id()
        await chat.complete(
            ask("hi", max_tokens=100, tags={"team": "a"}), rid, Caller(client_request_id="mine-1")
        )
        await chat.complete(ask("hi", max_tokens=100, tags={"team": "a"}), new_id())
        with pytest.raises(RateLimited) as caught:
            await chat.complete(ask("hi", max_tokens=100, tags={"team": "a"}), new_id())
        await chat.complete(ask("hi", max_tokens=100, tags={"team": "b"}), new_id())
    assert int(caught.value.headers["Retry-After"]) >= 1
    assert len(sent(recorder)) == 3
    (usage,) = await docs_by_request_id(store, USAGE, rid)
    assert usage["client_request_id"] == "mine-1"


async def test_caller_limiter_settles_to_real_usage_and_forgets_after_a_minute() -> None:
    now = [1000.0]
    limiter = InstanceCallerLimiter(100, clock=lambda: now[0])
    booked = await limiter.reserve("c", 90)
    with pytest.raises(RateLimited):
        await limiter.reserve("c", 20)
    await limiter.settle(booked, 10)  # the call used far less than it booked
    await limiter.reserve("c", 80)
    now[0] += 61
    await limiter.reserve("c", 100)
    assert not InstanceCallerLimiter(0).enabled
    assert await InstanceCallerLimiter(0).reserve("c", 10**9) is None


def test_principal_comes_from_app_service_headers_only_when_trusted() -> None:
    claims = {
        "role_typ": "roles",
        "claims": [
            {
                "typ": "http://schemas.microsoft.com/identity/claims/objectidentifier",
                "val": "oid-1",
            },
            {"typ": "roles", "val": "Chat.Invoke"},
        ],
    }
    headers = {"x-ms-client-principal": base64.b64encode(json.dumps(claims).encode()).decode()}
    assert principal_of(headers, trusted=False) is None  # forged headers count for nothing
    principal = principal_of(headers, trusted=True)
    assert principal == Principal("oid-1", frozenset({"Chat.Invoke"}))
    require_role(principal, "Chat.Invoke", enforced=True)
    with pytest.raises(Forbidden):
        require_role(principal, "Usage.Read", enforced=True)
    with pytest.raises(Forbidden):
        require_role(None, "Chat.Invoke", enforced=True)
    require_role(None, "Usage.Read", enforced=False)


async def test_stream_error_not_from_the_sdk_ends_with_an_error_frame_and_logs_the_request_id(
    app_settings: Settings, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = create_runtime(app_settings)
    broken = ChatService(app_settings, meter_with(runtime, BrokenFilterBooks))
    rid = new_id()
    with caplog.at_level(logging.ERROR):
        stream = await broken.open_stream(
            ask("echo: calm words first then forbidden-selfharm"), rid
        )
        frames = await collect(stream)
    await runtime.aclose()
    assert frames[0]["type"] == "delta"  # the stream had started: no status line to change
    assert frames[-2]["type"] == "error"
    assert frames[-2]["error"]["code"] == "internal_error"
    assert "recording the filter event failed" not in frames[-2]["error"]["message"]
    assert frames[-1] == "[DONE]"
    assert any(rid in r.getMessage() and r.exc_info for r in caplog.records)
    (usage,) = await docs_by_request_id(store, USAGE, rid)
    assert usage["status"] == "error"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_chat_has_one_deadline_across_every_sdk_attempt(
    app_environ: dict[str, str], store: Store, stream: bool
) -> None:
    """Hung upstream, 3 s per attempt and 3 retries: 12 s or more without the deadline."""
    fault = FaultConfig(hang=1.0, hang_seconds=30)
    with start_simulator(SimulatorConfig(faults={"chat": fault}), port=0) as sim:
        settings = settings_for(
            app_environ,
            sim,
            AOAI_TIMEOUT_SECONDS="3",
            AOAI_MAX_RETRIES="3",
            CHAT_DEADLINE_SECONDS="1",
        )
        rid = new_id()
        async for chat in service_for(settings, store):
            started = time.monotonic()
            call = chat.open_stream if stream else chat.complete
            with pytest.raises(UpstreamTimeout, match="CHAT_DEADLINE_SECONDS"):
                await call(ask("hi"), rid)
            elapsed = time.monotonic() - started
    assert elapsed < 8, elapsed  # generous under load; one attempt alone would take 3 s
    (usage,) = await docs_by_request_id(store, USAGE, rid)
    assert usage["status"] == "error"


@pytest.mark.parametrize("stream", [False, True])
async def test_an_answer_cut_by_a_cap_the_caller_did_not_set_is_counted(
    app_environ: dict[str, str], store: Store, stream: bool
) -> None:
    """`cut_by` in the usage document says who set the cap an answer ended at: the limit
    (the caller named none, nothing learned yet) or the caller's own."""
    settings = load_settings({**app_environ, "CHAT_MAX_TOKENS_LIMIT": "5"})
    async for chat in service_for(settings, store):
        by_limit, by_caller, whole = new_id(), new_id(), new_id()
        if stream:
            await collect(await chat.open_stream(ask("Hello there", stream=True), by_limit))
            await collect(await chat.open_stream(ask("Hi", stream=True, max_tokens=3), by_caller))
            await collect(await chat.open_stream(ask("echo: done", stream=True), whole))
        else:
            assert (await chat.complete(ask("Hello there"), by_limit)).finish_reason == "length"
            await chat.complete(ask("Hi", max_tokens=3), by_caller)
            assert (await chat.complete(ask("echo: done"), whole)).finish_reason == "stop"
    (limit,) = await docs_by_request_id(store, USAGE, by_limit)
    (caller,) = await docs_by_request_id(store, USAGE, by_caller)
    (ended,) = await docs_by_request_id(store, USAGE, whole)
    assert (limit["cut_by"], limit["completion_tokens"]) == ("limit", 5)
    assert caller["cut_by"] == "caller"
    assert ended["cut_by"] is None
