"""Resolve a binding's `connection` to Azure Storage clients, as the Functions host does.

`connection` names an app setting (default `AzureWebJobsStorage`). The setting holds either a
connection string, or the identity-based form `<CONN>__queueServiceUri` /
`<CONN>__blobServiceUri` / `<CONN>__accountName` (+ optional `__credential`, `__clientId`).
No token can be minted offline, so a service URI on a loopback address (Azurite) is signed with
Azurite's published development key instead; any other URI gets `DefaultAzureCredential`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlparse

from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob.aio import BlobServiceClient
from azure.storage.queue.aio import QueueClient

from devstack.emulators import AZURITE_ACCOUNT, AZURITE_KEY
from devstack.functions_host.settings import HostConfigError

DEFAULT_CONNECTION = "AzureWebJobsStorage"
Service = Literal["queue", "blob"]
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class StorageConnection:
    """Either a connection string or a service URI (+ how to authenticate to it)."""

    name: str
    connection_string: str | None = None
    service_uri: str | None = None
    client_id: str | None = None

    @property
    def is_loopback(self) -> bool:
        return self.service_uri is not None and urlparse(self.service_uri).hostname in _LOOPBACK


def resolve_connection(
    connection: str | None, service: Service, environ: Mapping[str, str] | None = None
) -> StorageConnection:
    """Find the settings behind `connection` for the queue or blob service."""
    env = os.environ if environ is None else environ
    name = connection or DEFAULT_CONNECTION
    for candidate in (name, f"AzureWebJobs{name}"):
        value = env.get(candidate)
        if value:
            return StorageConnection(name=candidate, connection_string=value)
        uri = env.get(f"{candidate}__{service}ServiceUri") or env.get(f"{candidate}__serviceUri")
        account = env.get(f"{candidate}__accountName")
        if not uri and account:
            uri = f"https://{account}.{service}.core.windows.net"
        if uri:
            return StorageConnection(
                name=candidate, service_uri=uri, client_id=env.get(f"{candidate}__clientId")
            )
    raise HostConfigError(
        f"connection {name!r}: set app setting {name!r} to a storage connection string, or "
        f"{name}__{service}ServiceUri for an identity-based connection"
    )


def _credential(conn: StorageConnection) -> Any:
    if conn.is_loopback:
        # Azurite cannot check Entra tokens and none can be minted offline: use its dev key.
        return AzureNamedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY)
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=conn.client_id)


def queue_client(conn: StorageConnection, queue_name: str) -> QueueClient:
    """A text (no encode/decode policy) queue client; the host does the encoding itself."""
    if conn.connection_string is not None:
        return QueueClient.from_connection_string(conn.connection_string, queue_name)
    assert conn.service_uri is not None
    return QueueClient(conn.service_uri, queue_name, credential=_credential(conn))


def blob_service_client(conn: StorageConnection) -> BlobServiceClient:
    if conn.connection_string is not None:
        return BlobServiceClient.from_connection_string(conn.connection_string)
    assert conn.service_uri is not None
    return BlobServiceClient(conn.service_uri, credential=_credential(conn))


def describe(conn: StorageConnection) -> str:
    """For start-up logs: which setting and which kind, never the secret."""
    if conn.connection_string is not None:
        return f"{conn.name} (connection string)"
    auth = "Azurite dev key" if conn.is_loopback else "DefaultAzureCredential"
    return f"{conn.name} ({conn.service_uri}, {auth})"


class ClientPool:
    """Queue clients created once per (connection, queue) and closed at stop."""

    def __init__(self) -> None:
        self._queues: dict[tuple[StorageConnection, str], QueueClient] = {}

    def queue(self, conn: StorageConnection, queue_name: str) -> QueueClient:
        key = (conn, queue_name)
        if key not in self._queues:
            self._queues[key] = queue_client(conn, queue_name)
        return self._queues[key]

    async def close(self) -> None:
        clients, self._queues = list(self._queues.values()), {}
        for client in clients:
            await client.close()
