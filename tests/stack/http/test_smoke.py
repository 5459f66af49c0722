"""`make smoke` against the local stack: the same app, host and simulator `make run` starts,
on free ports. Plus the pure parts of devstack/smoke.py (target resolution, the table)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import AsyncIterator

import pytest

from devstack.aoai_simulator import RunningSimulator
from devstack.hosted_app import AppHost
from devstack.smoke import Outcome, resolve_target, table
from tests.support.hosts import host_fixture
from tests.support.paths import REPO_ROOT
from tests.support.simulator import control_plane

ROOT = REPO_ROOT
ROWS = re.compile(
    r"^(health|chat answer|streamed chat|embedding job|filtered prompt|usage shows"
    r" the calls)\s+(PASS|FAIL)\s+(.*)$",
    re.MULTILINE,
)
# Whether this checkout's app declares the job API (JOBS_CONTRACT.md). Without it the smoke
# test's job row must fail fast with its 404 message; with it every row must pass.
HAS_JOB_API = re.search(r'route="jobs/', (ROOT / "function_app.py").read_text()) is not None

pytestmark = pytest.mark.slow


host = host_fixture("smoke-app")


@pytest.fixture
async def paced_simulator(simulator: RunningSimulator) -> AsyncIterator[None]:
    """A real model streams over seconds; the simulator answers at once unless paced."""
    async with control_plane(simulator) as client:
        paced = {"latency": {"per_token_ms": 20}}
        (await client.patch("/sim/config", json=paced)).raise_for_status()
        yield


def make_smoke(host: AppHost, *, key: str | None = None) -> subprocess.CompletedProcess[str]:
    api = host.url.removesuffix("/api")  # as SERVICE_API_URI gives it: no /api
    argv = [
        "make",
        "-s",
        "smoke",
        f"URL={api}",
        f"KEY={key or host.team_key}",
        "SMOKE_ARGS=--job-timeout 60",
    ]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=110)


def rows(output: str) -> dict[str, tuple[str, str]]:
    return {m.group(1): (m.group(2), m.group(3)) for m in ROWS.finditer(output)}


@pytest.mark.usefixtures("paced_simulator")
def test_make_smoke_against_the_local_stack(host: AppHost) -> None:
    proc = make_smoke(host)
    print(proc.stdout)  # the table, for -s and for failures
    found = rows(proc.stdout)
    assert len(found) == 6, proc.stdout + proc.stderr
    others = {name: row for name, row in found.items() if name != "embedding job"}
    assert all(result == "PASS" for result, _ in others.values()), proc.stdout
    assert found["filtered prompt"][1] == "400 content_filter"
    assert re.match(r"first frame \d+\.\d\ds, last \d+\.\d\ds", found["streamed chat"][1])
    if HAS_JOB_API:
        assert found["embedding job"][0] == "PASS", proc.stdout
        calls = int(found["usage shows the calls"][1].split()[0])
        assert calls >= 4  # three chats and at least one embeddings call
        assert proc.returncode == 0, proc.stdout
    else:
        # Fails fast and says why, instead of waiting for a job that can never run.
        result, detail = found["embedding job"]
        assert result == "FAIL"
        assert detail.startswith("POST /api/jobs/embeddings answered 404: this app has no job API")
        assert "3 calls" in found["usage shows the calls"][1]
        assert proc.returncode != 0
        assert proc.stdout.rstrip().endswith("FAILED")


def test_a_wrong_key_fails_every_keyed_check(host: AppHost) -> None:
    proc = make_smoke(host, key="not-the-key")
    found = rows(proc.stdout)
    assert proc.returncode != 0
    assert found["health"][0] == "PASS"  # anonymous
    for name in ("chat answer", "streamed chat", "embedding job", "filtered prompt"):
        assert found[name][0] == "FAIL", proc.stdout
        assert "401" in found[name][1] or "404" in found[name][1], found[name]


def test_target_comes_from_arguments_first() -> None:
    def no_azd() -> dict[str, str]:
        raise AssertionError("azd must not be asked when both are given")

    assert resolve_target("https://app.example/", "k", {}, values=no_azd) == (
        "https://app.example/api",
        "k",
    )


def test_target_from_azd() -> None:
    values = {"SERVICE_API_URI": "https://func-abc.azurewebsites.net", "TEAM_KEY": "tk-azd"}
    api, key = resolve_target(None, None, {}, values=lambda: values)
    assert (api, key) == ("https://func-abc.azurewebsites.net/api", "tk-azd")


def test_a_team_key_in_the_environment_beats_azd() -> None:
    values = {"SERVICE_API_URI": "https://x.example/api", "TEAM_KEY": "azd-key"}
    api, key = resolve_target(None, None, {"TEAM_KEY": "env-key"}, values=lambda: values)
    assert (api, key) == ("https://x.example/api", "env-key")


def test_without_a_team_key_it_says_what_to_do() -> None:
    with pytest.raises(SystemExit, match="no team key"):
        resolve_target("https://x.example", None, {}, values=dict)


def test_without_a_url_it_says_what_to_do() -> None:
    with pytest.raises(SystemExit, match="no app URL: pass --url"):
        resolve_target(None, "k", {}, values=dict)


def test_the_table_shows_each_outcome() -> None:
    text = table([Outcome("health", True, "200 ok"), Outcome("chat answer", False, "500 x")])
    assert text.splitlines()[2:] == ["health       PASS    200 ok", "chat answer  FAIL    500 x"]
