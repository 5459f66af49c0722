"""A faithful local Azure OpenAI data-plane simulator. See docs/simulator.md.

from devstack.aoai_simulator import SimulatorConfig, start_simulator
with start_simulator(SimulatorConfig(), port=0) as sim:
    client = AzureOpenAI(
        azure_endpoint=sim.url, api_key=sim.api_key, api_version="2025-04-01-preview"
    )
"""

from .app import create_app
from .config import (
    BatchConfig,
    DeploymentConfig,
    EmbeddingLimits,
    FaultConfig,
    FilterRule,
    LatencyConfig,
    RateLimitConfig,
    SimulatorConfig,
    load_config,
)
from .server import RunningSimulator, start_simulator

__all__ = [
    "BatchConfig",
    "DeploymentConfig",
    "EmbeddingLimits",
    "FaultConfig",
    "FilterRule",
    "LatencyConfig",
    "RateLimitConfig",
    "RunningSimulator",
    "SimulatorConfig",
    "create_app",
    "load_config",
    "start_simulator",
]
