"""Chat completions: validate a request, plan the answer, write it whole or as stream chunks.

`plan_chat` is pure (no I/O), so the HTTP route and the Batch runner share it. Completion
text is deterministic from the request (see `tokens.py`); a user message containing
`echo:` makes the completion exactly the text after it, so tests can put chosen words
(for instance a filter term) into a completion.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from . import errors, reasoning
from .config import DeploymentConfig, SimulatorConfig
from .content_filter import FilterVerdict, evaluate, prompt_filter_results
from .strict_schema import check_strict
from .structured import fill_schema
from .tokens import (
    answer_length,
    estimate_tokens,
    generate_words,
    message_text,
    prompt_tokens,
    seed_for,
    split_tokens,
)

_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
_ECHO = "echo:"


@dataclass
class ChoicePlan:
    index: int
    pieces: list[str]
    finish_reason: str
    results: dict[str, Any]
    tool_calls: list[dict[str, Any]] | None = None
    reasoning_tokens: int = 0  # hidden: billed as completion tokens, never shown


@dataclass
class ChatPlan:
    id: str
    created: int
    model: str
    fingerprint: str
    prompt: FilterVerdict
    prompt_tokens: int
    choices: list[ChoicePlan] = field(default_factory=list)
    cached_tokens: int = 0  # of prompt_tokens, a prefix answered lately (`prompt_cache.py`)

    @property
    def completion_tokens(self) -> int:
        total = 0
        for choice in self.choices:
            total += len(choice.pieces) + choice.reasoning_tokens
            for call in choice.tool_calls or []:
                total += estimate_tokens(call["function"]["arguments"])
        return total

    @property
    def reasoning_tokens(self) -> int:
        return sum(choice.reasoning_tokens for choice in self.choices)

    def usage(self) -> dict[str, Any]:
        return {
            "completion_tokens": self.completion_tokens,
            "prompt_tokens": self.prompt_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "completion_tokens_details": {
                "reasoning_tokens": self.reasoning_tokens,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
                "audio_tokens": 0,
            },
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens, "audio_tokens": 0},
        }


MAX_CHOICES = 128  # Azure's (and OpenAI's) limit on `n`


# Reasoning models answer only under api-version 2024-12-01-preview or later; an older one is
# refused before anything is charged, with Azure's own message (its placeholder unfilled).
REASONING_MODELS = ("o1", "o3", "o4", "gpt-5")
REASONING_MIN_API_VERSION = "2024-12-01"


def check_api_version(deployment: DeploymentConfig, api_version: str) -> None:
    """Azure's 400 for a reasoning model called under a too-old api-version."""
    if deployment.model.startswith(REASONING_MODELS) and api_version < REASONING_MIN_API_VERSION:
        raise errors.error(
            400,
            "BadRequest",
            "Model {modelName} is enabled only for api versions 2024-12-01-preview and later",
        )


def validate(body: Any) -> list[dict[str, Any]]:
    """The messages of a chat request, or an Azure-style 400."""
    if not isinstance(body, dict):
        raise errors.invalid_request("The request body must be a JSON object.")
    messages = body.get("messages")
    if messages is None:
        raise errors.invalid_request("'messages' is a required property", "messages")
    if not isinstance(messages, list) or not messages:
        raise errors.invalid_request(f"{messages!r} is too short - 'messages'", "messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise errors.invalid_request(
                f"Invalid value for 'role' at messages[{index}].", f"messages[{index}].role"
            )
    for key in ("max_tokens", "max_completion_tokens", "n"):
        value = body.get(key)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise errors.invalid_request(f"{value!r} is less than the minimum of 1 - '{key}'", key)
    n = body.get("n")
    if isinstance(n, int) and n > MAX_CHOICES:
        raise errors.invalid_request(f"{n} is greater than the maximum of {MAX_CHOICES} - 'n'", "n")
    _check_strict_schemas(body)
    return messages


def _check_strict_schemas(body: dict[str, Any]) -> None:
    """Strict schemas (response format, function tools) must keep to the strict subset."""
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema")
        if isinstance(spec, dict) and spec.get("strict") is True:
            name = spec.get("name", "")
            check_strict(spec.get("schema"), f"response_format '{name}'", "response_format")
    tools = body.get("tools")
    for index, tool in enumerate(tools if isinstance(tools, list) else []):
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and function.get("strict") is True:
            check_strict(
                function.get("parameters"),
                f"function '{function.get('name', '')}'",
                f"tools[{index}].function.parameters",
            )


def max_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens") or body.get("max_tokens")
    return value if isinstance(value, int) else None


def rate_limit_estimate(body: dict[str, Any]) -> int:
    """Tokens Azure charges on arrival: the prompt estimate plus `max_tokens`."""
    messages = body.get("messages")
    prompt = prompt_tokens(messages) if isinstance(messages, list) else 0
    return prompt + (max_tokens(body) or 0)


def user_text(messages: list[dict[str, Any]]) -> str:
    """The user messages' text: what structured answers relate to (not the instructions,
    which often list every label)."""
    return "\n".join(message_text(m.get("content")) for m in messages if m.get("role") == "user")


def _last_user(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message.get("content"))
    return ""


def _text_for(
    body: dict[str, Any], messages: list[dict[str, Any]], seed: int, config: SimulatorConfig
) -> str:
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
        return json.dumps(fill_schema(schema, user_text(messages), seed))
    last = _last_user(messages)
    position = last.lower().find(_ECHO)
    echoed = last[position + len(_ECHO) :].strip() if position >= 0 else None
    lengths = config.answer_length
    count = (
        None if lengths is None else answer_length(seed, lengths.median, lengths.p99, lengths.max)
    )
    text = echoed if echoed is not None else " ".join(generate_words(seed, count))
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        return json.dumps({"result": text})
    return text


def _pieces(text: str, structured: bool) -> list[str]:
    if structured:  # JSON: four characters a token, so streamed deltas rebuild it exactly
        return [text[i : i + 4] for i in range(0, len(text), 4)]
    return split_tokens(text)


def _tool_calls(body: dict[str, Any], messages: list[dict[str, Any]], seed: int) -> Any:
    tools = [
        t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"
    ]
    choice = body.get("tool_choice")
    if not tools or choice == "none" or messages[-1].get("role") == "tool":
        return None
    chosen: dict[str, Any] | None = None
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name")
        chosen = next((t for t in tools if t["function"].get("name") == wanted), None)
    elif choice == "required":
        chosen = tools[0]
    else:
        words = _last_user(messages).lower()
        chosen = next((t for t in tools if t["function"].get("name", "").lower() in words), None)
    if chosen is None:
        return None
    function = chosen["function"]
    arguments = fill_schema(
        function.get("parameters") or {"type": "object"}, user_text(messages), seed
    )
    call_id = "call_" + format(seed_for("call", seed), "016x")
    return [
        {
            "id": call_id,
            "type": "function",
            "function": {"name": function.get("name", ""), "arguments": json.dumps(arguments)},
        }
    ]


def plan_chat(body: Any, deployment: DeploymentConfig, config: SimulatorConfig) -> ChatPlan:
    """Validate and decide the whole answer. Raises AzureError (400s, prompt filter)."""
    messages = validate(body)
    everything = "\n".join(message_text(m.get("content")) for m in messages)
    prompt = evaluate(everything, "prompt", config.filter_rules, config.filter_threshold)
    if prompt.filtered:
        raise errors.prompt_filtered(prompt.results)
    base_seed = seed_for(
        config.seed,
        deployment.name,
        messages,
        body.get("seed"),
        body.get("response_format"),
        body.get("tools"),
    )
    fmt = body.get("response_format")
    structured = isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object")
    limit = max_tokens(body)
    hidden = reasoning.hidden_tokens(body, deployment)
    plan = ChatPlan(
        id="chatcmpl-" + uuid.uuid4().hex[:29],
        created=int(time.time()),
        model=f"{deployment.model}-{deployment.model_version}",
        fingerprint="fp_" + format(seed_for(deployment.name) % (1 << 40), "010x"),
        prompt=prompt,
        prompt_tokens=prompt_tokens(messages),
    )
    for index in range(int(body.get("n") or 1)):
        seed = base_seed + index
        calls = _tool_calls(body, messages, seed)
        if calls is not None:
            clean = evaluate("", "completion", [], config.filter_threshold).results
            plan.choices.append(ChoicePlan(index, [], "tool_calls", clean, calls))
            continue
        pieces = _pieces(_text_for(body, messages, seed, config), structured)
        finish = "stop"
        # Hidden reasoning comes first and out of the same budget: what it leaves is the
        # room for the answer (none at all: "length" with empty content).
        spent = hidden if limit is None else min(hidden, limit)
        room = None if limit is None else limit - spent
        if room is not None and len(pieces) > room:
            pieces, finish = pieces[:room], "length"
        verdict = evaluate(
            "".join(pieces), "completion", config.filter_rules, config.filter_threshold
        )
        if verdict.filtered:
            pieces, verdict = _cut_at_filter(pieces, config)
            finish = "content_filter"
        plan.choices.append(ChoicePlan(index, pieces, finish, verdict.results, None, spent))
    return plan


def _cut_at_filter(pieces: list[str], config: SimulatorConfig) -> tuple[list[str], FilterVerdict]:
    """The pieces before the first one that makes the text filtered, and that verdict."""
    text = ""
    for index, piece in enumerate(pieces):
        text += piece
        verdict = evaluate(text, "completion", config.filter_rules, config.filter_threshold)
        if verdict.filtered:
            return pieces[:index], verdict
    raise AssertionError("a filtered text has a first filtered prefix")


def completion_body(plan: ChatPlan) -> dict[str, Any]:
    """The non-streamed `chat.completion` object."""
    choices = []
    for choice in plan.choices:
        filtered = choice.finish_reason == "content_filter"
        message: dict[str, Any] = {
            "content": None if filtered or choice.tool_calls else "".join(choice.pieces),
            "refusal": None,
            "role": "assistant",
        }
        if choice.tool_calls:
            message["tool_calls"] = choice.tool_calls
        choices.append(
            {
                "content_filter_results": choice.results,
                "finish_reason": choice.finish_reason,
                "index": choice.index,
                "logprobs": None,
                "message": message,
            }
        )
    return {
        "choices": choices,
        "created": plan.created,
        "id": plan.id,
        "model": plan.model,
        "object": "chat.completion",
        "prompt_filter_results": prompt_filter_results(plan.prompt),
        "system_fingerprint": plan.fingerprint,
        "usage": plan.usage(),
    }


def stream_chunks(plan: ChatPlan, include_usage: bool) -> list[dict[str, Any]]:
    """Every SSE payload of a streamed answer, in order (the caller adds `data: [DONE]`)."""
    head = {
        "created": plan.created,
        "id": plan.id,
        "model": plan.model,
        "object": "chat.completion.chunk",
        "system_fingerprint": plan.fingerprint,
    }
    if include_usage:
        head["usage"] = None
    chunks: list[dict[str, Any]] = [
        {
            "choices": [],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
            "prompt_filter_results": prompt_filter_results(plan.prompt),
        }
    ]

    def choice(
        index: int, delta: dict[str, Any], results: dict[str, Any], finish: str | None
    ) -> dict[str, Any]:
        return {
            **head,
            "choices": [
                {
                    "content_filter_results": results,
                    "delta": delta,
                    "finish_reason": finish,
                    "index": index,
                    "logprobs": None,
                }
            ],
        }

    for item in plan.choices:
        chunks.append(
            choice(item.index, {"content": "", "refusal": None, "role": "assistant"}, {}, None)
        )
        safe = {k: v for k, v in item.results.items() if "severity" in v}
        safe = {k: {"filtered": False, "severity": v["severity"]} for k, v in safe.items()}
        for piece in item.pieces:
            chunks.append(choice(item.index, {"content": piece}, safe, None))
        for position, call in enumerate(item.tool_calls or []):
            delta = {"tool_calls": [{"index": position, **call}]}
            chunks.append(choice(item.index, delta, {}, None))
        if item.finish_reason == "content_filter":
            chunks.append(choice(item.index, {}, item.results, "content_filter"))
        else:
            chunks.append(choice(item.index, {}, {}, item.finish_reason))
    if include_usage:
        chunks.append({**head, "choices": [], "usage": plan.usage()})
    return chunks
