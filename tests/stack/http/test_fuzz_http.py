"""The HTTP API under fuzzing: hypothesis sends bodies shaped like the request models (the
models `/api/openapi.json` is built from), valid and near-valid, plus arbitrary JSON, truncated
JSON, raw bytes and odd query strings, to every route of the real function_app.py under the
local Functions host.

Every answer must be below 500, carry no stack trace and no secret, and every error body
must have the documented shape `{"error": {"code", "message", "details"?}}` (in a stream, the
final `{"type": "error"}` frame).

The Azure OpenAI-compatible routes (docs/gateway.md) pass the service's answers through: their
errors have Azure's shape (`{"error": {"code", "message", ...}}`, more fields allowed) and
their streams are the service's chunks, ending in `data: [DONE]`.

`FUZZ_HTTP_EXAMPLES` sets how many requests hypothesis draws (default 300 in `make test`).
"""

from __future__ import annotations

import json
import os
import string
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack.aoai_simulator import RunningSimulator
from devstack.emulators.stack import AZURITE_KEY, COSMOS_EMULATOR_KEY
from devstack.hosted_app import FUNCTION_KEY, MASTER_KEY, AppHost
from shared.core.models import ErrorResponse
from shared.gateway.models import ServiceErrorResponse
from tests.support.hosts import host_fixture
from tests.support.routes import ROUTES
from tests.support.sse import parse_frames, split_stream

EXAMPLES = int(os.environ.get("FUZZ_HTTP_EXAMPLES", "300"))
# Small limits keep a valid fuzzed job or answer cheap; the checks do not depend on them.
FUZZ_SETTINGS = {
    "AOAI_MAX_RETRIES": "0",
    "AOAI_TIMEOUT_SECONDS": "10",
    "JOB_MAX_ITEMS": "20",
    "CHAT_MAX_TOKENS_LIMIT": "64",
}
FUZZED_ROUTES = ROUTES
GATEWAY_PREFIXES = ("/openai/", "/v1/")
RESPONSES_FINAL = ("response.completed", "response.incomplete", "response.failed", "error")
LEAKS = ("Traceback", 'File "', "pydantic_core", "ValidationError(")


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


host = host_fixture("fh", FUZZ_SETTINGS, own_queues=True)


@pytest.fixture(scope="module")
def secrets(simulator: RunningSimulator) -> list[str]:
    return [COSMOS_EMULATOR_KEY, AZURITE_KEY, simulator.api_key, FUNCTION_KEY, MASTER_KEY]


# --- requests -------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)


def bodies(shaped_documents: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Mostly model-shaped JSON (valid and near-valid), then any JSON, truncated JSON, bytes."""
    shaped = shaped_documents.map(lambda d: json.dumps(d).encode())
    anything = json_values.map(lambda d: json.dumps(d).encode())
    truncated = shaped.flatmap(lambda b: st.integers(0, max(0, len(b) - 1)).map(lambda n: b[:n]))
    return st.one_of(shaped, shaped, anything, truncated, st.binary(max_size=200))


def sometimes(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field's value, or a value of any type (near-valid documents)."""
    return st.one_of(value, value, value, json_values)


words = st.text(max_size=60)
tags = st.dictionaries(st.text(max_size=70), st.text(max_size=300), max_size=3)

chat_documents = st.fixed_dictionaries(
    {
        "messages": sometimes(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "role": sometimes(
                            st.sampled_from(["system", "developer", "user", "assistant", "tool"])
                        ),
                        "content": sometimes(words),
                    }
                ),
                max_size=3,
            )
        )
    },
    optional={
        "model": sometimes(st.sampled_from(["default-chat", "gpt-4o", "no-such-model", ""])),
        "max_tokens": sometimes(st.integers(-2, 100)),
        "temperature": sometimes(st.floats(-1, 3, allow_nan=False)),
        "stream": sometimes(st.booleans()),
        "user": sometimes(st.text(max_size=300)),
        "tags": sometimes(tags),
    },
)

job_items = st.lists(
    st.fixed_dictionaries(
        {"id": sometimes(st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True)), "text": sometimes(words)}
    ),
    max_size=25,
)
job_common = {
    "job_id": sometimes(st.from_regex(r"fh-[A-Za-z0-9._:@-]{1,30}", fullmatch=True)),
    "model": sometimes(st.sampled_from(["gpt-4o", "nope", ""])),
    "mode": sometimes(st.sampled_from(["realtime", "batch", "later"])),
    "tags": sometimes(tags),
    "attempt": sometimes(st.integers(-1, 2000)),
    "reason": sometimes(st.text(max_size=250)),
}
embedding_documents = st.fixed_dictionaries(
    {"items": sometimes(job_items)},
    optional={**job_common, "dimensions": sometimes(st.integers(-1, 4000))},
)
classification_documents = st.fixed_dictionaries(
    {
        "items": sometimes(job_items),
        "labels": sometimes(st.lists(st.text(max_size=110), max_size=60)),
    },
    optional={
        **job_common,
        "multi_label": sometimes(st.booleans()),
        "instructions": sometimes(st.text(max_size=50)),
    },
)

# The Azure OpenAI-compatible routes. Most requests must reach the service to test the
# pass-through, so valid bodies (as the SDKs send them, with the simulator's content-filter
# trigger words now and then) come first; then near-valid, any JSON, truncated, bytes. `n`
# stays small: the simulator makes n choices and, unlike Azure, does not cap n at 128.
prompts = st.one_of(
    words,
    st.sampled_from(
        ["echo: a b c", "echo: fine then forbidden-selfharm", "forbidden-violence", "echo: x"]
    ),
)
content_parts = st.lists(
    st.one_of(
        st.fixed_dictionaries({"type": st.just("text"), "text": prompts}),
        st.fixed_dictionaries(
            {
                "type": st.just("image_url"),
                "image_url": st.fixed_dictionaries({"url": st.just("data:image/png;base64,AA==")}),
            }
        ),
    ),
    min_size=1,
    max_size=2,
)
chat_options = {
    "max_tokens": st.integers(1, 50),
    "n": st.integers(1, 3),
    "temperature": st.floats(0, 2, allow_nan=False),
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
    "seed": st.integers(0, 2**31),
    "stop": st.lists(st.text(max_size=5), max_size=4),
    "user": st.text(max_size=200),
    "response_format": st.sampled_from([{"type": "json_object"}, {"type": "text"}]),
}


def either(first: st.SearchStrategy[bytes], second: st.SearchStrategy[bytes]) -> Any:
    """Half and half (`one_of` would flatten `second`'s own branches and so weigh it more)."""
    return st.booleans().flatmap(lambda pick: first if pick else second)


def gateway_chat_bodies(model: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    message = st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "user", "assistant"]),
            "content": st.one_of(prompts, content_parts),
        }
    )
    valid = st.fixed_dictionaries(
        {"messages": st.lists(message, min_size=1, max_size=3), "model": model},
        optional=chat_options,
    ).map(lambda d: json.dumps(d).encode())
    near_valid = st.fixed_dictionaries(
        {"messages": sometimes(st.lists(message, max_size=3))},
        optional={
            "model": sometimes(st.sampled_from(["gpt-4o", "no-such-model", ""])),
            **{k: sometimes(v) for k, v in chat_options.items() if k != "n"},
        },
    )
    return either(valid, bodies(near_valid))


def gateway_embedding_bodies(model: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    inputs = st.one_of(
        prompts,
        st.lists(prompts, min_size=1, max_size=4),
        st.lists(st.integers(0, 9), min_size=1, max_size=4),
    )
    options = {
        "dimensions": st.integers(1, 1536),
        "encoding_format": st.sampled_from(["float", "base64"]),
        "user": st.text(max_size=200),
    }
    valid = st.fixed_dictionaries({"input": inputs, "model": model}, optional=options).map(
        lambda d: json.dumps(d).encode()
    )
    near_valid = st.fixed_dictionaries(
        {"input": sometimes(inputs)},
        optional={
            "model": sometimes(st.sampled_from(["text-embedding-3-small", "nope", ""])),
            "dimensions": st.integers(-1, 4000),
            "encoding_format": sometimes(st.sampled_from(["float", "hex"])),
        },
    )
    return either(valid, bodies(near_valid))


# Mostly none or valid tags, so that most bodies get past the header to the service.
usage_tags_header = st.one_of(
    st.just({}),
    st.from_regex(r"[a-z_]{1,8}=[a-z]{0,8}(,[a-z]{1,8}=[a-z]{0,8}){0,2}", fullmatch=True).map(
        lambda t: {"x-usage-tags": t}
    ),
    st.sampled_from(["no-equals", "=", "a=b,,c=d", "k=" + "v" * 300]).map(
        lambda t: {"x-usage-tags": t}
    ),
)
deployments = st.one_of(
    st.sampled_from(["gpt-4o", "default-chat", "text-embedding-3-small"]),
    # Not "." or "..": a dot segment changes the route (the host answers 404 itself).
    st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True).filter(lambda d: d not in (".", "..")),
)
gateway_calls = st.one_of(
    st.builds(
        Call,
        method=st.just("POST"),
        path=deployments.map(lambda d: f"/openai/deployments/{d}/chat/completions"),
        params=st.fixed_dictionaries({}, optional={"api-version": st.just("2025-04-01-preview")}),
        content=gateway_chat_bodies(st.just("ignored: the path names the deployment")),
        headers=usage_tags_header,
    ),
    st.builds(
        Call,
        method=st.just("POST"),
        path=deployments.map(lambda d: f"/openai/deployments/{d}/embeddings"),
        params=st.fixed_dictionaries({}, optional={"api-version": st.just("2025-04-01-preview")}),
        content=gateway_embedding_bodies(st.just("ignored")),
        headers=usage_tags_header,
    ),
    st.builds(
        Call,
        method=st.just("POST"),
        path=st.just("/v1/chat/completions"),
        content=gateway_chat_bodies(st.sampled_from(["gpt-4o", "default-chat", "nope"])),
        headers=usage_tags_header,
    ),
    st.builds(
        Call,
        method=st.just("POST"),
        path=st.just("/v1/embeddings"),
        content=gateway_embedding_bodies(st.sampled_from(["text-embedding-3-small", "gpt-4o"])),
        headers=usage_tags_header,
    ),
)

RESPONSES_PREFIXES = ("/openai/v1", "/openai", "/v1")
response_ids = st.one_of(
    st.from_regex(r"resp_[0-9a-f]{8,48}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9._-]{1,40}", fullmatch=True).filter(lambda i: i not in (".", "..")),
)


def gateway_responses_bodies(model: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    message = st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "user", "assistant", "developer"]),
            "content": st.one_of(
                prompts,
                st.lists(
                    st.fixed_dictionaries({"type": st.just("input_text"), "text": prompts}),
                    min_size=1,
                    max_size=2,
                ),
            ),
        }
    )
    options = {
        "instructions": prompts,
        "max_output_tokens": st.integers(16, 64),
        "stream": st.booleans(),
        "store": st.booleans(),
        "previous_response_id": response_ids,
        "user": st.text(max_size=200),
        "temperature": st.floats(0, 2, allow_nan=False),
    }
    inputs = st.one_of(prompts, st.lists(message, min_size=1, max_size=3))
    valid = st.fixed_dictionaries({"input": inputs, "model": model}, optional=options).map(
        lambda d: json.dumps(d).encode()
    )
    near_valid = st.fixed_dictionaries(
        {"input": sometimes(inputs)},
        optional={
            "model": sometimes(st.sampled_from(["gpt-4o", "no-such-model", ""])),
            "max_output_tokens": st.integers(-1, 5000),
            **{k: sometimes(v) for k, v in options.items() if k != "max_output_tokens"},
        },
    )
    return either(valid, bodies(near_valid))


preview = st.fixed_dictionaries({}, optional={"api-version": st.just("2025-04-01-preview")})
responses_calls = st.one_of(
    st.builds(
        Call,
        method=st.just("POST"),
        path=st.sampled_from(RESPONSES_PREFIXES).map(lambda p: f"{p}/responses"),
        params=preview,
        content=gateway_responses_bodies(st.sampled_from(["gpt-4o", "default-chat", "nope"])),
        headers=usage_tags_header,
    ),
    st.builds(
        Call,
        method=st.sampled_from(["GET", "DELETE"]),
        path=st.tuples(st.sampled_from(RESPONSES_PREFIXES), response_ids).map(
            lambda t: f"{t[0]}/responses/{t[1]}"
        ),
        params=preview,
    ),
    st.builds(
        Call,
        method=st.just("GET"),
        path=st.tuples(st.sampled_from(RESPONSES_PREFIXES), response_ids).map(
            lambda t: f"{t[0]}/responses/{t[1]}/input_items"
        ),
        params=st.fixed_dictionaries(
            {}, optional={"limit": st.integers(-1, 200).map(str), "order": st.just("asc")}
        ),
    ),
    st.builds(
        Call,
        method=st.just("POST"),
        path=st.tuples(st.sampled_from(RESPONSES_PREFIXES), response_ids).map(
            lambda t: f"{t[0]}/responses/{t[1]}/cancel"
        ),
    ),
)

query_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30
)
when = st.one_of(
    st.datetimes().map(lambda d: d.isoformat()), query_text, st.sampled_from(["", "now", "-1"])
)
# A "/" (even as %2F) or a dot segment changes the route: the host answers 404 itself.
ids = st.one_of(
    st.from_regex(r"[A-Za-z0-9._:@-]{1,40}", fullmatch=True),
    query_text.filter(lambda t: "/" not in t),
).filter(lambda t: t.strip() not in ("", ".", ".."))

# The team registry, with the master key its admin routes take. Ids are mostly valid, so
# teams get created, changed and given keys; `fh-` keeps them apart from other tests' teams.
team_ids = st.one_of(st.from_regex(r"fh-[a-z0-9]{1,6}", fullmatch=True), ids)
limit = sometimes(st.one_of(st.none(), st.integers(-1, 10**6), st.floats(0, 1e4)))
team_fields = {
    "models": sometimes(st.lists(st.sampled_from(["gpt-4o", "default-chat", "a b"]), max_size=3)),
    "members": sometimes(st.lists(st.uuids().map(str), max_size=2)),
    "disabled": sometimes(st.booleans()),
    **dict.fromkeys(("tpm", "daily_tokens", "monthly_usd", "max_tokens"), limit),
}
admin = st.just({"x-functions-key": MASTER_KEY})
team_calls = st.one_of(
    st.builds(
        Call,
        method=st.just("POST"),
        path=st.just("/teams"),
        content=bodies(st.fixed_dictionaries({"id": sometimes(team_ids)}, optional=team_fields)),
        headers=admin,
    ),
    st.builds(Call, method=st.just("GET"), path=st.just("/teams"), headers=admin),
    st.builds(
        Call,
        method=st.just("GET"),
        path=team_ids.map(lambda i: f"/teams/{quote(i, safe='')}"),
        headers=admin,
    ),
    st.builds(
        Call,
        method=st.just("PATCH"),
        path=team_ids.map(lambda i: f"/teams/{quote(i, safe='')}"),
        content=bodies(st.fixed_dictionaries({}, optional=team_fields)),
        headers=admin,
    ),
    st.builds(
        Call,
        method=st.just("POST"),
        path=team_ids.map(lambda i: f"/teams/{quote(i, safe='')}/keys"),
        headers=admin,
    ),
    st.builds(
        Call,
        method=st.just("DELETE"),
        path=st.tuples(team_ids, st.one_of(st.from_regex(r"[0-9a-f]{8}", fullmatch=True), ids)).map(
            lambda t: f"/teams/{quote(t[0], safe='')}/keys/{quote(t[1], safe='')}"
        ),
        headers=admin,
    ),
)

calls = st.one_of(
    st.builds(
        Call,
        method=st.just("POST"),
        path=st.just("/chat"),
        content=bodies(chat_documents),
        content_type=st.sampled_from(["application/json", "text/plain", ""]),
    ),
    st.builds(
        Call,
        method=st.just("POST"),
        path=st.sampled_from(["/jobs/embeddings"]),
        content=bodies(embedding_documents),
    ),
    st.builds(
        Call,
        method=st.just("POST"),
        path=st.sampled_from(["/jobs/classifications"]),
        content=bodies(classification_documents),
    ),
    st.builds(
        Call,
        method=st.just("GET"),
        path=st.just("/usage"),
        params=st.fixed_dictionaries(
            {},
            optional={
                "since": when,
                "until": when,
                "group_by": st.one_of(
                    st.sampled_from(["deployment", "operation", "model", "tag:team", "tag:"]),
                    query_text,
                ),
            },
        ),
    ),
    st.builds(
        Call,
        method=st.just("GET"),
        path=ids.map(lambda i: f"/jobs/{quote(i, safe='')}"),
        params=st.fixed_dictionaries(
            {},
            optional={
                "page_size": st.one_of(st.integers(-5, 5000).map(str), query_text),
                "continuation": query_text,
            },
        ),
    ),
    st.builds(
        Call, method=st.just("POST"), path=ids.map(lambda i: f"/jobs/{quote(i, safe='')}/cancel")
    ),
    st.builds(
        Call,
        method=st.just("GET"),
        path=st.sampled_from(["/health", "/health/details", "/openapi.json"]),
    ),
    gateway_calls,
    responses_calls,
    team_calls,
    st.builds(
        Call,
        method=st.just("GET"),
        path=st.just("/usage/all"),
        params=st.fixed_dictionaries(
            {}, optional={"group_by": st.sampled_from(["team", "deployment", "tag:team"])}
        ),
        headers=admin,
    ),
)


# --- the checks -----------------------------------------------------------------------------


def check_answer(call: Call, response: httpx.Response, secrets: list[str]) -> None:
    text = response.text
    where = f"{call.method} {call.path} {call.params} -> {response.status_code}: {text[:300]}"
    assert response.status_code < 500, where
    for leak in LEAKS:
        assert leak not in text, where
    for secret in secrets:
        assert secret not in text, "a secret in the answer: " + where
    assert response.headers.get("x-request-id"), where
    if "/responses" in call.path:
        check_responses_answer(response, where)
        return
    if call.path.startswith(GATEWAY_PREFIXES):
        check_gateway_answer(response, where)
        return
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        frames = parse_frames(split_stream(text))
        assert frames[-1] == "[DONE]", where
        for frame in frames[:-1]:
            if frame["type"] == "error":
                ErrorResponse.model_validate({"error": frame["error"]})
        return
    if response.status_code == 204:
        assert text == "", where
        return
    body = response.json()
    if response.status_code >= 400:
        assert set(body) == {"error"}, where
        ErrorResponse.model_validate(body)
        assert set(body["error"]) <= {"code", "message", "details"}, where
    if call.path.startswith("/teams"):
        assert '"hash"' not in text, "a key hash in the answer: " + where


def check_gateway_answer(response: httpx.Response, where: str) -> None:
    """The service's own answer: Azure's error shape, or its chunks ending in [DONE]."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        frames = parse_frames(split_stream(response.text))
        assert frames[-1] == "[DONE]", where
        for frame in frames[:-1]:
            assert isinstance(frame, dict), where
            if "error" in frame:
                ServiceErrorResponse.model_validate(frame)
        return
    body = response.json()
    if response.status_code >= 400:
        assert set(body) == {"error"}, where
        ServiceErrorResponse.model_validate(body)


def check_responses_answer(response: httpx.Response, where: str) -> None:
    """The Responses API's own answer: Azure's error shape, or its typed events (`event:` and
    `data:` lines) ending in a final response event or an `error` event."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        types = []
        for event in split_stream(response.text):
            data = [line[5:].strip() for line in event.splitlines() if line.startswith("data:")]
            assert data, where
            parsed = json.loads("".join(data))
            assert isinstance(parsed, dict), where
            assert isinstance(parsed.get("type"), str), where
            types.append(parsed["type"])
        assert types[-1] in RESPONSES_FINAL, where
        return
    body = response.json()
    if response.status_code >= 400:
        assert set(body) == {"error"}, where
        ServiceErrorResponse.model_validate(body)


@pytest.mark.slow
@pytest.mark.timeout(900)  # a few hundred requests; several sessions share two cores
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(call=calls)
def test_no_answer_is_5xx_leaks_or_breaks_the_error_shape(
    host: AppHost, secrets: list[str], call: Call
) -> None:
    headers = {**host.headers(), **call.headers}
    if call.content_type:
        headers["content-type"] = call.content_type
    with httpx.Client(base_url=host.url, headers=headers, timeout=60) as client:
        response = client.request(call.method, call.path, params=call.params, content=call.content)
    check_answer(call, response, secrets)


# --- the data plane without a team's credential -----------------------------------------------

DATA_PLANE_PREFIXES = ("/chat", "/jobs/", "/usage", *GATEWAY_PREFIXES)
data_plane_calls = calls.filter(
    lambda c: c.path.startswith(DATA_PLANE_PREFIXES) and not c.path.startswith("/usage/all")
)
key_text = st.text(alphabet=string.ascii_letters + string.digits + "_-.~+/=", max_size=60)
# None, a host's key, keys shaped like a team's that no team has, anything else, in both
# headers the SDKs send, and malformed Authorization headers.
bad_credentials = st.one_of(
    st.just({}),
    st.just({"x-functions-key": FUNCTION_KEY}),
    st.just({"api-key": MASTER_KEY}),
    st.from_regex(r"tk_[a-z][a-z0-9-]{1,12}_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", fullmatch=True).map(
        lambda k: {"api-key": k}
    ),
    key_text.map(lambda k: {"api-key": k}),
    # HTTP trims a header value's edges (httpx refuses to send them), so no empty key here.
    key_text.filter(bool).map(lambda k: {"authorization": f"Bearer {k}"}),
    st.sampled_from(["Basic dXNlcjpwYXNz", "Bearer", "bearer   tk_", "tk_", "Token abc"]).map(
        lambda v: {"authorization": v}
    ),
)


@pytest.mark.slow
@pytest.mark.timeout(900)
@settings(
    max_examples=max(50, EXAMPLES // 3),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(call=data_plane_calls, credential=bad_credentials)
def test_the_data_plane_without_a_team_s_credential_is_401_in_each_route_s_shape(
    host: AppHost, secrets: list[str], call: Call, credential: dict[str, str]
) -> None:
    """Whatever the body, query and tags, a data-plane call with no valid team key is a 401
    (#22 item 3): `unauthorized` in the app's shape, Azure's `401` on the gateway routes."""
    headers = {**call.headers, **credential}
    if call.content_type:
        headers["content-type"] = call.content_type
    with httpx.Client(base_url=host.url, headers=headers, timeout=60) as client:
        response = client.request(call.method, call.path, params=call.params, content=call.content)
    check_answer(call, response, secrets)
    where = f"{call.method} {call.path} {credential} -> {response.text[:200]}"
    assert response.status_code == 401, where
    expected = "401" if call.path.startswith(GATEWAY_PREFIXES) else "unauthorized"
    assert response.json()["error"]["code"] == expected, where


def test_the_fuzzed_routes_are_the_documented_ones(host: AppHost) -> None:
    """The fuzzer covers every route /api/openapi.json documents (and the job routes)."""
    with httpx.Client(base_url=host.url, headers=host.headers(), timeout=30) as client:
        documented = set(client.get("/openapi.json").json()["paths"])
    assert documented <= FUZZED_ROUTES
