"""A host on the local stack with these settings: the real function_app.py under the local
Functions host, with the session's app settings (Azurite, the Cosmos DB server, the simulator)
plus a module's own."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from devstack.hosted_app import AppHost, fresh_queues, make_app_dir, run_app_host
from devstack.provision import provision
from shared.core.settings import load_settings

# The app's client retries once and gives up after 10 s, so a test of a 429 or a timeout waits
# for one retry, not the default three.
HOST_SETTINGS = {"AOAI_MAX_RETRIES": "1", "AOAI_TIMEOUT_SECONDS": "10"}


@contextmanager
def app_host(environ: Mapping[str, str], app_dir: Path) -> Iterator[AppHost]:
    """A host of the app in `app_dir` with `environ`, its containers and queues provisioned
    first (idempotent). From a sync fixture: provisioning runs its own event loop."""
    asyncio.run(provision(load_settings(environ)))
    with run_app_host(make_app_dir(app_dir, environ)) as host:
        yield host


def host_fixture(
    name: str, settings: Mapping[str, str] | None = None, *, own_queues: bool = False
) -> Any:
    """A test module's `host` fixture: `app_host` once per module with the session's app
    settings plus `settings`, in a folder named `name`. `own_queues`: queues of its own named
    after `name`, so no other host of the session takes its messages."""

    @pytest.fixture(scope="module")
    def host(
        app_environ: dict[str, str], tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[AppHost]:
        queues = fresh_queues(name) if own_queues else {}
        environ = {**app_environ, **queues, **(settings or {})}
        with app_host(environ, tmp_path_factory.mktemp(name)) as running:
            yield running

    return host
