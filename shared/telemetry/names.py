"""Every metric the app emits, and the attributes they carry (docs/telemetry.md).

The one list the code records with and the infra's workbook and alerts query by
(tests/infra checks that a query names only these): a metric renamed here and not there
fails a test, not a dashboard.

Names follow the OpenTelemetry GenAI semantic conventions where one exists
(`gen_ai.client.token.usage`, `gen_ai.client.operation.duration`,
`gen_ai.client.operation.time_to_first_chunk`); the rest are the app's own, under `app.`.
Attributes are a small fixed set (ATTRIBUTES), so the number of series stays bounded:
deployments x backends x routes x teams x outcomes (docs/telemetry.md states the figure).
"""

from __future__ import annotations

from typing import Final

# --- metrics ------------------------------------------------------------------------------
TOKEN_USAGE: Final = "gen_ai.client.token.usage"  # noqa: S105 (a metric name) - histogram, {token}, per call and type
OPERATION_DURATION: Final = "gen_ai.client.operation.duration"  # histogram, s
TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"  # histogram, s
UPSTREAM_REQUESTS: Final = "app.upstream.requests"  # counter, {request}: each HTTP attempt
SPILLOVERS: Final = "app.upstream.spillovers"  # counter, {request}: moved to another backend
JOB_ITEMS: Final = "app.job.items"  # counter, {item}: items done or failed
LIMITER_WAIT: Final = "app.limiter.wait.duration"  # histogram, s: time held by the limiter
LIMITER_QUEUE_DEPTH: Final = "app.limiter.queue_depth"  # gauge, {request}: callers waiting

METRICS: Final = (
    TOKEN_USAGE,
    OPERATION_DURATION,
    TIME_TO_FIRST_CHUNK,
    UPSTREAM_REQUESTS,
    SPILLOVERS,
    JOB_ITEMS,
    LIMITER_WAIT,
    LIMITER_QUEUE_DEPTH,
)

# --- attributes ---------------------------------------------------------------------------
OPERATION: Final = "gen_ai.operation.name"  # chat | embeddings | responses
PROVIDER: Final = "gen_ai.provider.name"  # always PROVIDER_NAME
DEPLOYMENT: Final = "gen_ai.request.model"  # the Azure OpenAI deployment called
TOKEN_TYPE: Final = "gen_ai.token.type"  # noqa: S105 (an attribute) - TOKEN_TYPES
ERROR_TYPE: Final = "error.type"  # on a failed call: the app's error code
BACKEND: Final = "app.backend"  # the backend's name (AZURE_OPENAI_BACKENDS), "primary" alone
ROUTE: Final = "app.route"  # ROUTES: which surface of the app made the call
TEAM: Final = "app.team"  # the team id, or NO_TEAM
OUTCOME: Final = "app.outcome"  # OUTCOMES
JOB_KIND: Final = "app.job.kind"  # embedding | classification
JOB_MODE: Final = "app.job.mode"  # realtime | batch
SPILL_TO: Final = "app.backend.to"  # a spill-over's destination backend

ATTRIBUTES: Final = (
    OPERATION,
    PROVIDER,
    DEPLOYMENT,
    TOKEN_TYPE,
    ERROR_TYPE,
    BACKEND,
    ROUTE,
    TEAM,
    OUTCOME,
    JOB_KIND,
    JOB_MODE,
    SPILL_TO,
)

PROVIDER_NAME: Final = "azure.ai.openai"
NO_TEAM: Final = "none"
# input and output are every prompt and completion token; cached is the part of input the
# service served from its prompt cache, reasoning the part of output the model spent hidden:
# sum input + output for the total, never all four.
TOKEN_TYPES: Final = ("input", "output", "cached", "reasoning")
ROUTES: Final = ("chat", "gateway", "responses", "job", "batch")
# ok: answered; throttled: 429; filtered: content filter; error: anything else.
OUTCOMES: Final = ("ok", "throttled", "filtered", "error")
