"""Embedding jobs: items packed into as few requests as Azure's limits allow, one result each.

Limits (settings, Azure's values by default): `EMBEDDING_MAX_INPUTS` inputs per request (2048),
`EMBEDDING_MAX_INPUT_TOKENS` per input (8192) and `EMBEDDING_MAX_REQUEST_TOKENS` per request
(300k); and ours, `EMBEDDING_MAX_FLOATS_PER_REQUEST` floats per answer (inputs x dimensions,
shared/jobs/memory.py). Tokens are estimated as characters / 4, the service's own estimate for
rate limiting (tiktoken cannot fetch its encodings offline, and the estimate is what the quota
charges). A 400 about the items splits the request in two; one about the request fails its
items at once (shared/jobs/refusals.py). Vectors are stored as float
arrays, mapped back to items by the `index` the service returns (not by order).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import openai

from shared.aoai.backends import Backends
from shared.aoai.reservation import Reservation
from shared.core.clock import now
from shared.core.errors import AppError, InvalidRequest
from shared.core.models import ErrorDetail, Usage
from shared.core.settings import Settings
from shared.jobs import refusals
from shared.jobs.memory import LARGEST_DIMENSIONS, answer_bytes
from shared.jobs.models import Item, JobSpec, ResultDoc
from shared.jobs.results import answer_in_parts, failed_result, request_usage_id, share_usage
from shared.jobs.store import result_id
from shared.metering.bookkeeper import Bookkeeper, CallSite
from shared.telemetry import tracing


def estimate_tokens(text: str) -> int:
    """Tokens the quota charges for `text`: characters / 4, rounded up."""
    return max(1, math.ceil(len(text) / 4))


@dataclass(frozen=True)
class EmbeddingService:
    settings: Settings
    backends: Backends  # the call goes to `site.backend`, without the SDK's retries
    books: Bookkeeper
    # Vector size by deployment, learnt from its answers to requests without `dimensions`.
    sizes: dict[str, int] = field(default_factory=dict)

    def dimensions(self, spec: JobSpec | None) -> int:
        """Floats per vector: the job's `dimensions`, else the deployment's size once an
        answer showed it, else the largest an embedding model makes (3,072)."""
        if spec is None:
            return LARGEST_DIMENSIONS
        return spec.dimensions or self.sizes.get(spec.deployment, LARGEST_DIMENSIONS)

    def max_inputs(self, spec: JobSpec | None) -> int:
        """Inputs per request: Azure's cap, and the floats one answer may hold."""
        floats = self.settings.embedding_max_floats_per_request // self.dimensions(spec)
        return max(1, min(self.settings.embedding_max_inputs, floats))

    def answer_bytes(self, group: list[Item], spec: JobSpec) -> int:
        """Estimated memory of `group`'s answer until its results are written."""
        return answer_bytes(len(group), self.dimensions(spec))

    def plan(
        self, items: list[Item], token_budget: int | None = None, spec: JobSpec | None = None
    ) -> list[list[Item]]:
        """Pack items, in order, into as few requests as the caps (and the limiter's
        per-window budget, when smaller) allow: inputs, tokens and the floats of the answer
        (inputs x dimensions, `EMBEDDING_MAX_FLOATS_PER_REQUEST`). Items over the per-input
        cap get a request of their own and fail there with the reason."""
        max_tokens = self.settings.embedding_max_request_tokens
        if token_budget is not None:
            max_tokens = max(1, min(max_tokens, token_budget))
        max_inputs = self.max_inputs(spec)
        groups: list[list[Item]] = []
        current: list[Item] = []
        tokens = 0
        for item in items:
            cost = estimate_tokens(item.text)
            full = len(current) >= max_inputs or tokens + cost > max_tokens
            if current and full:
                groups.append(current)
                current, tokens = [], 0
            current.append(item)
            tokens += cost
        if current:
            groups.append(current)
        return groups

    def estimate(self, group: list[Item], spec: JobSpec | None = None) -> int:
        """Tokens the quota charges for `group` (the spec does not change it)."""
        return sum(estimate_tokens(item.text) for item in group)

    async def run(
        self, group: list[Item], spec: JobSpec, site: CallSite, reservation: Reservation
    ) -> list[ResultDoc]:
        """Embed one group. A 400 about the request fails its items at once; one about its
        items splits it (shared/jobs/refusals.py). Raises AppError for a failure of the whole
        request (429, 5xx, timeout, auth)."""
        return await self._run(group, spec, site, reservation, probed=False)

    async def _run(
        self,
        group: list[Item],
        spec: JobSpec,
        site: CallSite,
        reservation: Reservation,
        *,
        probed: bool,
    ) -> list[ResultDoc]:
        too_long = [
            i for i in group if estimate_tokens(i.text) > self.settings.embedding_max_input_tokens
        ]
        if too_long:
            rest = [i for i in group if i not in too_long]
            failed = [
                failed_result(
                    site.job_id or "",
                    item.id,
                    "embedding",
                    ErrorDetail(
                        code="too_long",
                        message=f"about {estimate_tokens(item.text)} tokens; at most "
                        f"{self.settings.embedding_max_input_tokens} per input",
                    ),
                    spec.deployment,
                )
                for item in too_long
            ]
            if not rest:
                return failed
            return failed + await self._run(rest, spec, site, reservation, probed=probed)
        try:
            return await self._call(group, spec, site, reservation)
        except InvalidRequest as error:
            return await self._refused(group, spec, site, reservation, error, probed=probed)

    async def _refused(
        self,
        group: list[Item],
        spec: JobSpec,
        site: CallSite,
        reservation: Reservation,
        error: InvalidRequest,
        *,
        probed: bool,
    ) -> list[ResultDoc]:
        """Settle a 400 for `group`: its items fail with it when it is the request's; else
        the group is halved until the item that caused it stands alone. An unknown 400 is
        first tried on one item alone (once per request: the halves know the answer)."""
        job_id = site.job_id or ""
        scope = refusals.scope(error)
        if len(group) == 1 or scope == "request":
            return refusals.fail_all(job_id, group, "embedding", error, spec.deployment)
        results: list[ResultDoc] = []
        if scope == "unknown" and not probed:
            alone = refusals.probe(group)
            results = await self._run([alone], spec, site, reservation, probed=True)
            group = [item for item in group if item is not alone]
            if refusals.same(results, error):
                return results + refusals.fail_all(
                    job_id, group, "embedding", error, spec.deployment
                )
        half = max(1, len(group) // 2)
        halves = [part for part in (group[:half], group[half:]) if part]
        # A half that fails (a 429, an outage) hands on what was answered before it.
        return await answer_in_parts(
            halves,
            lambda part: self._run(part, spec, site, reservation, probed=True),
            answered=results,
        )

    async def _call(
        self, group: list[Item], spec: JobSpec, site: CallSite, reservation: Reservation
    ) -> list[ResultDoc]:
        target = self.backends.target(site.backend, spec.deployment)
        args: dict[str, Any] = {"model": target.deployment, "input": [i.text for i in group]}
        if spec.dimensions is not None:
            args["dimensions"] = spec.dimensions
        record_id = request_usage_id(site, [i.id for i in group])
        started = time.perf_counter()
        try:
            raw = await tracing.traced_upstream(
                "embeddings",
                spec.deployment,
                target.backend,
                target.client,
                target.client.embeddings.with_raw_response.create(**args),
            )
        except openai.OpenAIError as error:
            if isinstance(error, openai.APIStatusError):
                reservation.refused(error.response.headers)
            failure: AppError = await self.books.failed(
                site, error, started=started, prompt=None, record_id=record_id
            )
            raise failure from None
        response = raw.parse()
        reservation.answered(raw.headers, charged=response.usage.prompt_tokens)
        if spec.dimensions is None and response.data:
            self.sizes[spec.deployment] = len(response.data[0].embedding)
        usage = Usage(
            prompt_tokens=response.usage.prompt_tokens, total_tokens=response.usage.total_tokens
        )
        await self.books.usage(
            site, model=response.model, usage=usage, started=started, record_id=record_id
        )
        vectors = {d.index: d.embedding for d in response.data}
        shares = share_usage(usage, [len(i.text) for i in group])
        created = now()
        results: list[ResultDoc] = []
        for index, item in enumerate(group):
            vector = vectors.get(index)
            if vector is None:
                results.append(
                    failed_result(
                        site.job_id or "",
                        item.id,
                        "embedding",
                        ErrorDetail(
                            code="missing_answer", message="the service returned no vector for it"
                        ),
                        spec.deployment,
                    )
                )
                continue
            results.append(
                ResultDoc(
                    id=result_id(site.job_id or "", item.id),
                    job_id=site.job_id or "",
                    item_id=item.id,
                    kind="embedding",
                    status="succeeded",
                    deployment=spec.deployment,
                    embedding=[float(x) for x in vector],
                    usage=shares[index],
                    created_at=created,
                )
            )
        return results
