"""The trigger table. Each function is wiring only: the work lives in `shared/`.

HTTP functions use the HTTP streaming extension's FastAPI types (`Request` in, `Response` or
`StreamingResponse` out): with the extension enabled the worker serves every HTTP function
that way, and it is what lets `/api/chat` stream on Azure (`PYTHON_ENABLE_INIT_INDEXING=1`).
Queue functions hand their message to `shared/jobs/worker.py`, the queue-side twin of
`shared/http/boundary.py`; the timers call one service method each. Every call, message and
timer run is a trace of its own (docs/telemetry.md#traces).
"""

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Request, Response

from shared.core.settings import get_settings
from shared.http import admin_teams, handlers
from shared.http.boundary import guarded
from shared.runtime import apply_log_level, get_runtime
from shared.telemetry import tracing
from shared.telemetry.settings import get_telemetry_settings
from shared.telemetry.setup import configure_telemetry

# Read every setting now: a missing or invalid one stops start-up with its name. LOG_LEVEL
# applies from here on; metrics and traces export from here on when a destination is set
# (docs/telemetry.md).
apply_log_level(get_settings())
configure_telemetry(get_telemetry_settings())

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

# The data-plane routes (chat, the gateway routes, jobs, usage) are anonymous at the host: the
# app is their gate, and takes only a team's credential (shared/http/team_auth.py), so the
# plain openai SDK, which sends nothing but its `api_key`, reaches them. docs/security.md.
DATA_PLANE = func.AuthLevel.ANONYMOUS


# --- HTTP ---------------------------------------------------------------------------------


@app.route(route="chat", methods=["POST"], auth_level=DATA_PLANE)
async def chat(req: Request) -> Response:
    return await guarded(req, lambda rid: handlers.chat(get_runtime(), req, rid))


@app.route(route="jobs/embeddings", methods=["POST"], auth_level=DATA_PLANE)
async def submit_embedding_job(req: Request) -> Response:
    return await guarded(req, lambda rid: handlers.submit_job(get_runtime(), req, rid, "embedding"))


@app.route(route="jobs/classifications", methods=["POST"], auth_level=DATA_PLANE)
async def submit_classification_job(req: Request) -> Response:
    return await guarded(
        req, lambda rid: handlers.submit_job(get_runtime(), req, rid, "classification")
    )


@app.route(route="jobs/{job_id}", methods=["GET"], auth_level=DATA_PLANE)
async def get_job(req: Request) -> Response:
    return await guarded(req, lambda rid: handlers.get_job(get_runtime(), req, rid))


@app.route(route="jobs/{job_id}/cancel", methods=["POST"], auth_level=DATA_PLANE)
async def cancel_job(req: Request) -> Response:
    return await guarded(req, lambda rid: handlers.cancel_job(get_runtime(), req, rid))


# The Azure OpenAI-compatible routes (docs/gateway.md): `azure_endpoint="<app>/api"` lands on
# the first pair, `base_url="<app>/api/v1"` on the second, `base_url="<app>/api/openai/v1"` on
# the third.
@app.route(
    route="openai/deployments/{deployment}/chat/completions",
    methods=["POST"],
    auth_level=DATA_PLANE,
)
async def gateway_chat(req: Request) -> Response:
    return await guarded(req, lambda rid: handlers.gateway_chat(get_runtime(), req, rid))


@app.route(
    route="openai/deployments/{deployment}/embeddings", methods=["POST"], auth_level=DATA_PLANE
)
async def gateway_embeddings(req: Request) -> Response:
    return await guarded(req, lambda rid: handlers.gateway_embeddings(get_runtime(), req, rid))


@app.route(route="v1/chat/completions", methods=["POST"], auth_level=DATA_PLANE)
async def openai_chat(req: Request) -> Response:
    return await guarded(req, lambda rid: handlers.gateway_chat(get_runtime(), req, rid))


@app.route(route="v1/embeddings", methods=["POST"], auth_level=DATA_PLANE)
async def openai_embeddings(req: Request) -> Response:
    return await guarded(req, lambda rid: handlers.gateway_embeddings(get_runtime(), req, rid))


# Azure's v1 shape: `OpenAI(base_url="<app>/api/openai/v1")`, the deployment in `model`.
@app.route(route="openai/v1/chat/completions", methods=["POST"], auth_level=DATA_PLANE)
async def azure_v1_chat(req: Request) -> Response:
    return await guarded(req, lambda rid: handlers.gateway_chat(get_runtime(), req, rid))


@app.route(route="openai/v1/embeddings", methods=["POST"], auth_level=DATA_PLANE)
async def azure_v1_embeddings(req: Request) -> Response:
    return await guarded(req, lambda rid: handlers.gateway_embeddings(get_runtime(), req, rid))


# The Responses API in each shape: Azure's v1 (`openai/v1`), Azure's preview
# (`openai/responses?api-version=`), OpenAI's (`v1`). A stored response's follow-ups go to the
# backend that created it (shared/gateway/responses.py).
@app.route(route="openai/v1/responses", methods=["POST"], auth_level=DATA_PLANE)
async def azure_v1_responses(req: Request) -> Response:
    return await guarded(req, lambda rid: handlers.gateway_responses(get_runtime(), req, rid))


@app.route(
    route="openai/v1/responses/{response_id}", methods=["GET", "DELETE"], auth_level=DATA_PLANE
)
async def azure_v1_response(req: Request) -> Response:
    return await guarded(req, lambda rid: handlers.gateway_stored_response(get_runtime(), req, rid))


@app.route(
    route="openai/v1/responses/{response_id}/input_items", methods=["GET"], auth_level=DATA_PLANE
)
async def azure_v1_response_input_items(req: Request) -> Response:
    return await guarded(
        req, lambda rid: handlers.gateway_stored_response(get_runtime(), req, rid, "/input_items")
    )


@app.route(
    route="openai/v1/responses/{response_id}/cancel", methods=["POST"], auth_level=DATA_PLANE
)
async def azure_v1_response_cancel(req: Request) -> Response:
    return await guarded(
        req, lambda rid: handlers.gateway_stored_response(get_runtime(), req, rid, "/cancel")
    )


@app.route(route="openai/responses", methods=["POST"], auth_level=DATA_PLANE)
async def azure_responses(req: Request) -> Response:
    return await guarded(req, lambda rid: handlers.gateway_responses(get_runtime(), req, rid))


@app.route(route="openai/responses/{response_id}", methods=["GET", "DELETE"], auth_level=DATA_PLANE)
async def azure_response(req: Request) -> Response:
    return await guarded(req, lambda rid: handlers.gateway_stored_response(get_runtime(), req, rid))


@app.route(
    route="openai/responses/{response_id}/input_items", methods=["GET"], auth_level=DATA_PLANE
)
async def azure_response_input_items(req: Request) -> Response:
    return await guarded(
        req, lambda rid: handlers.gateway_stored_response(get_runtime(), req, rid, "/input_items")
    )


@app.route(route="openai/responses/{response_id}/cancel", methods=["POST"], auth_level=DATA_PLANE)
async def azure_response_cancel(req: Request) -> Response:
    return await guarded(
        req, lambda rid: handlers.gateway_stored_response(get_runtime(), req, rid, "/cancel")
    )


@app.route(route="v1/responses", methods=["POST"], auth_level=DATA_PLANE)
async def openai_responses(req: Request) -> Response:
    return await guarded(req, lambda rid: handlers.gateway_responses(get_runtime(), req, rid))


@app.route(route="v1/responses/{response_id}", methods=["GET", "DELETE"], auth_level=DATA_PLANE)
async def openai_response(req: Request) -> Response:
    return await guarded(req, lambda rid: handlers.gateway_stored_response(get_runtime(), req, rid))


@app.route(route="v1/responses/{response_id}/input_items", methods=["GET"], auth_level=DATA_PLANE)
async def openai_response_input_items(req: Request) -> Response:
    return await guarded(
        req, lambda rid: handlers.gateway_stored_response(get_runtime(), req, rid, "/input_items")
    )


@app.route(route="v1/responses/{response_id}/cancel", methods=["POST"], auth_level=DATA_PLANE)
async def openai_response_cancel(req: Request) -> Response:
    return await guarded(
        req, lambda rid: handlers.gateway_stored_response(get_runtime(), req, rid, "/cancel")
    )


@app.route(route="usage", methods=["GET"], auth_level=DATA_PLANE)
async def usage(req: Request) -> Response:
    return await guarded(req, lambda rid: handlers.usage(get_runtime(), req, rid))


# Every team's usage (`group_by=team`): the platform's view, on the host's master key only.
@app.route(route="usage/all", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def platform_usage(req: Request) -> Response:
    return await guarded(req, lambda rid: handlers.platform_usage(get_runtime(), req, rid))


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: Request) -> Response:
    return await guarded(req, lambda rid: handlers.health(get_runtime(), req, rid))


@app.route(route="health/details", methods=["GET"])
async def health_details(req: Request) -> Response:
    return await guarded(req, lambda rid: handlers.health_details(get_runtime(), req, rid))


@app.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def openapi(req: Request) -> Response:
    return await guarded(req, lambda rid: handlers.openapi(get_runtime(), req, rid))


# The team registry (docs/teams.md): the host's master key only (a function key is a 401).


@app.route(route="teams", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
async def create_team(req: Request) -> Response:
    return await guarded(req, lambda rid: admin_teams.create_team(get_runtime(), req, rid))


@app.route(route="teams", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def list_teams(req: Request) -> Response:
    return await guarded(req, lambda rid: admin_teams.list_teams(get_runtime(), req, rid))


@app.route(route="teams/{team_id}", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def get_team(req: Request) -> Response:
    return await guarded(req, lambda rid: admin_teams.get_team(get_runtime(), req, rid))


@app.route(route="teams/{team_id}", methods=["PATCH"], auth_level=func.AuthLevel.ADMIN)
async def update_team(req: Request) -> Response:
    return await guarded(req, lambda rid: admin_teams.update_team(get_runtime(), req, rid))


@app.route(route="teams/{team_id}/keys", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
async def new_team_key(req: Request) -> Response:
    return await guarded(req, lambda rid: admin_teams.new_team_key(get_runtime(), req, rid))


@app.route(
    route="teams/{team_id}/keys/{key_id}", methods=["DELETE"], auth_level=func.AuthLevel.ADMIN
)
async def revoke_team_key(req: Request) -> Response:
    return await guarded(req, lambda rid: admin_teams.revoke_team_key(get_runtime(), req, rid))


# --- queues -------------------------------------------------------------------------------


@app.queue_trigger(arg_name="msg", queue_name="%EMBEDDING_QUEUE%", connection="AzureWebJobsStorage")
async def embed(msg: func.QueueMessage) -> None:
    await get_runtime().job_worker.on_message("embedding", msg)


@app.queue_trigger(
    arg_name="msg", queue_name="%CLASSIFICATION_QUEUE%", connection="AzureWebJobsStorage"
)
async def classify(msg: func.QueueMessage) -> None:
    await get_runtime().job_worker.on_message("classification", msg)


@app.queue_trigger(arg_name="msg", queue_name="%OUTBOX_QUEUE%", connection="AzureWebJobsStorage")
async def drain_outbox(msg: func.QueueMessage) -> None:
    with tracing.message_span(get_settings().outbox_queue):
        await get_runtime().outbox.drain(msg.get_body())


# --- timers -------------------------------------------------------------------------------


@app.timer_trigger(arg_name="timer", schedule="%POISON_SWEEP_SCHEDULE%", run_on_startup=False)
async def record_poison(timer: func.TimerRequest) -> None:
    with tracing.run_span("record_poison"):
        await get_runtime().poison_sweeper.sweep()


@app.timer_trigger(arg_name="timer", schedule="%POISON_SWEEP_SCHEDULE%", run_on_startup=False)
async def sweep_outbox_poison(timer: func.TimerRequest) -> None:
    with tracing.run_span("sweep_outbox_poison"):
        await get_runtime().outbox.sweep()


@app.timer_trigger(arg_name="timer", schedule="%BATCH_POLL_SCHEDULE%", run_on_startup=False)
async def poll_batches(timer: func.TimerRequest) -> None:
    with tracing.run_span("poll_batches"):
        await get_runtime().batch_poller.poll()


@app.timer_trigger(arg_name="timer", schedule="%USAGE_ROLLUP_SCHEDULE%", run_on_startup=False)
async def roll_up_usage(timer: func.TimerRequest) -> None:
    with tracing.run_span("roll_up_usage"):
        await get_runtime().usage_rollups.run()
