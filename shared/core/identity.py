"""The process's one Microsoft Entra ID credential, shared by every Azure client.

One `DefaultAzureCredential` per process keeps one token cache; `AZURE_CLIENT_ID` selects the
user-assigned managed identity (passed explicitly, not left to the environment).
`shared/runtime.py` creates it once, only when some client uses Entra ID.
"""

from __future__ import annotations

from azure.identity.aio import DefaultAzureCredential

from shared.core.settings import Settings


def create_credential(settings: Settings) -> DefaultAzureCredential:
    return DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id)
