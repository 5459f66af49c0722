"""The Files API through the SDK: upload (multipart, purpose batch), list, get, content, delete."""

from __future__ import annotations

import openai
import pytest
from openai import AsyncAzureOpenAI, AzureOpenAI

LINE = b'{"custom_id": "a", "method": "POST", "url": "/chat/completions", "body": {}}\n'


def test_file_lifecycle(client: AzureOpenAI) -> None:
    created = client.files.create(file=("input.jsonl", LINE), purpose="batch")
    assert created.id.startswith("file-")
    assert (created.filename, created.purpose, created.bytes) == ("input.jsonl", "batch", len(LINE))
    assert created.status == "processed"
    assert client.files.retrieve(created.id).id == created.id
    assert client.files.content(created.id).read() == LINE
    listed = [f.id for f in client.files.list(purpose="batch")]
    assert created.id in listed
    deleted = client.files.delete(created.id)
    assert deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.id)


def test_list_pages_with_after_and_limit(client: AzureOpenAI) -> None:
    ids = [client.files.create(file=(f"f{i}.jsonl", LINE), purpose="batch").id for i in range(3)]
    first = client.files.list(limit=2, order="asc", purpose="batch")
    page_ids = [f.id for f in first.data]
    assert len(page_ids) == 2
    everything = [f.id for f in client.files.list(limit=2, order="asc", purpose="batch")]
    assert everything[-3:] == ids  # auto-pagination follows `after`


def test_batch_purpose_needs_jsonl(client: AzureOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("input.txt", LINE), purpose="batch")
    assert caught.value.code == "invalidPayload"


def test_unknown_purpose_is_400(client: AzureOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("x.jsonl", LINE), purpose="nonsense")  # type: ignore[arg-type]
    assert caught.value.param == "purpose"


async def test_async_upload_and_content(aclient: AsyncAzureOpenAI) -> None:
    created = await aclient.files.create(file=("a.jsonl", LINE), purpose="batch")
    content = await aclient.files.content(created.id)
    assert content.read() == LINE
