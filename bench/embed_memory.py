"""Host peak memory with 3,072-dimension embedding jobs: the local host's resident-set high-water
mark (VmHWM) while several large jobs run at once, with today's caps (the defaults of
EMBEDDING_MAX_FLOATS_PER_REQUEST and JOB_MEMORY_BUDGET_MIB) against the old packing in the
same run (up to 2,048 inputs a request, no budget), each on a fresh host process.

    .venv/bin/python -m bench.embed_memory [--jobs 4] [--items 1024]

The simulator answers at once with no quota (the memory bound, not the quota, is measured), on
a text-embedding-3-large deployment (3,072 floats a vector, as the SDK decodes them from
base64). The jobs are submitted together, so their messages run at once on the one host, as
on a Flex Consumption instance. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench._jobs import Rig, Stack, job_totals, print_result, rig, submit, wait_jobs
from bench._proc import machine
from bench._timescale import TimeScale
from devstack.aoai_simulator import SimulatorConfig
from devstack.aoai_simulator.config import DeploymentConfig, default_deployments

LARGE = "text-embedding-3-large"
UNCAPPED = {
    "EMBEDDING_MAX_FLOATS_PER_REQUEST": str(2048 * 3072),  # the old packing: 2,048 inputs
    "JOB_MEMORY_BUDGET_MIB": "1000000",  # no budget
}


async def load(rig_: Rig, args: argparse.Namespace) -> dict[str, Any]:
    async with rig_.app() as app:
        started = time.monotonic()
        job_ids = [
            await submit(
                app,
                "embeddings",
                {
                    "items": [
                        {"id": f"j{j}-{i}", "text": f"item {i} of job {j} about parcels"}
                        for i in range(args.items)
                    ],
                    "model": LARGE,
                    "dimensions": 3072,
                },
            )
            for j in range(args.jobs)
        ]
        views = await wait_jobs(app, job_ids, within=args.within)
    totals = job_totals(views)
    return {
        "seconds": round(time.monotonic() - started, 1),
        "host_peak_rss_mib": rig_.peak_rss_mib()[0],
        "items_by_outcome": totals,
    }


def measure(stack: Stack, settings: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    app_settings = {"AOAI_DEPLOYMENTS": f'{{"{LARGE}": "{LARGE}"}}', **settings}
    with stack.host(app_settings) as running:
        idle = running.peak_rss_mib()[0]
        return {"host_idle_rss_mib": idle, **asyncio.run(load(running, args))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=4, help="jobs submitted at once")
    parser.add_argument("--items", type=int, default=2048, help="items per job")
    parser.add_argument("--within", type=float, default=900, help="seconds the jobs may take")
    args = parser.parse_args(argv)
    config = SimulatorConfig(
        deployments=[
            *default_deployments(),
            DeploymentConfig(name=LARGE, model=LARGE, kind="embedding", tpm=0, rpm=0),
        ]
    )
    with rig(config, TimeScale(60.0)) as stack:
        capped = measure(stack, {}, args)
        uncapped = measure(stack, UNCAPPED, args)
    print_result(
        {
            "benchmark": "embed_memory",
            "workload": f"{args.jobs} jobs of {args.items} items at 3,072 dimensions, at once",
            **machine(),
            "capped": capped,
            "uncapped": uncapped,
            "host_peak_rss_mib_embed_3072": capped["host_peak_rss_mib"],
            "host_peak_rss_mib_embed_3072_uncapped": uncapped["host_peak_rss_mib"],
        }
    )


if __name__ == "__main__":
    main()
