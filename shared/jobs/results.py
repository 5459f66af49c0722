"""Building result documents and request-level ids, shared by the job services."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence

from shared.core.clock import now
from shared.core.errors import AppError
from shared.core.models import CategoryResult, ErrorDetail, Usage
from shared.jobs.models import Item, JobKind, ResultDoc
from shared.jobs.store import result_id
from shared.metering.bookkeeper import CallSite


def failed_result(
    job_id: str,
    item_id: str,
    kind: JobKind,
    error: ErrorDetail,
    deployment: str | None,
    *,
    filtered: dict[str, CategoryResult] | None = None,
    usage: Usage | None = None,
) -> ResultDoc:
    """A failed (or, with `filtered`, content_filtered) item, with its reason."""
    return ResultDoc(
        id=result_id(job_id, item_id),
        job_id=job_id,
        item_id=item_id,
        kind=kind,
        status="content_filtered" if filtered is not None else "failed",
        deployment=deployment,
        error=ErrorDetail(code=error.code, message=error.message),
        categories=filtered,
        usage=usage or Usage(),
        created_at=now(),
    )


def request_usage_id(site: CallSite, item_ids: Sequence[str]) -> str:
    """A deterministic usage-document id for one job request: the same items sent again (a
    redelivered message, a retried request) overwrite their record instead of adding one."""
    digest = hashlib.sha256("\n".join(sorted(item_ids)).encode()).hexdigest()[:24]
    return f"{site.job_id}:{site.operation}:{digest}"


def share_usage(usage: Usage, weights: Sequence[int]) -> list[Usage]:
    """Split a request's usage across its items in proportion to `weights` (their sizes);
    the parts add up to the whole. Cached and uncached prompt tokens are split apart (and
    reasoning and visible completion tokens), so no share has more cached tokens than prompt
    tokens."""
    cached = _split(usage.cached_tokens, weights)
    uncached = _split(usage.prompt_tokens - usage.cached_tokens, weights)
    reasoning = _split(usage.reasoning_tokens, weights)
    visible = _split(usage.completion_tokens - usage.reasoning_tokens, weights)
    parts: list[Usage] = []
    for index in range(len(weights)):
        prompt = cached[index] + uncached[index]
        completion = reasoning[index] + visible[index]
        parts.append(
            Usage(
                prompt_tokens=prompt,
                completion_tokens=completion,
                total_tokens=prompt + completion,
                cached_tokens=cached[index],
                reasoning_tokens=reasoning[index],
            )
        )
    return parts


def _split(tokens: int, weights: Sequence[int]) -> list[int]:
    """`tokens` in proportion to `weights`, rounded down; the last part takes what is left."""
    total_weight = sum(weights) or 1
    parts = [tokens * weight // total_weight for weight in weights[:-1]]
    return [*parts, tokens - sum(parts)]


class PartlyAnswered(Exception):
    """A request answered in parts failed part-way: `results` holds the answers of the parts
    before (paid for: the runner writes them), `failure` is what stopped the rest."""

    def __init__(self, results: list[ResultDoc], failure: AppError) -> None:
        super().__init__(failure.code)
        self.results = results
        self.failure = failure


async def answer_in_parts(
    parts: Sequence[list[Item]],
    run: Callable[[list[Item]], Awaitable[list[ResultDoc]]],
    answered: Sequence[ResultDoc] = (),
) -> list[ResultDoc]:
    """`run` each part in turn; the results of all, after those `answered` already. A part
    that fails after others were answered raises PartlyAnswered with their results, so they
    are never asked again."""
    results: list[ResultDoc] = list(answered)
    for part in parts:
        try:
            results.extend(await run(part))
        except PartlyAnswered as partial:
            raise PartlyAnswered([*results, *partial.results], partial.failure) from None
        except AppError as failure:
            if not results:
                raise
            raise PartlyAnswered(results, failure) from None
    return results
