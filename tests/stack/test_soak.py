"""The short soak: the whole fault schedule (429s long and short, 500s, 503s, hangs, drops,
Cosmos DB cut off and restarted, Azurite restarted, a host killed) over a minute of jobs on
three hosts, then an hour-long (in compressed time) outage of Azure OpenAI and one of Cosmos
DB, then the soak's own end checks: nothing lost, duplicated or sent upstream twice. Run as
`make soak` does, in a subprocess with its own emulators, simulator and hosts on free ports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT
FAULT_KINDS = {
    "429_short",
    "429_long",
    "500",
    "503",
    "hang",
    "drop",
    "cosmos_outage",
    "cosmos_restart",
    "azurite_restart",
    "kill_host",
    "store_paused_answers",
    "aoai_long_outage",
    "cosmos_long_outage",
}


@pytest.mark.timeout(960)  # ~260 s alone; the fault schedule is fixed, the drain is not
def test_short_soak_loses_and_duplicates_nothing() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "soak", "--duration", "60", "--rate", "0.5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = run.stdout + run.stderr
    lines = [line for line in run.stdout.splitlines() if line.startswith('{"soak"')]
    assert lines, output
    figures = json.loads(lines[-1])["soak"]
    assert run.returncode == 0, output
    assert figures["lost"] == 0, output
    assert figures["duplicated"] == 0, output
    assert figures["sent_twice"] == 0, output
    assert figures["problems"] == [], output
    assert set(figures["fault_kinds"]) == FAULT_KINDS
    assert figures["jobs"] >= 20, figures
    assert figures["items"] >= 200, figures
    # The faults were felt: work was handed on, and the simulator answered 429s.
    assert figures["continuations"] > 0, figures
    assert figures["simulator_429"] > 0, figures
    assert all(depth == 0 for depth in figures["queues"].values()), figures["queues"]
