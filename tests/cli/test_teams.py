"""`python -m cli teams ...` against the real app: function_app.py under the local Functions
host with the Cosmos DB server, with the master key the registry's routes take."""

from __future__ import annotations

import json
import uuid

import pytest

from devstack.hosted_app import AppHost
from tests.cli.conftest import ainvoke
from tests.support.hosts import host_fixture

host = host_fixture("cli-teams")


@pytest.fixture
def admin_env(host: AppHost) -> dict[str, str]:
    return {"JOBS_API_URL": host.url, "ADMIN_API_KEY": host.master_key}


def new_team_id() -> str:
    return f"cli-{uuid.uuid4().hex[:10]}"


async def test_create_show_update_rotate_and_revoke(admin_env: dict[str, str]) -> None:
    team_id = new_team_id()
    created = await ainvoke(
        ["teams", "create", team_id, "--model", "gpt-4o", "--tpm", "1000", "--monthly-usd", "5"],
        admin_env,
    )
    assert created.exit_code == 0, created.stderr
    answer = json.loads(created.stdout)
    assert answer["key"].startswith(f"tk_{team_id}_{answer['key_id']}_")
    assert (answer["team"]["tpm"], answer["team"]["monthly_usd"]) == (1000, 5)
    assert "shown this once" in created.stderr
    assert answer["key"] not in created.stderr

    listed = await ainvoke(["teams", "list"], admin_env)
    assert listed.exit_code == 0, listed.stderr
    assert team_id in listed.stdout
    assert answer["key"] not in listed.stdout

    updated = await ainvoke(
        ["teams", "update", team_id, "--clear", "tpm", "--daily-tokens", "9000", "--disable"],
        admin_env,
    )
    assert updated.exit_code == 0, updated.stderr
    team = json.loads(updated.stdout)
    assert (team["tpm"], team["daily_tokens"], team["disabled"]) == (None, 9000, True)

    second = await ainvoke(["teams", "new-key", team_id], admin_env)
    assert second.exit_code == 0, second.stderr
    second_id = json.loads(second.stdout)["key_id"]
    third = await ainvoke(["teams", "new-key", team_id], admin_env)
    assert third.exit_code == 6
    assert "409 conflict" in third.stderr
    assert "revoke one first" in third.stderr

    revoked = await ainvoke(["teams", "revoke", team_id, answer["key_id"]], admin_env)
    assert revoked.exit_code == 0, revoked.stderr
    shown = await ainvoke(["teams", "show", team_id], admin_env)
    keys = {k["id"]: k for k in json.loads(shown.stdout)["keys"]}
    assert keys[answer["key_id"]]["revoked_at"] is not None
    assert keys[second_id]["revoked_at"] is None
    assert '"hash"' not in shown.stdout


async def test_a_bad_team_is_refused_before_any_request(admin_env: dict[str, str]) -> None:
    result = await ainvoke(["teams", "create", "Bad_Id", "--tpm", "0"], admin_env)
    assert result.exit_code == 2
    assert "invalid team: id" in result.stderr
    assert "invalid team: tpm" in result.stderr


async def test_errors_of_the_api_are_one_line_and_exit_6(
    admin_env: dict[str, str], host: AppHost
) -> None:
    missing = await ainvoke(["teams", "show", new_team_id()], admin_env)
    assert missing.exit_code == 6
    assert "404 not_found" in missing.stderr
    function_key = await ainvoke(["teams", "list"], {**admin_env, "ADMIN_API_KEY": host.key})
    assert function_key.exit_code == 6
    assert "401" in function_key.stderr
