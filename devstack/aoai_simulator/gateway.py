"""What every `/openai/...` request goes through first: ids, auth, api-version, faults, stats.

`endpoint(route)` wraps a handler; an `AzureError` raised anywhere inside becomes Azure's
JSON error body and is counted in the stats.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from . import errors, faults
from .auth import api_version, authenticate
from .config import DeploymentConfig, SimulatorConfig
from .ratelimit import Decision
from .state import SimState, get_state

_OPERATIONS = {"chat": "chatCompletion", "embeddings": "embeddings", "responses": "responses"}


@dataclass
class Call:
    """One admitted request: the config as it was on arrival, and its bookkeeping."""

    request: Request
    state: SimState
    config: SimulatorConfig
    route: str
    request_id: str
    api_version: str
    retry_count: int
    deployment: str | None = None
    v1: bool = False  # the v1 shape: `/openai/v1/...`, the deployment named by `model`

    def headers(self, decision: Decision | None = None) -> dict[str, str]:
        out = {
            "apim-request-id": self.request_id,
            "x-request-id": self.request_id,
            "x-ms-region": "Simulated",
        }
        if decision is not None:
            if decision.remaining_requests >= 0:
                out["x-ratelimit-remaining-requests"] = str(decision.remaining_requests)
            if decision.remaining_tokens >= 0:
                out["x-ratelimit-remaining-tokens"] = str(decision.remaining_tokens)
        return out

    def record(
        self,
        status: int,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        inputs: int = 0,
        *,
        cached_tokens: int = 0,
        reasoning_tokens: int = 0,
    ) -> None:
        self.state.stats.record(
            self.route,
            self.deployment,
            status,
            self.retry_count,
            prompt_tokens,
            completion_tokens,
            inputs,
            cached_tokens=cached_tokens,
            reasoning_tokens=reasoning_tokens,
        )

    def json(self, body: Any, status: int = 200, decision: Decision | None = None) -> Response:
        return Response(
            json.dumps(body),
            status_code=status,
            headers=self.headers(decision),
            media_type="application/json",
        )

    def lookup(self, kind: str) -> DeploymentConfig:
        """The deployment named in the path (or, in the v1 shape, by `model` in the body,
        read by `endpoint`), usable for `kind`; else Azure's 404/400."""
        name = self.deployment or self.request.path_params["deployment"]
        self.deployment = name
        deployment = self.config.deployment(name)
        if deployment is None:
            raise errors.deployment_not_found()
        if deployment.kind != kind or deployment.sku == "global-batch":
            raise errors.operation_not_supported(_OPERATIONS[self.route], deployment.model)
        return deployment


async def read_json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError:
        raise errors.invalid_request(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
            "but what was sent was not valid JSON.)"
        ) from None


async def _faulted(call: Call, fault: faults.Fault | None) -> Response | None:
    if fault is None:
        return None
    if fault == "error_429":
        settings = call.config.faults[call.route]
        operation = _OPERATIONS.get(call.route, call.route)
        raise errors.rate_limited(operation, call.api_version, settings.retry_after_ms, False)
    if fault == "error_500":
        raise errors.server_error(500)
    if fault == "error_503":
        raise errors.server_error(503)
    if fault == "lost":
        return None  # carried out first: see `endpoint`
    if fault == "hang":
        settings = call.config.faults[call.route]
        if await faults.hang(call.request, settings.hang_seconds):
            return Response(status_code=499)  # the client gave up; nobody reads this
        raise errors.error(408, "Timeout", "The operation was timeout.")
    call.record(0)
    return faults.DroppedResponse()  # type: ignore[return-value]


Handler = Callable[[Call], Awaitable[Response]]


async def body_model(call: Call) -> dict[str, Any]:
    """The JSON body of a v1 data-plane POST, its `model` noted as the call's deployment
    (what `lookup` finds); a body without a model is the service's 400."""
    body = await read_json(call.request)
    model = body.get("model") if isinstance(body, dict) else None
    if not isinstance(model, str) or not model:
        raise errors.invalid_request("Missing required parameter: 'model'.", "model")
    call.deployment = model
    return body  # type: ignore[no-any-return]


def endpoint(
    route: str, handler: Handler, *, v1: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint: admit the request, inject faults, run `handler`, map errors.

    `v1`: Azure's v1 shape (`/openai/v1/...`): no `api-version` (the handler reads the
    deployment from the body's `model`, `body_model`)."""

    async def run(request: Request) -> Response:
        state = get_state(request)
        request_id = str(uuid.uuid4())
        try:
            retry_count = int(request.headers.get("x-stainless-retry-count", "0"))
        except ValueError:
            retry_count = 0
        call = Call(request, state, state.config, route, request_id, "", retry_count)
        try:
            authenticate(request, call.config)
            if v1:
                call.v1 = True
                call.api_version = "v1"
            else:
                call.api_version = api_version(request, call.config)
            fault = faults.draw_fault(call.config.faults.get(call.route), call.state.rng)
            dropped = await _faulted(call, fault)
            if dropped is not None:
                return dropped
            response = await handler(call)
            if fault == "lost" and request.method in faults.WRITES:
                return faults.DroppedResponse()  # type: ignore[return-value]
            return response
        except errors.AzureError as exc:
            call.record(exc.status)
            return errors.to_response(exc, request_id)

    return run
