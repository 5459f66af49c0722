"""Getting a batch part onto the Batch API: room in the enqueued-token quota, a Batch API job
made once, and the bounds on a part that cannot get on.

Submitting a part: room is reserved by saving it `creating` with its estimated tokens (what
the deployment holds is the tokens of its parts `creating` or running, never more than
`BATCH_ENQUEUED_TOKENS`); then the input file is uploaded and its id saved, and only then is
the batch created (create.py: without the SDK's retries, found again by its metadata). A part
found `creating` is looked up before anything is made again. A `token_limit_exceeded` refusal
waits for room; any other passing failure counts toward `BATCH_MAX_ATTEMPTS`; a part not on
the Batch API `BATCH_MAX_WAIT` after it was planned fails, and so does one whose estimate the
quota can never hold, each with the reason. Every write holds the part's lease (store.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import openai
from azure.core.exceptions import AzureError
from openai import AsyncOpenAI
from openai.types import Batch

from shared.core.clock import now
from shared.core.errors import InvalidRequest, RateLimited, ServiceUnavailable, TeamDisabled
from shared.core.models import ErrorDetail
from shared.core.queues import JobQueues
from shared.core.settings import Settings
from shared.jobs.batch.budget import BatchBudget
from shared.jobs.batch.create import Creator
from shared.jobs.batch.errors import error_codes, first_message
from shared.jobs.batch.files import input_line, line_tokens
from shared.jobs.batch.models import BatchDoc
from shared.jobs.batch.store import BatchDocs, LeaseLost
from shared.jobs.intake import parse_job
from shared.jobs.models import Item, JobKind, JobSpec
from shared.jobs.results import failed_result
from shared.jobs.store import JobStore

log = logging.getLogger(__name__)

TOKEN_LIMIT = "token_limit_exceeded"  # noqa: S105 (an error code, not a secret)
MAX_RETRY_SECONDS = 3600.0
# Fields of a part that is not on the Batch API.
UNSUBMITTED: dict[str, Any] = {
    "batch_id": None,
    "batch_status": None,
    "input_file_id": None,
    "creating_since": None,
}


@dataclass(frozen=True)
class Submitter:
    settings: Settings
    client: AsyncOpenAI  # AOAI_BATCH_BACKEND's: a batch lives on the account that created it
    jobs: JobStore
    docs: BatchDocs
    queues: JobQueues
    deployments: Mapping[str, str] = field(default_factory=dict)  # its names, if it renames
    budget: BatchBudget | None = None  # the jobs' teams' day and month (budget.py)

    def on_backend(self, spec: JobSpec) -> JobSpec:
        """The spec with the deployment's name on the batch backend (the lines' `model`)."""
        name = self.deployments.get(spec.deployment, spec.deployment)
        return spec if name == spec.deployment else spec.model_copy(update={"deployment": name})

    async def remaining(self, doc: BatchDoc) -> tuple[JobKind, JobSpec, list[Item]] | None:
        """The part's items that have no result yet (None if the job is gone)."""
        job_doc = await self.jobs.get(doc.job_id)
        if job_doc is None or job_doc.kind is None or job_doc.spec is None:
            return None
        payload = await self.queues.get_payload(doc.items_blob)
        job = parse_job(job_doc.kind, payload, self.settings)
        done = await self.jobs.done_item_ids(doc.job_id)
        rest = [item for item in job.items[doc.first : doc.last] if item.id not in done]
        return job_doc.kind, job_doc.spec, rest

    @property
    def creator(self) -> Creator:
        # Under the lease that guards the create (renewed just before it), with room to spare.
        timeout = min(self.settings.aoai_timeout_seconds, self.settings.batch_lease_seconds / 2)
        return Creator(self.client, timeout)

    async def advance(self, doc: BatchDoc, owner: str, *, cancelled: bool) -> BatchDoc:
        """One step of a part that is not on the Batch API: look up what a `creating` one may
        have made, fail one that waited past BATCH_MAX_WAIT, else submit. Raises LeaseLost."""
        if doc.state == "creating":
            return await self.recover(doc, owner, cancelled=cancelled)
        if cancelled:
            return await self.docs.save(doc, owner, state="done")
        waited = (now() - doc.created_at).total_seconds()
        if waited > self.settings.batch_max_wait:
            cause = doc.error or ErrorDetail(
                code=TOKEN_LIMIT,
                message="no room in the deployment's enqueued-token quota (BATCH_ENQUEUED_TOKENS)",
            )
            return await self.give_up(
                doc,
                owner,
                ErrorDetail(
                    code=cause.code,
                    message=f"{cause.message} (not submitted within BATCH_MAX_WAIT, "
                    f"{self.settings.batch_max_wait:.0f}s)",
                ),
            )
        limit = self.settings.batch_enqueued_tokens
        if 0 < doc.tokens <= limit:  # its last estimate bounds what is left: no room, no reads
            held = await self.docs.enqueued(doc.deployment, besides=doc.id)
            if held + doc.tokens > limit:
                self._no_room(doc, doc.tokens, held)
                return doc
        return await self.submit(doc, owner)

    def _no_room(self, doc: BatchDoc, tokens: int, held: int) -> None:
        log.info(
            "job %s part %d: waiting for room (%d tokens; the deployment holds %d of %d)",
            doc.job_id,
            doc.part,
            tokens,
            held,
            self.settings.batch_enqueued_tokens,
        )

    async def submit(self, doc: BatchDoc, owner: str, **changes: Any) -> BatchDoc:
        """Reserve room for the part's remaining items, upload them and create its Batch API
        job; `changes` are saved with the first write. Raises LeaseLost."""
        doc = await self.unbook(doc, owner)  # an earlier batch's, or an attempt's that failed
        found = await self.remaining(doc)
        if found is None or not found[2]:
            return await self.docs.save(doc, owner, **{**UNSUBMITTED, "state": "done", **changes})
        _, spec, items = found
        line_spec = self.on_backend(spec)
        data = b"".join(input_line(doc.job_id, doc.endpoint, line_spec, item) for item in items)
        tokens = sum(line_tokens(doc.endpoint, line_spec, item) for item in items)
        limit = self.settings.batch_enqueued_tokens
        if tokens > limit:
            reason = ErrorDetail(
                code=TOKEN_LIMIT,
                message=f"estimated at {tokens} input tokens, more than the deployment's "
                f"enqueued-token quota (BATCH_ENQUEUED_TOKENS, {limit}) can ever hold",
            )
            return await self.give_up(doc, owner, reason, **changes)
        if self.budget is not None:
            try:
                booked = await self.budget.book(doc.endpoint, spec, items)
            except RateLimited as refused:
                return await self.wait_for_budget(doc, owner, refused, **changes)
            except (InvalidRequest, TeamDisabled) as never:
                return await self.give_up(doc, owner, never.detail(), **changes)
            except (AzureError, TimeoutError, ServiceUnavailable) as error:  # Cosmos DB
                cause = error.message if isinstance(error, ServiceUnavailable) else repr(error)
                why = ErrorDetail(code="unavailable", message=f"team budget: {cause[:200]}")
                return await self.retry(doc, owner, why, **changes)
            if booked is not None:
                try:  # kept on the document before anything goes upstream
                    doc = await self.docs.save(doc, owner, booking=booked, **changes)
                except LeaseLost:
                    await self.budget.settle(booked, 0, 0)
                    raise
                changes = {}
        doc = await self.reserve(doc, owner, tokens, **changes)
        if doc.state != "creating":
            return await self.unbook(doc, owner)
        try:
            file_id = await self.creator.upload(doc, data)
        except openai.APIStatusError as error:
            return await self.refused(doc, owner, error)
        except openai.APIError as error:  # the file may exist: recovery sweeps it
            return await self.retry(doc, owner, _unavailable(error), state="creating")
        # The intent: whoever finds the part `creating` looks for a batch reading this file.
        doc = await self.docs.save(doc, owner, input_file_id=file_id, lines=len(items))
        try:
            batch = await self.creator.create(doc)
        except openai.APIStatusError as error:
            if error.status_code >= 500 or error.status_code == 408:  # it may have been made
                return await self.retry(doc, owner, _unavailable(error), state="creating")
            await self.delete_file(file_id)
            return await self.refused(doc, owner, error)
        except openai.APIError as error:  # no answer: it may have been made
            return await self.retry(doc, owner, _unavailable(error), state="creating")
        log.info(
            "job %s part %d: batch %s submitted with %d lines (%d tokens)",
            doc.job_id,
            doc.part,
            batch.id,
            len(items),
            tokens,
        )
        return await self.started(doc, owner, batch, now())

    async def reserve(self, doc: BatchDoc, owner: str, tokens: int, **changes: Any) -> BatchDoc:
        """`creating` with `tokens` if the deployment has room for them, else `waiting`.

        Room is what the limit leaves beside the other parts `creating` or running. Two
        submitters that reserve at the same moment each write first and count after, so at
        least the later one sees both; whoever sees the limit passed steps back (both may: the
        next run tries again), and the deployment never holds more than the limit."""
        limit = self.settings.batch_enqueued_tokens
        held = await self.docs.enqueued(doc.deployment, besides=doc.id)
        if held + tokens <= limit:
            doc = await self.docs.save(
                doc,
                owner,
                **{
                    **UNSUBMITTED,
                    "state": "creating",
                    "tokens": tokens,
                    "creating_since": now(),
                    "next_attempt_at": None,
                    **changes,
                },
            )
            changes = {}
            held = await self.docs.enqueued(doc.deployment, besides=doc.id)
            if held + tokens <= limit:
                return doc
        self._no_room(doc, tokens, held)
        return await self.docs.save(
            doc, owner, **{**UNSUBMITTED, "state": "waiting", "tokens": tokens, **changes}
        )

    async def unbook(self, doc: BatchDoc, owner: str) -> BatchDoc:
        """Settle the part's team booking, if any, to what its lines used (budget.py)."""
        return doc if self.budget is None else await self.budget.unbook(self.docs, doc, owner)

    async def wait_for_budget(
        self, doc: BatchDoc, owner: str, refused: RateLimited, **changes: Any
    ) -> BatchDoc:
        """The team refused the part: wait for room (the job `waiting`, saying why), tried
        again on the next poller run; past JOB_BUDGET_MAX_WAIT, fail its items."""
        assert self.budget is not None
        at = now()
        since = doc.budget_since or at
        why = self.budget.waiting(refused, since, at)
        if why is None:
            return await self.give_up(doc, owner, self.budget.failure(refused), **changes)
        log.info("job %s part %d: %s", doc.job_id, doc.part, why.message)
        fields = {**UNSUBMITTED, "state": "waiting", "error": why, "budget_since": since}
        doc = await self.docs.save(doc, owner, **fields, next_attempt_at=at, **changes)
        await self.jobs.update(
            doc.job_id, status="waiting", only_from={"submitted", "waiting"}, error=why
        )
        return doc

    async def started(
        self, doc: BatchDoc, owner: str, batch: Batch, submitted_at: datetime
    ) -> BatchDoc:
        if doc.budget_since is not None:  # it waited for its team's budget: no more
            await self.jobs.update(
                doc.job_id, status="submitted", only_from={"waiting"}, error=None
            )
        return await self.docs.save(
            doc,
            owner,
            state="submitted",
            batch_id=batch.id,
            batch_status=batch.status,
            output_file_id=None,
            error_file_id=None,
            submitted_at=submitted_at,
            creating_since=None,
            offsets={},
            ingested_all=False,
            stop=None,
            error=None,
            next_attempt_at=None,
            budget_since=None,
        )

    async def recover(self, doc: BatchDoc, owner: str, *, cancelled: bool) -> BatchDoc:
        """A part found `creating`: an earlier attempt may have made its batch without saving
        the id. Adopt that batch if the Batch API lists it; else delete what the attempt
        uploaded and submit afresh (or stop, if the job was cancelled)."""
        try:
            batch = await self.creator.find(doc)
            if batch is None:
                await self.delete_file(doc.input_file_id)
                await self.creator.sweep(doc)
        except openai.APIError as error:
            return await self.retry(doc, owner, _unavailable(error), state="creating")
        if batch is None:
            doc = await self.unbook(doc, owner)
        else:
            log.warning(
                "job %s part %d: batch %s was made by an earlier attempt that lost its answer; "
                "carrying on with it",
                doc.job_id,
                doc.part,
                batch.id,
            )
            made = datetime.fromtimestamp(batch.created_at, UTC)
            return await self.started(doc, owner, batch, made)
        doc = await self.docs.save(doc, owner, **{**UNSUBMITTED, "state": "waiting"})
        if cancelled:
            return await self.docs.save(doc, owner, state="done")
        return await self.submit(doc, owner)

    async def refused(self, doc: BatchDoc, owner: str, error: openai.APIStatusError) -> BatchDoc:
        """The Batch API answered no: the quota waits for room, a 429 or 5xx is tried again,
        any other refusal fails the part's items with the service's reason."""
        codes = error_codes(error.body)
        message = first_message(error.body, str(error.message))
        if TOKEN_LIMIT in codes:
            detail = ErrorDetail(code=TOKEN_LIMIT, message=message)
            return await self.retry(doc, owner, detail, quota=True)
        if error.status_code >= 500 or error.status_code == 429:
            return await self.retry(doc, owner, ErrorDetail(code="upstream_error", message=message))
        detail = ErrorDetail(code=codes[0] if codes else "invalid_request", message=message)
        log.warning(
            "job %s part %d: the Batch API refused it: %s", doc.job_id, doc.part, detail.code
        )
        return await self.give_up(doc, owner, detail)

    async def retry(
        self,
        doc: BatchDoc,
        owner: str,
        reason: ErrorDetail,
        *,
        state: str = "waiting",
        quota: bool = False,
        **changes: Any,
    ) -> BatchDoc:
        """Try again after a backoff that doubles each time (at most an hour). A quota
        refusal (`quota`) waits for room and is bounded by BATCH_MAX_WAIT; any other failure
        counts toward BATCH_MAX_ATTEMPTS, and the last one fails the part's items. `state`
        `creating` keeps what the attempt may have made to be looked up next time."""
        attempts = doc.attempts + (0 if quota else 1)
        refusals = doc.refusals + (1 if quota else 0)
        if attempts >= self.settings.batch_max_attempts:
            given_up = ErrorDetail(
                code=reason.code,
                message=f"{reason.message} (gave up after {attempts} attempts: BATCH_MAX_ATTEMPTS)",
            )
            return await self.give_up(doc, owner, given_up, attempts=attempts, **changes)
        tries = refusals if quota else attempts
        delay = min(self.settings.batch_retry_seconds * 2 ** (tries - 1), MAX_RETRY_SECONDS)
        log.warning(
            "job %s part %d: %s; submitting again in %.0fs (attempt %d)",
            doc.job_id,
            doc.part,
            reason.code,
            delay,
            tries,
        )
        fields: dict[str, Any] = {}
        if state == "waiting":
            doc = await self.unbook(doc, owner)
            fields = {**UNSUBMITTED, "state": "waiting"}
        return await self.docs.save(
            doc,
            owner,
            **fields,
            attempts=attempts,
            refusals=refusals,
            error=reason,
            next_attempt_at=now() + timedelta(seconds=delay),
            **changes,
        )

    async def give_up(
        self, doc: BatchDoc, owner: str, reason: ErrorDetail, **changes: Any
    ) -> BatchDoc:
        """Fail the part's items that have no result with `reason`; the part is done."""
        log.warning("job %s part %d: failed: %s", doc.job_id, doc.part, reason.message)
        doc = await self.unbook(doc, owner)
        await self.delete_file(doc.input_file_id)
        await self.fail_rest(doc, reason)
        return await self.docs.save(
            doc, owner, **{**UNSUBMITTED, "state": "done", "error": reason, **changes}
        )

    async def fail_rest(self, doc: BatchDoc, error: ErrorDetail) -> int:
        """Fail the part's items that have no result yet, with `error`; how many."""
        found = await self.remaining(doc)
        if found is None:
            return 0
        kind, spec, items = found
        await self.jobs.write_results(
            failed_result(doc.job_id, item.id, kind, error, spec.deployment) for item in items
        )
        return len(items)

    async def delete_file(self, file_id: str | None) -> None:
        """Delete a Batch API file (a resource holds at most 500); a missing one is fine."""
        if not file_id:
            return
        try:
            await self.client.files.delete(file_id)
        except openai.NotFoundError:
            pass
        except openai.APIError as error:
            log.warning("deleting file %s failed (%s); it stays", file_id, type(error).__name__)


def _unavailable(error: openai.APIError) -> ErrorDetail:
    """A failure with no answer we can act on (a 5xx, a timeout, a cut connection)."""
    if isinstance(error, openai.APIStatusError):
        message = first_message(error.body, str(error.message))
        return ErrorDetail(code="upstream_error", message=message)
    return ErrorDetail(code="unavailable", message=type(error).__name__)
