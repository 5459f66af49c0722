"""A team for a local stack, made through the admin API as an operator would make one.

`make run` makes the `local` team and keeps its key in the state directory (mode 0600, beside
the emulators' data), so a restart prints the same key; test hosts (devstack/hosted_app.py)
share one team per database, so the existing tests act as one product team.

A key is shown once by the API and stored only as a keyed hash in Cosmos DB: when the known
key no longer opens the data plane (the data was wiped, the key revoked, TEAM_KEY_HASH_SECRET
changed), a new one is issued, revoking the oldest live key first if the team has two.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import httpx

LOCAL_TEAM: Final = "local"
KEY_FILE: Final = "local-team.key"


def ensure_team(
    client: httpx.Client,
    master_key: str,
    team_id: str,
    known_key: str | None = None,
    *,
    operator: Mapping[str, str] | None = None,
) -> str:
    """`team_id`'s key: `known_key` if it still works, else a new one (the team made first
    if there is none). `client` is based at the app's `/api`; `operator`, headers of a
    signed-in operator with the `Admin` role, for an app with Entra sign-in on."""
    if known_key and client.get("/usage", headers={"api-key": known_key}).status_code == 200:
        return known_key
    admin = {"x-functions-key": master_key, **(operator or {})}
    created = client.post("/teams", json={"id": team_id}, headers=admin)
    if created.status_code == 201:
        return str(created.json()["key"])
    if created.status_code != 409:
        raise RuntimeError(f"could not create team {team_id}: HTTP {created.status_code}")
    team = client.get(f"/teams/{team_id}", headers=admin).raise_for_status().json()
    live: list[dict[str, Any]] = [k for k in team.get("keys", []) if not k.get("revoked_at")]
    if len(live) >= 2:
        oldest = min(live, key=lambda k: str(k.get("created_at")))
        client.delete(f"/teams/{team_id}/keys/{oldest['id']}", headers=admin).raise_for_status()
    issued = client.post(f"/teams/{team_id}/keys", headers=admin).raise_for_status()
    return str(issued.json()["key"])


def ensure_local_team(api: str, master_key: str, state_dir: Path, timeout: float = 30.0) -> str:
    """The `local` team's key: the one kept in `state_dir` if it still works, else a new one."""
    kept = state_dir / KEY_FILE
    known = kept.read_text().strip() if kept.exists() else None
    with httpx.Client(base_url=api, timeout=timeout) as client:
        key = ensure_team(client, master_key, LOCAL_TEAM, known)
    if key != known:
        kept.touch(mode=0o600)
        kept.write_text(key + "\n")
    return key
