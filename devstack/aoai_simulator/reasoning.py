"""Reasoning models: which `reasoning_effort` values a model takes, and the hidden tokens it
spends before it writes.

As Azure's reasoning models do, the hidden reasoning comes out of `max_completion_tokens`:
a budget the reasoning uses up ends with `finish_reason: "length"` and empty content, every
token billed as `completion_tokens_details.reasoning_tokens`. What a model takes (Azure and
OpenAI docs): o1/o3/o4 `low`/`medium`/`high`, default `medium`; gpt-5, -mini, -nano also
`minimal`; gpt-5.1 and later `none`/`low`/`medium`/`high`, default `none` (no reasoning). A
value the model does not take, or `reasoning_effort` sent to a model that does not reason, is
the service's 400.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from . import errors
from .config import DeploymentConfig

# Hidden tokens spent at each effort, as a share of the deployment's `reasoning_tokens`
# (what it spends at `medium`).
_SHARE = {"none": 0.0, "minimal": 0.0, "low": 0.25, "medium": 1.0, "high": 2.0}
_GPT5_POINT = re.compile(r"^gpt-5\.(\d+)")


@dataclass(frozen=True)
class Profile:
    efforts: tuple[str, ...]
    default: str


def profile(model: str) -> Profile | None:
    """What `model` takes, or None when it does not reason."""
    if model.startswith(("o1", "o3", "o4")):
        return Profile(("low", "medium", "high"), "medium")
    if _GPT5_POINT.match(model):
        return Profile(("none", "low", "medium", "high"), "none")
    if model.startswith("gpt-5") and not model.startswith("gpt-5-chat"):
        return Profile(("minimal", "low", "medium", "high"), "medium")
    return None


def _unsupported(message: str, param: str, code: str) -> errors.AzureError:
    error = errors.invalid_request(message, param)
    error.body["error"]["code"] = code
    return error


def hidden_tokens(body: dict[str, Any], deployment: DeploymentConfig) -> int:
    """The reasoning tokens one choice spends (0 for a model that does not reason), or the
    service's 400 for an effort the model does not take."""
    effort = body.get("reasoning_effort")
    found = profile(deployment.model)
    if found is None:
        if effort is not None:
            raise _unsupported(
                "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
                "reasoning_effort",
                "unsupported_parameter",
            )
        return 0
    if effort is None:
        effort = found.default
    if effort not in found.efforts:
        allowed = ", ".join(f"'{e}'" for e in found.efforts)
        raise _unsupported(
            f"Unsupported value: 'reasoning_effort' does not support {effort!r} with this "
            f"model. Supported values are: {allowed}.",
            "reasoning_effort",
            "unsupported_value",
        )
    return round(deployment.reasoning_tokens * _SHARE[str(effort)])
