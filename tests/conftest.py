"""Session fixtures: real local services on free ports, started once and always stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.emulators import EmulatorPorts, EmulatorStack, start_emulators, stop_emulators

ROOT = Path(__file__).resolve().parents[1]
# `make test` stops whatever is recorded here even if pytest itself is killed.
TEST_STATE_DIR = ROOT / ".devstack" / "test"


@pytest.fixture(scope="session")
def emulators() -> Iterator[EmulatorStack]:
    """Azurite (in memory) and the Cosmos DB server on free ports, for the whole session."""
    stack = start_emulators(EmulatorPorts.free(), TEST_STATE_DIR, in_memory=True)
    try:
        yield stack
    finally:
        stop_emulators(TEST_STATE_DIR)
