"""Prompt caching, as Azure's.

Azure keeps the computed prefix of a prompt for a while. A chat request whose prompt is 1,024
tokens or more, and begins with a prefix the deployment answered recently, reports that prefix
as `usage.prompt_tokens_details.cached_tokens`: the first 1,024 tokens, then steps of 128
(Azure docs, "Prompt caching"). One token that differs in the first 1,024 is a miss. Models
from GPT-4o on cache; embeddings never do. Caches are not shared: here, each deployment of
each simulator has its own. Cached tokens stay prompt tokens (`prompt_tokens` includes them;
Azure bills them at a discount) and count against the deployment's TPM like any other: the
limiter counts a prompt on arrival, before any cache is looked at.

The simulator keeps, per deployment, a digest of each cacheable prefix (at 1,024 tokens and
every 128 after) of the prompts it answered, in an LRU of at most `max_entries` whose entries
go `ttl_seconds` after their last use (Azure: typically 5-10 minutes of inactivity). Prefixes
are cut from the tokens `usage.prompt_tokens` counts (`tokens.prompt_units`), so
`cached_tokens <= prompt_tokens`. What the model reads before the messages (tools, functions,
the response format's schema) seeds every digest: other tools, another prefix.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from .config import DeploymentConfig, PromptCacheConfig
from .tokens import prompt_tokens, prompt_units

MIN_TOKENS = 1024  # the shortest prompt Azure caches, and the first cached prefix
STEP = 128  # then a prefix every 128 tokens


def cacheable_length(tokens: int) -> int:
    """The longest prefix of a `tokens`-token prompt that can be cached (0 under 1,024)."""
    if tokens < MIN_TOKENS:
        return 0
    return MIN_TOKENS + (tokens - MIN_TOKENS) // STEP * STEP


def caches(model: str) -> bool:
    """GPT-4o and newer cache; gpt-35-turbo and gpt-4 (-turbo, -32k) do not."""
    older = model.startswith(("gpt-35", "gpt-3.5", "gpt-4-")) or model == "gpt-4"
    return not older


def prefix_salt(body: dict[str, Any]) -> str:
    """What the model reads before the messages."""
    parts = [body.get("tools"), body.get("functions"), body.get("response_format")]
    return json.dumps(parts, sort_keys=True, default=str)


def prefix_digests(units: list[str], salt: str) -> list[tuple[int, bytes]]:
    """(length, digest) of each cacheable prefix of the prompt `units`, shortest first."""
    running = hashlib.sha256(salt.encode())
    digests: list[tuple[int, bytes]] = []
    done = 0
    for length in range(MIN_TOKENS, cacheable_length(len(units)) + 1, STEP):
        running.update(json.dumps(units[done:length]).encode())
        digests.append((length, running.digest()))
        done = length
    return digests


class PromptCache:
    """The prefixes each deployment answered lately, by digest, least recently used first."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()  # as the stores: safe whichever thread answers
        self._entries: dict[str, OrderedDict[bytes, float]] = {}

    def cached_tokens(
        self, deployment: DeploymentConfig, body: dict[str, Any], config: PromptCacheConfig
    ) -> int:
        """A chat request's cached tokens on `deployment` (a validated body); its prefixes
        are kept for the requests after it."""
        messages = body["messages"]
        if (
            not config.enabled
            or not caches(deployment.model)
            or prompt_tokens(messages) < MIN_TOKENS
        ):
            return 0  # before the prompt is cut into tokens: most prompts stop here
        units = prompt_units(messages)
        return self.serve(deployment.name, units, prefix_salt(body), config)

    def serve(self, deployment: str, units: list[str], salt: str, config: PromptCacheConfig) -> int:
        """The longest kept prefix of the prompt `units` (0 when none), then keep all of its
        cacheable prefixes as used now."""
        if not config.enabled or len(units) < MIN_TOKENS:
            return 0
        digests = prefix_digests(units, salt)
        now = self._clock()
        with self._lock:
            entries = self._entries.setdefault(deployment, OrderedDict())
            while entries:  # the front is the least recently used: drop what has expired
                if now - next(iter(entries.values())) < config.ttl_seconds:
                    break
                entries.popitem(last=False)
            cached = next((length for length, d in reversed(digests) if d in entries), 0)
            for _, digest in digests:
                entries[digest] = now
                entries.move_to_end(digest)
            while len(entries) > config.max_entries:
                entries.popitem(last=False)
        return cached

    def size(self, deployment: str) -> int:
        with self._lock:
            return len(self._entries.get(deployment, ()))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
