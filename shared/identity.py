"""The process's one Microsoft Entra ID credential, shared by every Azure client.

One `DefaultAzureCredential` per process keeps one token cache; `AZURE_CLIENT_ID` selects the
user-assigned managed identity (passed explicitly, not left to the environment).
"""

from __future__ import annotations

from azure.identity.aio import DefaultAzureCredential

from shared.settings import Settings

_credential: DefaultAzureCredential | None = None


def get_credential(settings: Settings) -> DefaultAzureCredential:
    global _credential
    if _credential is None:
        _credential = DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id)
    return _credential


async def close_credential() -> None:
    global _credential
    if _credential is not None:
        credential, _credential = _credential, None
        await credential.close()
