"""The enqueued-token quota of a global-batch deployment, as Azure enforces it.

Each global-batch deployment may hold at most `enqueued_token_limit` input tokens in
batches that are not finished yet (0 = no limit). A batch that would go over is refused in
one of two ways, both with the code `token_limit_exceeded`: a 400 at create when the
deployment's queue is already full, or, when only this batch does not fit, a batch that
fails after `validating` with the same problem in `errors.data`.
"""

from __future__ import annotations

from typing import Any

from . import errors
from .batch_input import BatchLine
from .tokens import estimate_tokens, prompt_tokens

_HELP = "Learn more: https://aka.ms/aoai_batch/errors."


def line_tokens(line: BatchLine) -> int:
    """Input tokens of one line: the prompt estimate of a chat line, the inputs of others."""
    messages = line.body.get("messages")
    if isinstance(messages, list):
        return prompt_tokens([m for m in messages if isinstance(m, dict)])
    raw = line.body.get("input")
    items = raw if isinstance(raw, list) else [raw]
    return sum(estimate_tokens(i) if isinstance(i, str) else 1 for i in items)


def _short(count: int) -> str:
    """30000 -> "30K", 1500000 -> "1.5M", as Azure writes the limit."""
    for size, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "K")):
        if count >= size:
            return f"{count / size:g}{suffix}"
    return str(count)


def problem(limit: int, deployment: str) -> dict[str, Any]:
    """The `errors.data` entry Azure writes for a full queue."""
    return {
        "code": "token_limit_exceeded",
        "message": f"The number of enqueued tokens has surpassed the configured limit of "
        f"{_short(limit)} for the deployment '{deployment}'. Please either increase the limit "
        "or try again once the current jobs have finished. " + _HELP,
        "line": None,
        "param": None,
    }


def admit(limit: int, deployment: str, queued: int, tokens: int) -> dict[str, Any] | None:
    """None if `tokens` fit beside `queued`; the problem if the batch must fail after
    validating; raises the 400 when the queue is already full."""
    if not limit or queued + tokens <= limit:
        return None
    if queued >= limit:
        raise errors.AzureError(
            400, {"errors": {"object": "list", "data": [problem(limit, deployment)]}}
        )
    return problem(limit, deployment)
