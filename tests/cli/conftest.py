"""Running the CLI in-process (typer's CliRunner) against the session's real local stack."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

import pytest
from click.testing import Result
from typer.testing import CliRunner

from cli.app import app
from devstack.emulators import EmulatorStack
from shared.core.queues import JobQueues, create_queues
from shared.core.settings import Settings


def invoke(args: Sequence[str], env: Mapping[str, str] | None = None) -> Result:
    """One CLI run; stdout and stderr are kept apart (results vs. messages). A wide terminal,
    so tables keep each id on one line."""
    environ = {"COLUMNS": "250", **(env or {})}
    return CliRunner().invoke(app, list(args), env=environ, catch_exceptions=False)


async def ainvoke(args: Sequence[str], env: Mapping[str, str] | None = None) -> Result:
    """`invoke` from an async test: the CLI runs its own event loop, so in a thread."""
    return await asyncio.to_thread(invoke, args, env)


@dataclass(frozen=True)
class Queues:
    """Fresh queue names for one test, created with their poison queues."""

    embedding: str
    classification: str

    def env(self, connection_string: str) -> dict[str, str]:
        return {
            "AzureWebJobsStorage": connection_string,
            "EMBEDDING_QUEUE": self.embedding,
            "CLASSIFICATION_QUEUE": self.classification,
        }


@pytest.fixture(scope="module")
async def job_queues(stack_settings: Settings) -> AsyncIterator[JobQueues]:
    queues = create_queues(stack_settings)
    yield queues
    await queues.aclose()


@pytest.fixture
async def fresh(job_queues: JobQueues) -> Queues:
    tag = uuid.uuid4().hex[:10]
    queues = Queues(f"cli-emb-{tag}", f"cli-cls-{tag}")
    await job_queues.ensure([queues.embedding, queues.classification])
    return queues


@pytest.fixture
def storage_env(emulators: EmulatorStack, fresh: Queues) -> dict[str, str]:
    return fresh.env(emulators.storage_connection_string)
