"""Making a part's Batch API job once: the calls, without the SDK's retries, and the look-ups
that find what an earlier attempt left upstream.

The service (service.py) saves the part as `creating` with its input file id *before* it
calls `batches.create`, and every batch carries `metadata: {job_id, part}`. A create whose
answer never came (a cut connection, a timeout, a host that died before saving the id)
therefore leaves a part in `creating` that names the file the batch reads: `find` lists the
batches, newest first, and returns the one with this part's metadata and that input file.
The SDK never retries these calls (`max_retries=0`): a retried create of a batch that was
made would be a second, paid-for batch nobody ingests.

Input files are named after the part (a hash of its document id), so `sweep` can delete the
files of an upload whose answer was lost (its id was never saved).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from openai import AsyncOpenAI
from openai.types import Batch

from shared.jobs.batch.models import BatchDoc

# How far before the part's `creating_since` a batch may be stamped and still be one it made
# (clocks differ between hosts and the service).
CLOCK_SLACK = timedelta(minutes=10)
LIST_PAGE = 100  # the Batch API's largest page


def input_name(doc: BatchDoc) -> str:
    """The part's input file name: the same for every upload of the part, no other part's."""
    return f"batch-{hashlib.sha256(doc.id.encode()).hexdigest()[:32]}.jsonl"


def metadata(doc: BatchDoc) -> dict[str, str]:
    """What the batch carries to be found again (and seen in the portal)."""
    return {"job_id": doc.job_id[:512], "part": str(doc.part)}


class Creator:
    def __init__(self, client: AsyncOpenAI, timeout: float) -> None:
        # A create must end before the lease that guards it does (service.py passes a timeout
        # under it): a create still running when another run takes the part over could be
        # missed by its look-up.
        self._client = client.with_options(max_retries=0)
        self._create = client.with_options(max_retries=0, timeout=timeout)

    async def upload(self, doc: BatchDoc, data: bytes) -> str:
        uploaded = await self._client.files.create(
            file=(input_name(doc), data, "application/jsonl"), purpose="batch"
        )
        return uploaded.id

    async def create(self, doc: BatchDoc) -> Batch:
        assert doc.input_file_id is not None
        return await self._create.batches.create(
            input_file_id=doc.input_file_id,
            endpoint=doc.endpoint,  # type: ignore[arg-type]
            completion_window="24h",
            metadata=metadata(doc),
        )

    async def find(self, doc: BatchDoc) -> Batch | None:
        """The batch an earlier attempt made from the part's input file, if any. The list is
        newest first, so the look-up stops at the first batch older than the attempt."""
        if doc.input_file_id is None:
            return None  # the create is only ever called once the file id is saved
        since = (doc.creating_since or doc.updated_at) - CLOCK_SLACK
        wanted = metadata(doc)
        async for batch in self._client.batches.list(limit=LIST_PAGE):
            if datetime.fromtimestamp(batch.created_at, UTC) < since:
                return None
            if batch.metadata == wanted and batch.input_file_id == doc.input_file_id:
                return batch
        return None

    async def sweep(self, doc: BatchDoc) -> list[str]:
        """Delete the part's input files (a lost upload's too); their ids."""
        name = input_name(doc)
        ids = [f.id async for f in self._client.files.list(purpose="batch") if f.filename == name]
        for file_id in ids:
            await self._client.files.delete(file_id)
        return ids
