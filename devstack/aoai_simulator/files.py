"""The Files API (`/openai/files`): upload (multipart), list, get, content, delete.

Files live in memory. Batch output and error files are added by the batch runner with
purpose `batch_output`.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from starlette.datastructures import UploadFile
from starlette.responses import Response

from . import errors
from .gateway import Call

_PURPOSES = {"batch", "fine-tune", "assistants", "user_data", "vision"}


def not_found(file_id: str) -> errors.AzureError:
    return errors.error(404, "404", f"File with id '{file_id}' not found.")


class FileStore:
    """Thread-safe in-memory files: metadata as the API returns it, and the bytes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._meta: dict[str, dict[str, Any]] = {}
        self._data: dict[str, bytes] = {}

    def add(self, filename: str, purpose: str, data: bytes) -> dict[str, Any]:
        file_id = "file-" + uuid.uuid4().hex
        meta: dict[str, Any] = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "status_details": None,
        }
        with self._lock:
            self._meta[file_id] = meta
            self._data[file_id] = data
        return dict(meta)

    def get(self, file_id: str) -> dict[str, Any]:
        with self._lock:
            meta = self._meta.get(file_id)
        if meta is None:
            raise not_found(file_id)
        return dict(meta)

    def content(self, file_id: str) -> bytes:
        with self._lock:
            data = self._data.get(file_id)
        if data is None:
            raise not_found(file_id)
        return data

    def delete(self, file_id: str) -> None:
        with self._lock:
            if self._meta.pop(file_id, None) is None:
                raise not_found(file_id)
            self._data.pop(file_id, None)

    def all(self) -> list[dict[str, Any]]:
        """Oldest first."""
        with self._lock:
            return [dict(m) for m in self._meta.values()]


def page(items: list[dict[str, Any]], after: str | None, limit: int) -> dict[str, Any]:
    """A cursor page `{object, data, first_id, last_id, has_more}` starting after `after`."""
    if after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    data = items[:limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(items) > limit,
    }


def _limit(call: Call, default: int, maximum: int) -> int:
    raw = call.request.query_params.get("limit", str(default))
    try:
        value = int(raw)
    except ValueError:
        raise errors.invalid_request(f"Invalid value for 'limit': {raw!r}.", "limit") from None
    if not 1 <= value <= maximum:
        raise errors.invalid_request(
            f"Invalid value for 'limit': must be between 1 and {maximum}.", "limit"
        )
    return value


async def upload(call: Call) -> Response:
    async with call.request.form() as form:
        purpose = form.get("purpose")
        upload_file = form.get("file")
        if not isinstance(purpose, str) or purpose not in _PURPOSES:
            raise errors.invalid_request(
                f"Invalid value for purpose: {purpose!r}. Supported values are "
                f"{sorted(_PURPOSES)}.",
                "purpose",
            )
        if not isinstance(upload_file, UploadFile):
            raise errors.invalid_request("'file' is a required property", "file")
        data = await upload_file.read()
        filename = upload_file.filename or "upload"
    if purpose == "batch" and not filename.endswith(".jsonl"):
        raise errors.error(
            400, "invalidPayload", "Invalid file format for Batch API. Must be .jsonl"
        )
    if not data:
        raise errors.error(400, "invalidPayload", "The file is empty.")
    meta = call.state.files.add(filename, purpose, data)
    call.record(200)
    return call.json(meta)


async def list_files(call: Call) -> Response:
    items = call.state.files.all()
    purpose = call.request.query_params.get("purpose")
    if purpose:
        items = [i for i in items if i["purpose"] == purpose]
    if call.request.query_params.get("order", "desc") == "desc":
        items.reverse()
    result = page(items, call.request.query_params.get("after"), _limit(call, 10000, 10000))
    call.record(200)
    return call.json(result)


async def retrieve(call: Call) -> Response:
    meta = call.state.files.get(call.request.path_params["file_id"])
    call.record(200)
    return call.json(meta)


async def content(call: Call) -> Response:
    data = call.state.files.content(call.request.path_params["file_id"])
    call.record(200)
    return Response(data, headers=call.headers(), media_type="application/octet-stream")


async def delete(call: Call) -> Response:
    file_id = call.request.path_params["file_id"]
    call.state.files.delete(file_id)
    call.record(200)
    return call.json({"id": file_id, "object": "file", "deleted": True})
