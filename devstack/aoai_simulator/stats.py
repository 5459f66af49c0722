"""Counters behind `GET /sim/stats` (per route and per deployment) and `GET /sim/inputs`
(per item input: how many answered requests carried it)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class _Bucket:
    requests: int = 0
    throttled: int = 0
    retries: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # of prompt_tokens, answered from the prompt cache
    reasoning_tokens: int = 0  # of completion_tokens, hidden reasoning
    inputs: int = 0  # embedding inputs answered
    max_inputs: int = 0  # the most inputs one answered embeddings request held
    status: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "throttled": self.throttled,
            "retries": self.retries,
            "errors": self.errors,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "inputs": self.inputs,
            "max_inputs": self.max_inputs,
            "status": dict(self.status),
        }


def input_key(text: str) -> str:
    """The key `GET /sim/inputs` counts an item input under: a digest of its text (an
    embeddings input, or a line of a chat request's user message)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


@dataclass(frozen=True)
class _Send:
    at: float  # epoch seconds
    request_id: str
    retry_count: int
    peer: int | None  # the client's port


@dataclass
class _Input:
    """One item input: its first 40 characters and each answered request that carried it."""

    label: str
    sends: list[_Send] = field(default_factory=list)

    def described(self) -> list[dict[str, Any]]:
        return [{**asdict(send), "label": self.label} for send in self.sends]


class Stats:
    """Thread-safe counters. `retries` counts requests whose `x-stainless-retry-count` > 0."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = _Bucket()
        self._routes: dict[str, _Bucket] = {}
        self._deployments: dict[str, _Bucket] = {}
        self._filtered: Counter[str] = Counter()
        self._inputs: dict[str, _Input] = {}  # by input_key: every send, for the counts

    def reset(self) -> None:
        with self._lock:
            self._total = _Bucket()
            self._routes.clear()
            self._deployments.clear()
            self._filtered.clear()
            self._inputs.clear()

    def record_inputs(
        self,
        texts: Iterable[str],
        request_id: str = "",
        retry_count: int = 0,
        peer: int | None = None,
    ) -> None:
        """Count each item input of a request that was answered (and so billed), and note
        when, in which request and from which client port (`peer`), so that a repeat can be
        traced (`repeats`)."""
        send = _Send(time.time(), request_id, retry_count, peer)
        with self._lock:
            for text in texts:
                key = input_key(text)
                if key not in self._inputs:
                    self._inputs[key] = _Input(text[:40])
                self._inputs[key].sends.append(send)

    def inputs(self, keys: Iterable[str] | None = None) -> dict[str, Any]:
        """`{"distinct": n, "sends": n, "repeated": {key: sends}, "repeats": {key: [send]}}`:
        every input answered more than once, and each of its sends (`at`, epoch seconds;
        `request_id`; `retry_count`; `label`, the input's first 40 characters; `peer`, the
        client's port); with `keys`, also `"counts": {key: sends}` for those (0 when never
        sent)."""
        with self._lock:
            repeats = {k: i for k, i in self._inputs.items() if len(i.sends) > 1}
            out: dict[str, Any] = {
                "distinct": len(self._inputs),
                "sends": sum(len(i.sends) for i in self._inputs.values()),
                "repeated": {k: len(i.sends) for k, i in repeats.items()},
                "repeats": {k: i.described() for k, i in repeats.items()},
            }
            if keys is not None:
                out["counts"] = {
                    k: len(self._inputs[k].sends) if k in self._inputs else 0 for k in keys
                }
            return out

    def record(
        self,
        route: str,
        deployment: str | None,
        status: int,
        retry_count: int = 0,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        inputs: int = 0,
        *,
        cached_tokens: int = 0,
        reasoning_tokens: int = 0,
    ) -> None:
        with self._lock:
            buckets = [self._total, self._routes.setdefault(route, _Bucket())]
            if deployment is not None:
                buckets.append(self._deployments.setdefault(deployment, _Bucket()))
            for bucket in buckets:
                bucket.requests += 1
                bucket.status[str(status)] += 1
                bucket.throttled += status == 429
                bucket.errors += status >= 400
                bucket.retries += retry_count > 0
                bucket.prompt_tokens += prompt_tokens
                bucket.completion_tokens += completion_tokens
                bucket.cached_tokens += cached_tokens
                bucket.reasoning_tokens += reasoning_tokens
                bucket.inputs += inputs
                bucket.max_inputs = max(bucket.max_inputs, inputs)

    def record_filter(self, stage: str) -> None:
        with self._lock:
            self._filtered[stage] += 1

    def snapshot(self) -> dict[str, Any]:
        """`{"total": {...}, "routes": {route: {...}}, "deployments": {name: {...}},
        "content_filtered": {"prompt": n, "completion": n}}`; each bucket holds requests,
        throttled, retries, errors, prompt/completion/total tokens (cached and reasoning tokens
        among them), the embedding inputs answered
        (`inputs`, and `max_inputs` in one request) and a status histogram."""
        with self._lock:
            return {
                "total": self._total.as_dict(),
                "routes": {k: v.as_dict() for k, v in self._routes.items()},
                "deployments": {k: v.as_dict() for k, v in self._deployments.items()},
                "content_filtered": dict(self._filtered),
            }
