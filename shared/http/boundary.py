"""The HTTP boundary: request ids, reading JSON into models, and AppError -> JSON answer.

Every error answer is `{"error": {"code", "message", "details"?}}` with the right status and
an `x-request-id`; an unexpected exception is logged with its trace and answered as a plain
500 without one.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

# The HTTP streaming extension's Request/Response are FastAPI's own classes (re-exported by
# azurefunctions.extensions.http.fastapi, which ships no type information).
from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ValidationError

from shared.core.errors import AppError, InvalidRequest, TooLarge, translate, validation_details
from shared.core.models import ErrorDetail, ErrorResponse
from shared.telemetry import tracing

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

MAX_BODY_BYTES = 4 * 1024 * 1024
# fullmatch: with `re.match` and `$`, a trailing newline would pass (log and header injection).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def client_request_id_of(req: Request) -> str | None:
    """The caller's `x-request-id` when it is a sane token, else None. It is stored beside
    the server's own id, never in its place: a caller must not be able to choose the id that
    audit records are correlated by."""
    given = req.headers.get("x-request-id", "")
    return given if _REQUEST_ID.fullmatch(given) else None


def new_request_id() -> str:
    return str(uuid.uuid4())


def json_response(
    body: BaseModel | Mapping[str, Any],
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    content = body.model_dump_json() if isinstance(body, BaseModel) else json.dumps(body)
    return Response(
        content=content,
        status_code=status,
        headers=dict(headers or {}),
        media_type="application/json",
    )


def error_response(error: AppError) -> Response:
    return json_response(ErrorResponse(error=error.detail()), error.status, error.headers)


def parse_model(model: type[M], data: bytes | Mapping[str, Any], context: Any = None) -> M:
    try:
        if isinstance(data, bytes):
            return model.model_validate_json(data, context=context)
        return model.model_validate(data, context=context)
    except ValidationError as error:
        raise InvalidRequest("the request is invalid", details=validation_details(error)) from None


async def read_body(req: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body: 413 past `limit`, 400 when empty.

    The stream is read chunk by chunk and abandoned at the limit: a chunked upload has no
    Content-Length, and reading it whole first would let one caller fill the instance's
    memory before the 413."""
    declared = req.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the body may be at most {limit} bytes")
    body = bytearray()
    async for chunk in req.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"the body may be at most {limit} bytes")
    if not body.strip():
        raise InvalidRequest("a JSON body is required")
    return bytes(body)


async def read_json(req: Request, model: type[M], context: Any = None) -> M:
    """The body as `model`: 413 past MAX_BODY_BYTES, 400 with pydantic details otherwise."""
    return parse_model(model, await read_body(req), context)


async def guarded(req: Request, handle: Callable[[str], Awaitable[Response]]) -> Response:
    """Run a handler with a server-made request id; turn every error into a JSON error answer.

    The answer carries the server's id as `x-request-id` and echoes a well-formed caller id
    as `x-client-request-id`. The call is one span (shared/telemetry/tracing.py), continuing
    the caller's `traceparent` and named in the answer's `traceresponse`; a streamed answer's
    span ends with its last byte."""
    request_id = new_request_id()
    client_id = client_request_id_of(req)
    span = tracing.start_http_span(
        req.method, tracing.http_route(req.url.path, req.path_params), req.headers
    )
    error_type: str | None = None
    with tracing.current(span):
        try:
            response = await handle(request_id)
        except Exception as error:
            known = translate(error)
            if known is not None:
                error_type = known.code
                response = error_response(known)
            else:
                error_type = "internal_error"
                log.exception(
                    "unhandled error in %s %s (request %s)", req.method, req.url.path, request_id
                )
                response = json_response(
                    ErrorResponse(
                        error=ErrorDetail(code="internal_error", message="internal error; see logs")
                    ),
                    500,
                )
    response.headers["x-request-id"] = request_id
    if client_id is not None:
        response.headers["x-client-request-id"] = client_id
    response.headers.update(tracing.response_header(span))
    if isinstance(response, StreamingResponse) and span.is_recording():
        response.body_iterator = tracing.traced_body(
            response.body_iterator, span, response.status_code, error_type
        )
    else:  # an unsampled span records nothing: its stream passes unwrapped
        tracing.end_http_span(span, response.status_code, error_type)
    return response
