"""The outbox's pure logic: which refusals are for good, and the message's two shapes."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ServiceRequestError, ServiceResponseTimeoutError
from azure.cosmos.exceptions import CosmosHttpResponseError
from pydantic import ValidationError

from shared.metering.outbox import OutboxMessage, permanent


@pytest.mark.parametrize("status", [400, 409, 413])
def test_a_refusal_no_retry_changes_is_permanent(status: int) -> None:
    assert permanent(CosmosHttpResponseError(status_code=status, message="refused"))


@pytest.mark.parametrize("status", [401, 403, 404, 408, 410, 429, 449, 500, 503])
def test_a_refusal_that_a_retry_or_a_fix_may_change_is_not(status: int) -> None:
    assert not permanent(CosmosHttpResponseError(status_code=status, message="refused"))


def test_the_sdk_refusing_a_document_is_permanent_and_a_transport_failure_is_not() -> None:
    assert permanent(ValueError("Id contains illegal chars."))
    assert not permanent(ServiceRequestError("connection refused"))
    assert not permanent(ServiceResponseTimeoutError("read timed out"))


def test_a_message_holds_a_document_or_names_its_blob() -> None:
    inline = OutboxMessage(container="usage", document={"id": "a", "day": "2031-01-01"})
    claim = OutboxMessage(container="usage", document_blob="outbox/usage/a.json")
    assert OutboxMessage.model_validate_json(inline.model_dump_json()) == inline
    assert OutboxMessage.model_validate_json(claim.model_dump_json(exclude_none=True)) == claim
    with pytest.raises(ValidationError):
        OutboxMessage(container="usage")
    with pytest.raises(ValidationError):
        OutboxMessage(container="usage", document={"id": "a"}, document_blob="b")
