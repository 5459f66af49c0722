"""The process's clients and services: the one registry, created once on first use and closed
together.

Function handlers call :func:`get_runtime`; nothing else constructs clients. The factories it
calls (`create_connection`, `create_store`, `create_queues`, `create_credential`) take their
arguments and never read the environment. The Python worker has no shutdown hook, so in Azure
the process exit releases the sockets; the local host and the tests call :func:`close_runtime`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from azure.core.credentials_async import AsyncTokenCredential
from openai import AsyncOpenAI

from shared.aoai.backends import Backends
from shared.aoai.client import create_connection, describe_auth
from shared.aoai.limiters import Limiters
from shared.aoai.priority import HeadroomPolicy
from shared.aoai.quota_share import QuotaShare, instance_id
from shared.chat.service import ChatService
from shared.core.health import HealthCache, check_health
from shared.core.heap import freeze_startup_heap
from shared.core.identity import create_credential
from shared.core.queues import JobQueues, create_queues
from shared.core.settings import Settings, get_settings
from shared.core.store import Store, create_store
from shared.gateway.affinity import ResponseHomes
from shared.gateway.responses import ResponsesGateway
from shared.gateway.service import Gateway
from shared.jobs.batch.budget import BatchBudget
from shared.jobs.batch.poller import BatchPoller
from shared.jobs.batch.service import BatchService
from shared.jobs.batch.store import BatchDocs
from shared.jobs.classification import ClassificationService
from shared.jobs.embeddings import EmbeddingService
from shared.jobs.memory import MemoryBudget
from shared.jobs.poison import PoisonSweeper
from shared.jobs.requests import JobRequests
from shared.jobs.store import JobStore
from shared.jobs.worker import JobWorker
from shared.metering.bookkeeper import Bookkeeper
from shared.metering.call import CallMeter
from shared.metering.caller_limit import create_caller_limiter
from shared.metering.outbox import Outbox
from shared.metering.output_caps import OutputCaps
from shared.metering.rollups import UsageRollups
from shared.metering.team_admin import TeamAdmin
from shared.metering.team_directory import TeamDirectory
from shared.metering.team_limits import TeamLimiter
from shared.metering.teams import TeamStore
from shared.telemetry import tracing

log = logging.getLogger(__name__)

Closer = tuple[str, Callable[[], Awaitable[None]]]


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    aoai: AsyncOpenAI  # the first backend's client
    backends: Backends
    store: Store
    queues: JobQueues
    outbox: Outbox
    bookkeeper: Bookkeeper
    chat: ChatService
    gateway: Gateway
    responses: ResponsesGateway
    job_requests: JobRequests
    job_worker: JobWorker
    poison_sweeper: PoisonSweeper
    batch_poller: BatchPoller
    usage_rollups: UsageRollups
    health_cache: HealthCache
    # Which team a credential names (the data-plane routes' seam, docs/teams.md), and the
    # registry's operations (the admin API). One directory per process: one cache.
    teams: TeamDirectory
    team_admin: TeamAdmin
    # Each team's minute, day and month (docs/teams.md, "Limits and budgets"): one per process,
    # so its local credit and outage allowance are per instance, as docs/security.md counts them.
    team_limits: TeamLimiter
    closers: Sequence[Closer] = field(default=(), repr=False)

    async def aclose(self) -> list[BaseException]:
        return await close_all(self.closers)


async def close_all(closers: Sequence[Closer]) -> list[BaseException]:
    """Close each in order; one that fails is logged and the rest are still closed.
    Returns the failures (empty when every close succeeded)."""
    failures: list[BaseException] = []
    for name, close in closers:
        try:
            await close()
        except Exception as error:
            log.exception("closing %s failed", name)
            failures.append(error)
    return failures


def uses_entra_id(settings: Settings) -> bool:
    """True when any client authenticates with Microsoft Entra ID (no key or connection string)."""
    return (
        describe_auth(settings) == "entra-id"
        or settings.cosmos_key is None
        or settings.storage_connection_string is None
    )


def create_runtime(settings: Settings) -> Runtime:
    """Every client and service of a process. One credential serves every Entra client."""
    credential: AsyncTokenCredential | None = (
        create_credential(settings) if uses_entra_id(settings) else None
    )
    connection = create_connection(settings, credential=credential)
    store = create_store(settings, credential, tracing.store_span)
    queues = create_queues(settings, credential, tracing.queue_span)
    rollups = UsageRollups(store)
    outbox = Outbox(store, queues, settings.outbox_queue, rollups=rollups)
    books = Bookkeeper(
        outbox,
        user_hash_secret=settings.user_hash_secret.get_secret_value(),
        store_text=settings.content_filter_store_text,
        answer_timeout=settings.store_answer_timeout,
    )
    closers: list[Closer] = [
        ("the Azure OpenAI clients", connection.aclose),
        ("the Cosmos DB client", store.aclose),
        ("the storage clients", queues.aclose),
    ]
    if credential is not None:
        closers.append(("the Entra ID credential", credential.close))
    jobs = JobStore(store)
    team_store = TeamStore(store)
    team_secret = settings.team_key_hash_secret.get_secret_value().encode()
    teams = TeamDirectory(team_store, team_secret)
    # One per process, shared by /api/chat and the gateway routes: one minute per caller.
    caller_limiter = create_caller_limiter(
        store, settings.chat_caller_tpm, settings.chat_caller_limit_scope
    )
    backends = connection.backends
    # One per process: every call and job of a team books against the same counters.
    team_limits = TeamLimiter(store)
    # One per process, shared by the jobs and the interactive calls: jobs leave the calls a
    # person waits for headroom on the same deployment (docs/jobs.md#interactive-calls-first).
    # With the ledger, the instances share each configured quota as if they were one
    # (docs/jobs.md#instances-sharing-one-quota).
    instance, timeout = instance_id(), settings.aoai_quota_ledger_timeout_seconds
    limiters = Limiters(
        settings.aoai_quotas,
        minute=settings.aoai_quota_window_seconds,
        headroom=HeadroomPolicy(settings.job_headroom_factor, settings.job_headroom_min_tokens),
        shares=(
            (lambda doc_id: QuotaShare(store, doc_id, instance, timeout))
            if settings.aoai_quota_ledger
            else None
        ),
    )
    # First to close: the holds go back to the ledgers while Cosmos DB is still open.
    closers.insert(0, ("the quota ledgers", limiters.aclose))
    caps = OutputCaps(
        enabled=settings.chat_cap_learning,
        percentile=settings.chat_cap_percentile,
        min_samples=settings.chat_cap_min_samples,
        window=settings.chat_cap_window,
    )
    meter = CallMeter(
        settings, backends, books, caller_limiter, team_limits, limiters=limiters, caps=caps
    )
    # Batch API calls are few and nothing waits on them: the SDK's own retries are welcome.
    # A batch lives on the account that created it: one backend (AOAI_BATCH_BACKEND) runs them.
    batches = BatchService(
        settings=settings,
        client=backends.batch.client,
        jobs=jobs,
        docs=BatchDocs(store, settings.batch_lease_seconds),
        queues=queues,
        deployments=backends.batch.deployments,
        backend=backends.batch.name,
        budget=BatchBudget(
            teams,
            team_limits,
            settings.model_prices,
            settings.batch_discount,
            settings.job_budget_max_wait,
        ),
    )
    worker = JobWorker(
        settings=settings,
        jobs=jobs,
        queues=queues,
        limiters=limiters,
        backends=backends,
        # Inside a queue invocation the SDK never sleeps on a 429: the worker moves to another
        # backend or hands the rest on (the services call without the SDK's retries).
        embeddings=EmbeddingService(settings, backends, books),
        classification=ClassificationService(settings, backends, books),
        batch_service=batches,
        # One per process: every message the instance runs at once shares it.
        memory=MemoryBudget(settings.job_memory_budget_mib),
        teams=teams,
        team_limits=team_limits,
    )
    log.info(
        "runtime created (Azure OpenAI auth: %s; backends: %s)",
        describe_auth(settings),
        ", ".join(f"{b.name} (priority {b.priority})" for b in backends.all),
    )
    gateway = Gateway(settings, meter)
    return Runtime(
        settings=settings,
        aoai=connection.client,
        backends=backends,
        store=store,
        queues=queues,
        outbox=outbox,
        bookkeeper=books,
        chat=ChatService(settings, meter),
        gateway=gateway,
        # A stored response lives on its backend: the id -> backend records route follow-ups.
        responses=ResponsesGateway(gateway, ResponseHomes(store)),
        job_requests=JobRequests(settings, jobs, queues, batches),
        job_worker=worker,
        poison_sweeper=PoisonSweeper(settings, jobs, queues, worker),
        batch_poller=BatchPoller(settings, batches, books),
        usage_rollups=rollups,
        health_cache=HealthCache(
            lambda: check_health(store, queues, {b.name: b.direct for b in backends.all}),
            settings.health_cache_seconds,
        ),
        teams=teams,
        team_admin=TeamAdmin(team_store, teams, team_secret),
        team_limits=team_limits,
        closers=tuple(closers),
    )


_runtime: Runtime | None = None


# The app's own loggers: `shared.*` and the function entry points. The host owns the root
# logger and its handlers; only these levels are ours to set.
APP_LOGGERS = ("shared", "function_app")


def apply_log_level(settings: Settings) -> None:
    """Set LOG_LEVEL on the app's own loggers (not the SDKs', not the host's)."""
    for name in APP_LOGGERS:
        logging.getLogger(name).setLevel(settings.log_level)


def get_runtime() -> Runtime:
    """The process's runtime, created on first use and reused by every invocation."""
    global _runtime
    if _runtime is None:
        settings = get_settings()
        apply_log_level(settings)
        _runtime = create_runtime(settings)
        freeze_startup_heap()
    return _runtime


async def close_runtime() -> None:
    """Close every client of the process (the local host's --on-stop hook)."""
    global _runtime
    runtime, _runtime = _runtime, None
    if runtime is not None:
        await runtime.aclose()
