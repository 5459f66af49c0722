"""Stored responses: what `GET`/`DELETE /responses/{id}`, `input_items`, `cancel` and
`previous_response_id` read.

One store per simulator process, as one Azure OpenAI resource keeps its own: an id made by
another simulator is unknown here (404). A response is stored unless created with
`store: false`; a background response is answered later by a task kept beside it.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from . import errors


@dataclass
class StoredResponse:
    body: dict[str, Any]  # the `response` object as GET answers it now
    deployment: str
    input_items: list[dict[str, Any]]
    # As chat messages (without `instructions`, which do not carry over): the earlier turns
    # and this input, and this response's output.
    turn: list[dict[str, Any]]
    answer: list[dict[str, Any]]
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def conversation(self) -> list[dict[str, Any]]:
        """What a follow-up reads first: the turns so far, and this answer once it was given
        (not while queued, nor when cancelled or failed)."""
        given = self.body.get("status") in ("completed", "incomplete")
        return [*self.turn, *self.answer] if given else list(self.turn)


def not_found(response_id: str) -> errors.AzureError:
    """The service's 404 for an id it does not hold."""
    return errors.AzureError(
        404,
        {
            "error": {
                "message": f"Response with id '{response_id}' not found.",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        },
    )


def previous_not_found(response_id: str) -> errors.AzureError:
    """The service's 400 for a `previous_response_id` it does not hold."""
    return errors.AzureError(
        400,
        {
            "error": {
                "message": f"Previous response with id '{response_id}' not found.",
                "type": "invalid_request_error",
                "param": "previous_response_id",
                "code": "previous_response_not_found",
            }
        },
    )


# Azure keeps a stored response 30 days; a simulator that runs a soak or a bench for hours keeps
# the newest this many, so its memory stays bounded (an evicted id answers 404, as an expired
# one does on Azure).
MAX_STORED = 10_000


class ResponseStore:
    """Responses by id, the newest `max_stored` of them; thread-safe (the app may answer on
    more than one thread)."""

    def __init__(self, max_stored: int = MAX_STORED) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, StoredResponse] = {}
        self._max = max_stored

    def put(self, stored: StoredResponse) -> None:
        with self._lock:
            self._items[stored.body["id"]] = stored
            while len(self._items) > self._max:
                oldest = self._items.pop(next(iter(self._items)))
                if oldest.task is not None:
                    oldest.task.cancel()

    def find(self, response_id: str) -> StoredResponse | None:
        with self._lock:
            return self._items.get(response_id)

    def get(self, response_id: str) -> StoredResponse:
        found = self.find(response_id)
        if found is None:
            raise not_found(response_id)
        return found

    def delete(self, response_id: str) -> StoredResponse:
        with self._lock:
            found = self._items.pop(response_id, None)
        if found is None:
            raise not_found(response_id)
        if found.task is not None:
            found.task.cancel()
        return found

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
