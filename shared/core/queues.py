"""Storage queues and claim-check blobs: enqueue, re-enqueue with a delay, large payloads.

Messages are base64-encoded text, the Functions host's default `messageEncoding`. A payload too
large for one message (64 KiB after encoding) is stored as a blob and the message carries its
name instead (the claim-check pattern).
"""

from __future__ import annotations

import base64
import contextlib
import logging
from collections.abc import Iterable
from typing import Any, Final

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob.aio import BlobServiceClient
from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient, QueueServiceClient
from pydantic import BaseModel

from shared.core.settings import Settings
from shared.core.store import Traced, untraced

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES: Final = 64 * 1024
MAX_VISIBILITY_DELAY_SECONDS: Final = 7 * 24 * 3600
POISON_SUFFIX: Final = "-poison"


def encoded_size(text: str) -> int:
    """Bytes a text message takes on the queue once base64-encoded."""
    return len(base64.b64encode(text.encode("utf-8")))


def fits_in_message(text: str) -> bool:
    return encoded_size(text) <= MAX_MESSAGE_BYTES


class JobQueues:
    """The app's queues and claim-check container. Create with :func:`create_queues`."""

    def __init__(
        self,
        queues: QueueServiceClient,
        blobs: BlobServiceClient,
        claim_check_container: str,
        traced: Traced = untraced,
    ) -> None:
        self._traced = traced
        self._queues = queues
        self._blobs = blobs
        self._container = blobs.get_container_client(claim_check_container)
        self._clients: dict[str, QueueClient] = {}

    def queue(self, name: str) -> QueueClient:
        """A client for `name` that base64-encodes on send and decodes on receive."""
        client = self._clients.get(name)
        if client is None:
            client = self._queues.get_queue_client(
                name,
                message_encode_policy=TextBase64EncodePolicy(),
                message_decode_policy=TextBase64DecodePolicy(),
            )
            self._clients[name] = client
        return client

    def raw_queue(self, name: str) -> QueueClient:
        """A client that sends and receives the text as it is (no base64 policy): for the
        poison sweep, which must read what the host could not decode."""
        key = f"raw:{name}"
        client = self._clients.get(key)
        if client is None:
            client = self._queues.get_queue_client(name)
            self._clients[key] = client
        return client

    async def ensure(self, queue_names: Iterable[str]) -> None:
        """Create each queue, its poison queue and the claim-check container; idempotent."""
        for name in queue_names:
            for full in (name, name + POISON_SUFFIX):
                with contextlib.suppress(ResourceExistsError):
                    await self.queue(full).create_queue()
        with contextlib.suppress(ResourceExistsError):
            await self._container.create_container()

    async def send(
        self, queue_name: str, message: str | BaseModel, *, delay_seconds: int = 0
    ) -> str:
        """Enqueue one message, invisible for `delay_seconds`. Returns the message id."""
        text = message if isinstance(message, str) else message.model_dump_json(exclude_none=True)
        if not fits_in_message(text):
            raise ValueError(
                f"message of {encoded_size(text)} encoded bytes exceeds {MAX_MESSAGE_BYTES}; "
                "use a claim check"
            )
        delay = max(0, min(int(delay_seconds), MAX_VISIBILITY_DELAY_SECONDS))
        with self._traced("send_message", queue_name):
            sent = await self.queue(queue_name).send_message(text, visibility_timeout=delay or None)
        return str(sent.id)

    async def put_payload(self, blob_name: str, data: bytes) -> None:
        with self._traced("upload_blob", self._container.container_name):
            await self._container.upload_blob(blob_name, data, overwrite=True)

    async def delete_payload(self, blob_name: str) -> None:
        """Delete a claim-check blob; one already gone is no error."""
        with contextlib.suppress(ResourceNotFoundError):
            await self._container.delete_blob(blob_name)

    async def payload_names(self, prefix: str) -> list[str]:
        """The names of the claim-check container's blobs under `prefix`."""
        return [blob.name async for blob in self._container.list_blobs(name_starts_with=prefix)]

    async def get_payload(self, blob_name: str) -> bytes:
        downloader = await self._container.download_blob(blob_name)
        return await downloader.readall()

    async def ping(self) -> None:
        """Raise unless the queue service answers (health checks)."""
        await self._queues.get_service_properties()

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.close()
        await self._queues.close()
        await self._blobs.close()


def _blob_uri_for(settings: Settings) -> str:
    if settings.storage_blob_uri is not None:
        return str(settings.storage_blob_uri)
    assert settings.storage_queue_uri is not None  # guaranteed by settings validation
    return str(settings.storage_queue_uri).replace(".queue.", ".blob.", 1)


# The SDK's default retries (ten, from 15 s apart) hold a caller for 80 s when Storage is down.
# Every caller here has a better fallback than waiting (answer, re-deliver, log), so fail sooner.
RETRY: Final[dict[str, Any]] = {"retry_total": 2, "initial_backoff": 1, "increment_base": 2}


def create_queues(
    settings: Settings,
    credential: AsyncTokenCredential | None = None,
    traced: Traced = untraced,
) -> JobQueues:
    """Connection string when `AzureWebJobsStorage` is set (Azurite), else Entra ID; each send
    and upload inside `traced` (a span, in the app's runtime)."""
    if settings.storage_connection_string is not None:
        conn = settings.storage_connection_string.get_secret_value()
        queues = QueueServiceClient.from_connection_string(conn, **RETRY)
        blobs = BlobServiceClient.from_connection_string(conn, **RETRY)
    else:
        if credential is None:
            raise ValueError("identity-based storage needs the process's Entra credential")
        queues = QueueServiceClient(str(settings.storage_queue_uri), credential=credential, **RETRY)
        blobs = BlobServiceClient(_blob_uri_for(settings), credential=credential, **RETRY)
    return JobQueues(queues, blobs, settings.claim_check_container, traced)
