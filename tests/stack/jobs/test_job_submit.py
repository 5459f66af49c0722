"""What an HTTP submission puts on the queue, read back with azure-storage-queue: the fields the
app sets on a continuation (`attempt`, `reason`) start afresh whatever the body says. No host
listens on these queues, so the message stays there to be read."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest

from devstack.provision import provision
from shared.core.settings import load_settings
from shared.core.store import Store
from shared.runtime import Runtime, create_runtime
from tests.support.jobs_stack import queue_names


@pytest.fixture
async def runtime(app_environ: dict[str, str], store: Store) -> AsyncIterator[Runtime]:
    settings = load_settings({**app_environ, **queue_names("sub")})
    await provision(settings)
    rt = create_runtime(settings)
    yield rt
    await rt.aclose()


async def test_a_submitted_body_cannot_set_the_continuation_fields(runtime: Runtime) -> None:
    """Finding: `attempt` and `reason` went from the body onto the queue, so a body saying
    attempt 1000 had spent every retry before its first call and failed at its first 5xx."""
    job_id = f"sub-{uuid.uuid4().hex[:8]}"
    body = {
        "job_id": job_id,
        "items": [{"id": "a", "text": "hello"}],
        "attempt": 1000,
        "reason": "made up",
    }
    await runtime.job_requests.submit(
        "embedding",
        json.dumps(body).encode(),
        "req-1",
        status_url=lambda j: f"/jobs/{j}",
        team="submitters",
    )
    queue = runtime.queues.queue(runtime.settings.queue_for("embedding"))
    messages = [json.loads(m.content) for m in await queue.peek_messages(max_messages=32)]
    [message] = [m for m in messages if m["job_id"] == job_id]
    assert message["attempt"] == 0
    assert "reason" not in message  # None is left out of the message
