"""The poison sweep: every message the host gave up on becomes a failed-job record.

A timer (`POISON_SWEEP_SCHEDULE`) reads `<queue>-poison` for both job queues with a client that
does not decode, rather than a trigger on those queues. A message the host moved because it was
not base64 is still not base64 on the poison queue: a trigger would fail on it again, and on
Azure a `-poison` queue has no poison queue of its own, so it would cycle there until it
expired, unrecorded. The sweep reads the raw text, records it, and deletes it only once the
record is stored; it never raises, and a message it could not record stays for the next run.

A poisoned message that names a job fails that job's open items (code `poisoned`) and settles
the job; anything else is recorded like an invalid message, with its raw body.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass

from azure.storage.queue import QueueMessage

from shared.core.models import ErrorDetail
from shared.core.queues import POISON_SUFFIX, JobQueues
from shared.core.settings import Settings
from shared.jobs.intake import InvalidJob, job_spec, named_job_id, read_message
from shared.jobs.models import JobDoc, JobKind, JobSource
from shared.jobs.results import failed_result
from shared.jobs.store import OPEN, JobStore
from shared.jobs.worker import JobWorker, Message

log = logging.getLogger(__name__)

MESSAGES_PER_RUN = 512
LEASE_SECONDS = 120


@dataclass(frozen=True)
class PoisonSweeper:
    settings: Settings
    jobs: JobStore
    queues: JobQueues
    worker: JobWorker

    def queues_to_sweep(self) -> list[tuple[JobKind, str]]:
        return [
            ("embedding", self.settings.embedding_queue + POISON_SUFFIX),
            ("classification", self.settings.classification_queue + POISON_SUFFIX),
        ]

    async def sweep(self) -> int:
        """Record and delete what the poison queues hold; returns how many were recorded."""
        recorded = 0
        for kind, name in self.queues_to_sweep():
            client = self.queues.raw_queue(name)
            try:
                messages = [
                    m
                    async for m in client.receive_messages(
                        messages_per_page=32,
                        max_messages=MESSAGES_PER_RUN,
                        visibility_timeout=LEASE_SECONDS,
                    )
                ]
            except Exception:
                log.exception("reading poison queue %s failed; next run tries again", name)
                continue
            for message in messages:
                try:
                    await self.record(kind, name, message)
                    await client.delete_message(message.id, message.pop_receipt)
                    recorded += 1
                except Exception:
                    log.exception(
                        "poisoned message %s on %s not recorded; it stays for the next run",
                        message.id,
                        name,
                    )
        return recorded

    async def record(self, kind: JobKind, queue: str, raw: QueueMessage) -> None:
        text = str(raw.content or "")
        # The whole message, as it was on the queue, for a requeue after a fix (the record
        # keeps only JOB_RAW_BODY_CHARS of it): `python -m cli poison requeue-record`.
        blob = f"poisoned/{queue}/{raw.id}.txt"
        await self.queues.put_payload(blob, text.encode("utf-8"))
        try:
            body = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            body = text.encode("utf-8", errors="replace")
            error = InvalidJob(
                "the message is not base64, so the Functions host could not decode it; send "
                "the job's JSON base64-encoded (see docs/jobs.md)",
                code="undecodable",
                job_id=named_job_id(_json_or_none(text)),
            )
            await self.worker.record_invalid(
                kind, _message(queue, raw, body), error, via="poison", raw_blob=blob
            )
            log.warning("recorded undecodable message %s from %s", raw.id, queue)
            return
        try:
            job, _ = await read_message(kind, body, self.queues, self.settings)
            spec = job_spec(job, self.settings)
        except InvalidJob as error:
            await self.worker.record_invalid(
                kind, _message(queue, raw, body), error, via="poison", raw_blob=blob
            )
            return
        assert job.job_id is not None
        reason = ErrorDetail(
            code="poisoned",
            message=f"the message failed {raw.dequeue_count or 'several'} deliveries and was "
            f"moved to {queue}" + (f" (last reason: {job.reason})" if job.reason else ""),
        )
        doc, _ = await self.jobs.create(
            JobDoc.for_job(
                job, spec, "running", JobSource(via="poison", queue=queue, message_id=raw.id)
            )
        )
        if doc.status not in OPEN:
            return
        done = await self.jobs.done_item_ids(job.job_id)
        await self.jobs.write_results(
            failed_result(job.job_id, item.id, job.kind, reason, spec.deployment)
            for item in job.items
            if item.id not in done
        )
        await self.jobs.update(
            job.job_id, status="failed", only_from=OPEN, error=reason, raw_blob=blob
        )
        log.warning("job %s: poisoned message %s recorded; open items failed", job.job_id, raw.id)


def _message(queue: str, raw: QueueMessage, body: bytes) -> Message:
    return Message(queue=queue, id=raw.id, body=body, dequeue_count=raw.dequeue_count or 0)


def _json_or_none(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return None
