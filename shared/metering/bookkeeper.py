"""The bookkeeping every Azure OpenAI call gets, whoever makes it (chat, embedding and
classification jobs, the batch poller): one usage document per call and one content-filter
event per filtered prompt or completion.

Bookkeeping never fails the caller, never holds an answer and never loses a record. The
completion is paid for by the time its usage is known, so a Cosmos DB failure must not turn a
good answer into a 500, and a Cosmos DB that does not answer must not keep a caller waiting:
on the answer path (chat and the gateway routes) a write gets STORE_ANSWER_TIMEOUT seconds,
then the document is written behind through the outbox (shared/metering/outbox.py), which
loses nothing either.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import openai

from shared.core import content_filter
from shared.core.errors import AppError, ContentFiltered, UpstreamError, translate
from shared.core.models import ContentFilterInfo, Usage
from shared.core.store import CONTENT_FILTER_EVENTS, USAGE
from shared.metering import filter_events
from shared.metering.filter_events import Source
from shared.metering.models import CapSource, Mode, Operation, UsageRecord
from shared.metering.outbox import Outbox, OutboxContainer
from shared.metering.report import build_record

log = logging.getLogger(__name__)

Status = Literal["ok", "content_filter", "error", "cancelled"]
# Sources with a caller waiting for the answer: their writes are bounded by
# STORE_ANSWER_TIMEOUT. Jobs and the batch poller wait for Cosmos DB as long as the SDK does.
ANSWERING: Final[frozenset[Source]] = frozenset({"chat", "gateway"})


@dataclass(frozen=True)
class CallSite:
    """Who made an upstream call, and for what: everything a record needs besides the outcome."""

    operation: Operation
    source: Source
    deployment: str
    tags: Mapping[str, str] = field(default_factory=dict)
    mode: Mode = "realtime"
    request_id: str | None = None
    client_request_id: str | None = None
    principal_id: str | None = None
    job_id: str | None = None
    user: str | None = None
    backend: str | None = None  # the AOAI_BACKENDS entry, once the router has picked it
    # The team the call belongs to (its credential's, or its job's): the seam for team
    # limits and budgets, and the `team` of its records.
    team: str | None = None

    def on(self, backend: str | None) -> CallSite:
        """The same call site, served by `backend`."""
        return dataclasses.replace(self, backend=backend)


class Bookkeeper:
    """Writes usage documents and content-filter events; one per process (shared/runtime.py)."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        user_hash_secret: str,
        store_text: bool = False,
        answer_timeout: float | None = None,
    ) -> None:
        self._outbox = outbox
        self._user_hash_secret = user_hash_secret
        self._store_text = store_text
        self._answer_timeout = answer_timeout

    async def usage(
        self,
        site: CallSite,
        *,
        model: str | None,
        usage: Usage | None,
        started: float,
        status: Status = "ok",
        record_id: str | None = None,
        estimated: bool = False,
        cut_by: CapSource | None = None,
    ) -> UsageRecord:
        """Record one call. `started` is its `time.perf_counter()` at the start; `record_id`
        a deterministic id for calls that redelivery may repeat (job requests); `estimated`
        when the service reported no usage and `usage` is the app's estimate (a cut stream)."""
        record = build_record(
            operation=site.operation,
            deployment=site.deployment,
            model=model,
            usage=usage,
            latency_ms=(time.perf_counter() - started) * 1000,
            tags=site.tags,
            mode=site.mode,
            status=status,
            request_id=site.request_id,
            client_request_id=site.client_request_id,
            principal_id=site.principal_id,
            job_id=site.job_id,
            record_id=record_id,
            backend=site.backend,
            estimated=estimated,
            team=site.team,
        )
        if site.user is not None:
            record = record.model_copy(
                update={"user_hash": filter_events.hash_user(site.user, self._user_hash_secret)}
            )
        if cut_by is not None:  # an answer cut at its output cap: who set it
            record = record.model_copy(update={"cut_by": cut_by})
        await self._write(site, USAGE, record.model_dump(mode="json"))
        return record

    async def failed(
        self,
        site: CallSite,
        error: Exception,
        *,
        started: float,
        prompt: str | None,
        item_id: str | None = None,
        record_id: str | None = None,
        filter_event: bool = True,
    ) -> AppError:
        """Record a failed call (zero tokens; and an event when the prompt was filtered, unless
        `filter_event` is False: a job request of several items is split until the filtered
        item stands alone, and the event is that item's) and return what the caller sees.
        `prompt` is stored only with CONTENT_FILTER_STORE_TEXT."""
        failure = translate(error) or UpstreamError("Azure OpenAI call failed")
        filtered = isinstance(failure, ContentFiltered)
        if filtered and filter_event and isinstance(error, openai.APIStatusError):
            await self.filtered(site, content_filter.prompt_filter(error), prompt, item_id=item_id)
        else:
            log.warning(
                "%s on %s via %s failed upstream: %s (%s; request %s, job %s)",
                site.operation,
                site.deployment,
                site.backend,
                failure.code,
                type(error).__name__,
                site.request_id,
                site.job_id,
            )
        await self.usage(
            site,
            model=None,
            usage=None,
            started=started,
            status="content_filter" if filtered else "error",
            record_id=record_id,
        )
        return failure

    async def filtered(
        self,
        site: CallSite,
        info: ContentFilterInfo,
        text: str | None,
        *,
        item_id: str | None = None,
    ) -> None:
        """Record one filtered prompt or completion (the text only with
        `CONTENT_FILTER_STORE_TEXT=true`)."""
        event = filter_events.build_event(
            info,
            source=site.source,
            deployment=site.deployment,
            request_id=site.request_id,
            client_request_id=site.client_request_id,
            job_id=site.job_id,
            item_id=item_id,
            user_hash=filter_events.hash_user(site.user, self._user_hash_secret),
            backend=site.backend,
            team=site.team,
            text=text,
            store_text=self._store_text,
        )
        await self._write(site, CONTENT_FILTER_EVENTS, event.model_dump(mode="json"))
        log.info(
            "content filter: %s %s on %s (request %s, job %s)",
            info.stage,
            ",".join(content_filter.filtered_only(info)) or "unspecified",
            site.deployment,
            site.request_id,
            site.job_id,
        )

    async def amend(self, record: UsageRecord) -> None:
        """Write a usage document again with what was learned after its call (a background
        response's tokens, known when a poll finds it done): the same id and day, so it
        replaces the first write."""
        await self._outbox.write(USAGE, record.model_dump(mode="json"), within=self._answer_timeout)

    async def _write(
        self, site: CallSite, container: OutboxContainer, document: dict[str, Any]
    ) -> None:
        within = self._answer_timeout if site.source in ANSWERING else None
        await self._outbox.write(container, document, within=within)
