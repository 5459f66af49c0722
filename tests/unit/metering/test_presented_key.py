"""Where a data-plane request's team key is read from: the headers the openai SDKs send."""

from __future__ import annotations

import pytest

from shared.metering.callers import presented_key


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({"api-key": "tk_a"}, "tk_a"),  # AzureOpenAI(api_key=...)
        ({"authorization": "Bearer tk_b"}, "tk_b"),  # OpenAI(api_key=...)
        ({"authorization": "bearer   tk_c  "}, "tk_c"),
        ({"api-key": "tk_a", "authorization": "Bearer tk_b"}, "tk_a"),  # api-key decides
        ({"api-key": "  ", "authorization": "Bearer tk_b"}, "tk_b"),
        ({"authorization": "Basic dXNlcjpwYXNz"}, None),
        ({"authorization": "Bearer"}, None),
        ({"authorization": "Bearer   "}, None),
        ({"x-functions-key": "host-key"}, None),  # the host's key is not a team's
        ({}, None),
    ],
)
def test_the_key_comes_from_api_key_else_a_bearer_token(
    headers: dict[str, str], key: str | None
) -> None:
    assert presented_key(headers) == key
