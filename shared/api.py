"""HTTP handlers: request in, response out, with the process's services.

Each handler reads and validates its input into a model, calls a service, and answers JSON
(or a stream). Errors are AppErrors, turned into `{"error": ...}` by `shared.http.guarded`.
"""

from __future__ import annotations

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from shared.health import check_health
from shared.http import json_response, parse_model, read_body, read_json
from shared.job_models import JobKind, JobQuery
from shared.models import ChatRequest, UsageQuery
from shared.openapi import openapi_document
from shared.runtime import Runtime
from shared.usage import usage_report

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    # Proxies (nginx, Front Door) must not buffer the stream.
    "X-Accel-Buffering": "no",
}


async def chat(rt: Runtime, req: Request, request_id: str) -> Response:
    """`POST /api/chat`: JSON answer, or Server-Sent Events when `stream` is true."""
    request = await read_json(req, ChatRequest, context={"settings": rt.settings})
    if not request.stream:
        return json_response(await rt.chat.complete(request, request_id))
    frames = await rt.chat.open_stream(request, request_id)
    return StreamingResponse(frames, media_type="text/event-stream", headers=SSE_HEADERS)


async def usage(rt: Runtime, req: Request, request_id: str) -> Response:
    """`GET /api/usage?since=&until=&group_by=`."""
    query = parse_model(UsageQuery, dict(req.query_params))
    report = await usage_report(
        rt.store, query, rt.settings.model_prices, rt.settings.batch_discount
    )
    return json_response(report)


async def health(rt: Runtime, req: Request, request_id: str) -> Response:
    """`GET /api/health`: 200 when Cosmos, queues and Azure OpenAI answer, else 503."""
    report = await check_health(rt.store, rt.queues, rt.aoai)
    return json_response(report, 200 if report.status == "ok" else 503)


async def openapi(rt: Runtime, req: Request, request_id: str) -> Response:
    return json_response(openapi_document())


async def submit_job(rt: Runtime, req: Request, request_id: str, kind: JobKind) -> Response:
    """`POST /api/jobs/embeddings` and `/api/jobs/classifications`: 202 with the job id."""
    body = await read_body(req)
    accepted = await rt.job_requests.submit(
        kind, body, request_id, status_url=lambda job_id: f"{req.base_url}api/jobs/{job_id}"
    )
    return json_response(accepted, 202)


async def get_job(rt: Runtime, req: Request, request_id: str) -> Response:
    """`GET /api/jobs/{job_id}?page_size=&continuation=`: status, counts, one page of results."""
    query = parse_model(JobQuery, dict(req.query_params))
    return json_response(
        await rt.job_requests.view(req.path_params["job_id"], query.page_size, query.continuation)
    )


async def cancel_job(rt: Runtime, req: Request, request_id: str) -> Response:
    """`POST /api/jobs/{job_id}/cancel`: no new requests; results so far are kept."""
    return json_response(await rt.job_requests.cancel(req.path_params["job_id"]))
