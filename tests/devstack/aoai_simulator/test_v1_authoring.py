"""Azure's v1 shape (`<resource>/openai/v1/...`, no api-version) as the app's own client uses
it with `AZURE_OPENAI_API_VERSION=v1`, through the openai SDK's plain `OpenAI` client and its
typed parsing: the key as the bearer, Files and the Batch API (one store behind both shapes)."""

from __future__ import annotations

import json
import time
from typing import Any

import openai
import pytest
from openai import AzureOpenAI, OpenAI

from devstack.aoai_simulator import RunningSimulator

from .conftest import Control

HI: Any = [{"role": "user", "content": "hi"}]


def test_v1_takes_the_key_as_the_bearer_and_refuses_a_wrong_one(sim: RunningSimulator) -> None:
    with OpenAI(base_url=f"{sim.url}/openai/v1", api_key=sim.api_key) as keyed:
        assert keyed.chat.completions.create(model="gpt-4o", messages=HI).choices
    with (
        OpenAI(base_url=f"{sim.url}/openai/v1", api_key="wrong-key") as wrong,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        wrong.chat.completions.create(model="gpt-4o", messages=HI)
    assert "Access token is missing, invalid" in caught.value.message


def test_v1_takes_an_entra_token_as_the_bearer(sim: RunningSimulator) -> None:
    """A JWT is an Entra token: any is accepted unless `bearer_tokens` lists them."""
    token = "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJjb2duaXRpdmVzZXJ2aWNlcyJ9.c2lnbmF0dXJl"
    with OpenAI(base_url=f"{sim.url}/openai/v1", api_key=token) as entra:
        assert entra.chat.completions.create(model="gpt-4o", messages=HI).choices


def test_a_batch_runs_through_the_v1_files_and_batches_routes(
    v1: OpenAI, client: AzureOpenAI, control: Control
) -> None:
    line = {
        "custom_id": "a",
        "method": "POST",
        "url": "/chat/completions",
        "body": {"model": "gpt-4o-batch", "messages": [{"role": "user", "content": "echo: hi"}]},
    }
    uploaded = v1.files.create(file=("in.jsonl", json.dumps(line).encode()), purpose="batch")
    assert uploaded.purpose == "batch"
    assert client.files.retrieve(uploaded.id).id == uploaded.id  # one store, both shapes
    created = v1.batches.create(
        input_file_id=uploaded.id, endpoint="/chat/completions", completion_window="24h"
    )
    assert created.status == "validating"
    deadline = time.monotonic() + 20
    batch = v1.batches.retrieve(created.id)
    while batch.status not in {"completed", "failed"} and time.monotonic() < deadline:
        time.sleep(0.03)
        batch = v1.batches.retrieve(created.id)
    assert batch.status == "completed"
    assert batch.output_file_id is not None
    (output,) = v1.files.content(batch.output_file_id).read().splitlines()
    answer = json.loads(output)["response"]["body"]
    assert answer["choices"][0]["message"]["content"] == "hi"
    assert created.id in [b.id for b in v1.batches.list(limit=100)]
    assert uploaded.id in [f.id for f in v1.files.list(purpose="batch")]
    with pytest.raises(openai.ConflictError):  # the v1 cancel route, on a finished batch
        v1.batches.cancel(created.id)
    assert v1.files.delete(uploaded.id).deleted


def test_v1_authoring_routes_take_no_api_version(v1: OpenAI) -> None:
    """The v1 routes need no api-version; the dated ones, asked without one, are Azure's 404."""
    assert v1.files.list().object == "list"
    dated = v1.with_options(base_url=str(v1.base_url).removesuffix("v1/"))
    with pytest.raises(openai.NotFoundError):
        dated.files.list()
