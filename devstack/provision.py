"""Create what the app needs in the local stack: database, containers, queues, claim-check
container. In Azure the Bicep creates the same things; both are idempotent.

`python -m devstack.provision` reads the settings from the environment.
"""

from __future__ import annotations

import asyncio

from shared.queues import create_queues
from shared.settings import Settings, get_settings
from shared.store import create_store


async def provision(settings: Settings) -> None:
    store = create_store(settings)
    queues = create_queues(settings)
    try:
        await store.ensure_schema()
        await queues.ensure([settings.embedding_queue, settings.classification_queue])
    finally:
        await store.aclose()
        await queues.aclose()


if __name__ == "__main__":
    asyncio.run(provision(get_settings()))
