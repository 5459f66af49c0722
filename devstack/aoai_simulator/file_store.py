"""The in-memory file store behind the Files API (metadata and bytes).

Batch output and error files are added by the batch runner with purpose `batch_output`.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from . import errors


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
