"""Classification jobs: several items labelled by one chat request with strict structured
outputs (`response_format: json_schema`, `strict: true`) built from the job's labels.

Each request lists its items as `[id] text` lines and asks for `{"results": [{"id", "label"}]}`
(or `"labels": [...]` for multi-label), with the ids and labels as enums. The answer is parsed
here, not by the SDK, so usage is recorded whatever the answer holds. A request that is
filtered or refused is split until the item that caused it stands alone: that item gets a
`content_filtered` (with one filter event) or `failed` result and the others their labels; a
400 about the request itself fails the group's items at once (shared/jobs/refusals.py).
An answer that names a label outside the schema, or misses an item, fails that item only.

Reasoning models (o-series, gpt-5) spend hidden tokens out of `max_completion_tokens` before
they write, and which `reasoning_effort` they take differs from model to model (a model that
does not reason refuses the parameter). So no effort is sent; instead, once a deployment's
answers show hidden reasoning, its requests get CLASSIFY_REASONING_TOKENS of room on top of
the answer's budget, and an answer the reasoning cut short before then (`length`, no JSON) is
sent once more with that room, under a usage record of its own (docs/jobs.md).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import openai

from shared.aoai.backends import Backends
from shared.aoai.reservation import Reservation
from shared.core import content_filter
from shared.core.clock import now
from shared.core.errors import AppError, ContentFiltered, InvalidRequest
from shared.core.models import ErrorDetail, Usage
from shared.core.settings import Settings
from shared.jobs import refusals
from shared.jobs.models import Item, JobSpec, ResultDoc
from shared.jobs.results import answer_in_parts, failed_result, request_usage_id, share_usage
from shared.jobs.store import result_id
from shared.metering.bookkeeper import Bookkeeper, CallSite
from shared.telemetry import tracing

log = logging.getLogger(__name__)

MESSAGE_OVERHEAD_TOKENS = 4


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def one_line(text: str) -> str:
    return " ".join(text.split())


def schema(spec: JobSpec, ids: list[str]) -> dict[str, Any]:
    """The strict JSON schema of one request's answer (every object closed and all-required,
    no keyword Azure refuses)."""
    labels = list(spec.labels or [])
    answer: dict[str, Any] = (
        {"labels": {"type": "array", "items": {"type": "string", "enum": labels}}}
        if spec.multi_label
        else {"label": {"type": "string", "enum": labels}}
    )
    item = {
        "type": "object",
        "properties": {"id": {"type": "string", "enum": ids}, **answer},
        "required": ["id", *answer],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"results": {"type": "array", "items": item}},
        "required": ["results"],
        "additionalProperties": False,
    }


def messages(spec: JobSpec, group: list[Item]) -> list[dict[str, str]]:
    how = "every label that applies (at least one)" if spec.multi_label else "exactly one label"
    system = (
        "You classify text items. Allowed labels: "
        + ", ".join(spec.labels or [])
        + f". For every item, answer with its id and {how}."
    )
    if spec.instructions:
        system += "\n" + spec.instructions
    lines = "\n".join(f"[{item.id}] {one_line(item.text)}" for item in group)
    return [{"role": "system", "content": system}, {"role": "user", "content": lines}]


def max_answer_tokens(spec: JobSpec, group: list[Item]) -> int:
    """A bound on the answer: ids, labels and JSON punctuation, with a margin. It is charged
    against the quota on arrival, so it is kept tight rather than left to the default."""
    labels = spec.labels or []
    label_tokens = sum(map(_tokens, labels)) if spec.multi_label else max(map(_tokens, labels))
    per_item = 12 + label_tokens + max(_tokens(i.id) for i in group)
    return 32 + 2 * per_item * len(group)


def request_body(spec: JobSpec, group: list[Item], reasoning_room: int = 0) -> dict[str, Any]:
    """The chat request that labels `group`: the realtime call's arguments, and the `body` of
    a Batch API line (shared/jobs/batch/files.py), so both paths send the same request.
    `reasoning_room`: tokens a reasoning model may spend before it writes the answer."""
    return {
        "model": spec.deployment,
        "messages": messages(spec, group),
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "classification",
                "strict": True,
                "schema": schema(spec, [i.id for i in group]),
            },
        },
        "max_completion_tokens": max_answer_tokens(spec, group) + reasoning_room,
    }


@dataclass(frozen=True)
class ClassificationService:
    settings: Settings
    backends: Backends  # the call goes to `site.backend`, without the SDK's retries
    books: Bookkeeper
    # Deployments whose answers showed hidden reasoning (this process has seen it).
    reasoners: set[str] = field(default_factory=set)

    def reasoning_room(self, deployment: str) -> int:
        """Tokens a request to `deployment` leaves for hidden reasoning."""
        return self.settings.classify_reasoning_tokens if deployment in self.reasoners else 0

    def plan(
        self, items: list[Item], token_budget: int | None = None, spec: JobSpec | None = None
    ) -> list[list[Item]]:
        size = self.settings.classify_items_per_request
        return [items[i : i + size] for i in range(0, len(items), size)]

    def answer_bytes(self, group: list[Item], spec: JobSpec) -> int:
        """Nothing to hold against the memory budget: an answer is a few hundred tokens."""
        return 0

    def estimate(self, group: list[Item], spec: JobSpec) -> int:
        prompt = sum(_tokens(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in messages(spec, group))
        return prompt + max_answer_tokens(spec, group) + self.reasoning_room(spec.deployment)

    async def run(
        self,
        group: list[Item],
        spec: JobSpec,
        site: CallSite,
        reservation: Reservation,
        *,
        again: bool = False,
    ) -> list[ResultDoc]:
        """Label one group. Raises AppError for a failure of the whole request (429, 5xx,
        timeout, auth); filtered, refused and malformed answers are settled here. `again`:
        the group is sent once more, with room for reasoning the first answer showed."""
        job_id = site.job_id or ""
        record_id = request_usage_id(site, [i.id for i in group]) + (":reasoning" if again else "")
        target = self.backends.target(site.backend, spec.deployment)
        room = self.reasoning_room(spec.deployment)
        args = {**request_body(spec, group, room), "model": target.deployment}
        prompt = args["messages"]
        started = time.perf_counter()
        try:
            raw = await tracing.traced_upstream(
                "chat",
                spec.deployment,
                target.backend,
                target.client,
                target.client.chat.completions.with_raw_response.create(**args),
            )
        except openai.OpenAIError as error:
            if isinstance(error, openai.APIStatusError):
                reservation.refused(error.response.headers)
            item_id = group[0].id if len(group) == 1 else None
            failure: AppError = await self.books.failed(
                site,
                error,
                started=started,
                prompt=prompt[1]["content"],
                item_id=item_id,
                record_id=record_id,
                filter_event=item_id is not None,
            )
            if isinstance(failure, InvalidRequest):
                return await self._refused(group, spec, site, reservation, failure)
            if isinstance(failure, ContentFiltered):
                if len(group) > 1:
                    return await self._split(group, spec, site, reservation, singly=True)
                return [
                    failed_result(
                        job_id,
                        group[0].id,
                        "classification",
                        failure.detail(),
                        spec.deployment,
                        filtered=_categories(failure),
                    )
                ]
            raise failure from None
        reservation.answered(raw.headers)  # charged: the prompt estimate and max tokens
        completion = raw.parse()
        choice = completion.choices[0]
        usage = Usage.of(completion.usage)
        hidden = usage.reasoning_tokens
        if hidden and spec.deployment not in self.reasoners:
            log.info(
                "deployment %s reasons (%d hidden tokens): classification requests get %d "
                "tokens of room for it",
                spec.deployment,
                hidden,
                self.settings.classify_reasoning_tokens,
            )
            self.reasoners.add(spec.deployment)
        flagged = content_filter.completion_flag(choice)
        await self.books.usage(
            site,
            model=completion.model,
            usage=usage,
            started=started,
            record_id=record_id,
            status="content_filter" if flagged else "ok",
        )
        problem: ErrorDetail | None = None
        if flagged is not None:
            if len(group) > 1:
                return await self._split(group, spec, site, reservation, singly=True)
            await self.books.filtered(site, flagged, None, item_id=group[0].id)
            detail = ErrorDetail(code="content_filter", message="the answer was filtered")
            return [
                failed_result(
                    job_id,
                    group[0].id,
                    "classification",
                    detail,
                    spec.deployment,
                    filtered=content_filter.filtered_only(flagged),
                    usage=usage,
                )
            ]
        if choice.message.refusal:
            problem = ErrorDetail(code="refusal", message="the model refused to classify it")
        answers = None if problem else parse_answers(choice.message.content)
        cut_by_reasoning = answers is None and choice.finish_reason == "length" and hidden > 0
        if cut_by_reasoning and not again and self.reasoning_room(spec.deployment) > room:
            # Sent before the deployment was known to reason: the budget was the answer's alone.
            return await self.run(group, spec, site, reservation, again=True)
        if answers is None:
            problem = problem or ErrorDetail(
                code="invalid_answer",
                message=f"the model's hidden reasoning ({hidden} tokens) used up the answer's "
                "budget (finish_reason length); raise CLASSIFY_REASONING_TOKENS"
                if cut_by_reasoning
                else f"the answer was not the requested JSON (finish_reason "
                f"{choice.finish_reason})",
            )
            if len(group) > 1:
                return await self._split(group, spec, site, reservation, singly=False)
            return [
                failed_result(
                    job_id, group[0].id, "classification", problem, spec.deployment, usage=usage
                )
            ]
        return label_results(
            site.job_id or "", group, spec, answers, share_usage(usage, [1] * len(group))
        )

    async def _refused(
        self,
        group: list[Item],
        spec: JobSpec,
        site: CallSite,
        reservation: Reservation,
        failure: InvalidRequest,
    ) -> list[ResultDoc]:
        """Settle a 400 for `group`: its items fail with it when it is the request's
        (shared/jobs/refusals.py); else each item goes alone, the shortest first, and when an
        unknown 400 comes back the same for it, the rest fail with it too."""
        job_id = site.job_id or ""
        scope = refusals.scope(failure)
        if len(group) == 1 or scope == "request":
            return refusals.fail_all(job_id, group, "classification", failure, spec.deployment)
        alone = refusals.probe(group)
        results = await self.run([alone], spec, site, reservation)
        rest = [item for item in group if item is not alone]
        if scope == "unknown" and refusals.same(results, failure):
            return results + refusals.fail_all(
                job_id, rest, "classification", failure, spec.deployment
            )
        return await self._split(rest, spec, site, reservation, singly=True, answered=results)

    async def _split(
        self,
        group: list[Item],
        spec: JobSpec,
        site: CallSite,
        reservation: Reservation,
        *,
        singly: bool,
        answered: list[ResultDoc] | None = None,
    ) -> list[ResultDoc]:
        """`group` in parts (each item alone, or halves), after the results `answered` by an
        earlier part of the same request: a failure part-way hands those on, never asks them
        again (PartlyAnswered)."""
        parts = (
            [[item] for item in group]
            if singly
            else [group[: len(group) // 2], group[len(group) // 2 :]]
        )
        return await answer_in_parts(
            parts, lambda part: self.run(part, spec, site, reservation), answered or []
        )


def label_results(
    job_id: str, group: list[Item], spec: JobSpec, answers: dict[str, Any], shares: list[Usage]
) -> list[ResultDoc]:
    """One result per item from a parsed answer (`parse_answers`): its labels, or a failure
    when the answer misses it or names a label outside the job's."""
    allowed = set(spec.labels or [])
    created = now()
    out: list[ResultDoc] = []
    for item, share in zip(group, shares, strict=True):
        answer = answers.get(item.id)
        labels = _labels(answer, spec.multi_label)
        if labels is None:
            error = ErrorDetail(code="missing_answer", message="the answer did not cover it")
        elif not labels or not set(labels) <= allowed:
            error = ErrorDetail(
                code="invalid_label",
                message="the answer named a label outside the job's labels",
            )
        else:
            out.append(
                ResultDoc(
                    id=result_id(job_id, item.id),
                    job_id=job_id,
                    item_id=item.id,
                    kind="classification",
                    status="succeeded",
                    deployment=spec.deployment,
                    labels=labels,
                    usage=share,
                    created_at=created,
                )
            )
            continue
        out.append(
            failed_result(job_id, item.id, "classification", error, spec.deployment, usage=share)
        )
    return out


def parse_answers(content: str | None) -> dict[str, Any] | None:
    """`{"results": [{"id": ..., ...}]}` as {id: answer}, or None if it is not that shape."""
    try:
        document = json.loads(content or "")
    except json.JSONDecodeError:
        return None
    rows = document.get("results") if isinstance(document, dict) else None
    if not isinstance(rows, list):
        return None
    found: dict[str, Any] = {}
    for row in rows:
        if isinstance(row, dict) and isinstance(row.get("id"), str):
            found.setdefault(row["id"], row)
    return found


def _labels(answer: Any, multi: bool) -> list[str] | None:
    if not isinstance(answer, dict):
        return None
    value = answer.get("labels") if multi else answer.get("label")
    if multi and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(dict.fromkeys(value))
    if not multi and isinstance(value, str):
        return [value]
    return []


def _categories(failure: ContentFiltered) -> dict[str, Any]:
    details = failure.details if isinstance(failure.details, dict) else {}
    categories = details.get("categories") or {}
    return dict(categories)
