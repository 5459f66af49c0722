"""A 400 for a job request: about the request (every request of the job would get it) or about
its items (splitting the request finds the one that caused it).

Azure OpenAI names what it refuses in the error's `param`, sometimes its `code`:

- **the request**: a parameter that is not the items (`dimensions` above the model's size,
  `encoding_format`, `response_format`, `max_completion_tokens`, ...) or a code about the call
  (`OperationNotSupported`: a chat job on an embedding deployment; `unsupported_parameter`,
  `unsupported_value`). The group's items fail at once with the service's message: splitting
  would send 2n-1 requests (and write as many usage records) to hear the same answer.
- **the items**: `param` names them (`input`, `messages...`) or the code is about their size or
  content (`max_tokens_per_request`, `context_length_exceeded`, `invalid_prompt`, ...): the
  request is split until the item that caused it stands alone, as before.
- **unknown**: no `param` and no code we know. Azure leaves both null for some item errors
  (an embedding input over 8,192 real tokens: the app's characters / 4 can undercount) and for
  some request errors ("This model does not support specifying dimensions."). One item, the
  shortest (the least likely to be too long), is sent alone first: refused with the very same
  message, the 400 is the request's and the rest fail with it (2 calls); otherwise the rest is
  split (1 call more than before).
"""

from __future__ import annotations

import re
from typing import Literal

from shared.core.errors import InvalidRequest
from shared.core.models import ErrorDetail
from shared.jobs.models import Item, JobKind, ResultDoc
from shared.jobs.results import failed_result

Scope = Literal["request", "items", "unknown"]

ITEM_PARAMS = frozenset({"input", "messages", "prompt"})
ITEM_CODES = frozenset(
    {
        "max_tokens_per_request",
        "context_length_exceeded",
        "string_above_max_length",
        "invalid_prompt",
        "content_filter",
    }
)
REQUEST_CODES = frozenset(
    {"OperationNotSupported", "unsupported_parameter", "unsupported_value", "model_not_found"}
)


def scope(failure: InvalidRequest) -> Scope:
    """Whether `failure` (a 400 from Azure OpenAI) is about the request or its items."""
    details = failure.details if isinstance(failure.details, dict) else {}
    code = details.get("upstream_code")
    param = details.get("upstream_param")
    if code in ITEM_CODES:
        return "items"
    if isinstance(param, str) and param:
        # `messages[3].content`, `input[0]`: the items, by their first name.
        return "items" if re.split(r"[\[.]", param, maxsplit=1)[0] in ITEM_PARAMS else "request"
    if code in REQUEST_CODES:
        return "request"
    return "unknown"


def detail(failure: InvalidRequest) -> ErrorDetail:
    """What an item refused by `failure` records: the service's message when it gave one."""
    return ErrorDetail(
        code=failure.code,
        message=failure.upstream_message or failure.message,
        details=failure.details,
    )


def probe(group: list[Item]) -> Item:
    """The item sent alone to tell an unknown 400 apart: the shortest."""
    return min(group, key=lambda item: len(item.text))


def same(results: list[ResultDoc], failure: InvalidRequest) -> bool:
    """True when a one-item probe was refused exactly as its group was."""
    expected = detail(failure)
    return len(results) == 1 and results[0].error == ErrorDetail(
        code=expected.code, message=expected.message
    )


def fail_all(
    job_id: str, group: list[Item], kind: JobKind, failure: InvalidRequest, deployment: str
) -> list[ResultDoc]:
    """Every item of `group` failed with the service's answer."""
    reason = detail(failure)
    return [failed_result(job_id, item.id, kind, reason, deployment) for item in group]
