"""The control plane for tests and benchmarks (no auth, local only).

- `GET /sim/config`: the current SimulatorConfig as JSON.
- `PATCH /sim/config`: a JSON merge patch, e.g. `{"deployments": {"gpt-4o": {"rpm": 1}},
  "rate_limit": {"retry_after_ms": 10}}`; answers the new config, or 400 with the errors.
- `GET /sim/stats`: counters (see `Stats.snapshot`).
- `GET /sim/requests/{deployment}/last`: the JSON body of the deployment's last chat,
  embeddings or Responses request as it arrived (404 when none came since the last reset),
  so a test can see what a proxy in front of the service actually sent.
- `GET /sim/inputs`: how many answered requests carried each item input (see
  `Stats.inputs`); `POST /sim/inputs` with `{"keys": [...]}` adds the counts of those keys.
- `POST /sim/reset`: clear stats, input counts, quota windows, the recorded last bodies, the
  prompt cache and the enqueued tokens of existing batches; `{"config": true}` also restores
  the config the simulator started with.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .state import get_state


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return None


async def get_config(request: Request) -> Response:
    return JSONResponse(get_state(request).config.model_dump(mode="json"))


async def patch_config(request: Request) -> Response:
    state = get_state(request)
    patch = await _json_body(request)
    if not isinstance(patch, dict):
        return JSONResponse(
            {"error": {"code": "invalid_patch", "message": "expected a JSON object"}}, 400
        )
    try:
        new = state.config.merged(patch)
    except ValidationError as exc:
        details = json.loads(exc.json(include_url=False, include_context=False))
        return JSONResponse(
            {"error": {"code": "invalid_config", "message": str(exc), "details": details}}, 400
        )
    state.config = new
    return JSONResponse(new.model_dump(mode="json"))


async def get_stats(request: Request) -> Response:
    return JSONResponse(get_state(request).stats.snapshot())


async def last_request(request: Request) -> Response:
    body = get_state(request).last_bodies.get(request.path_params["deployment"])
    if body is None:
        return JSONResponse({"error": {"code": "404", "message": "no request recorded"}}, 404)
    return JSONResponse(body)


async def get_inputs(request: Request) -> Response:
    return JSONResponse(get_state(request).stats.inputs())


async def count_inputs(request: Request) -> Response:
    body = await _json_body(request)
    keys = body.get("keys") if isinstance(body, dict) else None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        return JSONResponse(
            {"error": {"code": "invalid_body", "message": 'expected {"keys": [strings]}'}}, 400
        )
    return JSONResponse(get_state(request).stats.inputs(keys))


async def reset(request: Request) -> Response:
    state = get_state(request)
    body = await _json_body(request)
    state.stats.reset()
    state.last_bodies.clear()
    state.limiter.reset()
    state.batches.release_quota()
    state.prompt_cache.clear()
    if isinstance(body, dict) and body.get("config"):
        state.config = request.app.state.initial_config
    return JSONResponse({"reset": True})
