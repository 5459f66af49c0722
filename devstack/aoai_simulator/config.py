"""The simulator's configuration: one pydantic model, loaded from YAML/JSON or built in code.

Every field has a default, so `SimulatorConfig()` is a working simulator with the three
deployments the app expects. `GET/PATCH /sim/config` read and merge-patch the same model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_API_KEY = "sim-key-0000000000000000"  # a well-known local test key

Category = Literal[
    "hate", "sexual", "violence", "self_harm", "jailbreak", "protected_material_text"
]
Severity = Literal["safe", "low", "medium", "high"]
ROUTES = ("chat", "embeddings", "responses", "files", "batches")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DeploymentConfig(_Model):
    """One model deployment, as `az cognitiveservices account deployment` would create it."""

    name: str
    model: str
    kind: Literal["chat", "embedding"]
    sku: Literal["standard", "global-standard", "global-batch"] = "standard"
    model_version: str = "2024-08-06"
    tpm: int = Field(default=1_000_000, ge=0, description="tokens per minute (0 = unlimited)")
    rpm: int = Field(default=6_000, ge=0, description="requests per minute (0 = unlimited)")
    dimensions: int | None = Field(
        default=None, description="embedding size; default from the model (1536 / 3072)"
    )
    reasoning_tokens: int = Field(
        default=600,
        ge=0,
        description="reasoning models: hidden tokens a request spends at effort medium (low a "
        "quarter, high twice, none and minimal none), out of max_completion_tokens",
    )
    enqueued_token_limit: int = Field(
        default=0,
        ge=0,
        description="global-batch: input tokens its unfinished batches may hold (0 = unlimited)",
    )

    def embedding_size(self) -> int:
        if self.dimensions is not None:
            return self.dimensions
        return 3072 if "large" in self.model else 1536


class RateLimitConfig(_Model):
    """How quota windows behave. Azure counts per minute; tests shrink the window."""

    window_seconds: float = Field(default=60.0, gt=0)
    retry_after_ms: int | None = Field(
        default=None, ge=0, description="force this retry-after-ms instead of the computed wait"
    )


class EmbeddingLimits(_Model):
    """Azure's per-request caps on embeddings; a request over one is a 400."""

    max_inputs: int = Field(default=2048, ge=1, description="inputs in one request")
    max_input_tokens: int = Field(default=8192, ge=1, description="tokens in one input")
    max_request_tokens: int = Field(
        default=300_000, ge=1, description="tokens summed over all inputs of one request"
    )


class LatencyConfig(_Model):
    """Added delay. Zero by default so tests run fast."""

    request_ms: float = Field(default=0.0, ge=0, description="fixed delay before answering")
    per_token_ms: float = Field(default=0.0, ge=0, description="per completion token")
    jitter_ms: float = Field(default=0.0, ge=0, description="uniform random extra, 0..jitter")


class FaultConfig(_Model):
    """Probabilities (0..1) of a failure on one route; they are tried in this order."""

    error_429: float = Field(
        default=0.0, ge=0, le=1, description="a 429 whatever the quota, with retry_after_ms"
    )
    retry_after_ms: int = Field(default=1000, ge=0, description="the forced 429's retry-after")
    error_500: float = Field(default=0.0, ge=0, le=1)
    error_503: float = Field(default=0.0, ge=0, le=1)
    hang: float = Field(default=0.0, ge=0, le=1)
    drop: float = Field(default=0.0, ge=0, le=1)
    lost: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="a write (POST, DELETE) is carried out, then the connection is cut before "
        "the answer: the caller cannot tell it happened",
    )
    hang_seconds: float = Field(default=30.0, ge=0, description="a hung request waits this long")
    stream_failure: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="a streamed Responses answer fails half way, ending with `response.failed`",
    )


class PromptCacheConfig(_Model):
    """Azure's prompt caching (see `prompt_cache.py`): a repeated prefix of 1,024 tokens or
    more is reported as `cached_tokens`."""

    enabled: bool = Field(
        default=True, description="off: cached_tokens is always 0 and nothing is stored"
    )
    ttl_seconds: float = Field(
        default=300.0,
        ge=0,
        description="a cached prefix unused this long is gone (Azure: typically 5-10 minutes "
        "of inactivity, always within an hour of its last use)",
    )
    max_entries: int = Field(
        default=10_000,
        ge=1,
        description="cached prefixes kept per deployment, least recently used evicted first",
    )


class AnswerLengthConfig(_Model):
    """How long generated answers are, in completion tokens: a lognormal distribution given by
    its median and 99th percentile, drawn once per request content (the same prompt always
    gets the same length). An answer longer than the request's `max_tokens` is cut there with
    `finish_reason: length`, as Azure's is. Unset (the default): 12 to 48 words."""

    median: int = Field(default=250, ge=1, description="median answer length in tokens")
    p99: int = Field(default=1500, ge=1, description="99th percentile of answer lengths")
    max: int = Field(default=16_384, ge=1, description="no answer is drawn longer than this")

    @model_validator(mode="after")
    def _ordered(self) -> AnswerLengthConfig:
        if self.p99 < self.median:
            raise ValueError("answer_length.p99 must be at least its median")
        return self


class FilterRule(_Model):
    """Text matching `terms` (case-insensitive substrings) or `regex` is flagged."""

    name: str
    category: Category
    severity: Severity = "high"
    terms: list[str] = Field(default_factory=list)
    regex: str | None = None
    applies_to: Literal["prompt", "completion", "both"] = "both"


class BatchConfig(_Model):
    """Pace of the Batch API state machine, in seconds spent in each state."""

    validating_seconds: float = Field(default=0.5, ge=0)
    in_progress_seconds: float = Field(default=0.5, ge=0)
    finalizing_seconds: float = Field(default=0.5, ge=0)
    cancelling_seconds: float = Field(default=0.5, ge=0)
    expire_after_seconds: float | None = Field(
        default=None,
        ge=0,
        description="OpenAI's expiry: a batch not done this long after creation expires "
        "(Azure never expires a batch)",
    )
    max_requests_per_file: int = Field(default=100_000, ge=1)
    allow_embeddings: bool = Field(
        default=False,
        description="accept /embeddings batches, as the OpenAI API does (Azure refuses them)",
    )
    empty_file_ids: bool = Field(
        default=False, description='an absent output or error file id is "" instead of null'
    )
    empty_error_file: bool = Field(
        default=False, description="write an empty error file when no line failed"
    )
    fail_lines_containing: str | None = Field(
        default=None,
        min_length=1,
        description="a line whose body contains this text is answered with a 500 "
        "`internal_error` in the error file (the service fails a single line now and then)",
    )


# The models infra/main.bicep deploys by default (gpt-5.4 2026-03-05, text-embedding-3-small 1).
# The local deployment names stay `gpt-4o` / `gpt-4o-batch`: they are names, not models, and the
# local settings, examples and tests address them; only the model behind them follows Azure.
CHAT_MODEL, CHAT_MODEL_VERSION = "gpt-5.4", "2026-03-05"


def default_deployments() -> list[DeploymentConfig]:
    return [
        DeploymentConfig(
            name="gpt-4o", model=CHAT_MODEL, kind="chat", model_version=CHAT_MODEL_VERSION
        ),
        DeploymentConfig(
            name="text-embedding-3-small",
            model="text-embedding-3-small",
            kind="embedding",
            model_version="1",
            tpm=10_000_000,
        ),
        DeploymentConfig(
            name="gpt-4o-batch",
            model=CHAT_MODEL,
            kind="chat",
            sku="global-batch",
            model_version=CHAT_MODEL_VERSION,
        ),
        DeploymentConfig(
            name="text-embedding-3-small-batch",
            model="text-embedding-3-small",
            kind="embedding",
            sku="global-batch",
            model_version="1",
        ),
    ]


def default_filter_rules() -> list[FilterRule]:
    return [
        FilterRule(
            name="violence-prompt",
            category="violence",
            severity="high",
            terms=["forbidden-violence"],
            applies_to="prompt",
        ),
        FilterRule(name="hate-any", category="hate", severity="medium", terms=["forbidden-hate"]),
        FilterRule(
            name="self-harm-completion",
            category="self_harm",
            severity="high",
            terms=["forbidden-selfharm"],
            applies_to="completion",
        ),
        FilterRule(
            name="jailbreak",
            category="jailbreak",
            regex=r"ignore (all )?previous instructions",
            applies_to="prompt",
        ),
    ]


class SimulatorConfig(_Model):
    """Everything the simulator does. See docs/simulator.md for each option."""

    deployments: list[DeploymentConfig] = Field(default_factory=default_deployments)
    api_keys: list[str] = Field(default_factory=lambda: [DEFAULT_API_KEY])
    bearer_tokens: list[str] | None = Field(
        default=None, description="accepted Entra tokens; None = any non-empty token"
    )
    require_api_version: bool = True
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    embeddings: EmbeddingLimits = Field(default_factory=EmbeddingLimits)
    latency: LatencyConfig = Field(default_factory=LatencyConfig)
    faults: dict[str, FaultConfig] = Field(
        default_factory=dict, description="per route: chat, embeddings, responses, files, batches"
    )
    filter_rules: list[FilterRule] = Field(default_factory=default_filter_rules)
    filter_threshold: Severity = Field(
        default="medium", description="a hit at or above this severity is filtered"
    )
    batch: BatchConfig = Field(default_factory=BatchConfig)
    prompt_cache: PromptCacheConfig = Field(default_factory=PromptCacheConfig)
    seed: int = Field(default=0, description="mixed into every generated text and vector")
    answer_length: AnswerLengthConfig | None = Field(
        default=None,
        description="generated answers' length distribution (median, p99); None: 12-48 words",
    )

    @field_validator("deployments")
    @classmethod
    def _unique_names(cls, value: list[DeploymentConfig]) -> list[DeploymentConfig]:
        names = [d.name for d in value]
        if len(names) != len(set(names)):
            raise ValueError("deployment names must be unique")
        return value

    @field_validator("faults")
    @classmethod
    def _known_routes(cls, value: dict[str, FaultConfig]) -> dict[str, FaultConfig]:
        unknown = set(value) - set(ROUTES)
        if unknown:
            raise ValueError(f"unknown fault routes {sorted(unknown)}; use {list(ROUTES)}")
        return value

    def deployment(self, name: str) -> DeploymentConfig | None:
        for item in self.deployments:
            if item.name == name:
                return item
        return None

    def merged(self, patch: dict[str, Any]) -> SimulatorConfig:
        """A new config with `patch` merged in (JSON merge patch: objects merge, lists replace).

        `deployments` may also be an object keyed by deployment name, which merges into the
        named deployments: `{"deployments": {"gpt-4o": {"rpm": 1}}}`.
        """
        current = self.model_dump(mode="json")
        patch = dict(patch)
        by_name = patch.get("deployments")
        if isinstance(by_name, dict):
            deployments = {d["name"]: d for d in current["deployments"]}
            for name, change in by_name.items():
                deployments[name] = _merge(deployments.get(name, {"name": name}), change)
            patch["deployments"] = list(deployments.values())
        return SimulatorConfig.model_validate(_merge(current, patch))


def _merge(base: Any, patch: Any) -> Any:
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return patch
    out = dict(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


def load_config(path: str | Path) -> SimulatorConfig:
    """Read a YAML (`.yaml`/`.yml`) or JSON file into a SimulatorConfig."""
    file = Path(path)
    text = file.read_text(encoding="utf-8")
    data = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    return SimulatorConfig.model_validate(data or {})
