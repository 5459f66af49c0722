"""The gateway's streams at the service, against the Cosmos DB server and an upstream that
misbehaves on the wire: every end of a started stream (broken, hung up on, failed by a bug of
ours) ends in the gateway's wire shape and leaves its usage document and settled booking.

The happy paths and what an SDK sees through the host are in tests/stack/gateway/test_gateway.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from shared.core.errors import RateLimited
from shared.core.settings import Settings, load_settings
from shared.core.store import USAGE, Store
from shared.gateway.models import ChatCompletionsBody
from shared.gateway.service import Gateway
from shared.metering.callers import Caller, Origin
from shared.runtime import Runtime, create_runtime
from tests.support.books import BrokenFilterBooks, BrokenUsageBooks, meter_with
from tests.support.records import docs_by_request_id
from tests.support.samples import new_id

CHUNK = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": "gpt-4o"}
HELLO = {**CHUNK, "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]}
USAGE_CHUNK = {
    **CHUNK,
    "choices": [],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}


@dataclass
class Upstream:
    """A loopback Azure OpenAI that streams `chunks`, then cuts the connection (`cut`) or
    waits for the caller to close it (`hung_up` is then set)."""

    chunks: list[dict[str, Any]]
    cut: bool
    url: str = ""
    hung_up: asyncio.Event = field(default_factory=asyncio.Event)

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        await reader.readexactly(int(length.group(1)) if length else 0)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        for chunk in self.chunks:
            event = f"data: {json.dumps(chunk)}\n\n".encode()
            writer.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
        await writer.drain()
        if self.cut:
            writer.transport.abort()  # mid-body: no last chunk, no `[DONE]`
            return
        try:
            await asyncio.wait_for(reader.read(), timeout=10)  # b"" once the caller closes
            self.hung_up.set()
        finally:
            writer.close()


@asynccontextmanager
async def upstream(chunks: list[dict[str, Any]], *, cut: bool) -> AsyncIterator[Upstream]:
    fake = Upstream(chunks, cut)
    server = await asyncio.start_server(fake.answer, "127.0.0.1", 0)
    fake.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server:
        yield fake


@asynccontextmanager
async def runtime_for(
    app_environ: dict[str, str], fake: Upstream, **extra: str
) -> AsyncIterator[Runtime]:
    """A runtime whose Azure OpenAI is `fake` (the store: provisioned by the `store` fixture)."""
    settings = load_settings(
        {
            **app_environ,
            "AZURE_OPENAI_ENDPOINT": fake.url,
            "AZURE_OPENAI_API_KEY": "fake-key",
            "AOAI_MAX_RETRIES": "0",
            "AOAI_DEPLOYMENTS": "{}",
            **extra,
        }
    )
    runtime = create_runtime(settings)
    try:
        yield runtime
    finally:
        await runtime.aclose()


# One caller's minute of 300 tokens: a second call booking 200 fits only once the first
# call's booking went back down to what it used.
LIMITED = {"CHAT_CALLER_TPM": "300", "CHAT_CALLER_LIMIT_SCOPE": "instance"}


@asynccontextmanager
async def gateway_over(
    app_environ: dict[str, str], chunks: list[dict[str, Any]], *, cut: bool, **extra: str
) -> AsyncIterator[tuple[Runtime, Upstream]]:
    """A runtime whose gateway streams from a loopback upstream sending `chunks`."""
    async with upstream(chunks, cut=cut) as fake, runtime_for(app_environ, fake, **extra) as rt:
        yield rt, fake


def streamed(text: str, **extra: Any) -> ChatCompletionsBody:
    return ChatCompletionsBody.model_validate(
        {
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": text}],
            "stream": True,
            **extra,
        }
    )


async def open_stream(
    gateway: Gateway, body: ChatCompletionsBody, rid: str
) -> AsyncIterator[bytes]:
    answer = await gateway.chat(body, None, Origin(Caller(), rid, {"team": "t"}))
    assert answer.status == 200
    assert answer.stream is not None
    return answer.stream


def data_of(events: Iterable[bytes]) -> list[Any]:
    """Each event's `data:` as JSON (`[DONE]` as the string)."""
    out: list[Any] = []
    for event in events:
        assert event.startswith(b"data: "), event
        assert event.endswith(b"\n\n"), event
        payload = event[len(b"data: ") : -2].decode()
        out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


async def usage_of(store: Store, rid: str) -> dict[str, Any]:
    """The one usage document of the call the gateway was handed `rid` for (its own id)."""
    (usage,) = await docs_by_request_id(store, USAGE, rid)
    return usage


async def test_stream_broken_after_its_first_events_ends_with_an_error_event(
    app_environ: dict[str, str], store: Store
) -> None:
    """The events before the break pass as they came; then one `error` event (no `[DONE]`, as
    a broken stream from Azure has none); the call is recorded as failed with the usage the
    service had reported, and its booking settled to it: with CHAT_CALLER_TPM=300 a second
    call booking 200 fits only if the first one's 200 went back down to 5."""
    async with gateway_over(app_environ, [HELLO, USAGE_CHUNK], cut=True, **LIMITED) as (runtime, _):
        rid = new_id("gw-svc")
        body = streamed("hi", max_tokens=200)
        events = data_of([e async for e in await open_stream(runtime.gateway, body, rid)])
        second = await open_stream(runtime.gateway, body, new_id("gw-svc"))
        await second.aclose()
    assert events == [
        HELLO,
        {"error": {"code": "upstream_error", "message": "the Azure OpenAI stream broke off"}},
    ]
    usage = await usage_of(store, rid)
    assert (usage["operation"], usage["status"], usage["total_tokens"]) == (
        "chat_stream",
        "error",
        5,
    )
    assert usage["tags"] == {"team": "t"}


async def test_stream_broken_before_any_usage_keeps_the_booking(
    app_environ: dict[str, str], store: Store
) -> None:
    """No usage reported: the booking stays at its estimate (as on /api/chat), so the second
    call of the minute is refused."""
    async with gateway_over(app_environ, [HELLO], cut=True, **LIMITED) as (runtime, _):
        rid = new_id("gw-svc")
        body = streamed("hi", max_tokens=200)
        events = data_of([e async for e in await open_stream(runtime.gateway, body, rid)])
        with pytest.raises(RateLimited):
            await open_stream(runtime.gateway, body, new_id("gw-svc"))
    assert events[-1]["error"]["code"] == "upstream_error"
    assert (await usage_of(store, rid))["status"] == "error"


async def test_caller_hanging_up_closes_the_upstream_and_records_the_call(
    app_environ: dict[str, str], store: Store
) -> None:
    async with gateway_over(app_environ, [HELLO], cut=False) as (runtime, fake):
        rid = new_id("gw-svc")
        stream = await open_stream(runtime.gateway, streamed("hi"), rid)
        assert data_of([await anext(stream)]) == [HELLO]
        await stream.aclose()  # what the server does when the client disconnects
        await asyncio.wait_for(fake.hung_up.wait(), timeout=5)
    usage = await usage_of(store, rid)
    assert (usage["operation"], usage["status"]) == ("chat_stream", "cancelled")


async def test_stream_error_not_from_the_sdk_ends_with_an_error_event_and_logs_the_request_id(
    app_settings: Settings, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = create_runtime(app_settings)
    broken = Gateway(app_settings, meter_with(runtime, BrokenFilterBooks))
    rid = new_id("gw-svc")
    with caplog.at_level(logging.ERROR):
        stream = await open_stream(
            broken, streamed("echo: calm words first then forbidden-selfharm"), rid
        )
        events = data_of([e async for e in stream])
    await runtime.aclose()
    # The stream had started: text went out before the filtered chunk failed to record.
    assert any(c["delta"].get("content") for e in events[:-1] for c in e["choices"])
    assert events[-1] == {
        "error": {"code": "internal_error", "message": "internal error; see logs"}
    }
    assert any(rid in r.getMessage() and r.exc_info for r in caplog.records)
    assert (await usage_of(store, rid))["status"] == "error"


async def test_stream_whose_usage_record_fails_still_settles_its_booking(
    app_environ: dict[str, str], store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """The stream ends as it came (the record fails after the last byte), the failure is
    logged, and the booking still goes down from 200 to the 5 tokens reported: with
    CHAT_CALLER_TPM=300 a second call booking 200 fits only then."""
    async with gateway_over(app_environ, [HELLO, USAGE_CHUNK], cut=False, **LIMITED) as (
        runtime,
        _,
    ):
        gateway = Gateway(runtime.settings, meter_with(runtime, BrokenUsageBooks))
        body = streamed("hi", max_tokens=200, stream_options={"include_usage": True})
        rid = new_id("gw-svc")
        with caplog.at_level(logging.ERROR):
            stream = await open_stream(gateway, body, rid)
            assert data_of([await anext(stream), await anext(stream)]) == [HELLO, USAGE_CHUNK]
            await stream.aclose()
        second = await open_stream(gateway, body, new_id("gw-svc"))
        await second.aclose()
    assert any(rid in r.getMessage() and "recording" in r.getMessage() for r in caplog.records)
