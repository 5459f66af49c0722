"""The simulator's stored responses stay bounded: the newest are kept, an evicted id is the
service's 404, as an expired one is on Azure."""

from __future__ import annotations

import pytest

from devstack.aoai_simulator import errors
from devstack.aoai_simulator.responses_store import ResponseStore, StoredResponse


def stored(response_id: str) -> StoredResponse:
    return StoredResponse(
        body={"id": response_id, "status": "completed"},
        deployment="gpt-4o",
        input_items=[],
        turn=[],
        answer=[],
    )


def test_the_oldest_response_goes_when_the_store_is_full() -> None:
    store = ResponseStore(max_stored=2)
    for response_id in ("resp_a", "resp_b", "resp_c"):
        store.put(stored(response_id))
    assert len(store) == 2
    assert store.find("resp_a") is None
    assert store.get("resp_c").body["id"] == "resp_c"
    with pytest.raises(errors.AzureError):
        store.get("resp_a")
