"""Recording the app's metrics (docs/telemetry.md, "Metrics"): the attribute dicts, built from
shared/telemetry/names.py only, and the calls onto the instruments (shared/telemetry/metrics.py).

Pure mapping from what the app knows (a call's operation, source, status, app error; a job
item's status) to the fixed attribute set, so the series stay bounded; no request id, user or
text ever becomes an attribute. A call's attributes are built once, when it ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from shared.core.errors import AppError, ContentFiltered
from shared.core.models import Usage
from shared.telemetry import names
from shared.telemetry.metrics import instruments

Attributes = dict[str, str]

# The usage document's operation -> gen_ai.operation.name.
_OPERATIONS: Final[Mapping[str, str]] = {
    "chat": "chat",
    "chat_stream": "chat",
    "classification": "chat",
    "embedding": "embeddings",
    "responses": "responses",
    "responses_stream": "responses",
}
# A job result's status -> app.outcome.
_ITEM_OUTCOMES: Final[Mapping[str, str]] = {
    "succeeded": "ok",
    "content_filtered": "filtered",
    "failed": "error",
}


def operation_name(operation: str) -> str:
    """gen_ai.operation.name of a usage document's `operation` (chat for classification)."""
    return _OPERATIONS.get(operation, "chat")


def route_of(source: str, operation: str) -> str:
    """app.route: the call's source (chat, gateway, job, batch), the gateway's Responses
    routes as `responses`."""
    if source == "gateway" and operation.startswith("responses"):
        return "responses"
    return source if source in names.ROUTES else "gateway"


def outcome_of(status: str, failure: AppError | None = None) -> tuple[str, str | None]:
    """(app.outcome, error.type) of a call that ended with usage-document `status`, or with
    `failure` (the AppError the caller saw): a 429 is throttled, a content filter filtered,
    a caller who hung up an error of type `cancelled`."""
    if failure is not None:
        if isinstance(failure, ContentFiltered):
            return "filtered", failure.code
        return ("throttled" if failure.status == 429 else "error"), failure.code
    if status == "ok":
        return "ok", None
    if status == "content_filter":
        return "filtered", None
    return "error", "cancelled" if status == "cancelled" else "upstream_error"


def call_attributes(
    *,
    operation: str,
    source: str,
    deployment: str,
    backend: str | None,
    team: str | None,
    outcome: str,
    error_type: str | None = None,
) -> Attributes:
    """The attributes every point of one call carries (the token type added per point)."""
    attributes = {
        names.OPERATION: operation_name(operation),
        names.PROVIDER: names.PROVIDER_NAME,
        names.DEPLOYMENT: deployment,
        names.BACKEND: backend or "none",
        names.ROUTE: route_of(source, operation),
        names.TEAM: team or names.NO_TEAM,
        names.OUTCOME: outcome,
    }
    if error_type is not None:
        attributes[names.ERROR_TYPE] = error_type
    return attributes


def token_points(usage: Usage) -> list[tuple[int, str]]:
    """(count, gen_ai.token.type) to record: input and output always, cached and reasoning
    when not 0."""
    points = [(usage.prompt_tokens, "input"), (usage.completion_tokens, "output")]
    if usage.cached_tokens > 0:
        points.append((usage.cached_tokens, "cached"))
    if usage.reasoning_tokens > 0:
        points.append((usage.reasoning_tokens, "reasoning"))
    return points


def record_tokens(attributes: Attributes, usage: Usage) -> None:
    histogram = instruments().token_usage
    for count, token_type in token_points(usage):
        histogram.record(count, {**attributes, names.TOKEN_TYPE: token_type})


def record_call(
    attributes: Attributes,
    usage: Usage | None,
    *,
    duration: float,
    first_chunk: float | None = None,
) -> None:
    """One metered call's points: its tokens (when the service reported usage or the app
    estimated it), its duration, and a stream's time to its first content chunk (seconds)."""
    if usage is not None:
        record_tokens(attributes, usage)
    meters = instruments()
    meters.operation_duration.record(duration, attributes)
    if first_chunk is not None:
        meters.time_to_first_chunk.record(first_chunk, attributes)


def item_outcome(status: str) -> str:
    """app.outcome of a job result's `status`."""
    return _ITEM_OUTCOMES.get(status, "error")


def job_item_attributes(*, kind: str, mode: str, team: str | None, outcome: str) -> Attributes:
    return {
        names.JOB_KIND: kind,
        names.JOB_MODE: mode,
        names.TEAM: team or names.NO_TEAM,
        names.OUTCOME: outcome,
    }


def record_job_items(
    items: Iterable[tuple[str, str, Usage]],
    *,
    mode: str,
    deployment: str,
    backend: str | None,
    team: str | None,
) -> None:
    """Job items stored for the first time, as (kind, result status, usage share): one
    app.job.items each, and their tokens (route `job`, or `batch` in batch mode) when they
    used any. Attribute dicts are built once per (kind, outcome)."""
    meters = instruments()
    route = "batch" if mode == "batch" else "job"
    built: dict[tuple[str, str], tuple[Attributes, Attributes]] = {}
    for kind, status, usage in items:
        outcome = item_outcome(status)
        pair = built.get((kind, outcome))
        if pair is None:
            pair = (
                job_item_attributes(kind=kind, mode=mode, team=team, outcome=outcome),
                call_attributes(
                    operation=kind,
                    source=route,
                    deployment=deployment,
                    backend=backend,
                    team=team,
                    outcome=outcome,
                ),
            )
            built[(kind, outcome)] = pair
        meters.job_items.add(1, pair[0])
        if usage.prompt_tokens or usage.completion_tokens:
            record_tokens(pair[1], usage)


def limiter_attributes(deployment: str, backend: str) -> Attributes:
    return {names.DEPLOYMENT: deployment, names.BACKEND: backend}


def record_limiter_wait(attributes: Attributes, seconds: float) -> None:
    instruments().limiter_wait.record(seconds, attributes)


def record_queue_depth(attributes: Attributes, waiting: int) -> None:
    instruments().limiter_queue_depth.set(waiting, attributes)
