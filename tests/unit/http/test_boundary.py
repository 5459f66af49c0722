"""The HTTP boundary's own logic: bounded body reads and request ids (no server needed:
requests are built from ASGI messages, as the host hands them over)."""

from __future__ import annotations

import pytest
from fastapi import Request, Response

from shared.core.errors import TooLarge
from shared.http.boundary import MAX_BODY_BYTES, client_request_id_of, guarded, read_body

CHUNK = 64 * 1024


class Upload:
    """A chunked upload (no Content-Length) of `total` bytes; counts what was pulled."""

    def __init__(self, total: int) -> None:
        self.left = total
        self.pulled = 0

    async def receive(self) -> dict[str, object]:
        size = min(CHUNK, self.left)
        self.left -= size
        self.pulled += size
        return {"type": "http.request", "body": b"x" * size, "more_body": self.left > 0}


def request(headers: dict[str, str], upload: Upload | None = None) -> Request:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/chat",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    return Request(scope, (upload or Upload(0)).receive)


async def test_a_chunked_upload_is_cut_off_at_the_limit() -> None:
    """Finding: only Content-Length was checked, so a chunked 40 MiB body was read whole
    before the 413. Now reading stops one chunk past the limit."""
    upload = Upload(40 * 1024 * 1024)
    with pytest.raises(TooLarge):
        await read_body(request({"transfer-encoding": "chunked"}, upload))
    assert upload.pulled <= MAX_BODY_BYTES + CHUNK


async def test_a_body_at_the_limit_is_read_whole() -> None:
    upload = Upload(MAX_BODY_BYTES)
    assert len(await read_body(request({}, upload))) == MAX_BODY_BYTES


async def test_a_declared_length_past_the_limit_reads_nothing() -> None:
    upload = Upload(MAX_BODY_BYTES + 1)
    with pytest.raises(TooLarge):
        await read_body(request({"content-length": str(MAX_BODY_BYTES + 1)}, upload))
    assert upload.pulled == 0


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("abc-123_X.y", "abc-123_X.y"),
        ("abc\n", None),  # `$` would have let the newline through
        ("a" * 65, None),
        ("", None),
        ("x y", None),
    ],
)
def test_caller_request_ids_must_match_whole(given: str, kept: str | None) -> None:
    req = request({"x-request-id": given}) if "\n" not in given else _raw_header(given)
    assert client_request_id_of(req) == kept


def _raw_header(value: str) -> Request:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": b"",
        "headers": [(b"x-request-id", value.encode())],
    }
    return Request(scope, Upload(0).receive)


async def test_the_request_id_is_the_servers_and_the_callers_is_kept_apart() -> None:
    """Audit records correlate by the server's id; a caller cannot choose it."""
    seen: list[str] = []

    async def handler(request_id: str) -> Response:
        seen.append(request_id)
        return Response("ok")

    answer = await guarded(request({"x-request-id": "spoofed-id"}), handler)
    assert seen[0] != "spoofed-id"
    assert answer.headers["x-request-id"] == seen[0]
    assert answer.headers["x-client-request-id"] == "spoofed-id"
