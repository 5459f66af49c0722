"""Batch API files: writing a job's items as JSONL input lines, splitting them into files
within Azure's limits, and reading output and error lines back into result documents.

Pure functions; the uploads, downloads and writes are shared/jobs/batch/service.py's and
shared/jobs/batch/poller.py's. One item per line, `custom_id` `{job_id}:{item_id}`: the line's
body is the very request the realtime path sends (`classification.request_body`), so a batch
job and a realtime one label the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from openai.types.chat import ChatCompletion
from pydantic import ValidationError

from shared.core import content_filter
from shared.core.clock import now
from shared.core.models import ContentFilterInfo, ErrorDetail, Usage
from shared.jobs.batch.models import custom_id, item_of
from shared.jobs.classification import (
    MESSAGE_OVERHEAD_TOKENS,
    label_results,
    messages,
    parse_answers,
    request_body,
)
from shared.jobs.embeddings import estimate_tokens
from shared.jobs.models import Item, JobKind, JobSpec, ResultDoc
from shared.jobs.results import failed_result
from shared.jobs.store import result_id

# Azure's Batch API takes `/chat/completions` (and no embeddings); the OpenAI API wants the
# `/v1/` paths and also takes embeddings.
AZURE_CHAT_URL = "/chat/completions"
OPENAI_URLS = {"classification": "/v1/chat/completions", "embedding": "/v1/embeddings"}
# The error-file code of a line the service never ran because the batch expired (OpenAI API):
# not the item's failure, so the item is resubmitted instead.
EXPIRED_LINE = "batch_expired"
# Tokens the service adds for the reply to a chat prompt (OpenAI's counting).
REPLY_OVERHEAD_TOKENS = 3

LineStatus = Literal["ok", "content_filter", "error"]


def endpoint_for(kind: JobKind, *, openai_api: bool) -> str:
    """The batch's `endpoint`, which is also every line's `url`."""
    return OPENAI_URLS[kind] if openai_api else AZURE_CHAT_URL


def input_line(job_id: str, url: str, spec: JobSpec, item: Item) -> bytes:
    """One JSONL line (with its newline), UTF-8 without BOM."""
    body: dict[str, Any]
    if url.endswith("/chat/completions"):
        body = request_body(spec, [item])
    else:
        body = {"model": spec.deployment, "input": item.text}
        if spec.dimensions:
            body["dimensions"] = spec.dimensions
    line = {
        "custom_id": custom_id(job_id, item.id),
        "method": "POST",
        "url": url,
        "body": body,
    }
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def line_tokens(url: str, spec: JobSpec, item: Item) -> int:
    """Input tokens one line adds to the deployment's enqueued-token quota, estimated as the
    service estimates a prompt on arrival: characters / 4 for each message, a few tokens per
    message and for the reply. The answer's tokens are not enqueued."""
    if url.endswith("/chat/completions"):
        prompt = messages(spec, [item])
        return REPLY_OVERHEAD_TOKENS + sum(
            estimate_tokens(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in prompt
        )
    return estimate_tokens(item.text)


def split(
    sizes: Sequence[int],
    max_lines: int,
    max_bytes: int,
    tokens: Sequence[int] | None = None,
    max_tokens: int | None = None,
) -> list[tuple[int, int]]:
    """Ranges `[first, last)` of consecutive lines, each within every limit (lines, bytes
    and, when given, estimated tokens). A single line over `max_bytes` or `max_tokens` gets a
    file of its own (the service then fails that line, or the quota can never take it)."""
    weights = tokens if tokens is not None else [0] * len(sizes)
    cap = max_tokens if max_tokens is not None else 0
    parts: list[tuple[int, int]] = []
    first, held, counted = 0, 0, 0
    for index, (size, weight) in enumerate(zip(sizes, weights, strict=True)):
        full = index - first >= max_lines or held + size > max_bytes
        if index > first and (full or (cap and counted + weight > cap)):
            parts.append((first, index))
            first, held, counted = index, 0, 0
        held += size
        counted += weight
    if len(sizes) > first:
        parts.append((first, len(sizes)))
    return parts


@dataclass(frozen=True)
class LineOutcome:
    """What one output or error line means: the item's result, the usage to record and the
    filter verdict to record as an event. `result` is None for an expired line."""

    line_id: str
    item_id: str
    result: ResultDoc | None
    model: str | None = None
    usage: Usage | None = None
    status: LineStatus = "ok"
    filtered: ContentFilterInfo | None = None


def read_line(text: str, job_id: str, kind: JobKind, spec: JobSpec) -> LineOutcome | None:
    """An output- or error-file line as its outcome; None for a blank line or one that is
    not one of this job's items."""
    if not text.strip():
        return None
    try:
        line = json.loads(text)
    except json.JSONDecodeError:
        return None
    line_id = line.get("custom_id") if isinstance(line, dict) else None
    item_id = item_of(job_id, line_id) if isinstance(line_id, str) else None
    if item_id is None or not isinstance(line_id, str):
        return None
    response = line.get("response") or {}
    body = response.get("body") if isinstance(response, dict) else None
    if isinstance(response, dict) and response.get("status_code") == 200 and isinstance(body, dict):
        if kind == "embedding":
            return _embedding(line_id, job_id, item_id, spec, body)
        return _completion(line_id, job_id, item_id, spec, body)
    return _failure(line_id, job_id, item_id, kind, spec, line.get("error"), body)


def _completion(
    line_id: str, job_id: str, item_id: str, spec: JobSpec, body: dict[str, Any]
) -> LineOutcome:
    try:
        completion = ChatCompletion.model_validate(body)
        choice = completion.choices[0]
    except (ValidationError, IndexError):
        detail = ErrorDetail(code="invalid_answer", message="the batch line was not a completion")
        result = failed_result(job_id, item_id, "classification", detail, spec.deployment)
        return LineOutcome(line_id, item_id, result, status="error")
    usage = Usage.of(completion.usage)
    out = LineOutcome(line_id, item_id, None, model=completion.model, usage=usage)
    flagged = content_filter.completion_flag(choice)
    if flagged is not None:
        detail = ErrorDetail(code="content_filter", message="the answer was filtered")
        result = failed_result(
            job_id,
            item_id,
            "classification",
            detail,
            spec.deployment,
            filtered=content_filter.filtered_only(flagged),
            usage=usage,
        )
        return _with(out, result, status="content_filter", filtered=flagged)
    if choice.message.refusal:
        detail = ErrorDetail(code="refusal", message="the model refused to classify it")
        return _with(
            out,
            failed_result(job_id, item_id, "classification", detail, spec.deployment, usage=usage),
        )
    answers = parse_answers(choice.message.content)
    if answers is None:
        detail = ErrorDetail(
            code="invalid_answer",
            message=f"the answer was not the requested JSON (finish_reason {choice.finish_reason})",
        )
        return _with(
            out,
            failed_result(job_id, item_id, "classification", detail, spec.deployment, usage=usage),
        )
    (result,) = label_results(job_id, [Item(id=item_id, text="-")], spec, answers, [usage])
    return _with(out, result)


def _embedding(
    line_id: str, job_id: str, item_id: str, spec: JobSpec, body: dict[str, Any]
) -> LineOutcome:
    data = body.get("data") or [{}]
    vector = data[0].get("embedding") if isinstance(data[0], dict) else None
    raw_usage = body.get("usage") or {}
    tokens = int(raw_usage.get("prompt_tokens", 0))
    usage = Usage(prompt_tokens=tokens, total_tokens=int(raw_usage.get("total_tokens", tokens)))
    if not isinstance(vector, list):
        detail = ErrorDetail(code="invalid_answer", message="the batch line held no vector")
        result = failed_result(job_id, item_id, "embedding", detail, spec.deployment, usage=usage)
        return LineOutcome(line_id, item_id, result, body.get("model"), usage, "error")
    result = ResultDoc(
        id=result_id(job_id, item_id),
        job_id=job_id,
        item_id=item_id,
        kind="embedding",
        status="succeeded",
        deployment=spec.deployment,
        embedding=vector,
        usage=usage,
        created_at=now(),
    )
    return LineOutcome(line_id, item_id, result, body.get("model"), usage)


def _failure(
    line_id: str,
    job_id: str,
    item_id: str,
    kind: JobKind,
    spec: JobSpec,
    line_error: Any,
    body: Any,
) -> LineOutcome:
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else line_error if isinstance(line_error, dict) else {}
    code = str(error.get("code") or "batch_line_failed")
    message = str(error.get("message") or "the Batch API failed this line")
    if code == EXPIRED_LINE:
        return LineOutcome(line_id, item_id, None, status="error")
    if code == "content_filter":
        inner = error.get("innererror") or {}
        raw = inner.get("content_filter_result") if isinstance(inner, dict) else None
        info = ContentFilterInfo(
            stage="prompt", filtered=True, categories=content_filter.parse_categories(raw)
        )
        detail = ErrorDetail(code="content_filter", message="the item was filtered")
        result = failed_result(
            job_id,
            item_id,
            kind,
            detail,
            spec.deployment,
            filtered=content_filter.filtered_only(info),
        )
        return LineOutcome(line_id, item_id, result, status="content_filter", filtered=info)
    result = failed_result(
        job_id, item_id, kind, ErrorDetail(code=code, message=message), spec.deployment
    )
    return LineOutcome(line_id, item_id, result, status="error")


def _with(
    out: LineOutcome,
    result: ResultDoc,
    *,
    status: LineStatus = "ok",
    filtered: ContentFilterInfo | None = None,
) -> LineOutcome:
    return LineOutcome(out.line_id, out.item_id, result, out.model, out.usage, status, filtered)
