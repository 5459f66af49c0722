"""HTTP handlers: request in, response out, with the process's services.

Each handler reads and validates its input into a model, calls a service, and answers JSON
(or a stream). Errors are AppErrors, turned into `{"error": ...}` by `shared.http.guarded`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from shared.chat.models import ChatRequest
from shared.core.health import HealthStatus
from shared.gateway.models import ChatCompletionsBody, EmbeddingsBody, ResponsesBody, parse_tags
from shared.gateway.service import Forwarded
from shared.http.boundary import json_response, parse_model, read_body, read_json
from shared.http.openapi import openapi_document
from shared.http.team_auth import team_caller
from shared.jobs.models import JobKind, JobQuery
from shared.metering.callers import (
    ADMIN_ROLE,
    CHAT_ROLE,
    JOBS_ROLE,
    USAGE_ROLE,
    Origin,
    principal_of,
    require_role,
)
from shared.metering.models import UsageQuery
from shared.metering.report import usage_report
from shared.runtime import Runtime

B = TypeVar("B", ChatCompletionsBody, EmbeddingsBody, ResponsesBody)

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    # Proxies (nginx, Front Door) must not buffer the stream.
    "X-Accel-Buffering": "no",
}


async def chat(rt: Runtime, req: Request, request_id: str) -> Response:
    """`POST /api/chat`: JSON answer, or Server-Sent Events when `stream` is true."""
    caller, _ = await team_caller(rt, req, CHAT_ROLE)
    request = await read_json(req, ChatRequest, context={"settings": rt.settings})
    if not request.stream:
        answer, headers = await rt.chat.answer(request, request_id, caller)
        return json_response(answer, headers=headers)
    frames, headers = await rt.chat.start_stream(request, request_id, caller)
    return StreamingResponse(
        frames, media_type="text/event-stream", headers={**headers, **SSE_HEADERS}
    )


async def usage(rt: Runtime, req: Request, request_id: str) -> Response:
    """`GET /api/usage?since=&until=&group_by=`: the caller's team's usage only, from the
    daily roll-ups (bounded cost)."""
    _, team = await team_caller(rt, req, USAGE_ROLE)
    return await _usage(rt, req, team.id)


async def platform_usage(rt: Runtime, req: Request, request_id: str) -> Response:
    """`GET /api/usage/all?since=&until=&group_by=` (the host's master key; with ENTRA_AUTH
    also the `Admin` app role): every team's usage, `group_by=team` included."""
    principal = principal_of(req.headers, trusted=rt.settings.entra_auth)
    require_role(principal, ADMIN_ROLE, enforced=rt.settings.entra_auth)
    return await _usage(rt, req, None)


async def _usage(rt: Runtime, req: Request, team: str | None) -> Response:
    query = parse_model(UsageQuery, dict(req.query_params))
    report = await usage_report(
        rt.usage_rollups,
        query,
        rt.settings.model_prices,
        rt.settings.batch_discount,
        max_cells=rt.settings.usage_report_max_cells,
        team=team,
    )
    return json_response(report)


async def health(rt: Runtime, req: Request, request_id: str) -> Response:
    """`GET /api/health` (anonymous): the status only, from checks at most a few seconds old."""
    report = await rt.health_cache.report()
    return json_response(HealthStatus(status=report.status), 200 if report.status == "ok" else 503)


async def health_details(rt: Runtime, req: Request, request_id: str) -> Response:
    """`GET /api/health/details` (function key): each check's result, latency and error."""
    report = await rt.health_cache.report()
    return json_response(report, 200 if report.status == "ok" else 503)


async def openapi(rt: Runtime, req: Request, request_id: str) -> Response:
    return json_response(openapi_document())


async def submit_job(rt: Runtime, req: Request, request_id: str, kind: JobKind) -> Response:
    """`POST /api/jobs/embeddings` and `/api/jobs/classifications`: 202 with the job id."""
    caller, team = await team_caller(rt, req, JOBS_ROLE)
    body = await read_body(req)
    accepted = await rt.job_requests.submit(
        kind,
        body,
        request_id,
        status_url=lambda job_id: f"{req.base_url}api/jobs/{job_id}",
        principal_id=caller.principal.object_id if caller.principal else None,
        team=team.id,
        models=team.models,
    )
    return json_response(accepted, 202)


async def get_job(rt: Runtime, req: Request, request_id: str) -> Response:
    """`GET /api/jobs/{job_id}?page_size=&continuation=`: status, counts, one page of results."""
    _, team = await team_caller(rt, req, JOBS_ROLE)
    query = parse_model(JobQuery, dict(req.query_params))
    return json_response(
        await rt.job_requests.view(
            req.path_params["job_id"], query.page_size, query.continuation, team=team.id
        )
    )


async def cancel_job(rt: Runtime, req: Request, request_id: str) -> Response:
    """`POST /api/jobs/{job_id}/cancel`: no new requests; results so far are kept."""
    _, team = await team_caller(rt, req, JOBS_ROLE)
    return json_response(await rt.job_requests.cancel(req.path_params["job_id"], team=team.id))


# --- the Azure OpenAI-compatible routes (docs/gateway.md) ----------------------------------


def forwarded_response(answer: Forwarded) -> Response:
    if answer.stream is not None:
        return StreamingResponse(
            answer.stream,
            status_code=answer.status,
            media_type=answer.media_type,
            headers={**answer.headers, **SSE_HEADERS},
        )
    return Response(
        content=answer.body,
        status_code=answer.status,
        headers=answer.headers,
        media_type=answer.media_type,
    )


async def gateway_chat(rt: Runtime, req: Request, request_id: str) -> Response:
    """`POST /api/openai/deployments/{deployment}/chat/completions`, and, model in the body,
    `POST /api/openai/v1/chat/completions` and `/api/v1/chat/completions`: the service's
    answer, unchanged."""
    return await _forward(rt, req, request_id, ChatCompletionsBody, rt.gateway.chat)


async def gateway_embeddings(rt: Runtime, req: Request, request_id: str) -> Response:
    """`POST /api/openai/deployments/{deployment}/embeddings`, `/api/openai/v1/embeddings`
    and `/api/v1/embeddings`."""
    return await _forward(rt, req, request_id, EmbeddingsBody, rt.gateway.embeddings)


async def gateway_responses(rt: Runtime, req: Request, request_id: str) -> Response:
    """`POST /api/openai/v1/responses`, `/api/openai/responses?api-version=` and
    `/api/v1/responses` (shared/gateway/responses.py)."""

    async def create(body: ResponsesBody, _: str | None, origin: Origin) -> Forwarded:
        return await rt.responses.create(body, origin)

    return await _forward(rt, req, request_id, ResponsesBody, create)


async def gateway_stored_response(
    rt: Runtime, req: Request, request_id: str, suffix: str = ""
) -> Response:
    """`GET`/`DELETE .../responses/{response_id}`, `GET .../input_items` (`suffix`
    `/input_items`), `POST .../cancel` (`/cancel`), in each shape: sent to the backend that
    created the response; another team's id is the service's 404."""
    caller, _ = await team_caller(rt, req, CHAT_ROLE, azure=True)
    tags = parse_tags(req.headers.get("x-usage-tags"))
    origin = Origin(caller, request_id, tags, None)
    answer = await rt.responses.follow_up(
        req.method, req.path_params["response_id"], suffix, dict(req.query_params), origin
    )
    return forwarded_response(answer)


async def _forward(
    rt: Runtime,
    req: Request,
    request_id: str,
    model: type[B],
    route: Callable[[B, str | None, Origin], Awaitable[Forwarded]],
) -> Response:
    caller, _ = await team_caller(rt, req, CHAT_ROLE, azure=True)
    tags = parse_tags(req.headers.get("x-usage-tags"))
    body = await read_json(req, model)
    origin = Origin(caller, request_id, tags, body.user)
    return forwarded_response(await route(body, req.path_params.get("deployment"), origin))
