"""Where a stored response lives: response id -> the backend (account) that created it, and
the team that owns it, in the `responses` container (partition `/id`).

The Responses API keeps a response (and the conversation `previous_response_id` continues) on
the account that answered it, for 30 days. Every follow-up (`previous_response_id`, GET,
DELETE, `input_items`, `cancel`, a background poll) must go there, whatever AOAI_BACKENDS would
pick now, so the gateway records the backend of each response it passes back and routes by it
(shared/gateway/responses.py). The record also names the team: an id another team created is
absent for this one (a 404, as an unknown id), so a leaked id reads nothing.

Cosmos DB deletes a record after the service's retention (the container's `defaultTtl`,
infra/modules/cosmos.bicep); the local Cosmos DB server has no TTL, so each record also carries
its `expires_at` and one past it reads as absent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from azure.cosmos.exceptions import CosmosAccessConditionFailedError
from pydantic import BaseModel, ValidationError

from shared.core.store import RESPONSES, Store
from shared.metering.held_booking import HeldBooking
from shared.metering.models import UsageRecord

# How long Azure OpenAI keeps a stored response; the container's defaultTtl says the same.
RETENTION: Final = timedelta(days=30)


class ResponseHome(BaseModel):
    """One response id's record."""

    id: str
    team: str
    backend: str
    deployment: str
    created_at: datetime
    expires_at: datetime
    # A background response's usage document as written at its create (no tokens yet), until
    # a poll finds the response done and writes it again with its tokens; then None.
    pending_usage: UsageRecord | None = None
    # Its team's booking, still at the call's worst case until that poll settles it.
    pending_booking: HeldBooking | None = None


@dataclass(frozen=True)
class ResponseHomes:
    """The id -> backend records; one per process (shared/runtime.py)."""

    store: Store
    retention: timedelta = RETENTION
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def remember(
        self,
        response_id: str,
        team: str,
        backend: str,
        deployment: str,
        pending_usage: UsageRecord | None = None,
        pending_booking: HeldBooking | None = None,
    ) -> None:
        """Record where `response_id` lives (idempotent)."""
        now = self.clock()
        home = ResponseHome(
            id=response_id,
            team=team,
            backend=backend,
            deployment=deployment,
            created_at=now,
            expires_at=now + self.retention,
            pending_usage=pending_usage,
            pending_booking=pending_booking,
        )
        await self.store.upsert(RESPONSES, home.model_dump(mode="json"))

    async def settled(self, home: ResponseHome) -> bool:
        """Mark the background response's usage written and its booking settled, once: True
        for the one caller that cleared them (under the record's ETag), False when another
        poll, on any instance, came first."""
        found = await self.store.read(RESPONSES, home.id, home.id)
        if found is None or found.get("pending_usage") is None:
            return False
        done = {**found, "pending_usage": None, "pending_booking": None}
        try:
            await self.store.replace_if_unchanged(RESPONSES, done, found["_etag"])
        except CosmosAccessConditionFailedError:
            return False
        return True

    async def find(self, response_id: str, team: str) -> ResponseHome | None:
        """Where the team's response lives; None when unknown, expired or another team's."""
        found = await self.store.read(RESPONSES, response_id, response_id)
        if found is None:
            return None
        try:
            home = ResponseHome.model_validate(found)
        except ValidationError:
            return None
        if home.team != team or home.expires_at <= self.clock():
            return None
        return home
