"""Who is calling: the signed-in principal and its app roles, and a per-caller token limit.

With App Service authentication on (`ENTRA_AUTH=true`, infra's `entraAuth` switch), App
Service validates the Entra ID token, strips any `x-ms-client-principal*` headers a caller
sent, and sets its own. Only then may the app read them: with the switch off they are
ignored, since any holder of a function key could forge them.

App roles (defined on the app registration, docs/security.md): `Chat.Invoke` for chat,
`Jobs.Submit` for jobs, `Usage.Read` (admin) for the usage report.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from shared.errors import Forbidden, RateLimited

Role = Literal["Chat.Invoke", "Jobs.Submit", "Usage.Read"]
CHAT_ROLE: Final[Role] = "Chat.Invoke"
JOBS_ROLE: Final[Role] = "Jobs.Submit"
USAGE_ROLE: Final[Role] = "Usage.Read"

_OBJECT_ID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
WINDOW_SECONDS: Final = 60.0


@dataclass(frozen=True)
class Principal:
    """The signed-in caller as App Service authentication describes it."""

    object_id: str
    roles: frozenset[str] = field(default_factory=frozenset)


def principal_of(headers: Mapping[str, str], *, trusted: bool) -> Principal | None:
    """The caller App Service authentication signed in, or None (switch off, or no sign-in).

    `x-ms-client-principal` is base64 JSON: `{"claims": [{"typ", "val"}], "role_typ", ...}`."""
    if not trusted:
        return None
    raw = headers.get("x-ms-client-principal")
    object_id = headers.get("x-ms-client-principal-id")
    roles: set[str] = set()
    if raw:
        try:
            doc = json.loads(base64.b64decode(raw, validate=False))
        except (binascii.Error, ValueError):
            doc = {}
        claims = doc.get("claims") if isinstance(doc, dict) else None
        role_typ = doc.get("role_typ") or "roles" if isinstance(doc, dict) else "roles"
        for claim in claims if isinstance(claims, list) else []:
            if not isinstance(claim, dict):
                continue
            typ, val = claim.get("typ"), claim.get("val")
            if not isinstance(val, str):
                continue
            if typ in (role_typ, "roles"):
                roles.add(val)
            elif typ in _OBJECT_ID_CLAIMS and not object_id:
                object_id = val
    if not object_id:
        return None
    return Principal(object_id=object_id, roles=frozenset(roles))


def require_role(principal: Principal | None, role: Role, *, enforced: bool) -> None:
    """403 unless the signed-in caller holds `role`; nothing to check with the switch off
    (the function key is then the only gate)."""
    if not enforced:
        return
    if principal is None or role not in principal.roles:
        raise Forbidden(f"this route needs the app role {role}")


class CallerLimiter:
    """Tokens per minute per caller, in one instance (a sliding 60 s window).

    A call reserves its estimate (prompt characters / 4 plus its max_tokens) before it goes
    upstream and settles to the tokens Azure reported afterwards. Each instance keeps its own
    window, so with N instances a caller may spend up to N times the limit: this stops one
    key or user from draining the deployment's quota, it is not billing."""

    def __init__(self, tokens_per_minute: int, clock: Callable[[], float] = time.monotonic):
        self._limit = tokens_per_minute
        self._clock = clock
        self._spent: dict[str, deque[list[float]]] = {}

    @property
    def enabled(self) -> bool:
        return self._limit > 0

    def _window(self, caller: str) -> deque[list[float]]:
        now = self._clock()
        window = self._spent.setdefault(caller, deque())
        while window and window[0][0] <= now - WINDOW_SECONDS:
            window.popleft()
        if not window:
            self._spent.pop(caller, None)
            window = self._spent.setdefault(caller, deque())
        return window

    def reserve(self, caller: str, tokens: int) -> list[float] | None:
        """Book `tokens` for `caller`, or raise 429 with the wait until they fit."""
        if not self.enabled:
            return None
        window = self._window(caller)
        used = sum(entry[1] for entry in window)
        tokens = min(tokens, self._limit)  # one call may always use the whole minute
        if used + tokens > self._limit:
            # The earliest moment enough of the window has aged out.
            need, freed, wait = used + tokens - self._limit, 0.0, WINDOW_SECONDS
            for stamp, spent in window:
                freed += spent
                if freed >= need:
                    wait = stamp + WINDOW_SECONDS - self._clock()
                    break
            raise RateLimited(
                f"this caller may use {self._limit} tokens a minute on chat", retry_after=wait
            )
        entry = [self._clock(), float(tokens)]
        window.append(entry)
        return entry

    def settle(self, entry: list[float] | None, tokens: int) -> None:
        """Replace a reservation by what the call really used."""
        if entry is not None:
            entry[1] = float(tokens)


def caller_key(principal: Principal | None, tags: Mapping[str, str], user_hash: str | None,
               tag: str) -> str:  # fmt: skip
    """Whose tokens a chat call spends: the principal, else the naming tag, else the user."""
    if principal is not None:
        return f"principal:{principal.object_id}"
    if tag in tags:
        return f"tag:{tags[tag]}"
    if user_hash is not None:
        return f"user:{user_hash}"
    return "anonymous"
