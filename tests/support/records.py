"""Waiting for documents the app writes a little after it answers: a stream's usage when the
stream ends, records written behind through the outbox."""

from __future__ import annotations

import asyncio
from typing import Any

from shared.core.store import Store


async def query_until(
    store: Store,
    container: str,
    query: str,
    params: dict[str, Any],
    *,
    count: int = 1,
    tries: int = 30,
) -> list[dict[str, Any]]:
    """The documents matching `query`, once there are `count` of them, polled every 0.1 s up
    to `tries` times; what there is then, if fewer."""
    found: list[dict[str, Any]] = []
    for _ in range(tries):
        found = await store.query(container, query, params)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.1)
    return found


async def docs_by_client_request_id(
    store: Store, container: str, client_request_id: str, *, tries: int = 30
) -> list[dict[str, Any]]:
    """The documents of the call a caller sent with `x-request-id: client_request_id` (over
    HTTP), waited for as `query_until` does (`tries=1`: what is there now)."""
    query = "SELECT * FROM c WHERE c.client_request_id = @rid"
    return await query_until(store, container, query, {"@rid": client_request_id}, tries=tries)


async def docs_by_request_id(
    store: Store, container: str, request_id: str, *, tries: int = 30
) -> list[dict[str, Any]]:
    """The documents of the call the app knows as `request_id`, its own id (the one a service
    is handed in-process), waited for as `query_until` does."""
    query = "SELECT * FROM c WHERE c.request_id = @rid"
    return await query_until(store, container, query, {"@rid": request_id}, tries=tries)
