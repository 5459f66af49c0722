"""`/sim/inputs`: how many answered requests carried each item input, the count the soak and
the job tests read to prove that no item is sent (and billed) twice."""

from __future__ import annotations

import os
from typing import Any

import httpx
import openai
import pytest
from openai import AzureOpenAI

from devstack.aoai_simulator import RunningSimulator
from devstack.aoai_simulator.stats import input_key
from soak.ports import local_ports

from .conftest import Control


def _counts(sim: RunningSimulator, *texts: str) -> dict[str, int]:
    keys = [input_key(t) for t in texts]
    body: dict[str, Any] = httpx.post(f"{sim.url}/sim/inputs", json={"keys": keys}).json()
    return {t: body["counts"][input_key(t)] for t in texts}


def test_each_embeddings_input_is_counted_per_answered_request(
    client: AzureOpenAI, sim: RunningSimulator
) -> None:
    client.embeddings.create(model="text-embedding-3-small", input=["alpha one", "beta two"])
    client.embeddings.create(model="text-embedding-3-small", input=["alpha one"])

    assert _counts(sim, "alpha one", "beta two", "never sent") == {
        "alpha one": 2,
        "beta two": 1,
        "never sent": 0,
    }
    summary = httpx.get(f"{sim.url}/sim/inputs").json()
    assert summary["repeated"] == {input_key("alpha one"): 2}
    sends = summary["repeats"][input_key("alpha one")]  # each send, to trace a repeat
    assert [s["label"] for s in sends] == ["alpha one", "alpha one"]
    assert len({s["request_id"] for s in sends}) == 2
    assert sends[0]["at"] <= sends[1]["at"]
    assert all(s["peer"] in local_ports(os.getpid()) for s in sends)  # this process asked
    assert (summary["distinct"], summary["sends"]) == (2, 3)


def test_each_line_of_a_chat_user_message_is_an_input(
    client: AzureOpenAI, sim: RunningSimulator
) -> None:
    client.chat.completions.create(
        model="gpt-4o",
        messages=[
            {"role": "system", "content": "You classify text items."},
            {"role": "user", "content": "[a] the first ticket\n\n[b] the second ticket"},
        ],
    )
    assert _counts(sim, "[a] the first ticket", "[b] the second ticket") == {
        "[a] the first ticket": 1,
        "[b] the second ticket": 1,
    }
    assert _counts(sim, "You classify text items.")["You classify text items."] == 0


def test_a_refused_request_carries_nothing(
    client: AzureOpenAI, sim: RunningSimulator, control: Control
) -> None:
    control.patch({"faults": {"embeddings": {"error_429": 1.0, "retry_after_ms": 10}}})
    with pytest.raises(openai.RateLimitError):
        client.with_options(max_retries=0).embeddings.create(
            model="text-embedding-3-small", input=["refused"]
        )
    assert _counts(sim, "refused") == {"refused": 0}


def test_reset_clears_the_counts(
    client: AzureOpenAI, sim: RunningSimulator, control: Control
) -> None:
    client.embeddings.create(model="text-embedding-3-small", input=["gone after reset"])
    control.reset()
    assert _counts(sim, "gone after reset") == {"gone after reset": 0}


def test_a_bad_keys_body_is_a_400(sim: RunningSimulator) -> None:
    response = httpx.post(f"{sim.url}/sim/inputs", json={"keys": "x"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_body"
