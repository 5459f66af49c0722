"""The app's spans: one trace per HTTP call or queue message, the upstream attempts inside it.

Spans come from the global TracerProvider (shared/telemetry/setup.py; the API's no-op tracer
when none is set). W3C Trace Context carries a trace across the app's edges:
- an HTTP call continues the caller's `traceparent` (`http_span`), and its answer names the
  app's span in a `traceresponse` header, so a caller can find its trace;
- a job message carries the submitting call's `traceparent` (`current_traceparent`), and the
  message's span, a new trace, links to it (`link_to`);
- each attempt at Azure OpenAI is a CLIENT span named per the GenAI conventions
  (`upstream_span`); the Azure SDKs' own spans (Cosmos DB, Blob, Queue) nest under whichever
  span is current.

What a span may hold: names, ids, counts, status codes. Never a prompt, a completion, a key or
a header's value (docs/telemetry.md#traces).
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Final, TypeVar

import openai
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.telemetry import names
from shared.telemetry.metrics import instruments

T = TypeVar("T")

# The header an answer names the app's span in (W3C Trace Context Level 2's response header,
# the `traceparent` format: 00-<trace id>-<span id>-<flags>).
RESPONSE_HEADER: Final = "traceresponse"
# A traceparent as W3C Trace Context writes it (version 00; what a job message may carry).
TRACEPARENT_PATTERN: Final = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"

# Attribute keys of the OpenTelemetry conventions used here (names.py holds the app's own).
HTTP_METHOD: Final = "http.request.method"
HTTP_ROUTE: Final = "http.route"
HTTP_STATUS: Final = "http.response.status_code"
SERVER_ADDRESS: Final = "server.address"
MESSAGING_DESTINATION: Final = "messaging.destination.name"
MESSAGING_OPERATION: Final = "messaging.operation.type"
MESSAGING_SYSTEM: Final = "messaging.system"
DB_SYSTEM: Final = "db.system.name"
DB_COLLECTION: Final = "db.collection.name"
DB_OPERATION: Final = "db.operation.name"

_PROPAGATOR = TraceContextTextMapPropagator()
_TRACEPARENT = re.compile(TRACEPARENT_PATTERN)


@functools.cache
def tracer() -> Tracer:
    """The app's tracer (a proxy until a provider is set, then the provider's)."""
    return trace.get_tracer("shared.telemetry")


# --- context ------------------------------------------------------------------------------


def current_traceparent() -> str | None:
    """The current span as a `traceparent`, or None when nothing is traced."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    found = carrier.get("traceparent")
    return found if found is not None and _TRACEPARENT.fullmatch(found) else None


def _span_context_of(traceparent: str | None) -> trace.SpanContext | None:
    if not traceparent or not _TRACEPARENT.fullmatch(traceparent):
        return None
    context = _PROPAGATOR.extract({"traceparent": traceparent})
    span_context = trace.get_current_span(context).get_span_context()
    return span_context if span_context.is_valid else None


def link_to(traceparent: str | None) -> None:
    """Link the current span to the span `traceparent` names (a job's submitting call)."""
    span_context = _span_context_of(traceparent)
    if span_context is not None:
        trace.get_current_span().add_link(span_context)


def annotate(attributes: Mapping[str, str | int | None]) -> None:
    """Set attributes (names.py's keys) on the current span; None values are left out."""
    span = trace.get_current_span()
    for key, value in attributes.items():
        if value is not None:
            span.set_attribute(key, value)


def current(span: Span) -> Any:
    """`with current(span):` the span is current, not ended on exit; an exception passing
    through records nothing (its message may quote a prompt: `_failing_span`)."""
    return trace.use_span(
        span, end_on_exit=False, record_exception=False, set_status_on_exception=False
    )


# --- HTTP ---------------------------------------------------------------------------------


def http_route(path: str, path_params: Mapping[str, Any]) -> str:
    """The route template of a request: its path with each path parameter's value replaced by
    `{name}` (the first match past `/api/<area>`), so the span name never holds an id."""
    segments = path.split("/")
    for key, value in path_params.items():
        for index in range(3, len(segments)):
            if segments[index] == str(value):
                segments[index] = "{" + key + "}"
                break
    return "/".join(segments)


def start_http_span(method: str, route: str, headers: Mapping[str, str]) -> Span:
    """The span of one HTTP call, continuing the caller's `traceparent` when it sends one.

    INTERNAL, not SERVER: on Azure the Functions host records the request itself, and a
    SERVER span would make a second request record in Application Insights."""
    parent = _PROPAGATOR.extract(
        {key: headers[key] for key in ("traceparent", "tracestate") if key in headers}
    )
    return tracer().start_span(
        f"{method} {route}",
        context=parent,
        kind=SpanKind.INTERNAL,
        attributes={HTTP_METHOD: method, HTTP_ROUTE: route},
    )


def end_http_span(span: Span, status: int, error_type: str | None) -> None:
    span.set_attribute(HTTP_STATUS, status)
    if error_type is not None:
        span.set_attribute(names.ERROR_TYPE, error_type)
    if status >= 500:
        span.set_status(StatusCode.ERROR)
    span.end()


def response_header(span: Span) -> dict[str, str]:
    """`traceresponse: 00-<trace>-<span>-<flags>` for a recorded span; nothing otherwise."""
    span_context = span.get_span_context()
    if not span.is_recording() or not span_context.is_valid:
        return {}
    flags = f"{int(span_context.trace_flags):02x}"
    value = f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{flags}"
    return {RESPONSE_HEADER: value}


async def traced_body(
    body: AsyncIterable[T], span: Span, status: int, error_type: str | None = None
) -> AsyncIterator[T]:
    """A streamed answer's body under its call's (sampled) span, which ends with the last byte
    (or when the caller hangs up): the records written after the stream belong to its trace.
    An unsampled call's body is not wrapped (shared/http/boundary.py): a layer per chunk
    for nothing recorded.
    The span is current only while the body itself runs, never across a `yield`."""
    inner = aiter(body)
    failed: str | None = error_type
    try:
        while True:
            with current(span):
                try:
                    chunk = await anext(inner)
                except StopAsyncIteration:
                    break
                except Exception as error:
                    failed = error_type_of(error)
                    raise
            yield chunk
    finally:
        close = getattr(inner, "aclose", None)
        if close is not None:  # a hang-up: the body's own clean-up, in the call's trace
            with current(span):
                await close()
        end_http_span(span, status, failed)


# --- queue messages and timers ------------------------------------------------------------


@contextmanager
def message_span(queue: str, **attributes: str) -> Iterator[Span]:
    """The span of one queue message: a new trace (the message's sender, if it says, is a
    link: `link_to`), CONSUMER, `process <queue>`."""
    with _new_trace(
        f"process {queue}",
        SpanKind.CONSUMER,
        {MESSAGING_DESTINATION: queue, MESSAGING_OPERATION: "process", **attributes},
    ) as span:
        yield span


@contextmanager
def run_span(name: str) -> Iterator[Span]:
    """The span of one timer run (a new trace each run)."""
    with _new_trace(name, SpanKind.INTERNAL, {}) as span:
        yield span


@contextmanager
def _new_trace(name: str, kind: SpanKind, attributes: dict[str, str]) -> Iterator[Span]:
    with _failing_span(name, kind, attributes, otel_context.Context()) as span:
        yield span


@contextmanager
def _failing_span(
    name: str,
    kind: SpanKind,
    attributes: dict[str, str],
    parent: otel_context.Context | None = None,
) -> Iterator[Span]:
    """A current span that on an exception records only its class (error.type): an
    exception's message may quote its input (pydantic's does), and a span must never hold
    a prompt. The SDK's own recording (a span event with the message) stays off."""
    with tracer().start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as error:
            span.set_attribute(names.ERROR_TYPE, error_type_of(error))
            span.set_status(StatusCode.ERROR)
            raise


# --- upstream -----------------------------------------------------------------------------


def error_type_of(error: BaseException) -> str:
    """error.type of a failed attempt: the HTTP status, else the exception's class."""
    if isinstance(error, openai.APIStatusError):
        return str(error.status_code)
    return type(error).__qualname__


@contextmanager
def upstream_span(
    operation: str | None, deployment: str, backend: str, client: openai.AsyncOpenAI
) -> Iterator[Span]:
    """One attempt at Azure OpenAI: a CLIENT span `{operation} {deployment}` with the GenAI
    attributes, and `app.upstream.requests` counted with its outcome. Only names: the request
    and the answer are never read here."""
    attributes: dict[str, str] = {
        names.PROVIDER: names.PROVIDER_NAME,
        names.DEPLOYMENT: deployment,
        names.BACKEND: backend,
        SERVER_ADDRESS: client.base_url.host,
    }
    if operation is not None:
        attributes[names.OPERATION] = operation
    name = f"{operation} {deployment}" if operation is not None else deployment
    outcome = "error"
    try:
        with _child_span(name, SpanKind.CLIENT, attributes) as span:
            yield span
        outcome = "ok"
    except openai.RateLimitError:
        outcome = "throttled"
        raise
    finally:
        instruments().upstream_requests.add(
            1, {names.DEPLOYMENT: deployment, names.BACKEND: backend, names.OUTCOME: outcome}
        )


async def traced_upstream(
    operation: str, deployment: str, backend: str, client: openai.AsyncOpenAI, call: Awaitable[T]
) -> T:
    """`await call` (one request to Azure OpenAI) inside its `upstream_span`."""
    with upstream_span(operation, deployment, backend, client):
        return await call


def _child_span(name: str, kind: SpanKind, attributes: dict[str, str]) -> Any:
    """`_failing_span` under the current span, unless that span is a trace the sampler left
    out: its children would be left out too (parent-based sampling), so none is made, only
    the current (non-recording) span handed back. Outside any span, a span as usual."""
    parent = trace.get_current_span()
    if parent.get_span_context().is_valid and not parent.is_recording():
        return nullcontext(parent)
    return _failing_span(name, kind, attributes)


# --- the store ----------------------------------------------------------------------------


def store_span(operation: str, container: str) -> AbstractContextManager[object]:
    """A Cosmos DB call (shared/core/store.py) as a CLIENT span `{operation} {container}`,
    e.g. `upsert_item usage`, inside a recorded trace only: a call no sampled trace holds
    (an unsampled chat, the local host's own polling) costs one check, not a span."""
    if not trace.get_current_span().is_recording():
        return nullcontext()
    return _failing_span(
        f"{operation} {container}",
        SpanKind.CLIENT,
        {DB_SYSTEM: "azure.cosmosdb", DB_COLLECTION: container, DB_OPERATION: operation},
    )


def queue_span(operation: str, target: str) -> AbstractContextManager[object]:
    """A message sent to a queue (PRODUCER, `send_message <queue>`) or a claim-check blob
    written (CLIENT, `upload_blob <container>`) by shared/core/queues.py, in a recorded trace."""
    if not trace.get_current_span().is_recording():
        return nullcontext()
    if operation == "send_message":
        attributes = {
            MESSAGING_SYSTEM: "azure.storage.queue",
            MESSAGING_DESTINATION: target,
            MESSAGING_OPERATION: "send",
        }
        return _failing_span(f"{operation} {target}", SpanKind.PRODUCER, attributes)
    return _failing_span(f"{operation} {target}", SpanKind.CLIENT, {DB_OPERATION: operation})


def spilled(origin: str, to: str) -> None:
    """A call moved from backend `origin` to backend `to` (app.upstream.spillovers)."""
    instruments().spillovers.add(1, {names.BACKEND: origin, names.SPILL_TO: to})
