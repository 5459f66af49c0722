"""What the aoai unit tests share: a client no test sends through."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from openai import AsyncAzureOpenAI


@pytest.fixture
async def client() -> AsyncIterator[AsyncAzureOpenAI]:
    """A client no test sends through (the calls are fakes taking a Target)."""
    c = AsyncAzureOpenAI(azure_endpoint="http://127.0.0.1:9", api_key="k", api_version="x")
    yield c
    await c.close()
