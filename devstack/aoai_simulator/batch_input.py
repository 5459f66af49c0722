"""Validation of a Batch input file (JSONL), with Azure's error codes.

An unknown (or non global-batch) deployment is refused when the batch is created, with
the 400 body Azure sends for it (`{"errors": {"data": [...]}}`). Every other problem is
found during `validating`, and the batch then ends `failed` with `errors.data` listing each
problem and its line number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .config import SimulatorConfig

_HELP = "Learn more: https://aka.ms/aoai_batch/errors."


@dataclass
class BatchLine:
    custom_id: str
    url: str
    body: dict[str, Any]
    model: str


@dataclass
class ParsedInput:
    lines: list[BatchLine] = field(default_factory=list)
    model: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)


def _problem(code: str, message: str, line: int | None, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "line": line, "param": param}


def _normalise(url: str) -> str:
    return url[3:] if url.startswith("/v1/") else url


def parse_input(data: bytes, endpoint: str, config: SimulatorConfig) -> ParsedInput:
    result = ParsedInput()
    text = data.decode("utf-8", errors="replace")
    raw_lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not raw_lines:
        result.errors.append(_problem("empty_file", "The input file is empty. " + _HELP, None))
        return result
    if len(raw_lines) > config.batch.max_requests_per_file:
        result.errors.append(
            _problem(
                "too_many_tasks",
                f"The number of tasks ({len(raw_lines)}) is greater than the maximum allowed "
                f"({config.batch.max_requests_per_file}). " + _HELP,
                None,
            )
        )
        return result
    seen: set[str] = set()
    models: list[tuple[int, str]] = []
    for number, raw in raw_lines:
        try:
            item = json.loads(raw)
        except ValueError:
            result.errors.append(
                _problem(
                    "invalid_json_line",
                    "This line is not parseable as valid JSON. " + _HELP,
                    number,
                )
            )
            continue
        problem = _check_line(item, endpoint, number)
        if problem is not None:
            result.errors.append(problem)
            continue
        custom_id = item["custom_id"]
        if custom_id in seen:
            result.errors.append(
                _problem(
                    "duplicate_custom_id",
                    "The custom ID for this request is a duplicate of another request. The "
                    "custom_id parameter must be unique for each request in a batch. " + _HELP,
                    number,
                    "custom_id",
                )
            )
            continue
        seen.add(custom_id)
        models.append((number, item["body"]["model"]))
        result.lines.append(BatchLine(custom_id, item["url"], item["body"], item["body"]["model"]))
    _check_models(models, endpoint, config, result)
    return result


def _check_line(item: Any, endpoint: str, number: int) -> dict[str, Any] | None:
    if not isinstance(item, dict):
        return _problem("invalid_request", "Each line must be a JSON object. " + _HELP, number)
    for key, kind in (("custom_id", str), ("method", str), ("url", str), ("body", dict)):
        if not isinstance(item.get(key), kind):
            return _problem(
                "invalid_request",
                f"The '{key}' property is missing or invalid. " + _HELP,
                number,
                key,
            )
    if item["method"].upper() != "POST":
        return _problem(
            "invalid_request", "Only the POST method is supported. " + _HELP, number, "method"
        )
    if _normalise(item["url"]) != _normalise(endpoint):
        return _problem(
            "url_mismatch",
            f"The provided request url '{item['url']}' does not match the batch endpoint "
            f"'{endpoint}'. " + _HELP,
            number,
            "url",
        )
    if not isinstance(item["body"].get("model"), str):
        return _problem(
            "invalid_request", "The request body is missing 'model'. " + _HELP, number, "body.model"
        )
    return None


def _check_models(
    models: list[tuple[int, str]], endpoint: str, config: SimulatorConfig, result: ParsedInput
) -> None:
    if not models:
        return
    kind = "chat" if "chat" in endpoint else "embedding"
    valid = [d.name for d in config.deployments if d.sku == "global-batch" and d.kind == kind]
    first = models[0][1]
    if first not in valid:
        raise errors.AzureError(
            400,
            {
                "errors": {
                    "object": "list",
                    "data": [
                        _problem(
                            "model_not_found",
                            f"The provided model deployment '{first}' does not exist in the AOAI "
                            "resource. "
                            f"Valid deployments are '{', '.join(valid)}'. " + _HELP,
                            None,
                        )
                    ],
                }
            },
        )
    result.model = first
    for number, model in models[1:]:
        if model != first:
            result.errors.append(
                _problem(
                    "model_mismatch",
                    f"The provided model deployment '{model}' does not match the rest of the batch "
                    f"('{first}'). A batch file must use a single deployment. " + _HELP,
                    number,
                    "body.model",
                )
            )
