"""Cosmos DB access: the database, its containers, idempotent upserts and portable queries.

Every document has a deterministic id, so a redelivered message or a re-run ingestion
overwrites instead of duplicating. Queries stay within what both Cosmos DB and the local
server support (no OFFSET/LIMIT, GROUP BY, DISTINCT VALUE): aggregation happens in Python, and
the partition key is also written into the query text because the local server ignores it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Final

from azure.core import MatchConditions
from azure.core.credentials_async import AsyncTokenCredential
from azure.cosmos import PartitionKey
from azure.cosmos.aio import ContainerProxy, CosmosClient, DatabaseProxy
from azure.cosmos.exceptions import (
    CosmosAccessConditionFailedError,
    CosmosResourceExistsError,
    CosmosResourceNotFoundError,
)

from shared.core.settings import Settings

log = logging.getLogger(__name__)

JOBS: Final = "jobs"
RESULTS: Final = "results"
CONTENT_FILTER_EVENTS: Final = "content_filter_events"
BATCHES: Final = "batches"
USAGE: Final = "usage"
USAGE_ROLLUPS: Final = "usage_rollups"
CALLER_MINUTES: Final = "caller_minutes"
TEAMS: Final = "teams"
TEAM_SPEND: Final = "team_spend"
RESPONSES: Final = "responses"
QUOTA_LEDGER: Final = "quota_ledger"

# container -> partition key path (DESIGN.md, "Cosmos DB").
CONTAINERS: Final[Mapping[str, str]] = {
    JOBS: "/job_id",
    RESULTS: "/job_id",
    CONTENT_FILTER_EVENTS: "/day",
    BATCHES: "/id",
    USAGE: "/day",
    USAGE_ROLLUPS: "/day",
    CALLER_MINUTES: "/id",
    TEAMS: "/id",
    TEAM_SPEND: "/id",
    RESPONSES: "/id",
    QUOTA_LEDGER: "/id",
}

Document = dict[str, Any]

CONNECT_TIMEOUT_SECONDS: Final = 5
OPERATION_TIMEOUT_SECONDS: Final = 15


@dataclass
class RequestCharge:
    """Request units Cosmos DB charged (its `x-ms-request-charge` header), summed over the
    responses of a query. `reported` stays False where the server sends no such header (the
    local Cosmos DB server)."""

    request_units: float = 0.0
    responses: int = 0
    reported: bool = False

    def add(self, headers: Mapping[str, str], *_: Any) -> None:
        self.responses += 1
        value = headers.get("x-ms-request-charge")
        if value is not None:
            self.request_units += float(value)
            self.reported = True


# What a store call runs inside: `traced(operation, container)` is a context manager, a span of
# the call in a trace (shared/telemetry/tracing.py `store_span`, passed in by shared/runtime.py),
# or nothing at all (the default: scripts, tests, the CLI).
Traced = Callable[[str, str], AbstractContextManager[object]]


def untraced(_operation: str, _container: str) -> AbstractContextManager[object]:
    return nullcontext()


class Store:
    """The app's Cosmos DB database. Create with :func:`create_store`; close with `aclose`."""

    def __init__(self, client: CosmosClient, database: str, traced: Traced = untraced) -> None:
        self._traced = traced
        self._client = client
        self._database: DatabaseProxy = client.get_database_client(database)
        self.database_name = database

    def container(self, name: str) -> ContainerProxy:
        if name not in CONTAINERS:
            raise KeyError(f"unknown container {name!r}")
        return self._database.get_container_client(name)

    async def ensure_schema(self) -> None:
        """Create the database and every container with its partition key; idempotent."""
        database = await self._client.create_database_if_not_exists(self.database_name)
        for name, path in CONTAINERS.items():
            await database.create_container_if_not_exists(id=name, partition_key=PartitionKey(path))

    async def upsert(self, container: str, document: Document) -> Document:
        """Insert or replace by `id` (and partition key); the same document twice is one."""
        if not document.get("id"):
            raise ValueError("a document needs a deterministic 'id'")
        with self._traced("upsert_item", container):
            stored: Document = await self.container(container).upsert_item(document)
        return stored

    async def read(self, container: str, item_id: str, partition_key: str) -> Document | None:
        try:
            with self._traced("read_item", container):
                found: Document = await self.container(container).read_item(item_id, partition_key)
        except CosmosResourceNotFoundError:
            return None
        return found

    async def query(
        self,
        container: str,
        query: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        partition_key: str | None = None,
        max_items: int | None = None,
    ) -> list[Document]:
        """Run a query; with `partition_key` it stays in one partition (the query text must
        also filter on it, see the module doc)."""
        params = [{"name": k, "value": v} for k, v in (parameters or {}).items()]
        items = self.container(container).query_items(
            query, parameters=params, partition_key=partition_key
        )
        out: list[Document] = []
        with self._traced("query_items", container):
            async for item in items:
                out.append(item)
                if max_items is not None and len(out) >= max_items:
                    break
        return out

    async def iterate(
        self,
        container: str,
        query: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        partition_key: str | None = None,
        charge: RequestCharge | None = None,
    ) -> AsyncIterator[Document]:
        """Stream a query's documents without holding them all (aggregations over a day)."""
        params = [{"name": k, "value": v} for k, v in (parameters or {}).items()]
        extra: dict[str, Any] = {"response_hook": charge.add} if charge is not None else {}
        items = self.container(container).query_items(
            query, parameters=params, partition_key=partition_key, **extra
        )
        async for item in items:
            yield item

    async def query_page(
        self,
        container: str,
        query: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        partition_key: str | None = None,
        page_size: int = 100,
        continuation: str | None = None,
    ) -> tuple[list[Document], str | None]:
        """One page of a query and the Cosmos DB continuation token of the next (None at the
        end). Pages follow the service's own token, never OFFSET."""
        params = [{"name": k, "value": v} for k, v in (parameters or {}).items()]
        pages = (
            self.container(container)
            .query_items(
                query, parameters=params, partition_key=partition_key, max_item_count=page_size
            )
            .by_page(continuation)
        )
        with self._traced("query_items", container):
            async for page in pages:
                items = [item async for item in page]
                token: str | None = getattr(pages, "continuation_token", None)
                return items, token
        return [], None

    async def replace_if_unchanged(self, container: str, document: Document, etag: str) -> Document:
        """Replace `document` only if it still has `etag` (optimistic concurrency); raises
        CosmosAccessConditionFailedError (412) when someone else wrote it first. Take `etag`
        from a read: the local server answers an upsert with an etag it does not keep."""
        with self._traced("replace_item", container):
            stored: Document = await self.container(container).replace_item(
                document["id"], document, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        return stored

    async def delete_if_unchanged(
        self, container: str, item_id: str, partition_key: str, etag: str | None
    ) -> bool:
        """Delete unless someone rewrote it since `etag` was read (or it is gone already)."""
        extra: dict[str, Any] = (
            {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}
        )
        try:
            with self._traced("delete_item", container):
                await self.container(container).delete_item(item_id, partition_key, **extra)
        except (CosmosResourceNotFoundError, CosmosAccessConditionFailedError):
            return False
        return True

    async def create(self, container: str, document: Document) -> Document | None:
        """Insert `document`; None if one with its id already exists (first writer wins)."""
        try:
            with self._traced("create_item", container):
                stored: Document = await self.container(container).create_item(document)
        except CosmosResourceExistsError:
            return None
        return stored

    async def ping(self) -> None:
        """Raise unless the database answers (health checks)."""
        await self._database.read()

    async def aclose(self) -> None:
        await self._client.close()


def create_store(
    settings: Settings,
    credential: AsyncTokenCredential | None = None,
    traced: Traced = untraced,
) -> Store:
    """Key auth when `COSMOS_KEY` is set (the local server), else Entra ID; each call inside
    `traced` (a span, in the app's runtime)."""
    auth: str | AsyncTokenCredential
    if settings.cosmos_key is not None:
        auth = settings.cosmos_key.get_secret_value()
    else:
        if credential is None:
            raise ValueError("Cosmos DB without COSMOS_KEY needs the process's Entra credential")
        auth = credential
    client = CosmosClient(
        str(settings.cosmos_endpoint),
        credential=auth,
        connection_verify=settings.cosmos_verify_tls,
        # A hung Cosmos DB must not hold a chat answer or a job for the SDK's default minute:
        # callers write behind or re-deliver instead.
        connection_timeout=CONNECT_TIMEOUT_SECONDS,
        timeout=OPERATION_TIMEOUT_SECONDS,
    )
    return Store(client, settings.cosmos_database, traced)
