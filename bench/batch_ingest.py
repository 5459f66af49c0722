"""Batch ingestion: lines per second and peak memory for a 100,000-line output file, streamed
line by line (what `poll_batches` does) against reading the file whole.

    .venv/bin/python -m bench.batch_ingest [--lines 100000]

Starts the simulator in its own process, uploads a Batch API output file of `--lines` lines
(chat completions answering one item each, as the simulator writes them) and reads it back
with the openai SDK two ways, parsing every line into its result with
`shared.batch_files.read_line`, as the poller does:

- streamed: `files.with_streaming_response.content(...).iter_lines()`, keeping one
  checkpoint's worth of outcomes (`BATCH_CHECKPOINT_LINES`, 1,000) at a time;
- whole: `files.content(...)`, then the lines of the text.

Cosmos DB writes are left out: they cost the same either way, and the point is what the
file's size does to the poller. Lines per second come from a run without tracemalloc; peak
memory (Python allocations) from a second run under tracemalloc. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from openai import AsyncAzureOpenAI

from bench._serve import serve_simulator
from devstack.aoai_simulator import SimulatorConfig
from shared.jobs.batch.files import LineOutcome, read_line
from shared.jobs.models import JobSpec

API_VERSION = "2025-04-01-preview"
KEY = "bench-key"
JOB = "bench-job"
CHECKPOINT = 1000
SPEC = JobSpec(deployment="gpt-4o-batch", labels=["billing", "shipping", "technical"])


def output_line(index: int) -> str:
    item = f"item-{index}"
    answer = {"results": [{"id": item, "label": SPEC.labels[index % 3]}]}  # type: ignore[index]
    body = {
        "id": f"chatcmpl-{index}",
        "object": "chat.completion",
        "created": 1764000000,
        "model": "gpt-5.1-2025-11-13",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "logprobs": None,
                "message": {"role": "assistant", "content": json.dumps(answer), "refusal": None},
                "content_filter_results": {
                    name: {"filtered": False, "severity": "safe"}
                    for name in ("hate", "self_harm", "sexual", "violence")
                },
            }
        ],
        "usage": {"prompt_tokens": 96, "completion_tokens": 14, "total_tokens": 110},
    }
    line = {
        "id": f"batch_req_{index:032x}",
        "custom_id": f"{JOB}:{item}",
        "response": {"status_code": 200, "request_id": f"req-{index}", "body": body},
        "error": None,
    }
    return json.dumps(line)


def parse(text: str, held: list[LineOutcome]) -> None:
    outcome = read_line(text, JOB, "classification", SPEC)
    assert outcome is not None
    assert outcome.result is not None
    held.append(outcome)


async def streamed(client: AsyncAzureOpenAI, file_id: str) -> int:
    count = 0
    held: list[LineOutcome] = []
    async with client.files.with_streaming_response.content(file_id) as response:
        async for text in response.iter_lines():
            parse(text, held)
            count += 1
            if len(held) >= CHECKPOINT:
                held.clear()  # written and checkpointed by the poller
    return count


async def whole(client: AsyncAzureOpenAI, file_id: str) -> int:
    held: list[LineOutcome] = []
    content = await client.files.content(file_id)
    lines = content.text.splitlines()
    for text in lines:
        parse(text, held)
        if len(held) >= CHECKPOINT:
            held.clear()
    return len(lines)


async def measure(
    url: str, file_id: str, read: Callable[[AsyncAzureOpenAI, str], Awaitable[int]]
) -> dict[str, Any]:
    async with AsyncAzureOpenAI(azure_endpoint=url, api_key=KEY, api_version=API_VERSION) as c:
        started = time.perf_counter()
        lines = await read(c, file_id)
        seconds = time.perf_counter() - started
        tracemalloc.start()
        try:
            await read(c, file_id)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    return {
        "lines": lines,
        "seconds": round(seconds, 3),
        "lines_per_s": round(lines / seconds) if seconds else None,
        "peak_mib": round(peak / 2**20, 1),
    }


async def run(url: str, lines: int) -> dict[str, Any]:
    data = ("\n".join(output_line(i) for i in range(lines)) + "\n").encode()
    async with AsyncAzureOpenAI(azure_endpoint=url, api_key=KEY, api_version=API_VERSION) as c:
        file_id = (await c.files.create(file=("output.jsonl", data), purpose="batch")).id
    del data
    return {
        "streamed": await measure(url, file_id, streamed),
        "whole": await measure(url, file_id, whole),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=100_000)
    args = parser.parse_args(argv)
    file_bytes = sum(len(output_line(i)) + 1 for i in range(args.lines))
    config = SimulatorConfig.model_validate({"api_keys": [KEY]})
    with tempfile.TemporaryDirectory() as tmp, serve_simulator(config, Path(tmp)) as url:
        figures = asyncio.run(run(url, args.lines))
    streamed_, whole_ = figures["streamed"], figures["whole"]
    result = {
        "benchmark": "batch_ingest",
        "workload": f"{args.lines} output lines (one classified item each), read with the openai "
        "SDK and parsed into results; Cosmos DB writes excluded",
        "cpus": os.cpu_count(),
        "file_mib": round(file_bytes / 2**20, 1),
        "checkpoint_lines": CHECKPOINT,
        "streamed": streamed_,
        "whole": whole_,
        "peak_memory_whole_vs_streamed": round(whole_["peak_mib"] / streamed_["peak_mib"], 1)
        if streamed_["peak_mib"]
        else None,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
