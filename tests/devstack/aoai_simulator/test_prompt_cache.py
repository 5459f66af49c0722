"""Prompt caching, as Azure's: `usage.prompt_tokens_details.cached_tokens` counts the longest
prefix seen before on the deployment, 1,024 tokens then in steps of 128; a prompt under 1,024
tokens, or one whose first tokens differ, is never cached.

The simulator counts a prompt as 3 tokens per message plus ceil(chars / 4) of its text, plus 3
for the reply, so the expected figures below follow from the lengths of the texts.
"""

from __future__ import annotations

import json
import time
from typing import Any

from openai import AzureOpenAI
from openai.types import Batch
from openai.types.chat import ChatCompletion
from openai.types.completion_usage import CompletionUsage

from .conftest import Control

DOC = "Policy text. " * 616  # 8,008 characters: 2,002 tokens, a long shared system prompt
SHARED = 3 + 2002 + 3  # the system message and the user message's overhead


def ask(question: str, doc: str = DOC) -> list[dict[str, str]]:
    return [{"role": "system", "content": doc}, {"role": "user", "content": question}]


def usage_of(completion: ChatCompletion) -> CompletionUsage:
    assert completion.usage is not None
    return completion.usage


def cached(usage: CompletionUsage | None) -> int:
    assert usage is not None
    assert usage.prompt_tokens_details is not None
    return usage.prompt_tokens_details.cached_tokens or 0


def chat(client: AzureOpenAI, messages: Any, model: str = "gpt-4o") -> CompletionUsage:
    return usage_of(client.chat.completions.create(model=model, messages=messages))


def test_a_repeated_long_prompt_reports_its_cached_prefix(
    client: AzureOpenAI, control: Control
) -> None:
    first = chat(client, ask("alpha: what does it say?"))  # 24 chars: 6 tokens
    assert (first.prompt_tokens, cached(first)) == (SHARED + 6 + 3, 0)  # nothing seen yet
    # Another question after the same policy: the shared 2,008 tokens are cached, counted
    # as 1,024 and then whole steps of 128 (1,024 + 7 x 128 = 1,920 <= 2,008).
    other = chat(client, ask("bravo: and what else?"))
    assert cached(other) == 1024 + 7 * 128
    # The very same prompt again: all of it, down to a step of 128.
    again = chat(client, ask("alpha: what does it say?"))
    assert again.prompt_tokens == 2017
    assert cached(again) == 1024 + 7 * 128 == 1920  # 2,048 would be past the prompt's end
    assert again.prompt_tokens == first.prompt_tokens  # cached tokens still count as prompt
    # /sim/stats adds them up, as a test of the app's usage records can compare.
    counted = control.stats()["deployments"]["gpt-4o"]
    assert (counted["cached_tokens"], counted["prompt_tokens"]) == (2 * 1920, 3 * 2017)


def test_the_cached_part_grows_in_steps_of_128(client: AzureOpenAI) -> None:
    chat(client, ask("x" * 2000))  # 500 tokens of question after the shared 2,008
    usage = chat(client, ask("x" * 2000))
    assert usage.prompt_tokens == SHARED + 500 + 3 == 2511
    assert cached(usage) == 1024 + 11 * 128 == 2432
    assert cached(usage) <= usage.prompt_tokens
    assert (cached(usage) - 1024) % 128 == 0


def test_a_prompt_under_1024_tokens_is_never_cached(client: AzureOpenAI) -> None:
    short = [{"role": "user", "content": "y" * 4068}]  # 3 + 1,017 + 3 = 1,023 tokens
    for _ in range(3):
        usage = chat(client, short)
        assert (usage.prompt_tokens, cached(usage)) == (1023, 0)
    exact = [{"role": "user", "content": "y" * 4072}]  # one token more: 1,024, cached whole
    assert cached(chat(client, exact)) == 0
    assert cached(chat(client, exact)) == 1024


def test_a_prompt_whose_first_tokens_differ_is_not_cached(client: AzureOpenAI) -> None:
    chat(client, ask("alpha"))
    changed = "p" + DOC[1:]  # one character differs, in the first token
    assert cached(chat(client, ask("alpha", changed))) == 0
    # A change after the first 1,024 tokens leaves what comes before it cached, in steps of
    # 128: the document's 1,151st token differs, so the prompts agree on 1,153 tokens.
    late = DOC[:4600] + "X" + DOC[4601:]
    assert cached(chat(client, ask("alpha", late))) == 1024 + 128


def test_tools_are_part_of_the_prefix(client: AzureOpenAI) -> None:
    """Azure renders tools before the messages: other tools, another prefix."""
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    plain = ask("alpha")
    chat(client, plain)
    with_tools = client.chat.completions.create(model="gpt-4o", messages=plain, tools=[tool])  # type: ignore[arg-type,list-item]
    assert cached(with_tools.usage) == 0


def test_streamed_usage_carries_the_cached_tokens(client: AzureOpenAI) -> None:
    chat(client, ask("alpha"))
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o",
            messages=ask("alpha"),  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == []
    assert cached(chunks[-1].usage) == 1920


def test_another_deployment_does_not_share_the_cache(client: AzureOpenAI, control: Control) -> None:
    twin = {"model": "gpt-5.4", "kind": "chat", "model_version": "2026-03-05"}
    control.patch({"deployments": {"gpt-4o-twin": twin}})
    chat(client, ask("alpha"))
    assert cached(chat(client, ask("alpha"), model="gpt-4o-twin")) == 0
    assert cached(chat(client, ask("alpha"), model="gpt-4o-twin")) == 1920


def test_a_model_older_than_gpt_4o_does_not_cache(client: AzureOpenAI, control: Control) -> None:
    legacy = {"model": "gpt-4", "kind": "chat", "model_version": "turbo-2024-04-09"}
    control.patch({"deployments": {"gpt-4-legacy": legacy}})
    chat(client, ask("alpha"), model="gpt-4-legacy")
    assert cached(chat(client, ask("alpha"), model="gpt-4-legacy")) == 0


def test_reset_clears_the_cache(client: AzureOpenAI, control: Control) -> None:
    chat(client, ask("alpha"))
    control.reset(config=False)
    assert cached(chat(client, ask("alpha"))) == 0


def test_caching_can_be_turned_off(client: AzureOpenAI, control: Control) -> None:
    control.patch({"prompt_cache": {"enabled": False}})
    chat(client, ask("alpha"))
    assert cached(chat(client, ask("alpha"))) == 0


def test_an_entry_unused_for_its_lifetime_is_gone(client: AzureOpenAI, control: Control) -> None:
    control.patch({"prompt_cache": {"ttl_seconds": 0}})  # gone as soon as it is stored
    chat(client, ask("alpha"))
    assert cached(chat(client, ask("alpha"))) == 0


def _batch_line(custom_id: str, messages: Any, model: str = "gpt-4o-batch") -> str:
    body = {"model": model, "messages": messages, "max_completion_tokens": 5000}
    line = {"custom_id": custom_id, "method": "POST", "url": "/chat/completions", "body": body}
    return json.dumps(line)


def _run_batch(client: AzureOpenAI, lines: list[str]) -> dict[str, dict[str, Any]]:
    raw = ("\n".join(lines) + "\n").encode()
    file_id = client.files.create(file=("in.jsonl", raw), purpose="batch").id
    batch: Batch = client.batches.create(
        input_file_id=file_id, endpoint="/chat/completions", completion_window="24h"
    )
    deadline = time.monotonic() + 20
    while batch.status not in {"completed", "failed", "cancelled", "expired"}:
        assert time.monotonic() < deadline, f"batch stuck in {batch.status}"
        time.sleep(0.05)
        batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    assert batch.output_file_id is not None
    out = client.files.content(batch.output_file_id).read().splitlines()
    return {x["custom_id"]: x["response"]["body"]["usage"] for x in map(json.loads, out)}


def test_batch_output_lines_report_cached_and_reasoning_tokens(
    client: AzureOpenAI, control: Control
) -> None:
    reasoner = {"model": "o4-mini", "kind": "chat", "sku": "global-batch"}
    control.patch({"deployments": {"o4-mini-batch": {**reasoner, "model_version": "2025-04-16"}}})
    # "b" runs after "a" on the same deployment; a batch file holds one deployment's lines.
    usage = _run_batch(client, [_batch_line("a", ask("alpha")), _batch_line("b", ask("bravo"))])
    assert usage["a"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert usage["b"]["prompt_tokens_details"]["cached_tokens"] == 1920
    think = [{"role": "user", "content": "think"}]
    usage = _run_batch(client, [_batch_line("r", think, "o4-mini-batch")])
    assert usage["r"]["completion_tokens_details"]["reasoning_tokens"] == 600
    counted = control.stats()["routes"]["batch"]
    assert (counted["cached_tokens"], counted["reasoning_tokens"]) == (1920, 600)


def test_streamed_usage_carries_the_reasoning_tokens(client: AzureOpenAI, control: Control) -> None:
    control.patch({"deployments": {"o4-mini": {"model": "o4-mini", "kind": "chat"}}})
    chunks = list(
        client.chat.completions.create(
            model="o4-mini",
            messages=[{"role": "user", "content": "think"}],
            stream=True,
            stream_options={"include_usage": True},
            max_completion_tokens=5000,
        )
    )
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 600
    assert control.stats()["deployments"]["o4-mini"]["reasoning_tokens"] == 600
