"""`python -m devstack.aoai_simulator --port 8090 [--host 127.0.0.1] [--config FILE]`."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from .app import create_app
from .config import SimulatorConfig, load_config

log = logging.getLogger("devstack.aoai_simulator")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.aoai_simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--config", help="a YAML or JSON SimulatorConfig file")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    config = load_config(args.config) if args.config else SimulatorConfig()
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s %(message)s")
    log.info(
        "Azure OpenAI simulator on http://%s:%s (deployments: %s)",
        args.host,
        args.port,
        ", ".join(d.name for d in config.deployments),
    )
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
