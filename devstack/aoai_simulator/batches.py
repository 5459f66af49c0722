"""The Batch API routes (`/openai/batches`): create, list, get, cancel.

Batches live in a `BatchStore` (batch_store.py); these handlers only speak HTTP.
"""

from __future__ import annotations

from starlette.responses import Response

from .gateway import Call, read_json
from .paging import page, query_limit


async def create_batch(call: Call) -> Response:
    body = await read_json(call.request)
    view = call.state.batches.create(body, call.config)
    call.record(200)
    return call.json(view)


async def list_batches(call: Call) -> Response:
    items = call.state.batches.list()
    result = page(items, call.request.query_params.get("after"), query_limit(call.request, 20, 100))
    call.record(200)
    return call.json(result)


async def retrieve_batch(call: Call) -> Response:
    view = call.state.batches.get(call.request.path_params["batch_id"])
    call.record(200)
    return call.json(view)


async def cancel_batch(call: Call) -> Response:
    view = call.state.batches.cancel(call.request.path_params["batch_id"])
    call.record(200)
    return call.json(view)
