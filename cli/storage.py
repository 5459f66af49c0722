"""Storage access for the CLI: the app's `JobQueues` over a connection string or Entra ID.

The clients are the app's own (`shared.queues.JobQueues`), so the CLI encodes messages and
stores claim checks exactly as the app does, and reads poison queues raw as its sweep does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import DefaultAzureCredential
from azure.storage.blob.aio import BlobServiceClient
from azure.storage.queue.aio import QueueServiceClient

from shared.core.queues import RETRY, JobQueues


class StorageOptionsError(ValueError):
    """Neither a connection string nor an account URL was given."""


@dataclass(frozen=True)
class StorageOptions:
    connection_string: str | None = None
    queue_url: str | None = None  # https://<account>.queue.core.windows.net
    blob_url: str | None = None  # default: queue_url with .queue. -> .blob.
    claim_check_container: str = "job-payloads"

    def blob_service_url(self) -> str:
        if self.blob_url:
            return self.blob_url
        assert self.queue_url is not None
        return self.queue_url.replace(".queue.", ".blob.", 1)


@asynccontextmanager
async def open_storage(options: StorageOptions) -> AsyncIterator[JobQueues]:
    """Connection string if given (Azurite, or a key), else DefaultAzureCredential on the
    account URL; every client is closed on the way out."""
    credential: AsyncTokenCredential | None = None
    if options.connection_string:
        conn = options.connection_string
        queues = QueueServiceClient.from_connection_string(conn, **RETRY)
        blobs = BlobServiceClient.from_connection_string(conn, **RETRY)
    elif options.queue_url:
        credential = DefaultAzureCredential()
        queues = QueueServiceClient(options.queue_url, credential=credential, **RETRY)
        blobs = BlobServiceClient(options.blob_service_url(), credential=credential, **RETRY)
    else:
        raise StorageOptionsError(
            "no storage account: pass --connection-string (or set AzureWebJobsStorage) or "
            "--queue-url (or set AzureWebJobsStorage__queueServiceUri) to use Entra ID"
        )
    jobs = JobQueues(queues, blobs, options.claim_check_container)
    try:
        yield jobs
    finally:
        try:
            await jobs.aclose()
        finally:
            if credential is not None:
                await credential.close()
