"""Create what the app needs in the local stack: database, containers, queues, claim-check
container. In Azure the Bicep creates the same things; both are idempotent.

`python -m devstack.provision` reads the settings from the environment.
"""

from __future__ import annotations

import asyncio

from shared.core.settings import Settings, get_settings
from shared.runtime import create_runtime


async def provision(settings: Settings) -> None:
    runtime = create_runtime(settings)
    try:
        await runtime.store.ensure_schema()
        await runtime.queues.ensure(
            [settings.embedding_queue, settings.classification_queue, settings.outbox_queue]
        )
    finally:
        await runtime.aclose()


if __name__ == "__main__":
    asyncio.run(provision(get_settings()))
