"""The one registry of process clients: built from settings, closed together."""

from __future__ import annotations

import json
import logging

import pytest

from shared.core.settings import Settings, load_settings
from shared.runtime import Closer, apply_log_level, close_all, create_runtime, uses_entra_id


async def test_close_all_closes_the_rest_when_one_fails() -> None:
    closed: list[str] = []

    def closer(name: str, fail: bool = False) -> Closer:
        async def close() -> None:
            closed.append(name)
            if fail:
                raise RuntimeError(f"{name} would not close")

        return name, close

    failures = await close_all([closer("a"), closer("b", fail=True), closer("c")])
    assert closed == ["a", "b", "c"]
    assert [str(f) for f in failures] == ["b would not close"]


async def test_runtime_closes_every_client(app_settings: Settings) -> None:
    runtime = create_runtime(app_settings)
    names = [name for name, _ in runtime.closers]
    # The quota ledgers first: each hands its hold back while Cosmos DB is still open.
    assert names == [
        "the quota ledgers",
        "the Azure OpenAI clients",
        "the Cosmos DB client",
        "the storage clients",
    ]
    assert await runtime.aclose() == []
    assert runtime.aoai.is_closed()


async def test_runtime_closes_every_backends_client(app_environ: dict[str, str]) -> None:
    backends = [
        {"name": n, "endpoint": "http://127.0.0.1:9", "priority": p, "api_key": "k"}
        for n, p in (("first", 1), ("second", 2))
    ]
    runtime = create_runtime(load_settings({**app_environ, "AOAI_BACKENDS": json.dumps(backends)}))
    assert [b.name for b in runtime.backends.all] == ["first", "second"]
    assert await runtime.aclose() == []
    assert all(b.client.is_closed() and b.direct.is_closed() for b in runtime.backends.all)


@pytest.mark.parametrize(
    ("overrides", "entra"),
    [
        ({}, False),
        ({"AZURE_OPENAI_API_KEY": ""}, True),
        ({"COSMOS_KEY": ""}, True),
    ],
)
def test_a_credential_only_when_some_client_uses_entra_id(
    app_environ: dict[str, str], overrides: dict[str, str], entra: bool
) -> None:
    assert uses_entra_id(load_settings({**app_environ, **overrides})) is entra


@pytest.mark.parametrize("level", ["DEBUG", "WARNING", "ERROR"])
def test_log_level_sets_the_apps_loggers_only(app_environ: dict[str, str], level: str) -> None:
    app_logger, sdk_logger = logging.getLogger("shared.chat.service"), logging.getLogger("openai")
    before = (logging.getLogger("shared").level, sdk_logger.level)
    try:
        apply_log_level(load_settings({**app_environ, "LOG_LEVEL": level}))
        assert app_logger.getEffectiveLevel() == logging.getLevelName(level)
        assert sdk_logger.level == before[1]
    finally:
        logging.getLogger("shared").setLevel(before[0])
