"""Token counting and deterministic text.

No tokenizer files can be downloaded here, so tokens are estimated the way Azure's rate
limiter estimates them on arrival: about four characters per token (`ceil(chars / 4)`),
plus a small fixed overhead per chat message. Completion text is made of whole words from a
fixed vocabulary and every word (with its leading space) counts as exactly one token.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from typing import Any

# Per-message and per-reply overheads as in OpenAI's cookbook counting for gpt-4o.
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_REPLY = 3

_WORDS = (  # noqa: SIM905 - a sentence reads better than a list of 62 strings
    "the simulated model answers with deterministic text so tests can compare results "
    "azure openai deployment request token quota latency stream chunk batch file embedding "
    "vector filter policy response schema field value label item job result usage cost "
    "function queue cosmos blob storage identity network region endpoint private secure fast "
    "reliable local stack runs every part offline and stays predictable for each call"
).split()


def estimate_tokens(text: str) -> int:
    """`ceil(len(text) / 4)`; 0 for an empty string."""
    return math.ceil(len(text) / 4)


def message_text(content: Any) -> str:
    """The text of a message `content`: a string or a list of parts (`{"type": "text"}`)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return " ".join(parts)
    return ""


def _chunks(text: str) -> list[str]:
    """`text` as its `estimate_tokens(text)` tokens of four characters (the last shorter)."""
    return [text[i : i + 4] for i in range(0, len(text), 4)]


def prompt_units(messages: list[dict[str, Any]]) -> list[str]:
    """The prompt as the tokens `prompt_tokens` counts, in order: each message's overhead
    (its role, name and tool call id carried in it), its text, its tool calls; then the reply's
    overhead. Prompt caching cuts prefixes out of this list."""
    units: list[str] = []
    for message in messages:
        head = json.dumps(
            [message.get("role"), message.get("name"), message.get("tool_call_id")], default=str
        )
        units += [f"<|start|>{head}"] + ["<|message|>"] * (_TOKENS_PER_MESSAGE - 1)
        units += _chunks(message_text(message.get("content")))
        if message.get("tool_calls"):
            units += _chunks(json.dumps(message["tool_calls"]))
    units += ["<|start|>assistant"] + ["<|message|>"] * (_TOKENS_PER_REPLY - 1)
    return units


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """`len(prompt_units(messages))`, counted without building the list (the hot path)."""
    total = _TOKENS_PER_REPLY
    for message in messages:
        total += _TOKENS_PER_MESSAGE + estimate_tokens(message_text(message.get("content")))
        if message.get("tool_calls"):
            total += estimate_tokens(json.dumps(message["tool_calls"]))
    return total


def seed_for(*parts: Any) -> int:
    """A stable 64-bit seed from any JSON-able parts (same request, same seed)."""
    raw = json.dumps(parts, sort_keys=True, default=str).encode()
    return int.from_bytes(hashlib.sha256(raw).digest()[:8], "big")


def generate_words(seed: int, count: int | None = None) -> list[str]:
    """Deterministic words; between 12 and 48 of them unless `count` is given."""
    rng = random.Random(seed)
    n = count if count is not None else rng.randint(12, 48)
    words = [rng.choice(_WORDS) for _ in range(n)]
    if words:
        words[0] = words[0].capitalize()
        words[-1] = words[-1] + "."
    return words


# The standard normal's 99th percentile: p99 = median * exp(Z99 * sigma) for a lognormal.
Z99 = 2.3263478740408408


def answer_length(seed: int, median: int, p99: int, longest: int) -> int:
    """A lognormal answer length (tokens, 1..`longest`) with the given median and 99th
    percentile, the same for the same `seed`."""
    sigma = math.log(p99 / median) / Z99
    drawn = random.Random(seed_for("length", seed)).lognormvariate(math.log(median), sigma)
    return max(1, min(longest, round(drawn)))


def split_tokens(text: str) -> list[str]:
    """Split text into simulated tokens: each word keeps its leading space."""
    pieces: list[str] = []
    for index, word in enumerate(text.split(" ")):
        pieces.append(word if index == 0 else " " + word)
    return [p for p in pieces if p]
