"""Where a stored response lives, against the Cosmos DB server: the record names the backend
and the team; another team's id, an unknown one and one past the service's retention read as
absent (the local server has no TTL: `expires_at` decides)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from shared.core.store import RESPONSES, Store
from shared.gateway.affinity import RETENTION, ResponseHomes


async def test_a_response_s_home_is_its_team_s_until_the_retention_ends(store: Store) -> None:
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    homes = ResponseHomes(store, clock=lambda: now[0])
    response_id = f"resp_{uuid.uuid4().hex}"
    await homes.remember(response_id, "search", "second", "gpt-4o")
    home = await homes.find(response_id, "search")
    assert home is not None
    assert (home.backend, home.deployment, home.team) == ("second", "gpt-4o", "search")
    assert home.expires_at == now[0] + timedelta(days=30) == now[0] + RETENTION
    assert await homes.find(response_id, "billing") is None
    assert await homes.find(f"resp_{uuid.uuid4().hex}", "search") is None
    now[0] += RETENTION - timedelta(seconds=1)
    assert await homes.find(response_id, "search") is not None
    now[0] += timedelta(seconds=1)
    assert await homes.find(response_id, "search") is None


async def test_a_record_the_app_cannot_read_is_absent(store: Store) -> None:
    response_id = f"resp_{uuid.uuid4().hex}"
    await store.upsert(RESPONSES, {"id": response_id, "team": "search"})
    assert await ResponseHomes(store).find(response_id, "search") is None
