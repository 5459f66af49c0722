"""The soak's stack: persistent emulators (their data must outlive restarts), the Cosmos DB
server behind a fault proxy, the simulator in its own process, and N hosts of the app sharing
the same queues and database, as Flex Consumption instances compete for messages.

Every host has the same settings and a short queue lease (`--message-lease`), so the messages
of a host killed with SIGKILL come back within the run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench._serve import serve_simulator
from devstack.aoai_simulator import SimulatorConfig
from devstack.aoai_simulator.config import BatchConfig, LatencyConfig
from devstack.emulators import EmulatorPorts, EmulatorStack, start_emulators, stop_emulators
from devstack.emulators.outage import FaultProxy
from devstack.hosted_app import HostProcess, fresh_queues, make_app_dir, stack_environ
from devstack.provision import provision
from shared.core.settings import load_settings

BATCH_DEPLOYMENT = "gpt-4o-batch"

# Short waits everywhere, so that each fault's consequences play out within the run.
SOAK_SETTINGS = {
    "BATCH_DEPLOYMENT": BATCH_DEPLOYMENT,
    "AOAI_TIMEOUT_SECONDS": "5",  # a hung request (hang_seconds 15) times out
    "AOAI_MAX_RETRIES": "1",
    # Job retries in compressed time, 60 times faster than the defaults: a backoff of 0.1 s
    # (5 s), parked for 15 s (900 s), JOB_MAX_AGE 1,440 s (24 h); a 60 s outage is an hour.
    "JOB_BACKOFF_SECONDS": "0.1",
    "JOB_PARK_SECONDS": "15",
    "JOB_MAX_AGE": "1440",
    "JOB_LEASE_SECONDS": "20",  # a killed host's lease on its job expires within the run
    "JOB_SLICE_SECONDS": "15",  # large jobs move on in slices: continuations
    "JOB_CONCURRENCY": "4",
    "CLASSIFY_ITEMS_PER_REQUEST": "5",
    "POISON_SWEEP_SCHEDULE": "*/3 * * * * *",
    "BATCH_POLL_SCHEDULE": "*/3 * * * * *",
    "BATCH_LEASE_SECONDS": "20",  # a killed poller's claim expires within the run
    "BATCH_RETRY_SECONDS": "2",
    "BATCH_CHECKPOINT_LINES": "20",
    "USAGE_ROLLUP_SCHEDULE": "*/10 * * * * *",
    # The simulator's own quotas, so every call and job of the three hosts is paced through
    # the shared quota ledger in Cosmos DB, which the Cosmos DB faults then take away.
    "AOAI_QUOTAS": json.dumps(
        {
            "gpt-4o": {"tpm": 1_000_000, "rpm": 6_000},
            "text-embedding-3-small": {"tpm": 10_000_000, "rpm": 6_000},
        }
    ),
}


def simulator_config() -> SimulatorConfig:
    """Default deployments and quotas (the 429s come from the fault schedule), a little
    latency so that requests are in flight when faults strike, and quick batches."""
    return SimulatorConfig(
        latency=LatencyConfig(request_ms=30, jitter_ms=40),
        batch=BatchConfig(validating_seconds=1, in_progress_seconds=2, finalizing_seconds=1),
    )


@dataclass
class SoakStack:
    emulators: EmulatorStack
    proxy: FaultProxy
    sim_url: str
    environ: dict[str, str]
    hosts: list[HostProcess]
    # The local ports each killed host held, with when it was killed (soak/ports.py): an
    # answer the simulator gave one of them died with the process.
    killed_ports: dict[int, list[float]] = field(default_factory=dict)

    @property
    def connection_string(self) -> str:
        return self.emulators.storage_connection_string

    @property
    def cosmos_direct(self) -> dict[str, str]:
        """The app's settings with Cosmos DB reached directly (the checks bypass the proxy)."""
        return {**self.environ, "COSMOS_ENDPOINT": self.emulators.cosmos_endpoint}

    def queues(self) -> list[str]:
        """Every queue the app reads, with their poison queues (the outbox's is swept too)."""
        names = [
            self.environ[k] for k in ("EMBEDDING_QUEUE", "CLASSIFICATION_QUEUE", "OUTBOX_QUEUE")
        ]
        return [*names, *(f"{n}-poison" for n in names)]


@contextmanager
def soak_stack(tmp: Path, *, hosts: int, lease_seconds: float) -> Iterator[SoakStack]:
    """Start everything in `tmp`; stop everything after, whatever happened."""
    state = tmp / "emulators"
    emulators = start_emulators(EmulatorPorts.free(), state, in_memory=False)
    try:
        with ExitStack() as stack:
            proxy = stack.enter_context(FaultProxy(emulators.ports.cosmos))
            config = simulator_config()
            # "critical": each injected drop would log an error
            sim_url = stack.enter_context(serve_simulator(config, tmp, log_level="critical"))
            environ = stack_environ(
                emulators,
                AZURE_OPENAI_ENDPOINT=sim_url,
                AZURE_OPENAI_API_KEY=config.api_keys[0],
                COSMOS_ENDPOINT=proxy.endpoint(),
                **fresh_queues("soak"),
                **SOAK_SETTINGS,
            )
            asyncio.run(provision(load_settings(environ)))
            processes = [
                HostProcess(
                    make_app_dir(tmp / f"host-{i}", environ),
                    host_args=["--message-lease", str(lease_seconds)],
                )
                for i in range(hosts)
            ]
            for process in processes:
                stack.callback(process.stop)
                process.start()
            yield SoakStack(emulators, proxy, sim_url, environ, processes)
    finally:
        stop_emulators(state, grace=10.0)
