"""Content-filter events: one document per filtered prompt or completion.

Stored without the text unless `CONTENT_FILTER_STORE_TEXT=true`, and with the caller's id
hashed (HMAC); `shared/metering/bookkeeper.py` writes them.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, datetime
from typing import Literal

from shared.core.models import ContentFilterInfo
from shared.metering.models import ContentFilterEvent

Source = Literal["chat", "job", "batch", "gateway"]


def hash_user(user: str | None, secret: str) -> str | None:
    """A stable id for the caller that cannot be reversed without `USER_HASH_SECRET`:
    HMAC-SHA256, hex. A plain hash of an email address falls to a dictionary of addresses."""
    if user is None:
        return None
    if not secret:
        raise ValueError("hash_user needs USER_HASH_SECRET")
    return hmac.new(secret.encode("utf-8"), user.encode("utf-8"), hashlib.sha256).hexdigest()


def build_event(
    info: ContentFilterInfo,
    *,
    source: Source,
    deployment: str,
    request_id: str | None = None,
    job_id: str | None = None,
    item_id: str | None = None,
    client_request_id: str | None = None,
    user_hash: str | None = None,
    backend: str | None = None,
    team: str | None = None,
    text: str | None = None,
    store_text: bool = False,
    now: datetime | None = None,
) -> ContentFilterEvent:
    """One event. A job item's event has the deterministic id `{job_id}:{item_id}`, so a
    redelivered message overwrites it instead of adding a second one."""
    now = now or datetime.now(UTC)
    event_id = f"{job_id}:{item_id}" if job_id and item_id else str(uuid.uuid4())
    return ContentFilterEvent(
        id=event_id,
        day=now.date().isoformat(),
        timestamp=now,
        source=source,
        stage=info.stage,
        categories=info.categories,
        deployment=deployment,
        request_id=request_id,
        client_request_id=client_request_id,
        job_id=job_id,
        item_id=item_id,
        user_hash=user_hash,
        backend=backend,
        team=team,
        text=text if store_text else None,
    )
