"""The team registry end to end (#22 items 1 and 2): the real function_app.py under the local
Functions host, the Cosmos DB server, driven over loopback with the master key its admin routes
take; keys checked with a TeamDirectory over the same database, as the data-plane routes will.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from devstack.hosted_app import AppHost
from shared.core.settings import Settings
from shared.core.store import TEAMS, Store
from shared.metering.team_directory import TeamDirectory
from shared.metering.teams import TeamStore
from tests.support.hosts import host_fixture

host = host_fixture("teams")
# The same app with App Service authentication's principal trusted: the Admin app role.
entra_host = host_fixture("teams-entra", {"ENTRA_AUTH": "true"})


@pytest.fixture
async def admin(host: AppHost) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=host.url, headers=host.admin_headers(), timeout=30) as c:
        yield c


class Clock:
    """The directory's clock, moved by the test: cache expiry without a sleep."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def new_team_id() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def directory(store: Store, settings: Settings, clock: Clock | None = None) -> TeamDirectory:
    secret = settings.team_key_hash_secret.get_secret_value().encode()
    return TeamDirectory(TeamStore(store), secret, clock=clock or Clock())


async def create(admin: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await admin.post("/teams", json={"id": new_team_id(), **body})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert response.headers["x-request-id"]
    error: dict[str, Any] = body["error"]
    return error


# --- create, show, list ---------------------------------------------------------------------


async def test_create_answers_201_with_the_team_and_its_key_shown_once(
    admin: httpx.AsyncClient, store: Store, app_settings: Settings
) -> None:
    team_id = new_team_id()
    body = {
        "id": team_id,
        "models": ["gpt-4o"],
        "tpm": 100000,
        "daily_tokens": 2000000,
        "monthly_usd": 500,
    }
    response = await admin.post("/teams", json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == {"team", "key_id", "key"}
    key, key_id = created["key"], created["key_id"]
    assert key.startswith(f"tk_{team_id}_{key_id}_")
    team = created["team"]
    assert (team["id"], team["models"], team["tpm"], team["daily_tokens"]) == (
        team_id,
        ["gpt-4o"],
        100000,
        2000000,
    )
    assert (team["monthly_usd"], team["max_tokens"], team["disabled"]) == (500, None, False)
    assert team["keys"] == [
        {
            "id": key_id,
            "prefix": f"tk_{team_id}_{key_id}",
            "created_at": team["keys"][0]["created_at"],
            "revoked_at": None,
        }
    ]
    # Stored: the keyed hash only, never the key.
    stored = await store.read(TEAMS, team_id, team_id)
    assert stored is not None
    secret = app_settings.team_key_hash_secret.get_secret_value().encode()
    expected = hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()
    assert stored["keys"][0]["hash"] == expected
    assert key not in json.dumps(stored)
    assert key[len(f"tk_{team_id}_{key_id}_") :] not in json.dumps(stored)
    # Shown once: no later answer carries the key or its hash.
    for later in (await admin.get(f"/teams/{team_id}"), await admin.get("/teams")):
        assert later.status_code == 200
        assert key not in later.text
        assert expected not in later.text
        assert '"hash"' not in later.text
    assert expected not in response.text
    # And the directory knows the team by it.
    found = await directory(store, app_settings).authenticate(key)
    assert found is not None
    assert found.id == team_id


async def test_a_taken_id_is_409_and_changes_nothing(
    admin: httpx.AsyncClient, store: Store
) -> None:
    created = await create(admin, tpm=10)
    team_id = created["team"]["id"]
    again = await admin.post("/teams", json={"id": team_id, "tpm": 99})
    assert_error(again, 409, "conflict")
    stored = await store.read(TEAMS, team_id, team_id)
    assert stored is not None
    assert stored["tpm"] == 10
    assert [k["id"] for k in stored["keys"]] == [created["key_id"]]


@pytest.mark.parametrize(
    "body",
    [
        {"id": "Bad_Id"},
        {"id": "x"},
        {"id": "1abc"},
        {"tpm": 5},
        {"id": "ok-id", "tpm": 0},
        {"id": "ok-id", "daily_tokens": -1},
        {"id": "ok-id", "monthly_usd": "500"},
        {"id": "ok-id", "max_tokens": 1.5},
        {"id": "ok-id", "members": ["not-a-guid"]},
        {"id": "ok-id", "tmp": 100},
        {"id": "ok-id", "keys": [{"id": "00000000"}]},
    ],
)
async def test_a_bad_id_limit_or_field_is_400(
    admin: httpx.AsyncClient, store: Store, body: dict[str, Any]
) -> None:
    error = assert_error(await admin.post("/teams", json=body), 400, "invalid_request")
    assert error["details"], "pydantic's details say which field"
    assert await store.read(TEAMS, "ok-id", "ok-id") is None


async def test_a_body_that_is_not_json_is_400(admin: httpx.AsyncClient) -> None:
    response = await admin.post("/teams", content=b"{nope", headers={"content-type": "x"})
    assert_error(response, 400, "invalid_request")


async def test_list_holds_every_team_without_hashes(admin: httpx.AsyncClient) -> None:
    first, second = await create(admin), await create(admin)
    response = await admin.get("/teams")
    assert response.status_code == 200
    ids = [t["id"] for t in response.json()["teams"]]
    assert {first["team"]["id"], second["team"]["id"]} <= set(ids)
    assert ids == sorted(ids)
    assert '"hash"' not in response.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/teams/{missing}"),
        ("PATCH", "/teams/{missing}"),
        ("POST", "/teams/{missing}/keys"),
        ("DELETE", "/teams/{missing}/keys/0a1b2c3d"),
        ("GET", "/teams/NOT_AN_ID"),
        ("DELETE", "/teams/{known}/keys/0a1b2c3d"),
        ("DELETE", "/teams/{known}/keys/not-a-key-id"),
    ],
)
async def test_an_unknown_team_or_key_is_404(
    admin: httpx.AsyncClient, method: str, path: str
) -> None:
    known = (await create(admin))["team"]["id"]
    url = path.format(missing=new_team_id(), known=known)
    body = {"tpm": 5} if method == "PATCH" else None
    assert_error(await admin.request(method, url, json=body), 404, "not_found")


# --- change ---------------------------------------------------------------------------------


async def test_patch_changes_what_it_names_and_null_clears_a_limit(
    admin: httpx.AsyncClient,
) -> None:
    created = await create(admin, tpm=100, daily_tokens=1000, models=["gpt-4o"])
    team_id = created["team"]["id"]
    member = str(uuid.uuid4()).upper()
    response = await admin.patch(
        f"/teams/{team_id}",
        json={"tpm": None, "monthly_usd": 12.5, "members": [member], "max_tokens": 256},
    )
    assert response.status_code == 200, response.text
    team = response.json()
    assert (team["tpm"], team["daily_tokens"], team["monthly_usd"], team["max_tokens"]) == (
        None,
        1000,
        12.5,
        256,
    )
    assert team["models"] == ["gpt-4o"]
    assert team["members"] == [member.lower()]
    assert team["updated_at"] > created["team"]["updated_at"]
    shown = (await admin.get(f"/teams/{team_id}")).json()
    assert shown.pop("spend")["daily_tokens"] == 1000
    assert shown == team


@pytest.mark.parametrize(
    "body", [{"tpm": 0}, {"disabled": None}, {"id": "renamed"}, {"keys": []}, {"budget": 1}]
)
async def test_a_bad_patch_is_400_and_changes_nothing(
    admin: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    created = await create(admin, tpm=100)
    team_id = created["team"]["id"]
    assert_error(await admin.patch(f"/teams/{team_id}", json=body), 400, "invalid_request")
    shown = (await admin.get(f"/teams/{team_id}")).json()
    assert shown.pop("spend")["tpm"] == 100
    assert shown == created["team"]


# --- keys: rotation with overlap, revocation -------------------------------------------------


async def test_two_live_keys_at_most_then_revoke_one_to_rotate(
    admin: httpx.AsyncClient, store: Store, app_settings: Settings
) -> None:
    created = await create(admin)
    team_id, first_key, first_id = created["team"]["id"], created["key"], created["key_id"]
    second = await admin.post(f"/teams/{team_id}/keys")
    assert second.status_code == 201, second.text
    assert set(second.json()) == {"key_id", "key"}
    second_key, second_id = second.json()["key"], second.json()["key_id"]
    assert second_id != first_id
    # Both work while they overlap.
    teams = directory(store, app_settings)
    for key in (first_key, second_key):
        found = await teams.authenticate(key)
        assert found is not None
        assert found.id == team_id
    third = await admin.post(f"/teams/{team_id}/keys")
    error = assert_error(third, 409, "conflict")
    assert "revoke one first" in error["message"]
    assert sorted(error["details"]["live_keys"]) == sorted([first_id, second_id])

    revoked = await admin.delete(f"/teams/{team_id}/keys/{first_id}")
    assert revoked.status_code == 204
    assert revoked.content == b""
    again = await admin.delete(f"/teams/{team_id}/keys/{first_id}")
    assert again.status_code == 204, "revoking a revoked key changes nothing"
    third = await admin.post(f"/teams/{team_id}/keys")
    assert third.status_code == 201, third.text

    keys = {k["id"]: k for k in (await admin.get(f"/teams/{team_id}")).json()["keys"]}
    assert set(keys) == {first_id, second_id, third.json()["key_id"]}
    assert keys[first_id]["revoked_at"] is not None, "kept, for audit"
    assert keys[second_id]["revoked_at"] is None
    fresh = directory(store, app_settings)
    assert await fresh.authenticate(first_key) is None
    assert await fresh.authenticate(second_key) is not None
    assert await fresh.authenticate(third.json()["key"]) is not None


async def test_a_revoked_key_is_refused_once_the_cache_time_has_passed(
    admin: httpx.AsyncClient, store: Store, app_settings: Settings
) -> None:
    """Another instance's cached copy serves the key until TEAM_CACHE_SECONDS pass, then the
    revocation holds there too (the clock is moved, not waited for)."""
    created = await create(admin)
    team_id, key = created["team"]["id"], created["key"]
    clock = Clock()
    teams = directory(store, app_settings, clock)
    assert await teams.authenticate(key) is not None
    response = await admin.delete(f"/teams/{team_id}/keys/{created['key_id']}")
    assert response.status_code == 204
    assert await teams.authenticate(key) is not None, "still cached"
    clock.now += 5.01
    assert await teams.authenticate(key) is None


async def test_a_disabled_team_s_key_and_members_are_refused(
    admin: httpx.AsyncClient, store: Store, app_settings: Settings
) -> None:
    member = str(uuid.uuid4())
    created = await create(admin, members=[member])
    team_id, key = created["team"]["id"], created["key"]
    before = directory(store, app_settings)
    found = await before.for_principal(member)
    assert found is not None
    assert found.id == team_id
    response = await admin.patch(f"/teams/{team_id}", json={"disabled": True})
    assert response.status_code == 200
    after = directory(store, app_settings)
    assert await after.authenticate(key) is None
    assert await after.for_principal(member) is None
    await admin.patch(f"/teams/{team_id}", json={"disabled": False})
    assert await directory(store, app_settings).authenticate(key) is not None


async def test_a_key_of_one_team_does_not_open_another(
    admin: httpx.AsyncClient, store: Store, app_settings: Settings
) -> None:
    """The key names its team: another team's id put in front of it finds no such key."""
    one, two = await create(admin), await create(admin)
    secret_part = one["key"].split("_", 3)[3]
    forged = f"tk_{two['team']['id']}_{one['key_id']}_{secret_part}"
    assert await directory(store, app_settings).authenticate(forged) is None


# --- who may call the registry ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/teams"),
        ("GET", "/teams"),
        ("GET", "/teams/search"),
        ("PATCH", "/teams/search"),
        ("POST", "/teams/search/keys"),
        ("DELETE", "/teams/search/keys/0a1b2c3d"),
    ],
)
async def test_a_function_key_or_none_is_refused_on_every_admin_route(
    host: AppHost, method: str, path: str
) -> None:
    async with httpx.AsyncClient(base_url=host.url, timeout=30) as client:
        body = {"id": "search"} if method in ("POST", "PATCH") and path == "/teams" else None
        with_function_key = await client.request(method, path, json=body, headers=host.headers())
        without = await client.request(method, path, json=body)
    assert with_function_key.status_code == 401
    assert without.status_code == 401


def signed_in(roles: list[str]) -> dict[str, str]:
    claims = [
        {"typ": "oid", "val": str(uuid.uuid4())},
        *({"typ": "roles", "val": role} for role in roles),
    ]
    principal = {"auth_typ": "aad", "role_typ": "roles", "claims": claims}
    return {"x-ms-client-principal": base64.b64encode(json.dumps(principal).encode()).decode()}


async def test_with_entra_sign_in_the_registry_needs_the_admin_role(entra_host: AppHost) -> None:
    async with httpx.AsyncClient(
        base_url=entra_host.url, headers=entra_host.admin_headers(), timeout=30
    ) as client:
        refused = await client.get("/teams", headers=signed_in(["Usage.Read", "Chat.Invoke"]))
        anonymous = await client.post("/teams", json={"id": new_team_id()})
        allowed = await client.get("/teams", headers=signed_in(["Admin"]))
    assert_error(refused, 403, "forbidden")
    assert_error(anonymous, 403, "forbidden")
    assert allowed.status_code == 200


async def test_an_empty_patch_is_200_and_writes_nothing(admin: httpx.AsyncClient) -> None:
    created = await create(admin, tpm=100)
    team_id = created["team"]["id"]
    response = await admin.patch(f"/teams/{team_id}", json={})
    assert response.status_code == 200, response.text
    assert response.json() == created["team"], "not even updated_at moves"
