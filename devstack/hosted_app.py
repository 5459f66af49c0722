"""Run the real app under the local Functions host, as a separate process (tests, benchmarks).

The app folder is a temporary directory holding links to `function_app.py`, `shared/` and
`host.json` plus a `local.settings.json` pointing at the test stack, so the developer's own
`local.settings.json` is never read or changed.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from devstack.emulators import COSMOS_EMULATOR_KEY, EmulatorStack
from devstack.emulators.processes import free_port
from devstack.local_team import ensure_team

ROOT = Path(__file__).resolve().parents[1]  # the repository
FUNCTION_KEY = "test-function-key"
MASTER_KEY = "test-master-key"  # admin routes (the team registry) take only this one
# A made-up value for test stacks only; real ones are generated (make run) or in Key Vault.
TEST_USER_HASH_SECRET = "test-user-hash-secret-0123456789abcdef"  # noqa: S105
TEST_TEAM_KEY_HASH_SECRET = "test-team-key-hash-secret-0123456789abcdef"  # noqa: S105
# The key of each (database, team) the hosts of this process made: shown once by the API.
_TEAM_KEYS: dict[tuple[str, str], str] = {}
# What App Service authentication sets for a signed-in operator with the `Admin` app role: how
# a host with ENTRA_AUTH on gets its team (the local host, like the app, trusts the header).
_OPERATOR = {
    "x-ms-client-principal": base64.b64encode(
        json.dumps(
            {
                "auth_typ": "aad",
                "role_typ": "roles",
                "claims": [
                    {"typ": "oid", "val": "00000000-0000-0000-0000-0000000000ad"},
                    {"typ": "roles", "val": "Admin"},
                ],
            }
        ).encode()
    ).decode()
}


def stack_environ(stack: EmulatorStack, **overrides: str) -> dict[str, str]:
    """App settings pointing at the local emulators (Azure OpenAI endpoint to be overridden)."""
    return {
        "AZURE_OPENAI_ENDPOINT": "http://127.0.0.1:9",
        "AZURE_OPENAI_API_KEY": "local-simulator-key",
        "CHAT_DEPLOYMENT": "gpt-4o",
        "EMBEDDING_DEPLOYMENT": "text-embedding-3-small",
        "COSMOS_ENDPOINT": stack.cosmos_endpoint,
        "COSMOS_KEY": COSMOS_EMULATOR_KEY,
        "COSMOS_VERIFY_TLS": "false",
        "COSMOS_DATABASE": "aoai-test",
        "AzureWebJobsStorage": stack.storage_connection_string,
        # Trigger bindings name their queues as %SETTING%: the host needs each one set.
        "EMBEDDING_QUEUE": "embedding-jobs",
        "CLASSIFICATION_QUEUE": "classification-jobs",
        "OUTBOX_QUEUE": "cosmos-outbox",
        "POISON_SWEEP_SCHEDULE": "*/5 * * * * *",
        "BATCH_POLL_SCHEDULE": "0 */5 * * * *",
        "USAGE_ROLLUP_SCHEDULE": "*/2 * * * * *",
        "USER_HASH_SECRET": TEST_USER_HASH_SECRET,
        "TEAM_KEY_HASH_SECRET": TEST_TEAM_KEY_HASH_SECRET,
        **overrides,
    }


def fresh_queues(prefix: str) -> dict[str, str]:
    """Queue settings of its own for a stack (tests, benchmarks, the soak), so hosts of other
    stacks sharing the same Azurite never take its messages."""
    suffix = uuid.uuid4().hex[:8]
    return {
        "EMBEDDING_QUEUE": f"{prefix}-emb-{suffix}",
        "CLASSIFICATION_QUEUE": f"{prefix}-cls-{suffix}",
        "OUTBOX_QUEUE": f"{prefix}-out-{suffix}",
    }


@dataclass(frozen=True)
class AppHost:
    url: str  # http://127.0.0.1:<port>/api
    key: str
    log: Path
    master_key: str = MASTER_KEY
    # The key of the host's own team, made through the admin API when it started (empty when
    # Cosmos DB could not be reached then): what a product team's code would present.
    team_key: str = ""
    team: str = ""

    def headers(self) -> dict[str, str]:
        """The host's function key (routes at `function` level) and its team's key in
        `api-key` (the data-plane routes), as one product team's client would send them."""
        headers = {"x-functions-key": self.key}
        if self.team_key:
            headers["api-key"] = self.team_key
        return headers

    def admin_headers(self) -> dict[str, str]:
        """The master key, which `admin` routes take (a function key is refused there)."""
        return {"x-functions-key": self.master_key}


def make_app_dir(target: Path, environ: Mapping[str, str]) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in ("function_app.py", "shared", "host.json"):
        link = target / name
        if not link.exists():
            link.symlink_to(ROOT / name)
    values = {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "PYTHON_ENABLE_INIT_INDEXING": "1",
        "LOCAL_FUNCTION_KEY": FUNCTION_KEY,
        "LOCAL_MASTER_KEY": MASTER_KEY,
        **environ,
    }
    (target / "local.settings.json").write_text(json.dumps({"Values": values}))
    return target


class HostProcess:
    """One host process for an app folder: started, killed (SIGKILL, as a crashed instance)
    and started again on the same port. Its output goes to `log` (appended across restarts)."""

    def __init__(
        self,
        app_dir: Path,
        *,
        log: Path | None = None,
        host_args: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.app_dir = app_dir
        self.port = free_port()
        self.log = log or app_dir / "host.log"
        self._args = list(host_args)
        self._extra_env = dict(extra_env or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self._team: tuple[str, str] = ("", "")  # id and key, made on the first start

    @property
    def host(self) -> AppHost:
        team, key = self._team
        url = f"http://127.0.0.1:{self.port}/api"
        return AppHost(url=url, key=FUNCTION_KEY, log=self.log, team_key=key, team=team)

    def _make_team(self, url: str) -> None:
        """The host's team: DEFAULT_TEAM of its settings (so a job message dropped on its
        queues without a `team` is that team's too), made through the admin API once per
        database and key per test process, so every host of a session acts as one team.
        Left without one when the app cannot make it (a host whose Cosmos DB is down)."""
        if self._team[1]:
            return
        values = json.loads((self.app_dir / "local.settings.json").read_text())["Values"]
        team = str(values.get("DEFAULT_TEAM") or "default")
        known = _TEAM_KEYS.get((values.get("COSMOS_DATABASE", ""), team))
        if known is None:
            operator = _OPERATOR if values.get("ENTRA_AUTH", "").lower() == "true" else None
            try:
                with httpx.Client(base_url=url, timeout=30.0) as client:
                    known = ensure_team(client, MASTER_KEY, team, operator=operator)
            except (httpx.HTTPError, RuntimeError):
                return
            _TEAM_KEYS[(values.get("COSMOS_DATABASE", ""), team)] = known
        self._team = (team, known)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self, timeout: float = 60.0) -> AppHost:
        """Start the host and wait until it answers HTTP."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "COSMOS_"))}
        env["PYTHONPATH"] = str(ROOT)
        env.update(self._extra_env)
        with self.log.open("ab") as out:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "devstack.functions_host",
                    "--app-dir",
                    str(self.app_dir),
                    "--port",
                    str(self.port),
                    "--shutdown-grace",
                    "5",
                    "--on-stop",
                    "shared.runtime:close_runtime",
                    *self._args,
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        proc, host = self._proc, self.host
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the host exited early:\n{self.log.read_text()}")
            try:
                httpx.get(f"{host.url}/openapi.json", timeout=1.0)
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    self.kill()
                    text = self.log.read_text()
                    raise TimeoutError(f"the host did not listen:\n{text}") from None
                time.sleep(0.1)
                continue
            self._make_team(host.url)
            return self.host

    def kill(self) -> None:
        """SIGKILL: no draining, no released messages; their leases run out."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def stop(self) -> None:
        """SIGTERM: in-flight invocations get the shutdown grace, then the rest is released."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def run_app_host(
    app_dir: Path,
    *,
    timeout: float = 60.0,
    extra_env: Mapping[str, str] | None = None,
    host_args: Sequence[str] = (),
) -> Iterator[AppHost]:
    process = HostProcess(app_dir, host_args=host_args, extra_env=extra_env)
    try:
        yield process.start(timeout)
    finally:
        process.stop()
