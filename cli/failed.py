"""Failed jobs, read from Cosmos DB's `jobs` container (the CLI needs read access to it).

Through the app's `Store`, with a key (the local server) or Entra ID (a data-plane role such
as Cosmos DB Built-in Data Reader on the account).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from azure.core.credentials_async import AsyncTokenCredential
from azure.cosmos.aio import CosmosClient
from azure.identity.aio import DefaultAzureCredential

from shared.core.store import CONNECT_TIMEOUT_SECONDS, JOBS, OPERATION_TIMEOUT_SECONDS, Store
from shared.jobs.models import JobDoc

TLS_CLOSE_GRACE_SECONDS: Final = 0.5
FAILED_STATUSES: Final = ("failed", "partially_failed")
# OR rather than IN, and no ORDER BY: within what the local server supports too. The time
# filter and the order are applied to the parsed documents, whatever the stored date format.
FAILED_QUERY: Final = "SELECT * FROM c WHERE c.status = @failed OR c.status = @partial"


@dataclass(frozen=True)
class CosmosOptions:
    endpoint: str
    key: str | None = None
    database: str = "aoai"
    verify_tls: bool = True


@asynccontextmanager
async def open_store(options: CosmosOptions) -> AsyncIterator[Store]:
    """The app's Store on `options`: key auth if a key is given, else DefaultAzureCredential."""
    credential: AsyncTokenCredential | None = None
    auth: str | AsyncTokenCredential
    if options.key:
        auth = options.key
    else:
        credential = DefaultAzureCredential()
        auth = credential
    client = CosmosClient(
        options.endpoint,
        credential=auth,
        connection_verify=options.verify_tls,
        connection_timeout=CONNECT_TIMEOUT_SECONDS,
        timeout=OPERATION_TIMEOUT_SECONDS,
    )
    store = Store(client, options.database)
    try:
        yield store
    finally:
        try:
            await store.aclose()
            # Closing cancels the client's background endpoint health check; a TLS
            # connection it had open still needs the peer's close_notify, and a loop closed
            # before that leaks the socket. The app's loop lives on; a CLI's ends here.
            await asyncio.sleep(TLS_CLOSE_GRACE_SECONDS)
        finally:
            if credential is not None:
                await credential.close()


async def failed_jobs(store: Store, *, since: datetime, limit: int = 50) -> list[JobDoc]:
    """Jobs that ended failed or partially_failed, updated since `since`, newest first."""
    rows = await store.query(
        JOBS,
        FAILED_QUERY,
        {"@failed": FAILED_STATUSES[0], "@partial": FAILED_STATUSES[1]},
    )
    jobs = [job for job in map(JobDoc.model_validate, rows) if job.updated_at >= since]
    jobs.sort(key=lambda job: job.updated_at, reverse=True)
    return jobs[:limit]
