"""The process's clients and services, created once on first use and closed together.

Function handlers call :func:`get_runtime`; nothing else constructs clients. The Python
worker has no shutdown hook, so in Azure the process exit releases the sockets; the local host
and the tests call :func:`close_runtime`.
"""

from __future__ import annotations

from dataclasses import dataclass

from openai import AsyncOpenAI

from shared import aoai, identity, queues, store
from shared.chat import ChatService
from shared.queues import JobQueues
from shared.settings import Settings, get_settings
from shared.store import Store


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    aoai: AsyncOpenAI
    store: Store
    queues: JobQueues
    chat: ChatService


_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        settings = get_settings()
        client = aoai.get_client(settings)
        cosmos = store.get_store(settings)
        _runtime = Runtime(
            settings=settings,
            aoai=client,
            store=cosmos,
            queues=queues.get_queues(settings),
            chat=ChatService(settings, client, cosmos),
        )
    return _runtime


async def close_runtime() -> None:
    global _runtime
    _runtime = None
    await aoai.close_client()
    await store.close_store()
    await queues.close_queues()
    await identity.close_credential()
