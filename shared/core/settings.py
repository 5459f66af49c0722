"""Every setting the app reads, in one typed object, read once at start-up.

`load_settings(environ)` takes the environment as an argument (tests pass a dict);
`get_settings()` reads `os.environ` once per process. A missing or invalid setting raises
:class:`SettingsError` naming each offending setting, so start-up fails with a clear message.
See docs/configuration.md for the reference.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError
from pydantic_settings.sources.utils import parse_env_vars

# Azure's v1 API: `<endpoint>/openai/v1/`, no api-version (shared/aoai/client.py).
V1_API = "v1"
# The app's own calls, the same as infra's openAiApiVersion (tests/infra checks it): the v1 API,
# which serves the reasoning models the defaults deploy without a dated version to move on
# (docs/architecture.md, "The Azure OpenAI client module", says why and where that is written).
DEFAULT_API_VERSION = V1_API


class SettingsError(RuntimeError):
    """The configuration is incomplete or invalid; the message names each setting."""


class DeploymentQuota(BaseModel):
    """A deployment's quota as Azure grants it: tokens and requests per minute.

    `rpm` defaults to Azure's standard ratio of 6 requests per minute per 1,000 TPM.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tpm: int = Field(gt=0)
    rpm: int | None = Field(default=None, gt=0)

    @property
    def requests_per_minute(self) -> int:
        return self.rpm if self.rpm is not None else max(1, self.tpm * 6 // 1000)


class ModelPrice(BaseModel):
    """USD per one million tokens. Batch jobs are billed at `batch_discount` of these.

    `cached_input` prices the prompt tokens the service served from its prompt cache
    (`cached_tokens`); without it they cost `input`. Reasoning tokens are output tokens."""

    input: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)
    output: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _cached_is_a_discount(self) -> ModelPrice:
        # Azure bills cached input at a discount: above `input` it is a misplaced field.
        if self.cached_input is not None and self.cached_input > self.input:
            raise ValueError("cached_input above input: cached prompt tokens cost less")
        return self


# List prices (USD per 1M tokens, global standard) used for cost *estimates* only.
# gpt-5.4 and text-embedding-3-small are what infra/ deploys by default; the others stay for
# deployments that still run them. Cached input: a tenth of input for gpt-5.x, a half (gpt-4o)
# or a quarter (gpt-4.1) before; embeddings are never cached.
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "gpt-5.4": ModelPrice(input=2.50, cached_input=0.25, output=15.00),
    "gpt-5.1": ModelPrice(input=1.25, cached_input=0.125, output=10.00),
    "gpt-4o": ModelPrice(input=2.50, cached_input=1.25, output=10.00),
    "gpt-4o-mini": ModelPrice(input=0.15, cached_input=0.075, output=0.60),
    "gpt-4.1": ModelPrice(input=2.00, cached_input=0.50, output=8.00),
    "gpt-4.1-mini": ModelPrice(input=0.40, cached_input=0.10, output=1.60),
    "text-embedding-3-small": ModelPrice(input=0.02),
    "text-embedding-3-large": ModelPrice(input=0.13),
}


class AoaiBackend(BaseModel):
    """One Azure OpenAI account in `AOAI_BACKENDS` (see shared/aoai/backends.py).

    `deployments` maps a deployment name or alias the app knows to the deployment's name on
    this account; an empty map serves every deployment under its own name. `api_key` is for
    the local simulator only: in Azure every backend uses the app's Entra ID token.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    endpoint: HttpUrl
    priority: int = Field(default=1, ge=0, description="Lower is tried first.")
    deployments: dict[str, str] = Field(default_factory=dict)
    api_key: SecretStr | None = None


QueueName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")]
ContainerName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")]


class Settings(BaseSettings):
    """The app's configuration. Environment names are the field names in upper case unless an
    alias says otherwise (the `AzureWebJobsStorage*` names are the Functions host's own)."""

    model_config = SettingsConfigDict(
        case_sensitive=False,
        env_ignore_empty=True,  # an empty app setting means "unset", as in local.settings.json
        extra="ignore",
        populate_by_name=True,
        frozen=True,
    )

    # --- Azure OpenAI -------------------------------------------------------------------
    azure_openai_endpoint: HttpUrl | None = Field(
        default=None, description="Azure OpenAI endpoint, https://<name>.openai.azure.com/."
    )
    azure_openai_api_key: SecretStr | None = Field(
        default=None,
        description="Key auth instead of Entra ID (local simulator, emergencies). Unset in Azure.",
    )
    azure_openai_api_version: str = Field(
        default=DEFAULT_API_VERSION,
        pattern=r"^(v1|\d{4}-\d{2}-\d{2}(-preview)?)$",
        description="`v1`: Azure's v1 API (<endpoint>/openai/v1/, the deployment in the body, "
        "no api-version); or a dated data-plane api-version sent on every call.",
    )
    openai_api_key: SecretStr | None = Field(
        default=None,
        description="Standard OpenAI API key; used only when AZURE_OPENAI_ENDPOINT is unset.",
    )
    openai_base_url: HttpUrl | None = Field(
        default=None,
        description="Standard OpenAI API base URL (default https://api.openai.com/v1).",
    )
    azure_client_id: str | None = Field(
        default=None,
        description="Client id of the user-assigned managed identity DefaultAzureCredential uses.",
    )
    aoai_deployments: dict[str, str] = Field(
        default_factory=dict,
        description='JSON map of model alias to deployment name, {"gpt-4o": "gpt-4o-prod"}.',
    )
    chat_deployment: str = Field(min_length=1, description="Deployment for /api/chat.")
    embedding_deployment: str = Field(min_length=1, description="Deployment for embedding jobs.")
    classify_deployment: str | None = Field(
        default=None, description="Deployment for classification jobs (default CHAT_DEPLOYMENT)."
    )
    batch_deployment: str | None = Field(
        default=None,
        description="Global-batch deployment for mode=batch jobs; batch mode is refused if unset.",
    )
    aoai_backends: list[AoaiBackend] = Field(
        default_factory=list,
        description="JSON list of Azure OpenAI accounts, [{name, endpoint, priority, "
        "deployments, api_key?}]: the highest priority (lowest number) that is not cooling "
        "serves each call; a 429, 5xx or timeout sends it on to the next at once "
        "(docs/gateway.md). Unset: AZURE_OPENAI_ENDPOINT is the one backend.",
    )
    aoai_backend_cooldown_seconds: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="How long a backend that answered 5xx, timed out or could not be reached "
        "is passed over (a 429 uses its own retry-after).",
    )
    aoai_batch_backend: str | None = Field(
        default=None,
        description="The AOAI_BACKENDS entry that runs Batch API jobs (a batch lives on the "
        "account that created it); default the first.",
    )
    aoai_timeout_seconds: float = Field(
        default=60.0, gt=0, le=600, description="Per-request timeout for Azure OpenAI calls."
    )
    chat_deadline_seconds: float = Field(
        default=200.0,
        gt=0,
        le=600,
        description="One overall deadline for an interactive /api/chat call to get its answer "
        "(or its stream's first response), across every SDK attempt. AOAI_TIMEOUT_SECONDS is "
        "spent per attempt, and Azure's front end cuts an HTTP request at 230 s. Jobs keep "
        "their own timeouts.",
    )
    interactive_max_wait_seconds: float = Field(
        default=5.0,
        ge=0,
        le=60,
        description="Longest a person waits on the service's behalf (chat and the gateway "
        "routes): an upstream 429 whose retry-after (or a backend cooling for longer) is "
        "past it, or SDK retries that would sleep longer in all, answer 429 with Retry-After "
        "at once. Jobs wait as before.",
    )
    aoai_max_retries: int = Field(
        default=2, ge=0, le=10, description="SDK retries (429/5xx/connection) inside a request."
    )
    aoai_quotas: dict[str, DeploymentQuota] = Field(
        default_factory=dict,
        description='JSON map of deployment name to its quota, {"text-embedding-3-small": '
        '{"tpm": 350000, "rpm": 2100}}; rpm defaults to 6 per 1,000 TPM. Job limiters pace '
        "calls to it; an unlisted deployment is paced by the rate-limit headers and 429s only. "
        "With AOAI_BACKENDS a key may be `backend/deployment` for one account's deployment.",
    )
    job_headroom_factor: float = Field(
        default=0.25,
        ge=0,
        le=10,
        description="Interactive calls first: a job's request fits only under a deployment's "
        "quota less this many times the interactive tokens per minute the instance saw "
        "lately (chat, the gateway routes; decayed over the last quota minute), so jobs give "
        "way when people use the deployment and take the whole quota back when they stop "
        "(docs/jobs.md#interactive-calls-first). 0 with JOB_HEADROOM_MIN_TOKENS 0: off.",
    )
    job_headroom_min_tokens: int = Field(
        default=1000,
        ge=0,
        description="The least headroom jobs leave while interactive calls are recent, in "
        "tokens (never more than their recent tokens per minute: quiet, it is 0).",
    )
    aoai_quota_ledger: bool = Field(
        default=True,
        description="Instances share each configured deployment's quota (AOAI_QUOTAS) through a "
        "ledger in Cosmos DB (container quota_ledger): together they send no more than it "
        "and leave none of it unused. false: each instance paces on the rate-limit headers "
        "alone (docs/jobs.md#instances-sharing-one-quota).",
    )
    aoai_quota_ledger_timeout_seconds: float = Field(
        default=1.0,
        gt=0,
        le=30,
        description="Longest a ledger round trip may take; a slower or failed one makes the "
        "instance pace on its own limiter for 10 s, then try the ledger again.",
    )
    aoai_quota_window_seconds: float = Field(
        default=60.0,
        gt=0,
        le=60,
        description="Azure's quota minute, as the job limiters count it; shorten it only with "
        "the simulator's window, to compress time in tests and benchmarks.",
    )

    # --- Cosmos DB ----------------------------------------------------------------------
    cosmos_endpoint: HttpUrl = Field(description="Cosmos DB account endpoint.")
    cosmos_key: SecretStr | None = Field(
        default=None,
        description="Key auth for the local Cosmos DB server only; unset in Azure (Entra ID).",
    )
    cosmos_database: str = Field(default="aoai", min_length=1, description="Database name.")
    cosmos_verify_tls: bool = Field(
        default=True, description="Verify Cosmos TLS; false only for the local self-signed server."
    )

    # --- Storage (the Functions host's own connection, reused by the app) ----------------
    storage_connection_string: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("AzureWebJobsStorage", "storage_connection_string"),
        description="Connection string (Azurite locally). Unset in Azure: identity URIs below.",
    )
    storage_queue_uri: HttpUrl | None = Field(
        default=None,
        validation_alias=AliasChoices("AzureWebJobsStorage__queueServiceUri", "storage_queue_uri"),
        description="Queue service URI for identity-based access.",
    )
    storage_blob_uri: HttpUrl | None = Field(
        default=None,
        validation_alias=AliasChoices("AzureWebJobsStorage__blobServiceUri", "storage_blob_uri"),
        description="Blob service URI for identity-based access (claim-check payloads).",
    )
    embedding_queue: QueueName = Field(default="embedding-jobs", description="Embedding jobs.")
    classification_queue: QueueName = Field(
        default="classification-jobs", description="Classification jobs."
    )
    outbox_queue: QueueName = Field(
        default="cosmos-outbox",
        description="Usage documents and filter events written behind while Cosmos DB fails.",
    )
    store_answer_timeout: float = Field(
        default=0.5,
        gt=0,
        le=10,
        description="Seconds a usage document or filter event write on the answer path (chat, "
        "the gateway routes) waits for Cosmos DB before it goes to the outbox instead: a hung "
        "store never holds an answer. A healthy point write takes milliseconds.",
    )
    claim_check_container: ContainerName = Field(
        default="job-payloads", description="Blob container for jobs too large for a message."
    )

    # --- Security (docs/security.md) -----------------------------------------------------
    user_hash_secret: SecretStr = Field(
        description="HMAC key for the chat `user` id before it is stored or sent upstream; "
        "at least 32 characters. Azure: a Key Vault reference. Local: made by `make run`.",
    )
    team_key_hash_secret: SecretStr = Field(
        description="HMAC key under which team keys are stored (only their keyed hash is "
        "kept); at least 32 characters. Azure: a Key Vault reference. Local: made by "
        "`make run`. Changing it invalidates every team key.",
    )
    default_team: str = Field(
        default="default",
        pattern=r"^[a-z][a-z0-9-]{1,39}$",
        description="The team a job message dropped straight on a queue without a `team` field "
        "is attributed to (docs/jobs.md); a team id. Data-plane HTTP calls always name theirs.",
    )
    entra_auth: bool = Field(
        default=False,
        description="App Service authentication (Entra ID) is on: trust its "
        "x-ms-client-principal header, require app roles, attribute cost to the principal.",
    )
    chat_caller_tpm: int = Field(
        default=0,
        ge=0,
        description="Tokens per minute one caller may spend on /api/chat and the gateway routes "
        "(0: off). The caller is the signed-in principal, else the CHAT_CALLER_TAG tag, else "
        "`user`.",
    )
    chat_caller_limit_scope: Literal["shared", "instance"] = Field(
        default="shared",
        description="Where CHAT_CALLER_TPM is counted: `shared` (one minute per caller across "
        "instances, in Cosmos DB) or `instance` (each instance on its own).",
    )
    chat_caller_tag: str = Field(
        default="team", min_length=1, description="The tag that names a caller for CHAT_CALLER_TPM."
    )
    health_cache_seconds: float = Field(
        default=5, ge=0, le=300, description="How long /api/health reuses its last checks."
    )
    usage_rollup_schedule: str = Field(
        default="0 */5 * * * *",
        description="NCRONTAB schedule of the usage roll-up (the report is this fresh).",
    )
    usage_report_max_cells: int = Field(
        default=50_000,
        ge=1,
        description="Roll-up cells one usage report may read; past it the report is refused.",
    )

    # --- Behaviour ----------------------------------------------------------------------
    batch_poll_schedule: str = Field(
        default="0 */5 * * * *", description="NCRONTAB schedule of the Batch API poller."
    )
    batch_max_lines: int = Field(
        default=100_000,
        ge=1,
        le=100_000,
        description="Lines per Batch API input file (Azure: 100,000).",
    )
    batch_max_file_bytes: int = Field(
        default=200_000_000,
        ge=1024,
        le=200_000_000,
        description="Bytes per Batch API input file (Azure: 200 MB); a larger job is split.",
    )
    batch_max_age: float = Field(
        default=172_800,
        gt=0,
        description="Seconds a batch may run before the poller cancels it, keeps its partial "
        "output and resubmits the rest once (Azure does not expire slow batches).",
    )
    batch_retry_seconds: float = Field(
        default=60,
        gt=0,
        description="First wait before resubmitting a batch refused for the enqueued-token "
        "quota; doubles each time, at most an hour.",
    )
    batch_lease_seconds: float = Field(
        default=300,
        gt=0,
        description="How long a poller's claim on a batch lasts unless renewed (a killed "
        "run's claim expires).",
    )
    batch_checkpoint_lines: int = Field(
        default=1000, ge=1, description="Output lines ingested between two checkpoints."
    )
    # The enqueued-token quota and the bounds on a part that cannot get onto the Batch API.
    batch_enqueued_tokens: int = Field(
        default=10_000_000,
        ge=1,
        description="The batch deployment's enqueued-token quota (infra sets it from "
        "BATCH_CAPACITY x 1000; 10M by default): parts are cut to fit it, and submitted only "
        "while the deployment's open parts leave room.",
    )
    batch_max_attempts: int = Field(
        default=10,
        ge=1,
        description="Failed submissions of a part (5xx, timeouts, lost answers; not quota "
        "refusals) before its items fail with the reason: with BATCH_RETRY_SECONDS 60, about "
        "5 hours of backoff.",
    )
    batch_max_wait: float = Field(
        default=604_800,
        gt=0,
        description="Seconds a part may wait to get onto the Batch API (for room in the "
        "quota, or after failures) before its items fail with the reason: 7 days, well "
        "inside the 30-day retention of the items blob.",
    )
    content_filter_store_text: bool = Field(
        default=False, description="Store filtered prompt/completion text in events (off)."
    )
    chat_max_messages: int = Field(default=50, ge=1, description="Messages per chat request.")
    chat_max_input_chars: int = Field(
        default=100_000, ge=1, description="Characters across all messages of a chat request."
    )
    chat_max_tokens_limit: int = Field(
        default=4096,
        ge=1,
        description="Upper bound a caller may ask for as max_tokens (/api/chat and the gateway "
        "routes); sent as max_completion_tokens when the caller names none.",
    )
    chat_cap_learning: bool = Field(
        default=True,
        description="A chat call naming no output cap (/api/chat, the gateway's chat routes) "
        "is sent with a high percentile of the answer lengths seen lately for its deployment "
        "and team instead of CHAT_MAX_TOKENS_LIMIT (Azure books prompt + cap per request). "
        "false: the limit, as before (shared/metering/output_caps.py).",
    )
    chat_cap_percentile: float = Field(
        default=99.5,
        gt=50,
        le=100,
        description="The percentile of recent completion lengths a learned cap is set at.",
    )
    chat_cap_min_samples: int = Field(
        default=100,
        ge=1,
        description="Answers a deployment (or team) needs before its cap is learned; until "
        "then CHAT_MAX_TOKENS_LIMIT is sent.",
    )
    chat_cap_window: int = Field(
        default=1000,
        ge=10,
        le=100_000,
        description="The recent answer lengths kept per deployment and team (4 bytes each).",
    )
    gateway_allowed_extensions: list[Literal["data_sources"]] = Field(
        default_factory=list,
        description="JSON list of Azure extensions the gateway routes forward, e.g. "
        '["data_sources"] (On Your Data: the account then calls the endpoints the caller '
        "names, with its own identity). Default none: a body naming one is a 400.",
    )
    job_max_items: int = Field(default=10_000, ge=1, description="Items per job.")
    job_max_item_chars: int = Field(default=32_000, ge=1, description="Characters per job item.")
    job_max_labels: int = Field(default=50, ge=2, description="Labels per classification job.")
    job_raw_body_chars: int = Field(
        default=2048, ge=0, description="Characters of an invalid message kept in its failed job."
    )
    job_retry_after_cap_seconds: float = Field(
        default=300,
        gt=0,
        description="Longest 429 retry-after a job waits; past it: quota_exhausted.",
    )
    job_max_attempts: int = Field(
        default=8, ge=1, description="Continuations after passing failures (5xx, Cosmos down)."
    )
    job_backoff_seconds: float = Field(
        default=5, gt=0, description="First backoff after a passing failure; doubles each time."
    )
    job_slice_seconds: float = Field(
        default=120, gt=0, description="Work one invocation does before handing on the rest."
    )
    job_concurrency: int = Field(
        default=8, ge=1, le=64, description="Azure OpenAI requests in flight per job invocation."
    )
    job_lease_seconds: float = Field(
        default=60,
        gt=0,
        description="How long a slice's lease on its job lasts unless renewed: another message "
        "for the job waits for it, and a dead host's lease is taken over after it.",
    )
    job_park_seconds: float = Field(
        default=900,
        gt=0,
        description="Delay of a job's remaining items once JOB_MAX_ATTEMPTS passing failures "
        "are spent (the job says waiting); tried again at this pace until JOB_MAX_AGE.",
    )
    job_max_age: float = Field(
        default=86_400,
        gt=0,
        description="Seconds from a job's creation after which items still failing (parked) "
        "fail with the reason.",
    )
    job_budget_max_wait: float = Field(
        default=86_400,
        ge=0,
        le=604_800,
        description="Seconds a job waits in all for its team's budget (tokens per minute, "
        "day or month) to return; a wait that would end later is not begun: the rest fails "
        "budget_exceeded (or rate_limited). A batch part waiting for its team's day or "
        "month is tried on every poller run until then. At most 7 days, the longest a queue "
        "message can be delayed.",
    )
    embedding_max_inputs: int = Field(
        default=2048, ge=1, le=2048, description="Inputs per embeddings request (Azure: 2048)."
    )
    embedding_max_input_tokens: int = Field(
        default=8192, ge=1, description="Estimated tokens per embedding input (Azure: 8192)."
    )
    embedding_max_request_tokens: int = Field(
        default=300_000, ge=1, description="Estimated tokens per embeddings request (Azure: 300k)."
    )
    # Memory (docs/jobs.md#memory): an answer's floats cost ~56 bytes each as Python objects.
    embedding_max_floats_per_request: int = Field(
        default=1_048_576,
        ge=256,
        description="Floats one embeddings answer may hold (inputs x dimensions; ~56 MiB at "
        "the default): 341 inputs at 3,072 dimensions, 682 at 1,536.",
    )
    job_memory_budget_mib: int = Field(
        default=512,
        ge=64,
        description="Estimated MiB of job answers in flight per instance, over all messages.",
    )
    classify_items_per_request: int = Field(
        default=10, ge=1, le=200, description="Items labelled by one chat request (docs/jobs.md)."
    )
    classify_reasoning_tokens: int = Field(
        default=4096,
        ge=0,
        description="Room for a reasoning model's hidden tokens (o-series, gpt-5), added to a "
        "classification request's max_completion_tokens once the deployment's answers show it "
        "reasons; an answer cut short by its reasoning before then is sent once more with it. "
        "0: never (docs/jobs.md).",
    )
    poison_sweep_schedule: str = Field(
        default="0 */1 * * * *", description="NCRONTAB schedule of the poison-queue sweep."
    )
    model_prices: dict[str, ModelPrice] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description="JSON map model -> {input, cached_input?, output} USD per 1M tokens, for "
        "cost estimates; cached prompt tokens cost input when cached_input is absent.",
    )
    batch_discount: float = Field(
        default=0.5, gt=0, le=1, description="Batch API price as a fraction of standard."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Log level of the app's own loggers."
    )

    @field_validator("azure_openai_api_key", "openai_api_key", "cosmos_key", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("user_hash_secret", "team_key_hash_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        name = _env_name(info.field_name or "")
        secret = value.get_secret_value()
        if secret.startswith("@Microsoft.KeyVault("):
            # App Service leaves the reference text in place when it cannot resolve it: that
            # text is no secret, so start-up fails instead of hashing with it.
            raise ValueError(f"{name} is an unresolved Key Vault reference")
        if len(secret) < 32:
            raise ValueError(f"{name} must be at least 32 characters")
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        missing = []
        if (
            self.azure_openai_endpoint is None
            and not self.aoai_backends
            and self.openai_api_key is None
        ):
            missing.append("AZURE_OPENAI_ENDPOINT (or OPENAI_API_KEY for the standard OpenAI API)")
        names = [b.name for b in self.aoai_backends]
        if len(set(names)) < len(names):
            raise ValueError("invalid setting AOAI_BACKENDS: backend names must be unique")
        for deployment in self.configured_deployments():
            if self.aoai_backends and not any(
                b.deployments == {} or self.serving_names(b, deployment) for b in self.aoai_backends
            ):
                raise ValueError(
                    f"invalid setting AOAI_BACKENDS: no backend serves deployment {deployment!r}"
                )
        if self.aoai_batch_backend is not None and self.aoai_batch_backend not in names:
            raise ValueError(
                f"invalid setting AOAI_BATCH_BACKEND: {self.aoai_batch_backend!r} is not a "
                "name in AOAI_BACKENDS"
            )
        if self.storage_connection_string is None and self.storage_queue_uri is None:
            missing.append("AzureWebJobsStorage (or AzureWebJobsStorage__queueServiceUri)")
        if missing:
            raise ValueError("missing required setting: " + "; ".join(missing))
        return self

    @property
    def uses_openai_api(self) -> bool:
        """True when talking to the standard OpenAI API instead of Azure OpenAI."""
        return self.azure_openai_endpoint is None and not self.aoai_backends

    def configured_deployments(self) -> list[str]:
        """The deployments the settings name (chat, embedding, classification, batch)."""
        named = (
            self.chat_deployment,
            self.embedding_deployment,
            self.classify_deployment,
            self.batch_deployment,
        )
        return [d for d in named if d]

    def serving_names(self, backend: AoaiBackend, deployment: str) -> list[str]:
        """The keys of `backend.deployments` that mean `deployment`: the name itself and
        every AOAI_DEPLOYMENTS alias of it."""
        keys = [deployment, *(a for a, d in self.aoai_deployments.items() if d == deployment)]
        return [k for k in keys if k in backend.deployments]

    def queue_for(self, kind: Literal["embedding", "classification"]) -> str:
        """The queue a job of `kind` travels on."""
        return self.embedding_queue if kind == "embedding" else self.classification_queue

    @property
    def classification_deployment(self) -> str:
        return self.classify_deployment or self.chat_deployment


def _env_name(field_name: str) -> str:
    alias = Settings.model_fields[field_name].validation_alias
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    return field_name.upper()


def required_setting_names() -> frozenset[str]:
    """App-setting names a deployment in Azure (identity mode) must set.

    Required fields, the conditional ones in their identity form, and the settings whose
    defaults are only right for the local stack.
    """
    required = {_env_name(name) for name, f in Settings.model_fields.items() if f.is_required()}
    required |= {
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_API_VERSION",
        "AZURE_CLIENT_ID",
        "AOAI_DEPLOYMENTS",
        "CLASSIFY_DEPLOYMENT",
        "BATCH_DEPLOYMENT",
        "COSMOS_DATABASE",
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
        "AzureWebJobsStorage__queueServiceUri",
        "AzureWebJobsStorage__blobServiceUri",
        "AzureWebJobsStorage__tableServiceUri",
        "EMBEDDING_QUEUE",
        "CLASSIFICATION_QUEUE",
        "OUTBOX_QUEUE",
        "CLAIM_CHECK_CONTAINER",
        "BATCH_POLL_SCHEDULE",
        "POISON_SWEEP_SCHEDULE",
        "CONTENT_FILTER_STORE_TEXT",
        "ENTRA_AUTH",
        "CHAT_CALLER_TPM",
        "USAGE_ROLLUP_SCHEDULE",
    }
    return frozenset(required)


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping instead of os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        if item["type"] == "value_error":
            problems.append(str(item["ctx"]["error"]) if "ctx" in item else item["msg"])
            continue
        name = _env_name(str(item["loc"][0])) if item["loc"] else "settings"
        if item["type"] == "missing":
            problems.append(f"missing required setting: {name}")
        else:
            problems.append(f"invalid setting {name}: {item['msg']}")
    return "; ".join(problems) + " (see docs/configuration.md)"


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build the settings from an environment mapping; raise SettingsError naming each problem."""
    try:
        values = _MappingEnvSource(Settings, environ)()
    except PydanticSettingsError as error:
        # pydantic-settings names the field when a JSON value does not parse.
        match = re.search(r'field "(\w+)"', str(error))
        name = _env_name(match.group(1)) if match else "a JSON setting"
        raise SettingsError(f"invalid setting {name}: not valid JSON") from None
    try:
        return Settings.model_validate(values)
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read from os.environ once."""
    return load_settings(os.environ)
