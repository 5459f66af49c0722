"""Unit tests are pure logic: none may ask for a session fixture of the local stack (the
emulators, the simulator, the store, the app's settings for them). Collection fails naming the
test and the fixture; such a test belongs in tests/stack/<package>/."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import stack_fixtures_of

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    wrong = [
        f"  {item.nodeid} asks for {', '.join(sorted(fixtures))}"
        for item in items
        if item.path.is_relative_to(HERE) and (fixtures := stack_fixtures_of(item))
    ]
    if wrong:
        raise pytest.UsageError(
            "a unit test needs no server; move these to tests/stack/:\n" + "\n".join(wrong)
        )
