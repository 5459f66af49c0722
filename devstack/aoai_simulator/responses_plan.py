"""The Responses API in terms of chat: a request becomes a chat body, a chat plan a Response.

A Responses request (`input` items, `instructions`, function `tools`, `text.format`,
`reasoning.effort`, `max_output_tokens`, the turns of `previous_response_id`) is turned into the
chat request the model would read, so answer text, tool calls, structured output, token counts,
reasoning tokens, content filtering and prompt caching are decided by `chat.plan_chat` as for
chat completions. What comes back is written in the Responses item format
(openai/types/responses/response.py).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from . import errors, reasoning
from .chat import ChatPlan
from .config import DeploymentConfig
from .strict_schema import check_strict
from .tokens import message_text

_MESSAGE_ROLES = {"user", "system", "developer", "assistant"}


def new_id(prefix: str) -> str:
    """An id in the service's form: `resp_`, `msg_`, `fc_`, `rs_` and 48 hex digits."""
    return f"{prefix}_{uuid.uuid4().hex}{uuid.uuid4().hex[:16]}"


_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "instructions": ((str,), "a string"),
    "previous_response_id": ((str,), "a string"),
    "tools": ((list,), "an array"),
    "text": ((dict,), "an object"),
    "reasoning": ((dict,), "an object"),
    "metadata": ((dict,), "an object"),
    "tool_choice": ((str, dict), "a string or an object"),
    "store": ((bool,), "a boolean"),
    "background": ((bool,), "a boolean"),
    "stream": ((bool,), "a boolean"),
    "include": ((list,), "an array"),
}


def _invalid_type(param: str, expected: str, value: Any) -> errors.AzureError:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    got = names.get(type(value)) or ("an array" if isinstance(value, list) else "an object")
    refused = errors.invalid_request(
        f"Invalid type for '{param}': expected {expected}, but got {got} instead.", param
    )
    refused.body["error"]["code"] = "invalid_type"
    return refused


def _missing(param: str) -> errors.AzureError:
    refused = errors.invalid_request(f"Missing required parameter: '{param}'.", param)
    refused.body["error"]["code"] = "missing_required_parameter"
    return refused


def check_types(body: dict[str, Any]) -> None:
    """The service's 400 for a top-level field of the wrong type, a function tool without a
    name, or a `json_schema` format without its name or schema."""
    for key, (kinds, expected) in _TYPES.items():
        value = body.get(key)
        if value is not None and not isinstance(value, kinds):
            raise _invalid_type(key, expected, value)
    for index, tool in enumerate(body.get("tools") or []):
        if not isinstance(tool, dict):
            raise _invalid_type(f"tools[{index}]", "an object", tool)
        if tool.get("type") == "function" and not isinstance(tool.get("name"), str):
            raise _missing(f"tools[{index}].name")
    fmt = (body.get("text") or {}).get("format")
    if fmt is not None and not isinstance(fmt, dict):
        raise _invalid_type("text.format", "an object", fmt)
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        for key in ("name", "schema"):
            if key not in fmt:
                raise _missing(f"text.format.{key}")


def _text_parts(content: Any, kind: str, index: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": kind, "text": content}]
    for position, part in enumerate(content):
        if not isinstance(part, dict):
            raise _invalid_type(f"input[{index}].content[{position}]", "an object", part)
    return [dict(part) for part in content]


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's `input` as the items `GET /responses/{id}/input_items` lists (each with
    an id), or the service's 400."""
    check_types(body)
    raw = body.get("input")
    if isinstance(raw, str):
        raw = [{"role": "user", "content": raw}]
    if not isinstance(raw, list) or not raw:
        raise errors.invalid_request("Missing required parameter: 'input'.", "input")
    items: list[dict[str, Any]] = []
    for index, item in enumerate(raw):
        kind = item.get("type", "message") if isinstance(item, dict) else None
        if kind == "message" and isinstance(item, dict):
            role = item.get("role")
            content = item.get("content")
            if role not in _MESSAGE_ROLES or not isinstance(content, str | list):
                raise errors.invalid_request(
                    f"Invalid value for 'role' at input[{index}].", f"input[{index}].role"
                )
            part = "output_text" if role == "assistant" else "input_text"
            items.append(
                {
                    "id": item.get("id") or new_id("msg"),
                    "type": "message",
                    "role": role,
                    "content": _text_parts(content, part, index),
                    "status": "completed",
                }
            )
        elif kind in ("function_call", "function_call_output") and isinstance(item, dict):
            if not isinstance(item.get("call_id"), str):
                raise errors.invalid_request(
                    f"Missing required parameter: 'input[{index}].call_id'.",
                    f"input[{index}].call_id",
                )
            prefix = "fc" if kind == "function_call" else "fco"
            given = item.get("id")
            if kind == "function_call" and given is not None and not str(given).startswith("fc"):
                raise errors.invalid_request(
                    f"Invalid 'input[{index}].id': '{given}'. Expected an ID that begins with "
                    "'fc'.",
                    f"input[{index}].id",
                )
            items.append({"status": "completed", **item, "id": given or new_id(prefix)})
        elif kind in ("reasoning", "item_reference") and isinstance(item, dict):
            continue  # carried by the service, read by no simulated model
        else:
            raise errors.invalid_request(
                f"Invalid value: {kind!r}. Supported values are: 'message', 'function_call' "
                "and 'function_call_output'.",
                f"input[{index}].type",
            )
    return items


def to_messages(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items (input or output) as the chat messages the model reads."""
    messages: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("type")
        if kind == "message":
            messages.append({"role": item["role"], "content": message_text(item["content"])})
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item.get("name", ""), "arguments": item.get("arguments", "")},
            }
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else json.dumps(output)
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": text})
    return messages


def _chat_tools(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    tools = body.get("tools")
    if not isinstance(tools, list):
        return None
    out = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            continue  # built-in tools (web search, ...) are not simulated
        if tool.get("strict") is True:
            check_strict(
                tool.get("parameters"),
                f"function '{tool.get('name', '')}'",
                f"tools[{index}].parameters",
            )
        function = {k: v for k, v in tool.items() if k != "type"}
        out.append({"type": "function", "function": function})
    return out or None


def _chat_tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    return choice


def _response_format(body: dict[str, Any]) -> dict[str, Any] | None:
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_schema":
        name = fmt.get("name", "")
        if fmt.get("strict") is True:
            check_strict(fmt.get("schema"), f"text.format '{name}'", "text.format.schema")
        spec = {k: fmt.get(k) for k in ("name", "schema", "strict") if k in fmt}
        return {"type": "json_schema", "json_schema": spec}
    return {"type": fmt.get("type")}


def chat_body(body: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The chat request a Responses request amounts to, over `messages` (the earlier turns and
    this input; `instructions` go first, as a developer message)."""
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages = [{"role": "developer", "content": instructions}, *messages]
    chat: dict[str, Any] = {"messages": messages}
    limit = body.get("max_output_tokens")
    if limit is not None:
        if not isinstance(limit, int) or limit < 16:
            refused = errors.invalid_request(
                f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= "
                f"16, but got {limit} instead.",
                "max_output_tokens",
            )
            refused.body["error"]["code"] = "integer_below_min_value"
            raise refused
        chat["max_completion_tokens"] = limit
    effort = (
        body.get("reasoning", {}).get("effort") if isinstance(body.get("reasoning"), dict) else None
    )
    if effort is not None:
        chat["reasoning_effort"] = effort
    tools = _chat_tools(body)
    if tools:
        chat["tools"] = tools
        if body.get("tool_choice") is not None:
            chat["tool_choice"] = _chat_tool_choice(body["tool_choice"])
    fmt = _response_format(body)
    if fmt is not None:
        chat["response_format"] = fmt
    return chat


def output_items(plan: ChatPlan, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The Response's `output`: a reasoning item (a reasoning model that reasoned; with
    `include: ["reasoning.encrypted_content"]` an opaque `encrypted_content`, as stateless
    clients ask), then a message with its `output_text`, or the function calls."""
    choice = plan.choices[0]
    items: list[dict[str, Any]] = []
    if plan.reasoning_tokens:
        item: dict[str, Any] = {"id": new_id("rs"), "type": "reasoning", "summary": []}
        include = body.get("include")
        if isinstance(include, list) and "reasoning.encrypted_content" in include:
            item["encrypted_content"] = "gAAAA" + uuid.uuid4().hex * 4
        items.append(item)
    for call in choice.tool_calls or []:
        items.append(
            {
                "id": new_id("fc"),
                "type": "function_call",
                "status": "completed",
                "call_id": call["id"],
                "name": call["function"]["name"],
                "arguments": call["function"]["arguments"],
            }
        )
    if not choice.tool_calls:
        complete = choice.finish_reason == "stop"
        items.append(
            {
                "id": new_id("msg"),
                "type": "message",
                "status": "completed" if complete else "incomplete",
                "role": "assistant",
                "content": [
                    {
                        "type": "output_text",
                        "text": "".join(choice.pieces),
                        "annotations": [],
                        "logprobs": [],
                    }
                ],
            }
        )
    return items


_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
_ANSWERED = ("completed", "incomplete")  # the statuses that carry usage


def usage(plan: ChatPlan) -> dict[str, Any]:
    return {
        "input_tokens": plan.prompt_tokens,
        "input_tokens_details": {"cached_tokens": plan.cached_tokens},
        "output_tokens": plan.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": plan.reasoning_tokens},
        "total_tokens": plan.prompt_tokens + plan.completion_tokens,
    }


def response_body(
    response_id: str,
    body: dict[str, Any],
    deployment: DeploymentConfig,
    plan: ChatPlan | None,
    output: list[dict[str, Any]],
    status: str | None = None,
) -> dict[str, Any]:
    """The `response` object; `plan` None (with `status`) for a background response not yet
    answered."""
    incomplete = None
    if plan is not None and status is None:
        reason = _INCOMPLETE.get(plan.choices[0].finish_reason)
        status = "incomplete" if reason else "completed"
        incomplete = {"reason": reason} if reason else None
    profile = reasoning.profile(deployment.model)
    effort = (body.get("reasoning") or {}).get("effort") if profile else None
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    text = body.get("text") if isinstance(body.get("text"), dict) else {}
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()) if plan is None else plan.created,
        "status": status,
        "background": bool(body.get("background")),
        "error": None,
        "incomplete_details": incomplete,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "model": f"{deployment.model}-{deployment.model_version}",
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": effort or (profile.default if profile else None), "summary": None},
        "safety_identifier": body.get("safety_identifier"),
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}, **(text or {})},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": tools,
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": usage(plan) if plan is not None and status in _ANSWERED else None,
        "user": body.get("user"),
    }
