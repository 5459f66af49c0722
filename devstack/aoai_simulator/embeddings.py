"""Embeddings: Azure's input validation and deterministic unit vectors.

The same text on the same model always gives the same vector. With `dimensions` the
native vector is shortened and renormalised, as text-embedding-3 models do. Requests over
Azure's caps (inputs, tokens per input, tokens per request; `config.embeddings`) are 400s.
"""

from __future__ import annotations

import base64
import math
import random
from array import array
from dataclasses import dataclass
from typing import Any

from . import errors
from .config import DeploymentConfig, EmbeddingLimits, SimulatorConfig
from .tokens import estimate_tokens, seed_for

MAX_INPUTS = 2048
MAX_INPUT_TOKENS = 8192
_INVALID_INPUT = "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."


@dataclass
class EmbeddingRequest:
    """A validated request: the inputs, their token counts, the encoding and the size."""

    items: list[str | list[int]]
    tokens: list[int]
    encoding: str
    size: int | None


def _inputs(body: dict[str, Any], limits: EmbeddingLimits) -> list[str | list[int]]:
    raw = body.get("input")
    if raw is None:
        raise errors.invalid_request("'input' is a required property", "input")
    if isinstance(raw, str):
        items: list[Any] = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(i, int) for i in raw):
        items = [raw]  # one input given as token ids
    elif isinstance(raw, list):
        items = raw
    else:
        raise errors.invalid_request(_INVALID_INPUT, "input")
    if not items:
        raise errors.invalid_request(_INVALID_INPUT, "input")
    if len(items) > limits.max_inputs:
        raise errors.invalid_request(
            f"Too many inputs. The max number of inputs is {limits.max_inputs}. We hope to "
            "increase the number of inputs per request soon. Please contact us through an Azure "
            "support request at: https://go.microsoft.com/fwlink/?linkid=2213926 for further "
            "questions.",
            "input",
        )
    for item in items:
        valid_text = isinstance(item, str) and item != ""
        valid_ids = isinstance(item, list) and item and all(isinstance(i, int) for i in item)
        if not (valid_text or valid_ids):
            raise errors.invalid_request(_INVALID_INPUT, "input")
    return items


def _tokens(item: str | list[int]) -> int:
    return len(item) if isinstance(item, list) else estimate_tokens(item)


def _check_tokens(tokens: list[int], limits: EmbeddingLimits) -> None:
    for count in tokens:
        if count > limits.max_input_tokens:
            raise errors.invalid_request(
                f"This model's maximum context length is {limits.max_input_tokens} tokens, "
                f"however you requested {count} tokens ({count} in your prompt; 0 for the "
                "completion). Please reduce your prompt; or completion length.",
                "input",
            )
    total = sum(tokens)
    if total > limits.max_request_tokens:
        # The service's own body for this cap: type and code both name it.
        raise errors.AzureError(
            400,
            {
                "error": {
                    "message": f"Requested {total} tokens, max {limits.max_request_tokens} "
                    "tokens per request",
                    "type": "max_tokens_per_request",
                    "param": None,
                    "code": "max_tokens_per_request",
                }
            },
        )


def validate(body: Any, deployment: DeploymentConfig, config: SimulatorConfig) -> EmbeddingRequest:
    """The checked request, or Azure's 400: inputs, per-request caps, encoding, dimensions."""
    if not isinstance(body, dict):
        raise errors.invalid_request("The request body must be a JSON object.")
    items = _inputs(body, config.embeddings)
    tokens = [_tokens(item) for item in items]
    _check_tokens(tokens, config.embeddings)
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise errors.invalid_request(
            f"{encoding!r} is not one of ['float', 'base64'] - 'encoding_format'", "encoding_format"
        )
    native = deployment.embedding_size()
    size = body.get("dimensions")
    if size is not None:
        if "text-embedding-3" not in deployment.model:
            # Azure names no param here (unlike the range check below).
            raise errors.invalid_request("This model does not support specifying dimensions.")
        if not isinstance(size, int) or not 1 <= size <= native:
            raise errors.invalid_request(
                f"Invalid value for 'dimensions' = {size}. Must be between 1 and {native}.",
                "dimensions",
            )
    return EmbeddingRequest(items, tokens, encoding, size)


def rate_limit_estimate(request: EmbeddingRequest) -> int:
    return sum(request.tokens)


def vector(text: str, model: str, size: int, seed: int, native: int) -> list[float]:
    """A unit vector of `size` floats, a prefix of the `native`-sized one renormalised."""
    # Uniform 16-bit components: about ten times faster than gauss() and still spread
    # over the whole sphere closely enough for similarity tests.
    raw = random.Random(seed_for(seed, model, text)).randbytes(2 * native)
    values = array("h", raw)[:size].tolist()
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def create(body: Any, deployment: DeploymentConfig, config: SimulatorConfig) -> dict[str, Any]:
    """The `list` of embeddings for a request, or an Azure-style 400."""
    request = validate(body, deployment, config)
    native = deployment.embedding_size()
    data = []
    for index, item in enumerate(request.items):
        text = item if isinstance(item, str) else " ".join(map(str, item))
        values = vector(text, deployment.model, request.size or native, config.seed, native)
        embedding: list[float] | str
        if request.encoding == "base64":
            embedding = base64.b64encode(array("f", values).tobytes()).decode("ascii")
        else:
            embedding = values
        data.append({"embedding": embedding, "index": index, "object": "embedding"})
    total = sum(request.tokens)
    return {
        "data": data,
        "model": deployment.model,
        "object": "list",
        "usage": {"prompt_tokens": total, "total_tokens": total},
    }
