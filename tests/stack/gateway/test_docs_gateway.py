"""docs/gateway.md's snippets, as printed: every ```python block runs in a fresh interpreter
against the real function_app.py under the local Functions host (the simulator, Azurite and
the Cosmos DB server behind it), with the endpoint and key in the environment variables the
snippets read. What it prints must be the ```text block right under it."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.hosted_app import AppHost
from tests.conftest import ROOT
from tests.support.hosts import host_fixture

DOC = ROOT / "docs" / "gateway.md"
# A heading, or a fenced block with its language.
_PARTS = re.compile(r"^(#{2,4} [^\n]+)$|^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Snippet:
    heading: str
    code: str
    printed: str | None


def snippets(text: str) -> list[Snippet]:
    """Every python block of `text`, with the text block that follows it (if any)."""
    found: list[Snippet] = []
    heading = ""
    parts = list(_PARTS.finditer(text))
    for i, part in enumerate(parts):
        if part[1]:
            heading = part[1].lstrip("# ")
        elif part[2] == "python":
            after = parts[i + 1] if i + 1 < len(parts) else None
            printed = after[3] if after is not None and after[2] == "text" else None
            found.append(Snippet(heading, part[3], printed))
    return found


def test_snippets_are_found_with_what_they_print() -> None:
    text = "## A\n```python\nprint(1)\n```\n\n```text\n1\n```\n### B\n```python\nx = 2\n```\n"
    assert snippets(text) == [Snippet("A", "print(1)\n", "1\n"), Snippet("B", "x = 2\n", None)]


SNIPPETS = snippets(DOC.read_text())


# The OpenAI Agents SDK's default model (openai-agents 0.24), an alias as the page says to add.
AGENTS_DEFAULT_MODEL_ALIAS = '{"default-chat": "gpt-4o", "gpt-5.6-luna": "gpt-4o"}'
host = host_fixture("docs-gateway", {"AOAI_DEPLOYMENTS": AGENTS_DEFAULT_MODEL_ALIAS})


def test_every_framework_has_a_snippet() -> None:
    headings = " ".join(s.heading for s in SNIPPETS)
    for name in (
        "Azure shape (sync)",
        "Azure shape (async)",
        "OpenAI shape (sync)",
        "OpenAI shape (async)",
        "LangChain",
        "LlamaIndex",
        "Azure v1 shape",
        "Responses API",
        "Agents SDK",
        "ChatOpenAI(use_responses_api=True)",
    ):
        assert name in headings
    assert all(s.printed is not None for s in SNIPPETS)


@pytest.mark.timeout(180)  # a fresh interpreter importing a framework, under load
@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.heading for s in SNIPPETS])
async def test_the_snippet_prints_what_the_page_says(
    host: AppHost, snippet: Snippet, tmp_path: Path
) -> None:
    env = {**os.environ, "APP_URL": host.url, "TEAM_KEY": host.team_key}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        snippet.code,
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-3000:]
    assert out.decode() == snippet.printed
