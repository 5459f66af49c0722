"""Local stand-ins for Azure Storage (Azurite) and Cosmos DB (@vercel/cosmosdb-server).

Never deployed. `python -m devstack.emulators start|stop|status` drives them from the
Makefile; tests use :func:`start_emulators` on free ports, and `devstack.emulators.outage`
for Cosmos DB outages that keep the data.
"""

from devstack.emulators.stack import (
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    COSMOS_EMULATOR_KEY,
    EmulatorPorts,
    EmulatorStack,
    start_emulators,
    stop_emulators,
)

__all__ = [
    "AZURITE_ACCOUNT",
    "AZURITE_KEY",
    "COSMOS_EMULATOR_KEY",
    "EmulatorPorts",
    "EmulatorStack",
    "start_emulators",
    "stop_emulators",
]
