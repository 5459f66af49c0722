"""LangChain and LlamaIndex against the Azure OpenAI-compatible routes, unchanged: their Azure
OpenAI classes pointed at the real function_app.py under the local Functions host, with the
simulator, Azurite and the Cosmos DB server behind it. Every call leaves one usage document
with the tags its client sent in `x-usage-tags`; every filtered call leaves one
content-filter event.

The frameworks' sync calls block, so they run in a thread (the store is read on the loop).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from langchain_openai import AzureChatOpenAI, AzureOpenAIEmbeddings
from llama_index.core.base.llms.types import ChatMessage
from llama_index.embeddings.azure_openai import AzureOpenAIEmbedding
from llama_index.llms.azure_openai import AzureOpenAI as LlamaAzureOpenAI
from pydantic import BaseModel, Field

from devstack.hosted_app import AppHost
from shared.core.store import CONTENT_FILTER_EVENTS, USAGE, Store
from tests.support.hosts import HOST_SETTINGS, host_fixture
from tests.support.records import docs_by_client_request_id

API_VERSION = "2025-04-01-preview"

# The frameworks' own retries are off (max_retries=0): each call below is one request to the
# app, so one usage document.
host = host_fixture("frameworks", HOST_SETTINGS)


class Call:
    """One framework call's identity: its request id (stored as `client_request_id`) and tags,
    both sent as default headers of the framework's client."""

    def __init__(self, feature: str) -> None:
        self.request_id = f"fw-{uuid.uuid4()}"
        self.tags = {"team": "frameworks", "feature": feature}

    def headers(self, host: AppHost) -> dict[str, str]:
        return {
            "x-usage-tags": ",".join(f"{k}={v}" for k, v in self.tags.items()),
            "x-request-id": self.request_id,
        }


async def one_usage(store: Store, call: Call) -> dict[str, Any]:
    (usage,) = await docs_by_client_request_id(store, USAGE, call.request_id)
    assert usage["tags"] == call.tags
    return usage


@dataclass(frozen=True)
class HttpClients:
    sync: openai.DefaultHttpxClient
    asynchronous: openai.DefaultAsyncHttpxClient


@pytest.fixture
async def http() -> AsyncIterator[HttpClients]:
    """The openai SDK's own HTTP clients, closed after each test: neither framework closes
    the clients it makes for itself, and their sockets would outlive the test."""
    clients = HttpClients(openai.DefaultHttpxClient(), openai.DefaultAsyncHttpxClient())
    yield clients
    clients.sync.close()
    await clients.asynchronous.aclose()


# --- LangChain ------------------------------------------------------------------------------


def chat_model(host: AppHost, call: Call, http: HttpClients, **kwargs: Any) -> AzureChatOpenAI:
    return AzureChatOpenAI(
        azure_endpoint=host.url,
        azure_deployment="gpt-4o",
        api_version=API_VERSION,
        api_key=host.team_key,  # type: ignore[arg-type]
        default_headers=call.headers(host),
        max_retries=0,
        http_client=http.sync,
        http_async_client=http.asynchronous,
        **kwargs,
    )


def embedding_model(host: AppHost, call: Call, http: HttpClients) -> AzureOpenAIEmbeddings:
    return AzureOpenAIEmbeddings(
        azure_endpoint=host.url,
        azure_deployment="text-embedding-3-small",
        api_version=API_VERSION,
        api_key=host.team_key,  # type: ignore[arg-type]
        default_headers=call.headers(host),
        dimensions=64,
        max_retries=0,
        http_client=http.sync,
        http_async_client=http.asynchronous,
        # Otherwise it splits inputs with tiktoken, whose encodings are downloaded at first use
        # (no network offline); the service counts tokens anyway.
        check_embedding_ctx_length=False,
    )


async def test_langchain_invoke(host: AppHost, store: Store, http: HttpClients) -> None:
    call = Call("lc-invoke")
    answer = await asyncio.to_thread(chat_model(host, call, http).invoke, "echo: one two three")
    assert answer.content == "one two three"
    usage = await one_usage(store, call)
    assert usage["operation"] == "chat"
    assert usage["completion_tokens"] == 3


async def test_langchain_stream_with_usage(host: AppHost, store: Store, http: HttpClients) -> None:
    call = Call("lc-stream")
    model = chat_model(host, call, http, stream_usage=True)
    chunks = [chunk async for chunk in model.astream("echo: alpha beta gamma")]
    assert "".join(str(chunk.content) for chunk in chunks) == "alpha beta gamma"
    reported = [chunk.usage_metadata for chunk in chunks if chunk.usage_metadata]
    assert reported
    assert reported[-1]["output_tokens"] == 3
    usage = await one_usage(store, call)
    assert (usage["operation"], usage["status"]) == ("chat_stream", "ok")
    assert usage["completion_tokens"] == 3


class GetWeather(BaseModel):
    """The weather in a city."""

    city: str = Field(description="the city")


async def test_langchain_tool_calling(host: AppHost, store: Store, http: HttpClients) -> None:
    call = Call("lc-tools")
    model = chat_model(host, call, http).bind_tools([GetWeather], tool_choice="required")
    answer = await model.ainvoke("what is the weather in Paris?")
    (tool_call,) = answer.tool_calls  # type: ignore[attr-defined]
    assert tool_call["name"] == "GetWeather"
    assert isinstance(tool_call["args"]["city"], str)
    await one_usage(store, call)


class Verdict(BaseModel):
    label: str
    confidence: float
    reasons: list[str]


async def test_langchain_structured_output(host: AppHost, store: Store, http: HttpClients) -> None:
    call = Call("lc-structured")
    model = chat_model(host, call, http).with_structured_output(Verdict, method="json_schema")
    verdict = await asyncio.to_thread(model.invoke, "classify: the food was great")
    # The simulator writes JSON valid against the schema that LangChain sent as
    # response_format (strict): LangChain parsed it back into the model.
    assert isinstance(verdict, Verdict)
    await one_usage(store, call)


async def test_langchain_embeddings_over_a_list(
    host: AppHost, store: Store, http: HttpClients
) -> None:
    call = Call("lc-embed")
    texts = ["first", "second", "third"]
    vectors = await asyncio.to_thread(embedding_model(host, call, http).embed_documents, texts)
    assert len(vectors) == 3
    assert all(len(vector) == 64 for vector in vectors)
    assert vectors[0] != vectors[1]
    again = await asyncio.to_thread(
        embedding_model(host, Call("lc-embed"), http).embed_query, "first"
    )
    assert again == pytest.approx(vectors[0])
    usage = await one_usage(store, call)
    assert usage["operation"] == "embedding"
    # The simulator counts ceil(characters / 4) per input (docs/simulator.md).
    assert usage["prompt_tokens"] == sum(-(-len(text) // 4) for text in texts)


async def test_langchain_filtered_prompt_raises_and_leaves_an_event(
    host: AppHost, store: Store, http: HttpClients
) -> None:
    call = Call("lc-filtered")
    with pytest.raises(openai.BadRequestError) as raised:
        await chat_model(host, call, http).ainvoke("forbidden-violence please")
    assert raised.value.code == "content_filter"
    (event,) = await docs_by_client_request_id(store, CONTENT_FILTER_EVENTS, call.request_id)
    assert (event["stage"], event["source"]) == ("prompt", "gateway")
    usage = await one_usage(store, call)
    assert usage["status"] == "content_filter"


# --- LlamaIndex -----------------------------------------------------------------------------


def llama_llm(host: AppHost, call: Call, http: HttpClients) -> LlamaAzureOpenAI:
    return LlamaAzureOpenAI(
        model="gpt-4o",
        engine="gpt-4o",
        azure_endpoint=host.url,
        api_key=host.team_key,
        api_version=API_VERSION,
        default_headers=call.headers(host),
        max_retries=0,
        http_client=http.sync,
        async_http_client=http.asynchronous,
    )


async def test_llamaindex_complete(host: AppHost, store: Store, http: HttpClients) -> None:
    call = Call("li-complete")
    answer = await asyncio.to_thread(llama_llm(host, call, http).complete, "echo: one two")
    assert answer.text == "one two"
    usage = await one_usage(store, call)
    assert usage["operation"] == "chat"


async def test_llamaindex_chat(host: AppHost, store: Store, http: HttpClients) -> None:
    call = Call("li-chat")
    messages = [
        ChatMessage(role="system", content="You repeat."),
        ChatMessage(role="user", content="echo: red green"),
    ]
    answer = await llama_llm(host, call, http).achat(messages)
    assert answer.message.content == "red green"
    await one_usage(store, call)


async def test_llamaindex_stream_complete_and_chat(
    host: AppHost, store: Store, http: HttpClients
) -> None:
    call = Call("li-stream")
    llm = llama_llm(host, call, http)
    pieces = await asyncio.to_thread(
        lambda: [piece.delta for piece in llm.stream_complete("echo: a b c")]
    )
    assert "".join(p or "" for p in pieces) == "a b c"
    (usage,) = await docs_by_client_request_id(store, USAGE, call.request_id)
    assert (usage["operation"], usage["completion_tokens"]) == ("chat_stream", 3)

    call = Call("li-stream-chat")
    stream = await llama_llm(host, call, http).astream_chat(
        [ChatMessage(role="user", content="echo: x y")]
    )
    responses = [response async for response in stream]
    # Each response carries the text so far, and its delta.
    assert "".join(r.delta or "" for r in responses) == responses[-1].message.content == "x y"
    usage = await one_usage(store, call)
    assert usage["operation"] == "chat_stream"


async def test_llamaindex_filtered_completion_leaves_an_event(
    host: AppHost, store: Store, http: HttpClients
) -> None:
    call = Call("li-filtered")
    answer = await llama_llm(host, call, http).acomplete("echo: fine words then forbidden-selfharm")
    assert not answer.text  # the service withheld the completion
    (event,) = await docs_by_client_request_id(store, CONTENT_FILTER_EVENTS, call.request_id)
    assert (event["stage"], event["source"]) == ("completion", "gateway")
    usage = await one_usage(store, call)
    assert usage["status"] == "content_filter"


async def test_llamaindex_embedding(host: AppHost, store: Store, http: HttpClients) -> None:
    call = Call("li-embed")
    model = AzureOpenAIEmbedding(
        model="text-embedding-3-small",
        deployment_name="text-embedding-3-small",
        azure_endpoint=host.url,
        api_key=host.team_key,
        api_version=API_VERSION,
        default_headers=call.headers(host),
        dimensions=64,
        max_retries=0,
        http_client=http.sync,
        async_http_client=http.asynchronous,
    )
    vectors = await model.aget_text_embedding_batch(["first", "second"])
    assert [len(v) for v in vectors] == [64, 64]
    usage = await one_usage(store, call)
    assert usage["operation"] == "embedding"
