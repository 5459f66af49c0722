"""The continuation tokens of `GET /api/jobs/{job_id}`: Cosmos DB's own token, sealed to the
job it pages through.

Cosmos DB's token alone is not checked the same way everywhere: the local Cosmos DB server
ignores a made-up one (the first page comes back as if it were the next) and follows a changed
one to another page or to an empty last one; Azure answers 400 ("The continuation token
specified in the request is malformed"). So callers get `<token>.<mac>`, both base64url: the
service's token and its HMAC-SHA256 with the job id, keyed by a key derived from
USER_HASH_SECRET. Only a token sealed here for the same job is opened; anything else is a
`BadToken` before Cosmos DB sees it (a 400 at the boundary). Rotating the secret makes the
tokens handed out before it stale: the caller starts again from the first page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

_PURPOSE = b"jobs.continuation.v1"
_MAC_BYTES = 16


class BadToken(ValueError):
    """A continuation token this app did not hand out for this job."""


def page_key(secret: str) -> bytes:
    """The sealing key: derived from the secret, so it never equals the user-hash key."""
    return hmac.new(secret.encode("utf-8"), _PURPOSE, hashlib.sha256).digest()


def seal(token: str | None, job_id: str, key: bytes) -> str | None:
    """The token to hand out for Cosmos DB's `token` (None at the last page)."""
    if token is None:
        return None
    raw = token.encode("utf-8")
    return f"{_b64(raw)}.{_b64(_mac(raw, job_id, key))}"


def unseal(sealed: str | None, job_id: str, key: bytes) -> str | None:
    """Cosmos DB's token inside `sealed` (None: the first page); raises BadToken."""
    if sealed is None:
        return None
    body, dot, mac = sealed.partition(".")
    try:
        raw, given = _unb64(body), _unb64(mac)
    except (binascii.Error, ValueError):
        raise BadToken("not a continuation token of this API") from None
    if not dot or not hmac.compare_digest(given, _mac(raw, job_id, key)):
        raise BadToken("not a continuation token of this job")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # sealed here, so never; kept for the type
        raise BadToken("not a continuation token of this API") from None


def _mac(raw: bytes, job_id: str, key: bytes) -> bytes:
    message = job_id.encode("utf-8") + b"\0" + raw
    return hmac.new(key, message, hashlib.sha256).digest()[:_MAC_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text.isascii():
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
