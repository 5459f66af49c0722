"""Answers a slice got but could not store (Cosmos DB failing): they are put away in a
claim-check blob under the job's name (`{job_id}/answers-*.json`), and whichever message
holds the job's lease next writes every one of them before it reads which items are done,
then removes the blob. So an answer paid for is never asked again because the store was away,
whether the continuation that names it (`answers_blob`) or a copy of the job's message runs
next (docs/jobs.md#one-slice-at-a-time)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Protocol

from azure.core.exceptions import ResourceNotFoundError
from pydantic import TypeAdapter

from shared.core.queues import JobQueues
from shared.jobs.models import ResultDoc

_RESULTS = TypeAdapter(list[ResultDoc])


class ResultWriter(Protocol):
    async def write_results(self, results: Iterable[ResultDoc]) -> object: ...


def _prefix(job_id: str) -> str:
    return f"{job_id}/answers-"  # job ids hold no "/" (shared/jobs/models.py)


async def keep_answers(queues: JobQueues, job_id: str, results: list[ResultDoc]) -> str:
    """Store `results` as a blob of the claim-check container; its name."""
    name = f"{_prefix(job_id)}{uuid.uuid4().hex}.json"
    await queues.put_payload(name, _RESULTS.dump_json(results, exclude_none=True))
    return name


async def kept_answers(queues: JobQueues, name: str) -> list[ResultDoc]:
    """The results stored by `keep_answers` under `name`."""
    return _RESULTS.validate_json(await queues.get_payload(name))


async def write_kept_answers(queues: JobQueues, store: ResultWriter, job_id: str) -> int:
    """Write every answer kept for `job_id`, removing each blob once written; how many. Call
    it under the job's lease: the writes are idempotent, so a blob written again by a holder
    that died before removing it is harmless."""
    written = 0
    for name in await queues.payload_names(_prefix(job_id)):
        try:
            results = await kept_answers(queues, name)
        except ResourceNotFoundError:
            continue  # written and removed since the listing
        await store.write_results(results)
        await queues.delete_payload(name)
        written += len(results)
    return written
