"""HTTP handlers: request in, response out, with the process's services.

Each handler reads and validates its input into a model, calls a service, and answers JSON
(or a stream). Errors are AppErrors, turned into `{"error": ...}` by `shared.http.guarded`.
"""

from __future__ import annotations

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from shared.health import check_health
from shared.http import json_response, parse_model, read_json
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
