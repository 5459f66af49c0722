"""Answers a slice got but could not store (Cosmos DB failing): they go on with the rest of
the job in a claim-check blob, named by the continuation (`answers_blob`), and are written
before the next slice reads which items are done. An answer paid for is never asked again
because the store was away (docs/jobs.md#one-slice-at-a-time)."""

from __future__ import annotations

import uuid

from pydantic import TypeAdapter

from shared.core.queues import JobQueues
from shared.jobs.models import ResultDoc

_RESULTS = TypeAdapter(list[ResultDoc])


async def keep_answers(queues: JobQueues, job_id: str, results: list[ResultDoc]) -> str:
    """Store `results` as a blob of the claim-check container; its name."""
    name = f"{job_id}/answers-{uuid.uuid4().hex}.json"
    await queues.put_payload(name, _RESULTS.dump_json(results, exclude_none=True))
    return name


async def kept_answers(queues: JobQueues, name: str) -> list[ResultDoc]:
    """The results stored by `keep_answers` under `name`."""
    return _RESULTS.validate_json(await queues.get_payload(name))
