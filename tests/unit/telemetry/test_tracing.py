"""The tracing module's own logic: route templates for span names, and the job message's
optional `traceparent` (no provider needed)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.jobs.models import ClaimCheck, EmbeddingJob
from shared.telemetry import tracing

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize(
    ("path", "params", "route"),
    [
        ("/api/chat", {}, "/api/chat"),
        (
            "/api/openai/deployments/gpt-4o/chat/completions",
            {"deployment": "gpt-4o"},
            "/api/openai/deployments/{deployment}/chat/completions",
        ),
        # A deployment named like a literal segment after it: the first match is the parameter.
        (
            "/api/openai/deployments/chat/chat/completions",
            {"deployment": "chat"},
            "/api/openai/deployments/{deployment}/chat/completions",
        ),
        ("/api/jobs/cancel/cancel", {"job_id": "cancel"}, "/api/jobs/{job_id}/cancel"),
        (
            "/api/v1/responses/resp_1/input_items",
            {"response_id": "resp_1"},
            "/api/v1/responses/{response_id}/input_items",
        ),
    ],
)
def test_a_span_is_named_by_the_route_template_never_an_id(
    path: str, params: dict[str, str], route: str
) -> None:
    assert tracing.http_route(path, params) == route


def test_nothing_traced_gives_no_traceparent() -> None:
    assert tracing.current_traceparent() is None
    tracing.link_to(TRACEPARENT)  # no current span: nothing to link, and no error
    tracing.link_to("not-a-traceparent")


def test_a_job_message_without_a_traceparent_still_validates() -> None:
    old = EmbeddingJob.model_validate({"items": [{"id": "a", "text": "x"}]})
    assert old.traceparent is None
    new = EmbeddingJob.model_validate(
        {"items": [{"id": "a", "text": "x"}], "traceparent": TRACEPARENT}
    )
    assert new.traceparent == TRACEPARENT
    check = ClaimCheck.model_validate(
        {"job_id": "j", "kind": "embedding", "items_blob": "b", "traceparent": TRACEPARENT}
    )
    assert check.traceparent == TRACEPARENT


@pytest.mark.parametrize(
    "bad", ["00-xyz-b7ad6b7169203331-01", TRACEPARENT + "\n", "00-" + "a" * 200, ""]
)
def test_a_malformed_traceparent_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        EmbeddingJob.model_validate({"items": [{"id": "a", "text": "x"}], "traceparent": bad})


def test_a_store_call_outside_a_sampled_trace_makes_no_span() -> None:
    """An unsampled chat, or the local host's own polling, pays one check per store call."""
    for made in (
        tracing.store_span("upsert_item", "usage"),
        tracing.queue_span("send_message", "embedding-jobs"),
        tracing.queue_span("upload_blob", "job-payloads"),
    ):
        assert isinstance(made, contextlib.nullcontext)


# Run in its own interpreter: the SDK's provider is process-global and set only once.
_UNSAMPLED_ATTEMPT = """
import openai
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from shared.telemetry import tracing

trace.set_tracer_provider(TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.0))))
client = openai.AsyncOpenAI(api_key="unused", base_url="http://127.0.0.1:9/openai/v1/")
with tracing.tracer().start_as_current_span("POST /api/chat") as call:
    assert not call.is_recording() and call.get_span_context().is_valid
    with tracing.upstream_span("chat", "gpt-4o", "primary", client) as attempt:
        print("same" if attempt is call else "new")
"""


def test_an_upstream_attempt_in_an_unsampled_trace_makes_no_span_of_its_own() -> None:
    """Parent-based sampling would leave the attempt's span out anyway: the unsampled call's
    own span stays current, and no span (ids, context, sampler call) is made for nothing."""
    ran = subprocess.run(
        [sys.executable, "-c", _UNSAMPLED_ATTEMPT],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[3],
        timeout=60,
    )
    assert ran.stdout.strip() == "same"
