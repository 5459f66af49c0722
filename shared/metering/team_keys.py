"""Team keys: their format, the keyed hash they are stored as, and verification.

A key is `tk_{team_id}_{key_id}_{secret}`: the team id (so a lookup is one point read), an
8-hex-digit key id (so a team can hold two live keys and revoke one), and
`secrets.token_urlsafe(32)`, 32 random bytes. `tk_{team_id}_{key_id}` is its visible prefix,
safe to show and log. Only HMAC-SHA256 of the whole key, keyed with TEAM_KEY_HASH_SECRET, is
stored: a copy of the `teams` container alone gives no key, and no dictionary reverses 32
random bytes. Comparison is constant-time (`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

KEY_PREFIX: Final = "tk_"
SECRET_BYTES: Final = 32
# token_urlsafe(32): 43 characters of the URL-safe base64 alphabet, no padding.
_SECRET_CHARS: Final = 43
TEAM_ID_PATTERN: Final = r"[a-z][a-z0-9-]{1,39}"
KEY_ID_PATTERN: Final = r"[0-9a-f]{8}"
# fullmatch: `re.match` with `$` would let a trailing newline through.
_KEY = re.compile(
    rf"{KEY_PREFIX}(?P<team>{TEAM_ID_PATTERN})_(?P<key_id>{KEY_ID_PATTERN})_"
    rf"(?P<secret>[A-Za-z0-9_-]{{{_SECRET_CHARS}}})"
)


@dataclass(frozen=True)
class ParsedKey:
    """A well-formed key's parts. `repr` leaves the key out: it must never reach a log."""

    team_id: str
    key_id: str
    key: str

    @property
    def prefix(self) -> str:
        return visible_prefix(self.team_id, self.key_id)

    def __repr__(self) -> str:
        return f"ParsedKey({self.prefix}_...)"


@dataclass(frozen=True)
class IssuedKey:
    """A new key: the secret (shown once, to the caller who asked) and what is stored."""

    key_id: str
    prefix: str
    key: str
    hash: str

    def __repr__(self) -> str:
        return f"IssuedKey({self.prefix}_...)"


def visible_prefix(team_id: str, key_id: str) -> str:
    return f"{KEY_PREFIX}{team_id}_{key_id}"


def parse_key(key: str) -> ParsedKey | None:
    """The parts of a well-formed key, else None (no lookup is made for a malformed one)."""
    match = _KEY.fullmatch(key)
    if match is None:
        return None
    return ParsedKey(team_id=match["team"], key_id=match["key_id"], key=key)


def key_hash(hash_secret: bytes, key: str) -> str:
    """What is stored for `key`: hex HMAC-SHA256 keyed with TEAM_KEY_HASH_SECRET. The whole
    key is hashed, so a stored hash belongs to its team and key id."""
    return hmac.new(hash_secret, key.encode(), hashlib.sha256).hexdigest()


def key_matches(hash_secret: bytes, key: str, stored_hash: str) -> bool:
    """True when `key` hashes to `stored_hash`, compared in constant time."""
    return hmac.compare_digest(key_hash(hash_secret, key), stored_hash)


def issue_key(hash_secret: bytes, team_id: str, taken: Collection[str] = ()) -> IssuedKey:
    """A new random key for `team_id`, with a key id none of `taken` (the team's ids) has."""
    key_id = secrets.token_hex(4)
    while key_id in taken:
        key_id = secrets.token_hex(4)
    key = f"{visible_prefix(team_id, key_id)}_{secrets.token_urlsafe(SECRET_BYTES)}"
    return IssuedKey(
        key_id=key_id,
        prefix=visible_prefix(team_id, key_id),
        key=key,
        hash=key_hash(hash_secret, key),
    )
